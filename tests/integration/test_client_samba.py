"""SmbClient against a real, private Samba smbd (fixtures from
smblayer.testing.pytest_plugin): negotiation within bounds, sharing and
release, concurrency, SMB1, fork safety, close() waking blocked callers, and
the cost of an idle client.
"""
from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import select
import signal
import threading
import time
import tracemalloc

import pytest

import smblayer
from smblayer import (ClientState, Dialect, DialectRange, ReconnectPolicy, SmbClosedError,
                      SmbError, SmbNegotiateError, SmbTask, TimeoutPolicy)
from smblayer.proto import smb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Dialect
ALL_SMB2 = [D.SMB2_0_2, D.SMB2_1, D.SMB3_0, D.SMB3_0_2, D.SMB3_1_1]


@pytest.fixture
def opened():
    """Clients made by the test; whatever is still open is closed at teardown."""
    clients = []

    def get(server, **kwargs):
        client = smblayer.get_client(server.host, server.port, **kwargs)
        clients.append(client)
        return client

    yield get
    for client in clients:
        client.close()


def client_threads(host: str, port: int, exclude=()):
    tag = f"{host}:{port}"
    return [t for t in threading.enumerate()
            if tag in t.name and (t.name.startswith("smblayer-") or t.name.startswith("smbiod-"))
            and t not in exclude]


def join_all(threads, timeout: float):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


# ---------------------------------------------------------------------------
# negotiation


def test_negotiate_311_only(samba, opened):
    client = opened(samba, dialects=DialectRange(D.SMB3_1_1, D.SMB3_1_1))
    assert client.dialect is D.SMB3_1_1
    neg = client.negotiated
    assert neg.dialect is D.SMB3_1_1
    assert neg.cipher_id in (0x0001, 0x0002, 0x0003, 0x0004)
    assert neg.signing_algorithm in (0x0001, 0x0002)
    assert len(neg.negotiate_messages) == 2
    request, response = neg.negotiate_messages
    req_h, resp_h = smb2.parse_header(request), smb2.parse_header(response)
    assert req_h.command == resp_h.command == smb2.Command.NEGOTIATE
    assert not req_h.is_response and resp_h.is_response
    assert len(neg.server_guid) == 16 and neg.server_guid != bytes(16)
    assert neg.max_read_size >= 65536
    assert client.state is ClientState.ACTIVE
    assert client.echo() >= 0


def test_negotiate_202_to_21_gives_21(samba, opened):
    client = opened(samba, dialects=DialectRange(D.SMB2_0_2, D.SMB2_1))
    assert client.dialect is D.SMB2_1
    assert client.negotiated.negotiate_messages == []
    assert client.negotiated.cipher_id == 0
    client.echo()


def test_negotiate_smb1_only(samba, opened):
    client = opened(samba, dialects=DialectRange(D.SMB1, D.SMB1))
    assert client.dialect is D.SMB1
    assert client.negotiated.max_mpx_count >= 1
    client.echo()


def test_multiprotocol_negprot_gets_311_from_full_server(samba, opened):
    client = opened(samba, dialects=DialectRange(D.SMB1, D.SMB3_1_1))
    assert client.dialect is D.SMB3_1_1
    # The SMB2 NEGOTIATE after the 0x02FF wildcard answer went out as MessageId 1
    request = client.negotiated.negotiate_messages[0]
    assert smb2.parse_header(request).message_id == 1
    client.echo()


def test_multiprotocol_negprot_gets_smb1_from_nt1_server(samba_nt1, opened):
    client = opened(samba_nt1, dialects=DialectRange(D.SMB1, D.SMB3_1_1))
    assert client.dialect is D.SMB1
    client.echo()


def test_smb2_only_against_nt1_server_is_an_error(samba_nt1):
    """The minimum: an SmbError, promptly, and no client left registered."""
    before = set(client_threads(samba_nt1.host, samba_nt1.port))
    start = time.monotonic()
    with pytest.raises(SmbError):
        smblayer.get_client(samba_nt1.host, samba_nt1.port,
                            dialects=DialectRange(D.SMB2_0_2, D.SMB3_1_1))
    assert time.monotonic() - start < 5
    leftovers = join_all(client_threads(samba_nt1.host, samba_nt1.port, before), 5)
    assert not leftovers


def test_smb2_only_against_nt1_server_is_a_negotiate_error(samba_nt1):
    with pytest.raises(SmbNegotiateError):
        smblayer.get_client(samba_nt1.host, samba_nt1.port,
                            dialects=DialectRange(D.SMB2_0_2, D.SMB3_1_1))


def test_smb1_only_against_smb3_server(samba_smb3):
    # Samba answers the negprot with DialectIndex 0xFFFF: "no common dialect".
    with pytest.raises(SmbNegotiateError, match="no common dialect"):
        smblayer.get_client(samba_smb3.host, samba_smb3.port,
                            dialects=DialectRange(D.SMB1, D.SMB1))


def test_smb1_to_21_against_smb3_server(samba_smb3):
    # SMB1 negprot -> 0x02FF -> SMB2 NEGOTIATE (2.0.2, 2.1) -> NOT_SUPPORTED
    with pytest.raises(SmbNegotiateError):
        smblayer.get_client(samba_smb3.host, samba_smb3.port,
                            dialects=DialectRange(D.SMB1, D.SMB2_1))


def test_reversed_range_raises_before_connecting(samba):
    before = set(samba.children())
    threads_before = set(threading.enumerate())
    with pytest.raises(ValueError):
        smblayer.get_client(samba.host, samba.port,
                            dialects=DialectRange(D.SMB3_1_1, D.SMB2_0_2))
    assert set(threading.enumerate()) <= threads_before
    assert set(samba.children()) <= before


@pytest.mark.parametrize("dialect", ALL_SMB2, ids=[d.name for d in ALL_SMB2])
def test_each_dialect_alone(samba, opened, dialect):
    client = opened(samba, dialects=DialectRange(dialect, dialect))
    assert client.dialect is dialect
    assert client.negotiated.dialect is dialect
    assert (len(client.negotiated.negotiate_messages) == 2) == (dialect is D.SMB3_1_1)
    client.echo()
    assert client.stats()["_client"]["dialect"] == dialect.name


# ---------------------------------------------------------------------------
# sharing and release


def test_sharing_and_release(samba):
    host, port = samba.host, samba.port
    before = set(client_threads(host, port))
    opts = dict(dialects=DialectRange(D.SMB2_0_2, D.SMB3_1_1),
                timeouts=TimeoutPolicy(timeout=7.0))
    a = smblayer.get_client(host, port, **opts)
    try:
        b = smblayer.get_client(host, port, **opts)
        assert a is b
        assert a.refcount == 2
        other = smblayer.get_client(host, port, dialects=DialectRange(D.SMB2_1, D.SMB3_0),
                                    timeouts=TimeoutPolicy(timeout=7.0))
        try:
            assert other is not a
            assert other.refcount == 1 and other.dialect is D.SMB3_0
        finally:
            other.release()
        assert other.state is ClientState.CLOSED
        with smblayer.get_client(host, port, **opts) as c:
            assert c is a and a.refcount == 3
            c.echo()
        assert a.refcount == 2
        b.release()
        assert a.refcount == 1 and a.state is ClientState.ACTIVE
        a.echo()
        ours = client_threads(host, port, before)
        assert ours, "an active client has at least its demux thread"
    finally:
        a.release()
    assert a.refcount == 0
    assert a.state is ClientState.CLOSED
    leftovers = join_all(client_threads(host, port, before), 5.0)
    assert not leftovers, f"threads still running after the last release: {leftovers}"
    assert a._conn is None
    with pytest.raises(SmbClosedError):
        a.echo()
    with pytest.raises(SmbClosedError):
        a.run_task(SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), priority=True))
    # a new get_client builds a new client
    fresh = smblayer.get_client(host, port, **opts)
    try:
        assert fresh is not a and fresh.refcount == 1
        fresh.echo()
    finally:
        fresh.release()


def test_socket_closed_after_last_release(samba):
    client = smblayer.get_client(samba.host, samba.port,
                                 timeouts=TimeoutPolicy(timeout=8.0))
    sock = client._conn.sock
    local_port = sock.getsockname()[1]
    child = samba.connection_child(local_port)
    assert child is not None
    pidfd = os.pidfd_open(child)
    try:
        client.release()
        assert sock.fileno() == -1
        # the server sees the connection end: its serving child exits (a
        # pidfd becomes readable when the process is gone)
        ready, _, _ = select.select([pidfd], [], [], 10)
        assert ready, "smbd still serves the released connection after 10 s"
    finally:
        os.close(pidfd)


# ---------------------------------------------------------------------------
# concurrency


def test_16_threads_x_200_echoes(samba, opened):
    client = opened(samba, timeouts=TimeoutPolicy(timeout=15.0))
    ops_before = client.stats().get("ECHO", {}).get("ops", 0)
    errors = []
    barrier = threading.Barrier(16)

    def work():
        try:
            barrier.wait(10)
            for _ in range(200):
                client.echo()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"echo-{i}") for i in range(16)]
    for t in threads:
        t.start()
    assert not join_all(threads, 90), "echo threads did not finish"
    assert errors == []
    stats = client.stats()
    assert stats["ECHO"]["ops"] - ops_before >= 3200
    assert stats["ECHO"]["errors"] == 0
    assert stats["_client"]["in_flight"] == 0
    assert stats["_client"]["unmatched_replies"] == 0


def test_500_concurrent_echo_async(samba, opened):
    client = opened(samba, timeouts=TimeoutPolicy(timeout=16.0))
    futures = [client.echo_async() for _ in range(500)]
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done, f"{len(not_done)} futures never completed"
    for f in done:
        reply = f.result()
        assert reply.status == 0 and reply.header.command == smb2.Command.ECHO
    assert len({f.result().header.message_id for f in futures}) == 500
    assert client.stats()["_client"]["in_flight"] == 0


def test_smb1_echoes_sequential_and_threaded(samba, opened):
    client = opened(samba, dialects=DialectRange(D.SMB1, D.SMB1))
    assert client.dialect is D.SMB1
    mpx = client.negotiated.max_mpx_count
    assert mpx >= 1
    for _ in range(200):
        client.echo()
    errors = []

    def work():
        try:
            for _ in range(50):
                client.echo()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    assert not join_all(threads, 60)
    assert errors == []
    stats = client.stats()
    assert stats["ECHO"]["ops"] >= 600
    assert stats["_client"]["in_flight"] == 0
    # MaxMpxCount is the credit pool: never more outstanding than that
    assert stats["_client"]["credits"] <= mpx


# ---------------------------------------------------------------------------
# fork


def _read_all(fd: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("child did not report in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_gets_new_client(samba):
    opts = dict(dialects=DialectRange(D.SMB2_0_2, D.SMB3_1_1),
                timeouts=TimeoutPolicy(timeout=9.0))
    parent = smblayer.get_client(samba.host, samba.port, **opts)
    try:
        parent.echo()
        parent_port = parent.local_address[1]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # child
            report = {}
            try:
                os.close(r)
                report["inherited_state"] = parent.state.value
                try:
                    parent.echo()
                    report["inherited_echo"] = "ok"
                except SmbClosedError:
                    report["inherited_echo"] = "SmbClosedError"
                except BaseException as exc:  # noqa: BLE001
                    report["inherited_echo"] = repr(exc)
                child = smblayer.get_client(samba.host, samba.port, **opts)
                report["same_object"] = child is parent
                report["refcount"] = child.refcount
                report["dialect"] = child.dialect.name
                report["rtt"] = child.echo()
                report["local_port"] = child.local_address[1]
                report["generation"] = child.generation
                child.release()
                report["child_state"] = child.state.value
            except BaseException as exc:  # noqa: BLE001
                report["error"] = repr(exc)
            finally:
                try:
                    os.write(w, json.dumps(report).encode())
                finally:
                    os._exit(0)
        os.close(w)
        try:
            raw = _read_all(r, 30)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise
        finally:
            os.close(r)
            _, status = os.waitpid(pid, 0)
        report = json.loads(raw)
        assert "error" not in report, report
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert report["inherited_state"] == "closed"
        assert report["inherited_echo"] == "SmbClosedError"
        assert report["same_object"] is False
        assert report["refcount"] == 1
        assert report["dialect"] == "SMB3_1_1"
        assert report["rtt"] >= 0
        assert report["local_port"] != parent_port     # its own TCP connection
        assert report["child_state"] == "closed"
        # the parent is untouched
        assert parent.state is ClientState.ACTIVE
        assert parent.local_address[1] == parent_port
        for _ in range(20):
            parent.echo()
        assert smblayer.get_client(samba.host, samba.port, **opts) is parent
        parent.release()
    finally:
        parent.release()


# ---------------------------------------------------------------------------
# close() wakes blocked callers


def test_close_wakes_callers_blocked_on_stopped_server(samba_factory):
    srv = samba_factory()
    client = smblayer.get_client(srv.host, srv.port,
                                 timeouts=TimeoutPolicy(mode="hard", timeout=30.0))
    stopped = None
    try:
        client.echo()
        child = srv.connection_child(client.local_address[1])
        assert child is not None, "cannot find the smbd child serving our connection"
        os.kill(child, signal.SIGSTOP)
        stopped = child
        results = {}
        barrier = threading.Barrier(4)

        def blocked(i):
            barrier.wait(5)
            try:
                client.echo()
                results[i] = ("returned", time.monotonic())
            except SmbClosedError:
                results[i] = ("closed", time.monotonic())
            except BaseException as exc:  # noqa: BLE001
                results[i] = (repr(exc), time.monotonic())

        threads = [threading.Thread(target=blocked, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        # they are blocked: nothing comes back from a stopped server
        for t in threads:
            t.join(0.3)
        assert all(t.is_alive() for t in threads), results
        assert client.stats()["_client"]["in_flight"] == 4
        closer = threading.Thread(target=client.close, name="closer")
        t0 = time.monotonic()
        closer.start()
        assert not join_all(threads, 2.0), "a caller stayed blocked after close()"
        assert not join_all([closer], 5.0)
        assert sorted(results) == [0, 1, 2, 3]
        for i, (what, when) in results.items():
            assert what == "closed", (i, what)
            assert when - t0 < 2.0
        assert client.state is ClientState.CLOSED
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        client.close()


# ---------------------------------------------------------------------------
# an idle client is cheap


def test_idle_client_threads_and_memory(samba):
    host, port = samba.host, samba.port
    threads_before = set(threading.enumerate())
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        client = smblayer.get_client(host, port, timeouts=TimeoutPolicy(timeout=11.0))
        try:
            client.echo()
            with client._connector._lock:          # never an unstarted thread
                connector = client._connector._thread
            if connector is not None:
                connector.join(5)
                assert not connector.is_alive()
            gc.collect()
            after = tracemalloc.take_snapshot()
            ours = [t for t in threading.enumerate()
                    if f"{host}:{port}" in t.name and t not in threads_before]
            assert len(ours) <= 2, [t.name for t in ours]
            grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
            assert grown < 1024 * 1024, f"idle client costs {grown} bytes"
        finally:
            client.release()
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------
# credits


def test_first_non_priority_request_after_negotiate(samba):
    """Samba grants one credit in the NEGOTIATE response; the gate must let a
    non-priority request have it while nothing is in flight (regression: the
    reserve for echo used to hold it back for ever)."""
    client = smblayer.SmbClient(samba.host, samba.port,
                                dialects=DialectRange(D.SMB2_0_2, D.SMB3_1_1),
                                reconnect=ReconnectPolicy(max_attempts=1))
    result = []

    def go():
        try:
            result.append(client.run_task(SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,))))
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    t = threading.Thread(target=go)
    try:
        t.start()
        t.join(5)
        assert not t.is_alive(), (
            f"a non-priority request is still waiting for credits 5 s after negotiate "
            f"(credits available: {client.stats()['_client']['credits']})")
        assert result and not isinstance(result[0], BaseException), result
    finally:
        client.close()
        t.join(5)


def test_compound_create_close_is_one_round_trip(samba):
    """run_compound sends CREATE + related CLOSE in one frame: both replies
    come back, and a missing file fails the CREATE (and the CLOSE with it)."""
    from smblayer import fs
    from smblayer.fs.ops import ops_for
    (samba.share_path("share") / "compound.txt").write_bytes(b"c" * 77)
    with fs.connect(samba.host, "share", samba.username, samba.password,
                    port=samba.port) as tree:
        client = tree.client
        before = client.stats()["_client"]
        info = ops_for(tree).stat("compound.txt")
        assert info.size == 77
        stats = client.stats()
        assert stats["CREATE"]["ops"] >= 1 and stats["CLOSE"]["ops"] >= 1
        assert stats["_client"]["unmatched_replies"] == before["unmatched_replies"]
        with pytest.raises(FileNotFoundError):
            ops_for(tree).stat("no-such-file.txt")
        with pytest.raises(ValueError):
            client.run_compound([])


def test_concurrent_first_get_client_calls_share_one_client(samba):
    """Clients are built outside the registry lock; callers racing for the
    same key still end up sharing one client, and the loser is closed."""
    barrier = threading.Barrier(8)
    got = []

    def grab():
        barrier.wait(5)
        got.append(smblayer.get_client(samba.host, samba.port,
                                       timeouts=TimeoutPolicy(timeout=13.5)))
    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len({id(c) for c in got}) == 1
    client = got[0]
    assert client.refcount == 8
    for c in got:
        c.echo()
        c.release()
    assert client.state is smblayer.ClientState.CLOSED
