"""A hostile or broken server (smblayer.testing.fakeserver) never crashes a
layer thread nor hangs a caller: each misbehaviour ends, within a bounded
time, in an SmbError for the caller and a defined client state.
"""
from __future__ import annotations

import concurrent.futures
import logging
import sys
import threading
import time

import pytest

from smblayer import (ClientState, Dialect, DialectRange, ReconnectPolicy, SmbClient,
                      SmbClosedError, SmbConnectionError, SmbError, SmbNegotiateError,
                      SmbProtocolError, SmbTask, SmbTimeoutError, TimeoutPolicy)
from smblayer.proto import smb2
from smblayer.testing import fakeserver as fake
from smblayer import get_client
from smblayer.testing.fakeserver import FakeSmbServer

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

D = Dialect
# Small timers so nothing takes long: probe after 0.3 s, every 0.1 s, give up
# (soft) 0.5 s later; one connect attempt is bounded by 2 s.
TP = TimeoutPolicy(timeout=0.3, echo_interval=0.1, soft_timeout=0.5, connect_timeout=2.0)
RP = ReconnectPolicy(initial_delay=0.02, max_delay=0.1, max_attempts=1)


class Watch:
    """Thread exceptions (threading.excepthook) and smblayer log records at
    ERROR or above seen during the test: both must stay empty."""

    def __init__(self):
        self.hooked = []
        self.records = []

    def check(self):
        assert not self.hooked, [f"{a.thread}: {a.exc_type.__name__}: {a.exc_value}"
                                 for a in self.hooked]
        assert not self.records, [
            r.getMessage() + ("\n" + logging.Formatter().formatException(r.exc_info)
                              if r.exc_info else "") for r in self.records]


@pytest.fixture
def watch():
    w = Watch()
    old_hook = threading.excepthook

    def hook(args):
        w.hooked.append(args)

    class Handler(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                w.records.append(record)

    handler = Handler()
    logger = logging.getLogger("smblayer")
    logger.addHandler(handler)
    threading.excepthook = hook
    try:
        yield w
    finally:
        threading.excepthook = old_hook
        logger.removeHandler(handler)
    w.check()


@pytest.fixture
def servers():
    made = []

    def make(*args, **kwargs):
        srv = FakeSmbServer(*args, **kwargs)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()
    for srv in made:
        assert not srv.alive
        assert not srv.errors, srv.errors


@pytest.fixture
def clients():
    made = []

    def make(server, **kwargs):
        kwargs.setdefault("timeouts", TP)
        kwargs.setdefault("reconnect", RP)
        client = SmbClient(server.host, server.port, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    for client in made:
        assert client.state is ClientState.CLOSED
        left = _join_client_threads(client, 5.0)
        assert not left, f"threads left after close(): {left}"


def _client_threads(client):
    tag = f"{client.host}:{client.port}"
    return [t for t in threading.enumerate() if tag in t.name
            and (t.name.startswith("smblayer-") or t.name.startswith("smbiod-"))]


def _join_client_threads(client, timeout):
    deadline = time.monotonic() + timeout
    for t in _client_threads(client):
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in _client_threads(client)]


def _wait_state(client, state, timeout=5.0) -> bool:
    return client.wait_for_state(state, timeout)


def _wait_connector_done(client, timeout=5.0):
    """Wait until the connect worker has finished (given up or reconnected).

    A caller is woken before the worker is kicked, so first wait for the
    worker's verdict, then join it (read under its lock: never unstarted)."""
    deadline = time.monotonic() + timeout
    with client._state_cond:
        assert client._state_cond.wait_for(
            lambda: client._reconnect_pending_error is not None
            or client.state is not ClientState.RECONNECTING, timeout), "no reconnect verdict"
    with client._connector._lock:
        thread = client._connector._thread
    if thread is not None:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "the connect worker is still running"


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    try:
        return fn(*args, **kwargs), None, time.monotonic() - start
    except BaseException as exc:  # noqa: BLE001
        return None, exc, time.monotonic() - start


def _after_close_is_defined(client):
    client.close()
    assert client.state is ClientState.CLOSED
    with pytest.raises(SmbClosedError):
        client.echo()


# ---------------------------------------------------------------------------
# the fake server itself


def test_fake_server_serves_every_dialect(servers, clients, watch):
    cases = [(0x0311, DialectRange()), (0x0311, DialectRange(D.SMB1, D.SMB3_1_1)),
             (0x0302, DialectRange()), (0x0300, DialectRange()), (0x0210, DialectRange()),
             (0x0202, DialectRange(D.SMB1, D.SMB3_1_1)),
             (fake.SMB1_DIALECT, DialectRange(D.SMB1, D.SMB3_1_1)),
             (fake.SMB1_DIALECT, DialectRange(D.SMB1, D.SMB1))]
    for dialect, bounds in cases:
        srv = servers(dialect)
        client = clients(srv, dialects=bounds)
        assert int(client.dialect) == dialect
        if dialect == 0x0311:
            assert client.negotiated.cipher_id == fake.CIPHER_AES_128_GCM
            assert client.negotiated.signing_algorithm == fake.SIGNING_AES_CMAC
        for _ in range(3):
            client.echo()
        assert srv.wait_requests(3)
        client.close()
    watch.check()


def test_fake_server_lifetime_is_bounded():
    srv = FakeSmbServer(max_lifetime=0.3)
    srv._thread.join(5)
    assert not srv.alive
    srv.close()


# ---------------------------------------------------------------------------
# malformed replies: SmbProtocolError, then a reconnect


PROTOCOL_ERRORS = [
    ("garbage", fake.garbage),
    ("truncated_header", fake.truncated_header),
    ("oversized_length", lambda times: fake.oversized_length("type", times=times)),
]


@pytest.mark.parametrize("dialect", [0x0311, 0x0202, fake.SMB1_DIALECT],
                         ids=["3.1.1", "2.0.2", "SMB1"])
@pytest.mark.parametrize("name,behaviour", PROTOCOL_ERRORS, ids=[n for n, _ in PROTOCOL_ERRORS])
def test_malformed_reply_is_protocol_error(servers, clients, watch, name, behaviour, dialect):
    srv = servers(dialect, behaviour(times=1))
    bounds = DialectRange(D.SMB1, D.SMB1) if dialect == fake.SMB1_DIALECT else DialectRange()
    client = clients(srv, dialects=bounds)
    assert client.generation == 1
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, SmbProtocolError), exc
    assert elapsed < 2.0
    # ACTIVE --bad frame--> RECONNECTING --reconnected--> ACTIVE
    assert client.state in (ClientState.RECONNECTING, ClientState.ACTIVE)
    assert _wait_state(client, ClientState.ACTIVE)
    assert client.generation == 2
    assert srv.accepted == 2
    assert client.echo() >= 0
    assert client.stats()["_client"]["reconnects"] == 1
    watch.check()
    _after_close_is_defined(client)


def test_malformed_reply_fails_every_request_in_flight(servers, clients, watch):
    """The second request's reply would have been fine, but the stream is
    unusable after garbage: every task on that connection fails at once."""
    gate = {"n": 0}

    def handler(conn, header, message):
        if header.command == smb2.Command.CANCEL:
            return
        gate["n"] += 1
        if gate["n"] == 3:
            conn.send_frame(b"garbage!" * 10)
    srv = servers(handler=handler)
    client = clients(srv, timeouts=TP.with_(mode="hard", timeout=5.0))
    futures = [client.echo_async() for _ in range(3)]
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert not not_done
    for f in futures:
        assert isinstance(f.exception(), SmbProtocolError)
    assert _wait_state(client, ClientState.ACTIVE)      # reconnected before teardown
    watch.check()


def test_protocol_error_with_refused_reconnect(servers, clients, watch):
    srv = servers(handler=fake.garbage(), max_connections=1)
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, SmbProtocolError)
    assert elapsed < 2.0
    _wait_connector_done(client)
    # the connect worker gave up: the client stays RECONNECTING (not CLOSED)
    assert client.state is ClientState.RECONNECTING
    _, exc2, elapsed2 = _timed(client.echo)
    assert isinstance(exc2, SmbConnectionError), exc2
    assert elapsed2 < 1.0
    watch.check()
    _after_close_is_defined(client)


def test_max_length_then_nothing_times_out(servers, clients, watch):
    """0x00FFFFFF is a legal length: the client waits for the frame, its
    probes cannot be read behind it, and the soft timeout ends the wait."""
    srv = servers(handler=fake.oversized_length("max"), max_connections=1)
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, SmbTimeoutError), exc
    assert elapsed < TP.timeout + TP.soft_timeout + 2.0
    _wait_connector_done(client)
    assert client.state is ClientState.RECONNECTING
    watch.check()
    _after_close_is_defined(client)


def test_reset_once_is_reissued(servers, clients, watch):
    srv = servers(handler=fake.reset_connection(times=1))
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert exc is None, exc
    assert elapsed < 3.0
    assert client.generation == 2 and client.state is ClientState.ACTIVE
    assert client.stats()["ECHO"]["retransmissions"] == 1
    watch.check()


# ---------------------------------------------------------------------------
# EOF in the middle of a frame


def test_eof_mid_frame_reconnect_refused(servers, clients, watch):
    srv = servers(handler=fake.eof_mid_frame(), max_connections=1)
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, (SmbConnectionError, SmbProtocolError)), exc
    assert isinstance(exc, SmbConnectionError)      # what the code produces
    assert elapsed < 3.0
    _wait_connector_done(client)
    assert client.state is ClientState.RECONNECTING
    watch.check()
    _after_close_is_defined(client)


def test_eof_mid_frame_not_replayable_fails(servers, clients, watch):
    srv = servers(handler=fake.eof_mid_frame(times=1))
    client = clients(srv)
    task = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), priority=True, replayable=False)
    _, exc, elapsed = _timed(client.run_task, task)
    assert isinstance(exc, SmbConnectionError), exc
    assert "not safe to repeat" in str(exc)
    assert elapsed < 2.0
    assert _wait_state(client, ClientState.ACTIVE)
    assert client.generation == 2
    client.echo()
    watch.check()


def test_eof_mid_frame_once_is_reissued(servers, clients, watch):
    srv = servers(handler=fake.eof_mid_frame(times=1))
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert exc is None                      # replayed on the new connection
    assert elapsed < 3.0
    assert client.generation == 2 and client.state is ClientState.ACTIVE
    stats = client.stats()
    assert stats["ECHO"]["retransmissions"] == 1
    assert stats["_client"]["reconnects"] == 1
    assert srv.accepted == 2
    watch.check()


def test_close_during_reconnect_activation(servers, watch):
    # A deliberate race: spin until the reconnected connection is published,
    # then close at once.  A tiny switch interval interleaves the threads finely.
    srv = servers(handler=fake.garbage())
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    problems = []
    try:
        for _ in range(200):
            client = SmbClient(srv.host, srv.port, timeouts=TP,
                               reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.02))
            with pytest.raises(SmbProtocolError):
                client.echo()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                conn = client._conn
                if conn is not None and conn.generation == 2:
                    break
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001
                problems.append(repr(exc))
                client.close()
    finally:
        sys.setswitchinterval(old_interval)
    assert not problems, problems[:3]
    watch.check()


def test_eof_mid_frame_every_time_is_bounded(servers, clients, watch):
    srv = servers(handler=fake.eof_mid_frame())
    client = clients(srv, reconnect=ReconnectPolicy(initial_delay=0.02, max_delay=0.1))
    future = client.echo_async()
    try:
        exc = future.exception(timeout=5)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"no answer after 5 s; the server saw {srv.accepted} connections")
    finally:
        client.close()
    assert isinstance(exc, SmbError)


def test_reconnect_gives_up_after_max_attempts(servers, clients, watch):
    srv = servers(handler=fake.reset_connection(), max_connections=1)
    client = clients(srv, reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.02,
                                                    max_attempts=2))
    with pytest.raises(SmbConnectionError):
        client.echo()
    _wait_connector_done(client)
    # 1 original connection + 2 reconnect attempts
    assert srv.accepted == 3


def test_client_recovers_after_giving_up(servers, watch):
    import smblayer
    srv = servers(handler=fake.reset_connection(times=1), max_connections=1)
    client = smblayer.get_client(srv.host, srv.port, timeouts=TP, reconnect=RP)
    try:
        with pytest.raises(SmbConnectionError):
            client.echo()
        _wait_connector_done(client)
        assert client.state is ClientState.RECONNECTING
        srv.max_connections = None                  # the server is back
        again = smblayer.get_client(srv.host, srv.port, timeouts=TP, reconnect=RP)
        try:
            _, exc, _ = _timed(again.echo)
            assert exc is None, f"{exc!r} (same client: {again is client})"
        finally:
            again.release()
    finally:
        client.close()


# ---------------------------------------------------------------------------
# unknown MessageId


def test_unknown_message_id_is_dropped(servers, clients, watch):
    srv = servers(handler=fake.unknown_message_id(times=1))
    client = clients(srv)
    assert client.stats()["_client"]["unmatched_replies"] == 0
    client.echo()
    assert client.stats()["_client"]["unmatched_replies"] == 1
    for _ in range(5):
        client.echo()
    stats = client.stats()
    assert stats["_client"]["unmatched_replies"] == 1
    assert stats["_client"]["reconnects"] == 0 and client.generation == 1
    assert client.state is ClientState.ACTIVE
    watch.check()


def _cancels_for(srv, message_id):
    return [h for h in srv.requests
            if h.command == smb2.Command.CANCEL and h.message_id == message_id]


@pytest.mark.parametrize("how", ["sync", "async"])
def test_unknown_message_id_without_real_reply_soft(servers, clients, watch, how):
    """Only a stray reply comes back (dropped: [MS-SMB2] 3.2.5.1.2) while the
    server answers every probe: soft mode's bound is absolute all the same.
    The request fails with SmbTimeoutError at timeout + soft_timeout (no
    reconnect yet: the server is alive), the server gets a CANCEL and the
    MID stays reserved for a late reply.  None comes, not even to the
    CANCEL, within another bound: the reply was lost, the client reconnects
    (which frees the MID and closes whatever the lost reply opened)."""
    srv = servers(handler=fake.unknown_message_id(times=1, then_reply=False))
    client = clients(srv)
    bound = TP.timeout + TP.soft_timeout
    if how == "sync":
        _, exc, elapsed = _timed(client.echo)       # the caller fast path reads
    else:
        future = client.echo_async()
        _, exc, elapsed = _timed(future.result, 10)
    assert isinstance(exc, SmbTimeoutError), exc
    assert bound - 0.05 <= elapsed < bound + 1.0
    assert exc.command == "ECHO" and exc.sends == 1
    assert client.stats()["_client"]["unmatched_replies"] == 1
    echo = srv.requests[0]
    assert srv.wait_for(lambda: _cancels_for(srv, echo.message_id)), "no CANCEL sent"
    with client._inflight.lock:
        assert echo.message_id in client._inflight.pending      # reserved for a late reply
    assert client.generation == 1
    client.echo()                               # the connection goes on meanwhile
    stats = client.stats()
    assert stats["ECHO"]["timeouts"] >= 1
    started = time.monotonic()
    assert srv.wait_for(lambda: client.generation == 2, bound + 2.0), "no reconnect"
    assert time.monotonic() - started >= bound - 0.5 - 0.05    # one bound after the CANCEL
    assert _wait_state(client, ClientState.ACTIVE)
    client.echo()
    assert client.stats()["_client"]["in_flight"] == 0          # the lost MID is free again
    watch.check()


def test_unknown_message_id_without_real_reply_hard(servers, clients, watch, caplog):
    """Hard mode keeps waiting past the soft bound (the server answers
    probes), says so once, and stays killable: cancelling it works."""
    caplog.set_level(logging.WARNING, logger="smblayer")
    srv = servers(handler=fake.unknown_message_id(times=1, then_reply=False))
    client = clients(srv, timeouts=TP.with_(mode="hard"))
    future = client.echo_async()
    assert srv.wait_requests(1)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=TP.timeout + TP.soft_timeout + 0.8)
    assert client.stats()["_client"]["unmatched_replies"] == 1
    waiting = [r for r in caplog.records if "still waiting (hard)" in r.getMessage()]
    assert len(waiting) == 1, [r.getMessage() for r in caplog.records]
    assert "not responding" not in caplog.text          # it answers probes
    assert future.cancel() or future.done()
    echo = srv.requests[0]
    assert srv.wait_for(lambda: _cancels_for(srv, echo.message_id)), "no CANCEL sent"
    client.echo()
    assert client.state is ClientState.ACTIVE and client.generation == 1
    watch.check()


# ---------------------------------------------------------------------------
# STATUS_PENDING and slow replies


def test_pending_then_reply_after_timeout(servers, clients, watch):
    """An interim reply restarts the soft clock once ([MS-SMB2] 3.2.5.1.5:
    the client extends the request's timer): a final reply 1.2 s after it
    is in time with timeout + soft_timeout = 1.8 s."""
    srv = servers(handler=fake.pending_then_reply(delay=1.2, times=1))
    client = clients(srv, timeouts=TP.with_(soft_timeout=1.5))
    reply, exc, elapsed = _timed(client.echo)
    assert exc is None, exc
    assert elapsed >= 1.2 - 0.05                # answered after the 0.3 s timeout
    assert elapsed < 3.0
    stats = client.stats()
    assert stats["_client"]["reconnects"] == 0 and client.generation == 1
    assert stats["ECHO"]["timeouts"] >= 1       # the timer did fire...
    assert stats["ECHO"]["ops"] >= 2            # ...and echo probes were answered
    assert client.state is ClientState.ACTIVE
    watch.check()


def test_pending_then_reply_async(servers, clients, watch):
    srv = servers(handler=fake.pending_then_reply(delay=0.8, times=1))
    client = clients(srv, timeouts=TP.with_(soft_timeout=1.5))
    future = client.echo_async()
    reply = future.result(timeout=5)
    assert reply.status == 0
    assert reply.header.is_async and reply.header.async_id is not None
    watch.check()


def test_pending_without_final_reply_is_bounded(servers, clients, watch):
    """An interim reply and then nothing (the server answers probes): the
    soft bound, counted from the interim reply, still ends the wait."""
    srv = servers(handler=fake.pending_then_reply(delay=30.0, times=1))
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, SmbTimeoutError), exc
    assert TP.timeout + TP.soft_timeout - 0.05 <= elapsed < TP.timeout + TP.soft_timeout + 1.0
    echo = srv.requests[0]
    assert srv.wait_for(lambda: _cancels_for(srv, echo.message_id)), "no CANCEL sent"
    assert client.generation == 1
    watch.check()


def test_long_poll_with_interim_reply_outlives_the_bound(servers, clients, watch):
    """A long-poll request (CHANGE_NOTIFY, a blocking LOCK) the server
    acknowledged with an interim reply may wait for hours: the soft bound
    (here 0.8 s, 2.8 s with a reconnect) does not fail it; its reply, 3 s
    later, completes it."""
    srv = servers(handler=fake.pending_then_reply(delay=3.0, times=1))
    client = clients(srv)
    task = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), long_poll=True)
    reply, exc, elapsed = _timed(client.run_task, task)
    assert exc is None, exc
    assert elapsed >= 3.0 - 0.05 and reply.status == 0
    stats = client.stats()
    assert stats["ECHO"]["timeouts"] == 0 and stats["_client"]["reconnects"] == 0
    watch.check()


@pytest.mark.parametrize("mode, soft_timeout, ok", [
    ("soft", 1.5, True),        # slow, within timeout + soft_timeout = 1.8 s
    ("soft", 0.5, False),       # slower than the 0.8 s bound: SmbTimeoutError
    ("hard", 0.5, True),        # hard waits as long as it takes
])
def test_slow_but_alive_server(servers, clients, watch, mode, soft_timeout, ok):
    srv = servers(handler=fake.delayed(1.0, times=1))
    client = clients(srv, timeouts=TP.with_(mode=mode, soft_timeout=soft_timeout))
    _, exc, elapsed = _timed(client.echo)
    if ok:
        assert exc is None, exc
        assert 0.95 <= elapsed < 3.0
    else:
        assert isinstance(exc, SmbTimeoutError), exc
        assert 0.75 <= elapsed < 0.95
        client.echo()                           # the late reply was discarded
    assert client.generation == 1
    watch.check()


# ---------------------------------------------------------------------------
# a server that never answers


def test_stall_soft_timeout(servers, clients, watch):
    srv = servers(handler=fake.stall(), max_connections=1)
    client = clients(srv)
    _, exc, elapsed = _timed(client.echo)
    assert isinstance(exc, SmbTimeoutError), exc
    assert elapsed < TP.timeout + TP.soft_timeout + 2.0
    _wait_connector_done(client)
    assert client.state is ClientState.RECONNECTING
    assert client.stats()["_client"]["not_responding"] is True
    watch.check()
    _after_close_is_defined(client)


def test_stall_hard_mode_close_wakes_caller(servers, clients, watch):
    srv = servers(handler=fake.stall(), max_connections=1)
    client = clients(srv, timeouts=TP.with_(mode="hard"))
    box = {}

    def call():
        _, box["exc"], box["elapsed"] = _timed(client.echo)

    t = threading.Thread(target=call)
    t.start()
    t.join(1.5)                                 # hard: still waiting well past soft_timeout
    assert t.is_alive()
    assert client.state is ClientState.ACTIVE   # hard mode never disconnects
    assert client.stats()["_client"]["not_responding"] is True
    client.close()
    t.join(2.0)
    assert not t.is_alive()
    assert isinstance(box["exc"], SmbClosedError)
    watch.check()


def test_stall_soft_timeout_when_out_of_credits(servers, clients, watch):
    srv = servers(handler=fake.stall(), max_connections=1, credits=2)
    client = clients(srv)
    results = []

    def call():
        results.append(_timed(client.echo)[1])

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + TP.timeout + TP.soft_timeout + 3.0
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads), \
            "soft-mode callers still blocked: the probe never got a credit"
        assert all(isinstance(e, SmbTimeoutError) for e in results), results
    finally:
        client.close()
        for t in threads:
            t.join(5)


def test_run_task_async_returns_without_credits(servers, clients, watch):
    srv = servers(handler=fake.stall(), credits=2)
    client = clients(srv, timeouts=TP.with_(mode="hard", timeout=10.0))
    futures = []

    def submit():
        for _ in range(3):
            futures.append(client.echo_async())

    t = threading.Thread(target=submit)
    t.start()
    try:
        t.join(2.0)
        assert not t.is_alive(), "echo_async() blocked its caller"
        assert len(futures) == 3
    finally:
        client.close()
        t.join(5)


# ---------------------------------------------------------------------------
# negotiation against a hostile server


@pytest.mark.parametrize("answer,bounds", [
    (0x0300, DialectRange(D.SMB3_1_1, D.SMB3_1_1)),
    (0x0311, DialectRange(D.SMB2_0_2, D.SMB3_0_2)),
    (0x0202, DialectRange(D.SMB2_1, D.SMB3_1_1)),
    (0x02FF, DialectRange()),
    (0x0210, DialectRange(D.SMB1, D.SMB3_1_1)),     # to the negprot: only 0x02FF/0x0202 valid
])
def test_dialect_not_offered(servers, watch, answer, bounds):
    def negotiate(conn, message):
        hdr = smb2.parse_header(message) if message[:4] == b"\xfeSMB" else None
        conn.send_frame(fake.negotiate_response(answer, hdr.message_id if hdr else 0))
    srv = servers(negotiate_handler=negotiate)
    threads_before = set(threading.enumerate())
    _, exc, elapsed = _timed(SmbClient, srv.host, srv.port, dialects=bounds, timeouts=TP,
                             reconnect=RP)
    assert isinstance(exc, SmbNegotiateError), exc
    assert elapsed < 2.0
    left = [t for t in set(threading.enumerate()) - threads_before
            if f"{srv.host}:{srv.port}" in t.name]
    for t in left:
        t.join(5)
    assert not any(t.is_alive() for t in left)
    watch.check()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_server_closes_during_negotiate(servers, watch, how):
    srv = servers(negotiate_handler=lambda conn, message: getattr(conn, how)())
    _, exc, elapsed = _timed(SmbClient, srv.host, srv.port, timeouts=TP, reconnect=RP)
    assert isinstance(exc, SmbConnectionError), exc
    assert elapsed < 2.0
    watch.check()


def test_server_closes_after_wildcard(servers, watch):
    def negotiate(conn, message):
        if message[:4] == b"\xffSMB":
            conn.answer_negotiate(message)          # 0x02FF
        else:
            conn.close()                            # ...then hangs up on the SMB2 NEGOTIATE
    srv = servers(negotiate_handler=negotiate)
    _, exc, _ = _timed(SmbClient, srv.host, srv.port, dialects=DialectRange(D.SMB1, D.SMB3_1_1),
                       timeouts=TP, reconnect=RP)
    assert isinstance(exc, SmbConnectionError), exc
    watch.check()


def test_garbage_negotiate_response(servers, watch):
    srv = servers(negotiate_handler=lambda conn, message: conn.send_frame(b"\x00" * 80))
    _, exc, _ = _timed(SmbClient, srv.host, srv.port, timeouts=TP, reconnect=RP)
    assert isinstance(exc, SmbProtocolError), exc
    watch.check()


def test_silent_server_during_negotiate(servers, watch):
    srv = servers(negotiate_handler=lambda conn, message: None)
    _, exc, elapsed = _timed(SmbClient, srv.host, srv.port,
                             timeouts=TP.with_(connect_timeout=0.5), reconnect=RP)
    assert isinstance(exc, SmbConnectionError), exc
    assert 0.4 <= elapsed < 2.0
    watch.check()


def test_bad_frame_length_during_negotiate(servers, watch):
    srv = servers(negotiate_handler=lambda conn, message: conn.send_raw(b"\x01\x00\x00\x00xx"))
    _, exc, _ = _timed(SmbClient, srv.host, srv.port, timeouts=TP, reconnect=RP)
    assert isinstance(exc, SmbProtocolError), exc
    watch.check()


@pytest.mark.parametrize("dialect,flagged", [(0x0311, True), (0x0210, False)],
                         ids=["3.1.1-replay-flag", "2.1-no-replay-flag"])
def test_reissued_request_carries_the_replay_flag_on_3x(dialect, flagged):
    """The first ECHO is answered with a reset; the client reconnects and
    reissues it, with SMB2_FLAGS_REPLAY_OPERATION on 3.x only."""
    seen = []

    def handler(conn, header, request):
        seen.append(header.flags)
        if len(seen) == 1:
            conn.reset()
        else:
            conn.reply(header)
    with FakeSmbServer(dialect=dialect, handler=handler) as srv:
        client = get_client("127.0.0.1", srv.port,
                            timeouts=TimeoutPolicy(timeout=5.0, connect_timeout=2.0),
                            reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.1))
        try:
            client.echo()
            assert len(seen) == 2
            assert not seen[0] & smb2.FLAG_REPLAY_OPERATION
            assert bool(seen[1] & smb2.FLAG_REPLAY_OPERATION) is flagged
            assert client.stats()["ECHO"]["retransmissions"] == 1
        finally:
            client.close()
