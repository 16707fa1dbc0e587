"""The core defects of issue 10, each as a test against a real Samba (or a
loopback fake server) through the public API and the public test helpers.

Every test failed on the core as it was when the issue was filed (each was
committed first with a strict xfail marker naming the reason, see the git
history), and passes on the carved core.
A test whose defect is a hang keeps the blocking part in a thread or a
subprocess with a deadline, so it fails on time instead of hanging.
"""
from __future__ import annotations

import concurrent.futures
import gc
import inspect
import os
import signal
import struct
import threading
import time

import pytest

import smblayer
from smblayer import (ClientState, ReconnectPolicy, SmbCancelledError, SmbError, SmbTask,
                      SmbTimeoutError, TimeoutPolicy, fs)
from smblayer.fs import ops as fsops
from smblayer.proto import smb2
from smblayer.testing import fakeserver as fake
from smblayer.testing.capture import FrameLog
from smblayer.testing.fakeserver import FakeSmbServer
from smblayer.testing.process import PythonChild, frozen, server_pids
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90)]

QUICK_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        tick.wait(0.01)


@pytest.fixture
def server(samba_factory):
    return samba_factory()


def connect(server, port=None, **options):
    return fs.connect(server.host, "share", server.username, server.password,
                      port=server.port if port is None else port, **options)


def close_quietly(tree) -> None:
    """Close the client under ``tree`` (wakes every waiter), then the tree."""
    tree.client.close()
    try:
        tree.close()
    except SmbError:
        pass


# ---------------------------------------------------------------------------
# 1. Reconnect deadlock


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_reconnect_with_64_async_calls_and_a_session_completes(server, mode):
    """fs session behind a proxy: refuse + reset, 64 echo_async() and 4
    threads of path-based calls while RECONNECTING, heal: everything
    completes (hard mode used to stay RECONNECTING forever; soft mode failed
    every call after timeout + soft_timeout although the server was back).
    Writes through files opened before the outage need durable handles and
    are not part of this test."""
    (server.share_path("share") / "here.txt").write_bytes(b"x" * 10)
    with FaultProxy(server.host, server.port) as proxy:
        tree = connect(server, proxy.port, timeouts=TimeoutPolicy(mode=mode),
                       reconnect=QUICK_RECONNECT)
        client = tree.client
        threads = []
        try:
            client.echo()
            proxy.refuse(True)
            proxy.reset()
            wait_for(lambda: client.state is ClientState.RECONNECTING, 10, "RECONNECTING")
            futures = [client.echo_async() for _ in range(64)]
            results, errors = [], []

            data = os.urandom(8 * 1024 * 1024)

            def path_calls(i):
                try:
                    results.append(tree.stat("here.txt").st_size)
                    results.append(len(tree.listdir("")))
                    if i < 2:           # two 8 MiB writes, opened after the outage began
                        tree.write_bytes(f"big{i}.bin", data)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
            threads = [threading.Thread(target=path_calls, args=(i,), daemon=True)
                       for i in range(4)]
            for t in threads:
                t.start()
            proxy.refuse(False)
            done, not_done = concurrent.futures.wait(futures, timeout=20)
            deadline = time.monotonic() + 10
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            assert not not_done, (f"{len(not_done)} of 64 echo_async() calls never completed; "
                                  f"client state {client.state}")
            assert all(f.exception() is None for f in done)
            assert not any(t.is_alive() for t in threads), "path-based calls still blocked"
            assert not errors, errors
            assert results.count(10) == 4
            for i in range(2):
                assert (server.share_path("share") / f"big{i}.bin").read_bytes() == data
            assert client.stats()["_client"]["reconnects"] == 1
        finally:
            close_quietly(tree)
            for t in threads:
                t.join(10)


def test_wait_for_state_after_reset(server):
    with FaultProxy(server.host, server.port) as proxy:
        client = smblayer.get_client(server.host, proxy.port, reconnect=QUICK_RECONNECT)
        try:
            client.echo()
            proxy.refuse(True)
            proxy.reset()
            assert client.wait_for_state(ClientState.RECONNECTING, timeout=10) is True
            assert client.wait_for_state(ClientState.ACTIVE, timeout=0.3) is False
            proxy.refuse(False)
            start = time.monotonic()
            assert client.wait_for_state(ClientState.ACTIVE, timeout=10) is True
            assert time.monotonic() - start < 10
            assert client.state is ClientState.ACTIVE
            client.echo()
        finally:
            client.close()


# ---------------------------------------------------------------------------
# 2. Lost cancel


# The combining writer's cancel rule (transport/send.py): a request cancelled
# before the writer has taken it from the outbox is never sent; one cancelled
# after that is a cancel of a sent request (CANCEL after it, its MessageId
# kept for the late reply, an abandoned CREATE's handle closed).

def test_task_cancelled_before_the_writer_takes_it_is_never_sent(server):
    """A proxy that stops reading makes an 8 MiB WRITE block in sendmsg
    (its thread is the writer: 8 MiB is more than the loopback socket
    buffers take); an ECHO queued behind it is cancelled; when the proxy
    reads again the WRITE completes and the ECHO must never reach the
    server."""
    hard = TimeoutPolicy(mode="hard", timeout=30.0)   # no timer fires meanwhile: no probes
    with FaultProxy(server.host, server.port) as proxy:
        tree = connect(server, proxy.port, timeouts=hard)
        client = tree.client
        writer = waiter = None
        try:
            ops = tree.ops
            assert ops.max_write >= 8 * 1024 * 1024, "needs a server taking 8 MiB WRITEs"
            handle = ops.open("big.bin", access=fsops.GENERIC_READ | fsops.GENERIC_WRITE,
                              disposition=fsops.FILE_OVERWRITE_IF)
            log = FrameLog(directions=("c2s",))
            proxy.tap(log)
            proxy.pause()
            written = []
            writer = threading.Thread(target=lambda: written.append(client.run_task(
                ops.write_task(handle, 0, bytes(8 * 1024 * 1024)))), daemon=True)
            writer.start()
            wait_for(lambda: client.stats()["_client"]["in_flight"] == 1, 10,
                     "the WRITE to be on its way")
            echo = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,))
            outcome = []

            def call():
                try:
                    outcome.append(client.run_task(echo))
                except BaseException as exc:  # noqa: BLE001
                    outcome.append(exc)
            waiter = threading.Thread(target=call, daemon=True)
            waiter.start()
            wait_for(lambda: echo.state is not smblayer.TaskState.NEW, 5, "the ECHO to queue")
            threading.Event().wait(0.3)        # let it reach the send lock
            assert echo.cancel() is True
            proxy.resume()
            writer.join(20)
            waiter.join(20)
            assert not writer.is_alive() and written, "the WRITE did not complete"
            assert not waiter.is_alive(), "run_task of the cancelled ECHO still blocked"
            assert isinstance(outcome[0], SmbCancelledError), \
                f"run_task returned {outcome[0]!r} after cancel() returned True"
            client.echo()          # everything sent before this is through the proxy
            echoes = log.messages("c2s", smb2.Command.ECHO)
            assert len(echoes) == 1, "the cancelled ECHO was sent to the server"
            ops.close(handle)
        finally:
            proxy.resume()
            close_quietly(tree)
            for t in (writer, waiter):
                if t is not None:
                    t.join(10)


def test_task_cancelled_after_the_writer_took_it_is_cancelled_on_the_wire(server):
    """The other side of the rule.  WRITE A (8 MiB) blocks its writer on a
    paused proxy; WRITE B (8 MiB) and a CREATE queue behind it.  The proxy
    then forwards A and stops at B's first bytes: the writer has taken B and
    the CREATE (MessageIds given) and is stuck sending them.  Cancelling the
    CREATE now returns the caller at once; on the wire the CREATE goes out,
    then its CANCEL; its late reply is matched (never "unknown MessageId")
    and the handle it opened is closed by the layer."""
    hard = TimeoutPolicy(mode="hard", timeout=30.0)
    mib = 1024 * 1024
    with FaultProxy(server.host, server.port) as proxy:
        tree = connect(server, proxy.port, timeouts=hard)
        client = tree.client
        gate = threading.Event()
        threads = []
        try:
            ops = tree.ops
            assert ops.max_write >= 8 * mib, "needs a server taking 8 MiB WRITEs"
            handle = ops.open("big.bin", access=fsops.GENERIC_READ | fsops.GENERIC_WRITE,
                              disposition=fsops.FILE_OVERWRITE_IF)
            while client.stats()["_client"]["credits"] < 512:
                client.echo()              # credits for two 8 MiB WRITEs at once
            log = FrameLog()
            seen = [0]

            def tap(connection, direction, data):
                log(connection, direction, data)
                if direction == "c2s":
                    seen[0] += len(data)
                    if seen[0] > 8 * mib + 4096:     # B's first bytes: hold the stream
                        gate.wait(20)
            proxy.pause()
            proxy.tap(tap)
            outcome = {}

            def run(name, task):
                try:
                    outcome[name] = client.run_task(task)
                except BaseException as exc:  # noqa: BLE001
                    outcome[name] = exc

            def start(name, task):
                t = threading.Thread(target=run, args=(name, task), daemon=True)
                threads.append(t)
                t.start()
            start("A", ops.write_task(handle, 0, bytes(8 * mib)))
            wait_for(lambda: client.stats()["_client"]["in_flight"] == 1, 10,
                     "WRITE A to be on its way")
            start("B", ops.write_task(handle, 8 * mib, bytes(8 * mib)))
            wait_for(lambda: len(client._sender._outbox) == 1, 10, "WRITE B to queue")
            create, _, _ = ops._create_task("late.bin", access=fsops.GENERIC_READ,
                                            disposition=fsops.FILE_OVERWRITE_IF)
            start("C", create)
            wait_for(lambda: len(client._sender._outbox) == 2, 10, "the CREATE to queue")
            proxy.resume()
            wait_for(lambda: create.state is smblayer.TaskState.SENT, 20,
                     "the writer to take the CREATE")
            assert not gate.is_set() and not log.messages("c2s", smb2.Command.CREATE)[1:], \
                "the CREATE reached the proxy before the test could cancel it"
            assert create.cancel() is True
            wait_for(lambda: "C" in outcome, 2, "run_task of the cancelled CREATE to return")
            assert isinstance(outcome["C"], SmbCancelledError), repr(outcome["C"])
            gate.set()
            for t in threads:
                t.join(20)
            assert not isinstance(outcome["A"], BaseException), repr(outcome["A"])
            assert not isinstance(outcome["B"], BaseException), repr(outcome["B"])
            mid = create.message_id
            wait_for(lambda: any(m.header.message_id == mid
                                 for m in log.messages("s2c", smb2.Command.CREATE)), 10,
                     "the CREATE's late reply")
            wait_for(lambda: client.stats()["_client"]["in_flight"] == 0, 10,
                     "every reply (the close of the abandoned handle's too)")
            c2s = log.messages("c2s")
            at = [i for i, m in enumerate(c2s) if m.header.message_id == mid and
                  m.header.command == smb2.Command.CREATE]
            cancels = [i for i, m in enumerate(c2s) if m.header.message_id == mid and
                       m.header.command == smb2.Command.CANCEL]
            assert at and cancels and cancels[0] > at[0], "no CANCEL after the CREATE"
            reply = [m for m in log.messages("s2c", smb2.Command.CREATE)
                     if m.header.message_id == mid][-1]
            if reply.header.status == 0:      # it opened: the layer closes it
                wait_for(lambda: any(i > at[0] for i, m in enumerate(log.messages("c2s"))
                                     if m.header.command == smb2.Command.CLOSE), 10,
                         "the abandoned CREATE's handle to be closed")
            assert client.stats()["_client"]["unmatched_replies"] == 0
            ops.close(handle)
        finally:
            gate.set()
            proxy.resume()
            close_quietly(tree)
            for t in threads:
                t.join(10)


# ---------------------------------------------------------------------------
# 3. Soft mode is bounded: timeout + soft_timeout + connect_timeout after the
# first send, connect_timeout defaulting to min(10, timeout + soft_timeout).

SOFT = TimeoutPolicy(mode="soft", timeout=1.0, echo_interval=0.5, soft_timeout=3.0)
SOFT_BOUND = 1.0 + 3.0 + min(10.0, 1.0 + 3.0)      # 8 s
SLACK = 1.5


def timed_call(fn):
    start = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_soft_call_against_frozen_server_fails_within_bound(server):
    client = smblayer.get_client(server.host, server.port, timeouts=SOFT,
                                 reconnect=QUICK_RECONNECT)
    try:
        client.echo()
        with frozen(*server_pids(server)):       # the serving child and the master
            exc, elapsed = timed_call(client.echo)
        assert isinstance(exc, SmbTimeoutError), repr(exc)
        assert elapsed <= SOFT_BOUND + SLACK, \
            f"SmbTimeoutError after {elapsed:.1f} s, bound {SOFT_BOUND:g} s"
    finally:
        client.close()


def test_soft_call_against_server_that_never_answers_fails_within_bound():
    with FakeSmbServer(handler=fake.stall(), max_lifetime=80) as srv:
        client = smblayer.SmbClient(srv.host, srv.port, timeouts=SOFT,
                                    reconnect=QUICK_RECONNECT)
        try:
            exc, elapsed = timed_call(client.echo)
            assert isinstance(exc, SmbTimeoutError), repr(exc)
            assert elapsed <= SOFT_BOUND + SLACK, \
                f"SmbTimeoutError after {elapsed:.1f} s ({srv.accepted} connections), " \
                f"bound {SOFT_BOUND:g} s"
        finally:
            client.close()



def test_cli_get_soft_timeout_on_frozen_server_fails_within_bound(server, tmp_path):
    """--timeout 3 means timeout = soft_timeout = connect_timeout = 3 s: the
    failing READ is bounded by 9 s; closing the file, the tree and the
    client adds at most about 2 s (they never block long on a dead server)."""
    bound = 3.0 * 3 + 2.0
    with open(server.share_path("share") / "huge.bin", "wb") as f:
        f.truncate(1024 * 1024 * 1024)           # sparse
    with FaultProxy(server.host, server.port) as proxy:
        url = f"//{server.host}:{proxy.port}/share/huge.bin"
        with PythonChild(["-m", "smblayer", "get", "--timeout", "3", url,
                          str(tmp_path / "huge.bin")], env=child_env(server),
                         stdin=False) as cli:
            wait_for(lambda: proxy.bytes_s2c > 8 * 1024 * 1024 or cli.proc.poll() is not None,
                     30, "the transfer to start")
            with frozen(*server_pids(server)):
                assert cli.proc.poll() is None, f"the CLI ended early: {cli.stderr[-2000:]}"
                start = time.monotonic()
                code = cli.wait_exit(bound + SLACK)
                elapsed = time.monotonic() - start
                cli.kill()
            assert code is not None, \
                f"'get --timeout 3' still running {elapsed:.1f} s after the freeze, " \
                f"bound {bound:g} s: {cli.stderr[-2000:]}"
            assert code != 0, cli.stderr[-2000:]


# ---------------------------------------------------------------------------
# 4. Killable: interpreter exit with an open file, Ctrl-C of the CLI

EXIT_BOUND = 5.0

OPEN_AT_EXIT = """
import os, sys
from smblayer import fs
tree = fs.connect(os.environ["T_HOST"], "share", os.environ["SMB_USER"],
                  os.environ["SMB_PASSWORD"], port=int(os.environ["T_PORT"]))
f = tree.open("open-at-exit.bin", "wb")
f.write(b"x" * 100000)
f.flush()
print("READY", flush=True)
sys.stdin.readline()
print("EXITING", flush=True)
# the script ends with the file (and the tree) still open
"""


def child_env(server, port=None) -> dict:
    env = dict(os.environ, SMB_USER=server.username, SMB_PASSWORD=server.password,
               T_HOST=server.host, T_PORT=str(server.port if port is None else port))
    return env


def exit_with_open_file(server, freeze: bool) -> None:
    with PythonChild(["-c", OPEN_AT_EXIT], env=child_env(server)) as child:
        child.wait_line("READY", 30)
        with frozen(*(server_pids(server) if freeze else ())):
            child.send_line("go")
            child.wait_line("EXITING", 10)
            start = time.monotonic()
            code = child.wait_exit(EXIT_BOUND)
            elapsed = time.monotonic() - start
            child.kill()
        assert code is not None, \
            f"the interpreter did not exit within {EXIT_BOUND:g} s with a remote file open " \
            f"({'frozen' if freeze else 'live'} server)"
        assert elapsed < EXIT_BOUND


def test_interpreter_exits_with_open_file_on_frozen_server(server):
    exit_with_open_file(server, freeze=True)


def test_interpreter_exits_with_open_file_on_live_server(server):
    exit_with_open_file(server, freeze=False)


def test_cli_get_interrupted_on_frozen_server_exits(server, tmp_path):
    size = 1024 * 1024 * 1024
    with open(server.share_path("share") / "huge.bin", "wb") as f:
        f.truncate(size)                         # sparse: costs no disk
    with FaultProxy(server.host, server.port) as proxy:
        url = f"//{server.host}:{proxy.port}/share/huge.bin"
        with PythonChild(["-m", "smblayer", "get", url, str(tmp_path / "huge.bin")],
                         env=child_env(server), stdin=False) as cli:
            wait_for(lambda: proxy.bytes_s2c > 8 * 1024 * 1024 or cli.proc.poll() is not None,
                     30, "the transfer to start")
            with frozen(*server_pids(server)):
                assert cli.proc.poll() is None, f"the CLI ended early: {cli.stderr[-2000:]}"
                assert proxy.bytes_s2c < size // 2, "the transfer was nearly done"
                threading.Event().wait(1.0)      # the CLI now waits for the frozen server
                cli.signal(signal.SIGINT)
                start = time.monotonic()
                code = cli.wait_exit(EXIT_BOUND)
                elapsed = time.monotonic() - start
                cli.kill()
            assert code is not None, \
                f"the CLI did not exit within {EXIT_BOUND:g} s of Ctrl-C on a frozen server"
            assert code == 130, (code, cli.stderr[-2000:])
            assert elapsed < EXIT_BOUND


# ---------------------------------------------------------------------------
# 5. Long-poll requests do not count as timeouts

_CHANGE_NOTIFY = struct.Struct("<HHI16sII")   # [MS-SMB2] 2.2.35
FILE_NOTIFY_CHANGE_FILE_NAME = 0x0001
FILE_NOTIFY_CHANGE_DIR_NAME = 0x0002


def long_poll_task(*args, **kwargs) -> SmbTask:
    """An SmbTask marked long-poll where SmbTask has the flag (the fix adds
    it); without it the layer must still not time the request out."""
    if "long_poll" in inspect.signature(SmbTask).parameters:
        kwargs["long_poll"] = True
    return SmbTask(*args, **kwargs)


def test_pending_change_notify_is_not_a_timeout(server, caplog):
    caplog.set_level("WARNING", logger="smblayer")
    (server.share_path("share") / "watched").mkdir()
    tree = connect(server, timeouts=SOFT)
    client = tree.client
    try:
        ops = tree.ops
        handle = ops.open("watched", access=fsops.FILE_LIST_DIRECTORY | fsops.SYNCHRONIZE,
                          disposition=fsops.FILE_OPEN,
                          create_options=fsops.FILE_DIRECTORY_FILE)
        body = _CHANGE_NOTIFY.pack(32, 0, 4096, handle.fid, FILE_NOTIFY_CHANGE_FILE_NAME
                                   | FILE_NOTIFY_CHANGE_DIR_NAME, 0)
        task = long_poll_task(smb2.Command.CHANGE_NOTIFY, (body,), security=tree.session,
                              tree=tree, path="watched", expected_response=4096)
        future = client.run_task_async(task)
        wait_for(lambda: task.state is smblayer.TaskState.INTERIM, 5,
                 "the server's STATUS_PENDING")
        threading.Event().wait(4 * SOFT.timeout)
        stats = client.stats()
        assert stats["CHANGE_NOTIFY"]["timeouts"] == 0, \
            f"the pending CHANGE_NOTIFY timed out {stats['CHANGE_NOTIFY']['timeouts']} times"
        assert not stats["_client"]["not_responding"]
        assert stats["_client"]["reconnects"] == 0
        assert not future.done()
        tree.write_bytes("watched/new.txt", b"hello")      # the notify completes
        assert future.result(10).status == 0
        ops.close(handle)
        assert "timed out" not in caplog.text and "not responding" not in caplog.text
    finally:
        close_quietly(tree)


# ---------------------------------------------------------------------------
# 6. Cancelled futures wake their waiters

HARD_SLOW = TimeoutPolicy(mode="hard", timeout=30.0)


@pytest.fixture
def stalled_client(server):
    """A client whose serving smbd child is SIGSTOPped (SIGCONT at the end)."""
    client = smblayer.get_client(server.host, server.port, timeouts=HARD_SLOW)
    try:
        client.echo()
        with frozen(*server.children()):
            yield client
    finally:
        client.close()


def test_cancelled_echo_future_wakes_wait(stalled_client):
    client = stalled_client
    future = client.echo_async()
    wait_for(lambda: client.stats()["_client"]["in_flight"] == 1, 5, "the ECHO to be sent")
    assert future.cancel() is True
    start = time.monotonic()
    done, _ = concurrent.futures.wait([future], timeout=3)
    assert future in done, "wait() did not report the cancelled future as done"
    assert time.monotonic() - start < 1
    assert future.cancelled()


def test_cancelled_echo_future_is_yielded_by_as_completed(stalled_client):
    client = stalled_client
    futures = [client.echo_async() for _ in range(3)]
    wait_for(lambda: client.stats()["_client"]["in_flight"] == 3, 5, "the ECHOs to be sent")
    for future in futures:
        assert future.cancel() is True
    seen = []
    try:
        for future in concurrent.futures.as_completed(futures, timeout=3):
            seen.append(future)
    except concurrent.futures.TimeoutError:
        pass
    assert len(seen) == 3, f"as_completed() yielded {len(seen)} of 3 cancelled futures"


# ---------------------------------------------------------------------------
# 7. Memory: finished requests are not kept alive by the timer queues

LOAD_SECONDS = 20.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tasks() -> int:
    """SmbTask objects alive in this process (they are gc-tracked)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, SmbTask))


@pytest.mark.timeout(120)
def test_finished_requests_are_released_under_mixed_load(server):
    share = server.share_path("share")
    (share / "load").mkdir()
    for i in range(20):
        (share / "load" / f"f{i}.bin").write_bytes(os.urandom(2048))
    tree = connect(server, timeouts=TimeoutPolicy())        # default: 10 s timeout
    client = tree.client
    stop = threading.Event()
    errors, counts = [], [0] * 4
    payload = os.urandom(16 * 1024)

    def work(i):
        try:
            n = 0
            while not stop.is_set():
                tree.stat(f"load/f{n % 20}.bin")
                tree.write_bytes(f"load/w{i}.bin", payload)
                assert tree.read_bytes(f"load/w{i}.bin") == payload
                if n % 10 == 0:
                    tree.listdir("load")
                client.echo()
                n += 1
                counts[i] = n
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    try:
        tasks_before = live_tasks()
        for t in threads:
            t.start()
        threading.Event().wait(3.0)                 # warm up: caches, pools, credits
        rss_warm = rss_bytes()
        samples = []
        deadline = time.monotonic() + LOAD_SECONDS - 3.0
        while time.monotonic() < deadline:          # the timer phase must not matter
            threading.Event().wait(2.0)
            samples.append(live_tasks() - tasks_before)
        stop.set()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert sum(counts) > 200, counts
        rss_growth = rss_bytes() - rss_warm
        leftover = live_tasks() - tasks_before
        assert max(samples) <= 100, \
            f"up to {max(samples)} SmbTasks alive during the load (4 threads): {samples}"
        assert leftover <= 10, \
            f"{leftover} finished SmbTasks still alive right after the load ({sum(counts)} rounds)"
        assert rss_growth < 24 * 1024 * 1024, f"RSS grew {rss_growth / 2**20:.1f} MiB under load"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        close_quietly(tree)


# ---------------------------------------------------------------------------
# 8. Idle keepalive


def test_idle_client_sends_keepalive_echoes(server):
    client = smblayer.get_client(server.host, server.port,
                                 timeouts=TimeoutPolicy(keepalive=1.0))
    try:
        before = client.stats().get("ECHO", {}).get("ops", 0)
        threading.Event().wait(3.5)                  # idle
        sent = client.stats().get("ECHO", {}).get("ops", 0) - before
        assert sent >= 2, f"{sent} keepalive ECHOs in 3.5 s idle with keepalive=1"
        assert client.stats()["_client"]["reconnects"] == 0
    finally:
        client.close()


def test_keepalive_echo_carries_the_session_id(server):
    with FaultProxy(server.host, server.port) as proxy:
        tree = connect(server, proxy.port, timeouts=TimeoutPolicy(keepalive=1.0))
        try:
            log = FrameLog(directions=("c2s",))
            proxy.tap(log)
            threading.Event().wait(3.5)              # idle
            echoes = log.messages("c2s", smb2.Command.ECHO)
            assert len(echoes) >= 2, f"{len(echoes)} keepalive ECHOs on the wire in 3.5 s"
            session_id = tree.session.session_id
            assert all(m.header.session_id == session_id for m in echoes), \
                [hex(m.header.session_id) for m in echoes]
        finally:
            close_quietly(tree)


# ---------------------------------------------------------------------------
# 9. Errors carry context as attributes


def test_status_error_carries_host_port_command_path(server):
    (server.share_path("share") / "sub").mkdir()
    tree = connect(server)
    try:
        with pytest.raises(FileNotFoundError) as info:
            tree.stat("sub/missing.txt")
        exc = info.value
        assert isinstance(exc, smblayer.SmbStatusError)
        assert (exc.host, exc.port) == (server.host, server.port)
        assert exc.command == "CREATE"
        assert exc.path.replace("\\", "/") == "sub/missing.txt"
    finally:
        tree.close()


def test_timeout_error_carries_host_port_command_sends():
    quick = TimeoutPolicy(mode="soft", timeout=0.3, echo_interval=0.1, soft_timeout=0.5,
                          connect_timeout=2.0)
    with FakeSmbServer(handler=fake.stall(), max_connections=1) as srv:
        client = smblayer.SmbClient(srv.host, srv.port, timeouts=quick,
                                    reconnect=ReconnectPolicy(initial_delay=0.02,
                                                              max_delay=0.1, max_attempts=1))
        try:
            with pytest.raises(SmbTimeoutError) as info:
                client.echo()
            exc = info.value
            assert (exc.host, exc.port) == (srv.host, srv.port)
            assert exc.command == "ECHO"
            assert exc.sends >= 1
        finally:
            client.close()


def test_connection_error_carries_host_port():
    import socket
    with socket.socket() as s:             # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(smblayer.SmbConnectionError) as info:
        smblayer.get_client("127.0.0.1", port)
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)
