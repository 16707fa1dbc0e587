"""The seed's failure semantics against a real Samba with real faults:
SIGKILL/SIGSTOP of the smbd child serving the connection, a fault-injecting
proxy, killable waits.  Every wait is bounded; no test sleeps to wait for
a state."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

import smblayer
from smblayer import (ClientState, ReconnectPolicy, SmbCancelledError, SmbClosedError,
                      SmbTimeoutError, TimeoutPolicy, fs)
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90)]

FAST_SOFT = TimeoutPolicy(mode="soft", timeout=0.5, echo_interval=0.25, soft_timeout=1.0,
                          connect_timeout=2.0)
FAST_HARD = TimeoutPolicy(mode="hard", timeout=0.5, echo_interval=0.25, connect_timeout=2.0)
QUICK_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def serving_child(server, client) -> int:
    pid = server.connection_child(client.local_address[1], timeout=5.0)
    assert pid, "no smbd child found for the client's connection"
    return pid


@contextmanager
def stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Wait on a condition by joining a short-lived watcher: bounded, no sleep loop."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        done.wait(0.01)


@pytest.fixture
def server(samba_factory):
    return samba_factory()


def connect(server, **options):
    return fs.connect(server.host, "share", server.username, server.password,
                      port=server.port, **options)


def test_sigkill_of_serving_child_reissues_every_call(server):
    tree = connect(server, timeouts=FAST_SOFT.with_(timeout=5.0, soft_timeout=5.0),
                   reconnect=QUICK_RECONNECT)
    client = tree.client
    handler_runs = []
    client.add_reconnect_handler(lambda c: handler_runs.append(c.generation))
    errors, counts = [], [0] * 4
    stop = threading.Event()
    killed = threading.Event()

    def work(i):
        try:
            while not stop.is_set():
                client.echo()
                counts[i] += 1
                if killed.is_set() and client.stats()["_client"]["reconnects"] and counts[i] > 5:
                    pass
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(counts) > 200, 10, "calls before the kill")
    old_session = tree.session.session_id
    os.kill(serving_child(server, client), signal.SIGKILL)
    killed.set()
    wait_for(lambda: client.stats()["_client"]["reconnects"] == 1 and client.state is
             ClientState.ACTIVE, 15, "the reconnect")
    before = sum(counts)
    wait_for(lambda: sum(counts) > before + 200, 10, "calls after the reconnect")
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert handler_runs == [2]
    # The session was set up again (new SessionId) and works: a signed tree
    # connect on it succeeds.
    assert tree.session.session_id != old_session
    other = tree.session.tree_connect("readonly")
    other.disconnect()
    tree.close()


def test_sigstop_soft_raises_within_soft_timeout_plus_reconnect_bound(server):
    client = smblayer.get_client(server.host, server.port, timeouts=FAST_SOFT,
                                 reconnect=QUICK_RECONNECT)
    try:
        client.echo()
        child = serving_child(server, client)
        with stopped(child):
            start = time.monotonic()
            with pytest.raises(SmbTimeoutError):
                client.echo()
            elapsed = time.monotonic() - start
        bound = FAST_SOFT.timeout + FAST_SOFT.soft_timeout + FAST_SOFT.connect_timeout
        assert elapsed < bound + 1.5, elapsed
        # After SIGCONT the client comes back by itself.
        wait_for(lambda: client.state is ClientState.ACTIVE, 15, "reconnect after SIGCONT")
        client.echo()
    finally:
        client.close()


def test_sigstop_hard_waits_and_completes_after_sigcont(server, caplog):
    client = smblayer.get_client(server.host, server.port, timeouts=FAST_HARD,
                                 reconnect=QUICK_RECONNECT)
    caplog.set_level(logging.WARNING, logger="smblayer")
    try:
        client.echo()
        child = serving_child(server, client)
        result = []
        with stopped(child):
            t = threading.Thread(target=lambda: result.append(client.echo()))
            t.start()
            wait_for(lambda: client.stats()["_client"]["not_responding"], 10,
                     "'not responding'")
            t.join(1.5)               # still blocked: hard mode keeps waiting
            assert t.is_alive()
        t.join(10)
        assert not t.is_alive() and len(result) == 1
        text = caplog.text
        assert text.count("not responding, still trying") == 1
        wait_for(lambda: "OK" in caplog.text, 5, "'server OK'")
        assert client.stats()["_client"]["reconnects"] == 0
        assert client.stats()["ECHO"]["timeouts"] >= 1
    finally:
        client.close()


def test_blocked_call_cancelled_from_another_thread(server):
    client = smblayer.get_client(server.host, server.port, timeouts=FAST_HARD)
    try:
        client.echo()
        child = serving_child(server, client)
        with stopped(child):
            task = client._echo_task()
            outcome = []

            def call():
                try:
                    client.run_task(task)
                    outcome.append("returned")
                except SmbCancelledError as exc:
                    outcome.append(exc)
            t = threading.Thread(target=call)
            t.start()
            wait_for(lambda: task.message_id >= 0, 5, "the request to be sent")
            start = time.monotonic()
            assert task.cancel()
            t.join(2)
            assert not t.is_alive() and isinstance(outcome[0], SmbCancelledError)
            assert time.monotonic() - start < 2
        # The late reply of the cancelled echo arrives after SIGCONT and is
        # discarded without confusing the next request.
        for _ in range(20):
            client.echo()
        assert client.stats()["_client"]["unmatched_replies"] == 0
    finally:
        client.close()


def test_close_wakes_blocked_callers(server):
    client = smblayer.get_client(server.host, server.port, timeouts=FAST_HARD)
    client.echo()
    child = serving_child(server, client)
    outcome = []

    def call():
        try:
            client.echo()
        except SmbClosedError as exc:
            outcome.append(exc)
    with stopped(child):
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: client.stats()["_client"]["in_flight"] == 4, 5, "4 calls in flight")
        start = time.monotonic()
        client.close()
        for t in threads:
            t.join(2)
        assert time.monotonic() - start < 2
    assert len(outcome) == 4


def test_sigint_interrupts_main_thread_wait(server):
    client = smblayer.get_client(server.host, server.port, timeouts=FAST_HARD)
    try:
        client.echo()
        child = serving_child(server, client)
        with stopped(child):
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            start = time.monotonic()
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                client.echo()
            assert time.monotonic() - start < 2
            timer.join()
        client.echo()
    finally:
        client.close()


@pytest.mark.parametrize("fault", ["reset", "refuse-then-heal"])
def test_proxy_reset_reconnects(server, fault):
    with FaultProxy(server.host, server.port) as proxy:
        tree = fs.connect(server.host, "share", server.username, server.password,
                          port=proxy.port, timeouts=FAST_SOFT.with_(timeout=5.0),
                          reconnect=QUICK_RECONNECT)
        client = tree.client
        client.echo()
        if fault == "reset":
            proxy.reset()
        else:
            proxy.refuse(True)
            proxy.reset()
            threading.Timer(0.3, proxy.refuse, (False,)).start()
        for _ in range(10):
            client.echo()
        assert client.stats()["_client"]["reconnects"] == 1
        tree.session.tree_connect("readonly").disconnect()
        tree.close()


def test_proxy_blackhole_soft_times_out(server):
    with FaultProxy(server.host, server.port) as proxy:
        client = smblayer.get_client(server.host, proxy.port, timeouts=FAST_SOFT,
                                     reconnect=ReconnectPolicy(initial_delay=0.05,
                                                               max_delay=0.2))
        try:
            client.echo()
            proxy.blackhole(True)
            proxy.refuse(True)
            start = time.monotonic()
            with pytest.raises((SmbTimeoutError, smblayer.SmbConnectionError)):
                client.echo()
            assert time.monotonic() - start < FAST_SOFT.timeout + FAST_SOFT.soft_timeout + \
                FAST_SOFT.connect_timeout + 1.5
            proxy.blackhole(False)
            proxy.refuse(False)
            wait_for(lambda: client.state is ClientState.ACTIVE, 10, "recovery")
            client.echo()
        finally:
            client.close()


def test_proxy_delay_is_slow_not_dead(server):
    with FaultProxy(server.host, server.port) as proxy:
        policy = TimeoutPolicy(mode="soft", timeout=0.2, echo_interval=0.3, soft_timeout=5.0)
        client = smblayer.get_client(server.host, proxy.port, timeouts=policy)
        try:
            proxy.delay(0.5)
            for _ in range(3):
                client.echo()
            stats = client.stats()
            assert stats["ECHO"]["timeouts"] >= 1          # the timers fired...
            assert stats["_client"]["reconnects"] == 0     # ...but the server was alive
        finally:
            client.close()


def test_abandoned_create_that_succeeds_later_is_closed(server):
    """Ctrl-C during CREATE on a stalled server: when the server wakes up and
    the open succeeds, the layer closes the orphaned handle by itself, so a
    later exclusive open does not hit a sharing violation."""
    from smblayer.fs import ops as fsops
    tree = connect(server, timeouts=FAST_HARD)
    other = connect(server, timeouts=FAST_HARD.with_(timeout=0.6))
    try:
        client = tree.client
        closes_before = client.stats().get("CLOSE", {}).get("ops", 0)
        child = serving_child(server, client)
        with stopped(child):
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                tree.open("orphan.bin", "wb")
            timer.join()
        wait_for(lambda: client.stats().get("CLOSE", {}).get("ops", 0) > closes_before, 10,
                 "the orphaned handle to be closed")
        wait_for(lambda: client.stats()["_client"]["in_flight"] == 0, 10, "the CLOSE reply")
        handle = fsops.ops_for(other).open(
            "orphan.bin", access=fsops.GENERIC_READ | fsops.GENERIC_WRITE,
            disposition=fsops.FILE_OPEN, share_access=0)
        fsops.ops_for(other).close(handle)
    finally:
        other.close()
        tree.close()


def test_compound_requests_survive_a_reconnect(server):
    """stat() and small read_bytes/write_bytes are compounds; a SIGKILL of the
    serving child mid-stream makes the client resend whole compounds after
    the reconnect, and every call still succeeds."""
    (server.share_path("share") / "c.txt").write_bytes(b"z" * 321)
    tree = connect(server, timeouts=FAST_SOFT.with_(timeout=5.0, soft_timeout=5.0),
                   reconnect=QUICK_RECONNECT)
    client = tree.client
    errors, counts = [], [0, 0]
    stop = threading.Event()

    def work(i):
        try:
            while not stop.is_set():
                assert tree.stat("c.txt").st_size == 321
                tree.write_bytes(f"w{i}.bin", b"%d" % counts[i])
                assert tree.read_bytes(f"w{i}.bin") == b"%d" % counts[i]
                counts[i] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(counts) > 50, 10, "calls before the kill")
        os.kill(serving_child(server, client), signal.SIGKILL)
        wait_for(lambda: client.stats()["_client"]["reconnects"] == 1, 15, "the reconnect")
        before = sum(counts)
        wait_for(lambda: sum(counts) > before + 50, 10, "calls after the reconnect")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    tree.close()


def test_a_tampered_late_create_reply_closes_nothing(server):
    """The late reply of an abandoned CREATE closes the handle it names --
    only if it passes the session's check.  On a signed session, a reply
    whose FileId was changed on the way (its signature no longer matches)
    must not make the client CLOSE that FileId (another open of the
    session): the connection is dropped instead, which closes the real
    open on the server, and the client reconnects."""
    armed = threading.Event()
    tampered = []

    def tamper(frame: bytes):
        # the CREATE response (command 5) of the abandoned open: flip a FileId byte
        if armed.is_set() and frame[:4] == b"\xfeSMB" and frame[12] == 5 and \
                not int.from_bytes(frame[8:12], "little") and len(frame) >= 64 + 88:
            armed.clear()
            tampered.append(frame)
            return frame[:64 + 64] + bytes([frame[64 + 64] ^ 0x55]) + frame[64 + 65:]
        return None

    with FaultProxy(server.host, server.port) as proxy:
        proxy.rewrite("s2c", tamper)
        tree = fs.connect(server.host, "share", server.username, server.password,
                          port=proxy.port, require_signing=True, timeouts=FAST_HARD,
                          reconnect=QUICK_RECONNECT)
        try:
            client = tree.client
            tree.write_bytes("late.bin", b"x")
            closes = client.stats()["CLOSE"]["ops"]
            proxy.pause()
            armed.set()
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                tree.open("late.bin", "rb")
            timer.join()
            proxy.resume()
            wait_for(lambda: tampered, 10, "the late CREATE reply")
            wait_for(lambda: client.stats()["_client"]["reconnects"] == 1 or
                     client.stats()["CLOSE"]["ops"] != closes, 10, "the late reply handled")
            assert client.stats()["CLOSE"]["ops"] == closes       # no CLOSE of a forged FileId
            assert client.stats()["_client"]["reconnects"] == 1   # the connection dropped
            wait_for(lambda: client.state is ClientState.ACTIVE, 10, "recovery")
            assert tree.read_bytes("late.bin") == b"x"
        finally:
            tree.close()
