"""FaultProxy against a tiny loopback echo server."""

import os
import socket
import socketserver
import threading
import time

import pytest

from _echo_server import echo_server, serve as _serve, stop as _stop
from smblayer.testing.proxy import FaultProxy

pytestmark = pytest.mark.fault


class _SinkHandler(socketserver.BaseRequestHandler):
    """Accepts and never reads (until the server is shut down)."""

    def handle(self):
        self.server.stop_event.wait(20)


@pytest.fixture
def echo():
    with echo_server() as address:
        yield address


@pytest.fixture
def proxy(echo):
    p = FaultProxy(*echo)
    try:
        yield p
    finally:
        p.close()
        assert not p.alive


def _connect(p, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


@pytest.mark.timeout(60)
def test_forwarding(proxy):
    payload = os.urandom(300_000)
    with _connect(proxy) as s:
        assert proxy.wait_connections(1)
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        got = _recv_exact(s, len(payload))
        t.join(10)
        assert got == payload
        assert proxy.connections == 1
    assert proxy.wait_connections(0)
    assert proxy.bytes_forwarded == 2 * len(payload)
    assert proxy.bytes_c2s == proxy.bytes_s2c == len(payload)
    assert proxy.total_connections == 1


@pytest.mark.timeout(60)
def test_many_connections_one_thread(proxy):
    before = threading.active_count()
    socks = [_connect(proxy) for _ in range(20)]
    try:
        assert proxy.wait_connections(20)
        # no thread per connection
        assert threading.active_count() - before <= 20 + 1  # echo threads only
        for i, s in enumerate(socks):
            s.sendall(b"ping%03d" % i)
        for i, s in enumerate(socks):
            assert _recv_exact(s, 7) == b"ping%03d" % i
    finally:
        for s in socks:
            s.close()
    assert proxy.wait_connections(0)


@pytest.mark.timeout(60)
def test_half_close_is_forwarded(proxy):
    with _connect(proxy) as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        assert _recv_exact(s, 10) == b"last words"
        assert s.recv(10) == b""  # echo server saw our FIN and closed
    assert proxy.wait_connections(0)


@pytest.mark.timeout(60)
def test_reset(proxy):
    with _connect(proxy) as s:
        s.sendall(b"hello")
        assert _recv_exact(s, 5) == b"hello"
        assert proxy.reset() == 1
        assert proxy.connections == 0
        s.settimeout(5)
        with pytest.raises((ConnectionResetError, EOFError)):
            data = s.recv(100)
            if data == b"":
                raise EOFError
            s.sendall(b"more")
            s.recv(100)
    # the proxy keeps working for new connections
    with _connect(proxy) as s2:
        s2.sendall(b"again")
        assert _recv_exact(s2, 5) == b"again"


@pytest.mark.timeout(60)
def test_blackhole(proxy):
    with _connect(proxy) as s:
        s.sendall(b"x")
        assert _recv_exact(s, 1) == b"x"
        proxy.blackhole(True)
        s.sendall(b"lost in space")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        assert proxy.connections == 1  # socket kept open
        deadline = time.monotonic() + 5
        while proxy.bytes_dropped < 13 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.bytes_dropped == 13
        proxy.blackhole(False)
        s.settimeout(5)
        s.sendall(b"back")
        # the blackholed bytes are gone for good
        assert _recv_exact(s, 4) == b"back"


@pytest.mark.timeout(60)
def test_delay(proxy):
    d = 0.3
    with _connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"a")
        _recv_exact(s, 1)
        base = time.monotonic() - t0
        proxy.delay(d)
        t0 = time.monotonic()
        s.sendall(b"b" * 1000)
        assert _recv_exact(s, 1000) == b"b" * 1000
        rtt = time.monotonic() - t0
        # held once on the way in and once on the way out
        assert rtt >= 2 * d, rtt
        assert rtt < 2 * d + 2.0, rtt
        proxy.delay(0)
        t0 = time.monotonic()
        s.sendall(b"c")
        _recv_exact(s, 1)
        assert time.monotonic() - t0 < d + base


@pytest.mark.timeout(60)
def test_delay_one_direction_keeps_order(proxy):
    proxy.delay(0.2, direction="c2s")
    with _connect(proxy) as s:
        t0 = time.monotonic()
        for i in range(10):
            s.sendall(b"%02d" % i)
        got = _recv_exact(s, 20)
        assert got == b"".join(b"%02d" % i for i in range(10))
        assert 0.2 <= time.monotonic() - t0 < 2.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("direction", ["s2c", "c2s"])
def test_corrupt_flips_exactly_one_bit(proxy, direction):
    payload = bytes(range(64))
    with _connect(proxy) as s:
        s.sendall(b"warmup")
        _recv_exact(s, 6)
        proxy.corrupt_next(direction, offset=37, xor=0x01)
        s.sendall(payload)
        got = _recv_exact(s, len(payload))
        diff = [i for i in range(len(payload)) if got[i] != payload[i]]
        assert diff == [37]
        assert got[37] ^ payload[37] == 0x01
        assert proxy.corruptions_applied == 1
        # only the next bytes: the following round trip is clean
        s.sendall(payload)
        assert _recv_exact(s, len(payload)) == payload


@pytest.mark.timeout(60)
def test_corrupt_offset_spans_chunks(proxy):
    with _connect(proxy) as s:
        proxy.corrupt_next("c2s", offset=5, xor=0x80)
        s.sendall(b"abc")            # first chunk: offset not reached yet
        assert _recv_exact(s, 3) == b"abc"
        s.sendall(b"defgh")          # stream offset 5 is 'f'
        assert _recv_exact(s, 5) == b"de" + bytes([ord("f") ^ 0x80]) + b"gh"


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


@pytest.mark.timeout(60)
def test_rewrite_sees_whole_frames_across_chunks(proxy):
    """rewrite() hands whole frames (length prefix removed) to the function,
    however the stream is chunked, and re-frames what it returns."""
    seen = []

    def shout(frame):
        seen.append(frame)
        return frame.upper() + b"!" if frame.startswith(b"ping") else None

    proxy.rewrite("c2s", shout)
    big = os.urandom(70_000)
    stream = _frame(b"ping one") + _frame(big) + _frame(b"ping two")
    with _connect(proxy) as s:
        for i in range(0, len(stream), 7001):          # frames split across sends
            s.sendall(stream[i:i + 7001])
            time.sleep(0.001)
        expected = _frame(b"PING ONE!") + _frame(big) + _frame(b"PING TWO!")
        assert _recv_exact(s, len(expected)) == expected
    assert seen == [b"ping one", big, b"ping two"]
    proxy.rewrite("c2s", None)
    with _connect(proxy) as s:                         # switched off: untouched
        s.sendall(_frame(b"ping three"))
        assert _recv_exact(s, 14) == _frame(b"ping three")
    assert len(seen) == 3


@pytest.mark.timeout(60)
def test_rewrite_forwards_a_frame_cut_short_by_eof(proxy):
    proxy.rewrite("c2s", lambda frame: b"never called")
    with _connect(proxy) as s:
        s.sendall(_frame(b"whole")[:6])               # 4-byte length + 2 of 5 bytes
        s.shutdown(socket.SHUT_WR)
        assert _recv_exact(s, 6) == _frame(b"whole")[:6]
        assert s.recv(10) == b""                       # then the EOF


@pytest.mark.timeout(60)
def test_rewrite_error_resets_that_connection(proxy):
    def broken(frame):
        raise RuntimeError("test function failed")

    proxy.rewrite("s2c", broken)
    with _connect(proxy) as s:
        s.sendall(_frame(b"hello"))
        with pytest.raises((ConnectionResetError, EOFError)):
            _recv_exact(s, 9)
    assert isinstance(proxy.rewrite_error, RuntimeError)
    assert proxy.alive
    proxy.heal()
    with _connect(proxy) as s:                         # heal() removed the function
        s.sendall(_frame(b"hello"))
        assert _recv_exact(s, 9) == _frame(b"hello")


@pytest.mark.timeout(60)
def test_pause_resume(proxy):
    with _connect(proxy) as s:
        proxy.pause()
        s.sendall(b"held")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        proxy.resume()
        s.settimeout(5)
        assert _recv_exact(s, 4) == b"held"


@pytest.mark.timeout(60)
def test_refuse(proxy):
    with _connect(proxy) as ok:
        assert proxy.wait_connections(1)
        proxy.refuse(True)
        with pytest.raises((ConnectionResetError, EOFError)):
            # the RST may already be seen by connect() on loopback
            with _connect(proxy) as s:
                s.settimeout(5)
                if s.recv(10) == b"":
                    raise EOFError
        assert proxy.connections == 1
        # the existing connection is untouched
        ok.sendall(b"still here")
        assert _recv_exact(ok, 10) == b"still here"
        proxy.refuse(False)
        with _connect(proxy) as s:
            s.sendall(b"welcome")
            assert _recv_exact(s, 7) == b"welcome"


@pytest.mark.timeout(60)
def test_upstream_down_resets_client():
    # a port nobody listens on
    tmp = socket.socket()
    tmp.bind(("127.0.0.1", 0))
    port = tmp.getsockname()[1]
    tmp.close()
    with FaultProxy("127.0.0.1", port) as p:
        with pytest.raises((ConnectionResetError, EOFError)):
            with _connect(p) as s:
                s.settimeout(5)
                if s.recv(10) == b"":
                    raise EOFError
        assert p.wait_connections(0)


@pytest.mark.timeout(60)
def test_buffer_is_bounded():
    srv, t = _serve(_SinkHandler)
    try:
        cap = 256 * 1024
        with FaultProxy(*srv.server_address, max_buffer=cap,
                        chunk_size=64 * 1024) as p:
            with _connect(p) as s:
                s.setblocking(False)
                sent = 0
                block = b"z" * 65536
                deadline = time.monotonic() + 10
                stalled_since = None
                # push until nothing more is accepted for a while
                while time.monotonic() < deadline:
                    try:
                        sent += s.send(block)
                        stalled_since = None
                    except BlockingIOError:
                        if stalled_since is None:
                            stalled_since = time.monotonic()
                        elif time.monotonic() - stalled_since > 0.5:
                            break
                        time.sleep(0.01)
                assert sent > cap  # kernel buffers hold some too
                assert p.buffered_bytes <= cap
    finally:
        _stop(srv, t)


@pytest.mark.timeout(60)
def test_close_stops_thread(echo):
    names_before = {th.name for th in threading.enumerate()}
    p = FaultProxy(*echo)
    name = "FaultProxy-%d" % p.port
    assert name in {th.name for th in threading.enumerate()}
    s = _connect(p)
    s.sendall(b"hi")
    assert _recv_exact(s, 2) == b"hi"
    p.close()
    assert not p.alive
    assert name not in {th.name for th in threading.enumerate()}
    assert {th.name for th in threading.enumerate()
            if th.name.startswith("FaultProxy")} <= names_before
    s.settimeout(5)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
    # controls after close do not hang
    p.blackhole(True)
    assert p.connections == 0
    p.close()  # idempotent


@pytest.mark.timeout(60)
def test_controls_from_many_threads(proxy):
    with _connect(proxy) as s:
        stop = threading.Event()
        errors = []

        def flap():
            try:
                while not stop.is_set():
                    proxy.delay(0.0)
                    proxy.pause()
                    proxy.resume()
            except Exception as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=flap) for _ in range(4)]
        for th in threads:
            th.start()
        try:
            for i in range(50):
                msg = b"msg%04d" % i
                s.sendall(msg)
                assert _recv_exact(s, len(msg)) == msg
        finally:
            stop.set()
            for th in threads:
                th.join(10)
        assert not errors


@pytest.mark.timeout(60)
def test_tap_sees_both_directions_per_connection(proxy):
    seen = []
    done = threading.Event()

    def tap(conn, direction, data):
        seen.append((conn, direction, bytes(data)))
        if sum(len(d) for c, dr, d in seen if dr == "s2c") >= 10:
            done.set()
    proxy.tap(tap)
    with _connect(proxy) as s:
        s.sendall(b"0123456789")
        assert _recv_exact(s, 10) == b"0123456789"
    assert done.wait(5)
    assert b"".join(d for _c, dr, d in seen if dr == "c2s") == b"0123456789"
    assert {c for c, _dr, _d in seen} == {0}
    proxy.tap(None)
    with _connect(proxy) as s:                 # untapped: nothing recorded
        s.sendall(b"x")
        _recv_exact(s, 1)
    assert b"x" not in b"".join(d for _c, _dr, d in seen)


def test_frame_log_parses_split_frames_compounds_and_skips_payloads():
    import struct as _struct

    from smblayer.proto import smb2
    from smblayer.testing.capture import FrameLog

    def frame(*messages):
        body = b"".join(messages)
        return _struct.pack(">I", len(body)) + body
    echo = bytes(smb2.pack_header(smb2.Command.ECHO, 7, session_id=0x1234)) + smb2.ECHO_BODY
    first = smb2.pack_header(smb2.Command.CREATE, 8, session_id=0x55)
    smb2.set_next_command(first, 72)
    compound = bytes(first) + bytes(8) + bytes(smb2.pack_header(smb2.Command.CLOSE, 9)) + b"ab"
    big = bytes(smb2.pack_header(smb2.Command.WRITE, 10)) + os.urandom(100_000)
    stream = frame(echo) + frame(compound) + frame(big) + frame(b"\xfdSMB" + bytes(60)) \
        + frame(echo)
    log = FrameLog(directions=("c2s",))
    for i in range(0, len(stream), 7):          # odd chunk boundaries
        log(3, "c2s", stream[i:i + 7])
    log(3, "s2c", stream)                        # not a recorded direction
    got = [(m.header.command, m.header.message_id) if m.header else m.kind
           for m in log.messages()]
    assert got == [(smb2.Command.ECHO, 7), (smb2.Command.CREATE, 8), (smb2.Command.CLOSE, 9),
                   (smb2.Command.WRITE, 10), b"\xfdSMB", (smb2.Command.ECHO, 7)]
    echoes = log.messages("c2s", smb2.Command.ECHO)
    assert [m.header.session_id for m in echoes] == [0x1234, 0x1234]
    assert all(m.connection == 3 for m in echoes)
    log.clear()
    assert log.messages() == []
