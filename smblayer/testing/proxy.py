"""A fault-injecting loopback TCP proxy for tests.

``FaultProxy(target_host, target_port)`` listens on 127.0.0.1:<free port>
(``.port``) and forwards every accepted connection to the target, both ways,
from ONE background thread driven by :mod:`selectors` (no thread per
connection).  Faults can be switched from any thread; every control method is
executed by the proxy thread and has taken effect when it returns:

``reset()``             RST every current connection (both sides)
``blackhole(on)``       keep sockets open but drop everything, both ways
                        (queued data is dropped too, and EOFs are held back)
``delay(seconds)``      hold each chunk ``seconds`` before forwarding it
``refuse(on)``          accept new connections and RST them at once
``corrupt_next(direction, offset, xor)``
                        XOR one byte ``offset`` bytes into the stream that is
                        forwarded next in ``direction`` ("c2s" or "s2c")
``pause()/resume()``    stop reading and writing (data waits, nothing lost)
``rewrite(direction, fn)``
                        pass every whole frame (NetBIOS length prefix
                        removed) forwarded in ``direction`` on connections
                        accepted from then on through ``fn(frame)``, which
                        returns the frame to forward instead, or None to
                        forward it unchanged (to tamper with or capture
                        SMB messages; ``fn`` runs on the proxy thread)

``tap(fn)`` observes the traffic without changing it: ``fn(connection,
direction, data)`` runs on the proxy thread for every chunk read from either
side (before any fault applies); ``connection`` numbers the accepted
connections from 0.  :class:`smblayer.testing.capture.FrameLog` is such a tap.

Memory is bounded: at most ``max_buffer`` bytes are queued per direction and
connection; when that is reached the proxy stops reading from that side until
the queue drains (TCP flow control then pushes back on the sender).
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple
from ._net import LISTEN, WAKE, open_listener
from ._net import rst_close as _rst_close

__all__ = ["FaultProxy"]

_DIRECTIONS = ("c2s", "s2c")
_FRAME_LEN = struct.Struct(">I")
_Rewriter = Callable[[bytes], Optional[bytes]]
_LISTEN, _WAKE = LISTEN, WAKE


class _Dir:
    """One direction of one connection: bytes read from ``src`` are written to
    ``dst``, possibly after sitting in ``pending`` (delay) and ``outbuf``."""

    __slots__ = ("name", "src", "dst", "pending", "pending_bytes", "outbuf",
                 "eof", "shut", "frames")

    def __init__(self, name: str, src: socket.socket, dst: socket.socket):
        self.name = name
        self.src = src
        self.dst = dst
        self.pending: Deque[Tuple[float, bytes]] = collections.deque()
        self.pending_bytes = 0
        self.outbuf = bytearray()
        self.eof = False    # src sent FIN
        self.shut = False   # FIN forwarded to dst
        # the start of an incomplete frame, when frames are rewritten
        self.frames: Optional[bytearray] = None

    @property
    def buffered(self) -> int:
        return self.pending_bytes + len(self.outbuf)

    def drop(self) -> int:
        n = self.buffered
        self.pending.clear()
        self.pending_bytes = 0
        del self.outbuf[:]
        return n


class _Pipe:
    __slots__ = ("client", "server", "connected", "c2s", "s2c", "masks",
                 "closed", "index")

    def __init__(self, client: socket.socket, server: socket.socket, index: int = 0):
        self.index = index          # accepted connections count from 0
        self.client = client
        self.server = server
        self.connected = False
        self.c2s = _Dir("c2s", client, server)
        self.s2c = _Dir("s2c", server, client)
        self.masks: Dict[socket.socket, int] = {client: 0, server: 0}
        self.closed = False

    def dirs(self) -> Tuple[_Dir, _Dir]:
        return (self.c2s, self.s2c)


class FaultProxy:
    """Loopback TCP proxy with switchable faults (see module docstring)."""

    def __init__(self, target_host: str, target_port: int, *,
                 listen_host: str = "127.0.0.1", listen_port: int = 0,
                 max_buffer: int = 64 * 1024 * 1024,
                 chunk_size: int = 256 * 1024,
                 max_connections: int = 1024,
                 connect_timeout: float = 10.0) -> None:
        if max_buffer <= 0 or chunk_size <= 0:
            raise ValueError("max_buffer and chunk_size must be positive")
        self.target = (target_host, int(target_port))
        self.max_buffer = int(max_buffer)
        self.chunk_size = int(chunk_size)
        self.max_connections = int(max_connections)
        self.connect_timeout = float(connect_timeout)

        # state owned by the proxy thread
        self._pipes: List[_Pipe] = []
        self._connect_deadlines: Dict[_Pipe, float] = {}
        self._blackhole = False
        self._paused = False
        self._refuse = False
        self._delay = {"c2s": 0.0, "s2c": 0.0}
        self._corrupt: Dict[str, List[List[int]]] = {"c2s": [], "s2c": []}
        self._tap: Optional[Callable[[int, str, bytes], None]] = None
        self._rewrite: Dict[str, Optional[_Rewriter]] = {"c2s": None, "s2c": None}

        # shared state, under self._lock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._cmds: Deque[tuple] = collections.deque()
        self._stopping = False
        self._closed = False
        self._conn_count = 0
        self._total_connections = 0
        self._bytes = {"c2s": 0, "s2c": 0}
        self._bytes_dropped = 0
        self._corruptions_applied = 0
        self.error: Optional[BaseException] = None
        #: the first exception a rewrite function raised (its connection was reset)
        self.rewrite_error: Optional[BaseException] = None

        self._listener, self._wake_r, self._wake_w, self._sel = open_listener(
            listen_host, listen_port, 128)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(
            target=self._run, name="FaultProxy-%d" % self.port, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------
    # public API (any thread)

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    @property
    def connections(self) -> int:
        """Number of currently open proxied connections."""
        with self._lock:
            return self._conn_count

    @property
    def total_connections(self) -> int:
        """Connections accepted (and not refused) since start."""
        with self._lock:
            return self._total_connections

    @property
    def bytes_forwarded(self) -> int:
        """Bytes written to either side so far (both directions)."""
        with self._lock:
            return self._bytes["c2s"] + self._bytes["s2c"]

    @property
    def bytes_c2s(self) -> int:
        with self._lock:
            return self._bytes["c2s"]

    @property
    def bytes_s2c(self) -> int:
        with self._lock:
            return self._bytes["s2c"]

    @property
    def bytes_dropped(self) -> int:
        """Bytes discarded by blackhole()."""
        with self._lock:
            return self._bytes_dropped

    @property
    def corruptions_applied(self) -> int:
        with self._lock:
            return self._corruptions_applied

    @property
    def buffered_bytes(self) -> int:
        """Bytes currently queued inside the proxy (all connections)."""
        return self._call(lambda: sum(d.buffered for p in self._pipes
                                      for d in p.dirs()))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``n`` connections are open; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._conn_count != n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def reset(self) -> int:
        """RST every current connection on both sides; returns how many."""
        def do() -> int:
            pipes = list(self._pipes)
            for p in pipes:
                self._abort(p)
            return len(pipes)
        return self._call(do)

    def blackhole(self, on: bool = True) -> None:
        """Drop all traffic (both directions) while on; sockets stay open."""
        def do() -> None:
            self._blackhole = bool(on)
            if on:
                dropped = 0
                for p in self._pipes:
                    for d in p.dirs():
                        dropped += d.drop()
                if dropped:
                    with self._lock:
                        self._bytes_dropped += dropped
        self._call(do)

    def delay(self, seconds: float, direction: str = "both") -> None:
        """Hold every chunk read from now on for ``seconds`` before forwarding
        it (order is preserved).  ``delay(0)`` switches it off."""
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        dirs = self._dir_names(direction)

        def do() -> None:
            for name in dirs:
                self._delay[name] = seconds
        self._call(do)

    def refuse(self, on: bool = True) -> None:
        """Accept new connections and RST them immediately while on."""
        def do() -> None:
            self._refuse = bool(on)
        self._call(do)

    def corrupt_next(self, direction: str = "s2c", offset: int = 0,
                     xor: int = 0x01) -> None:
        """XOR the byte ``offset`` bytes after the start of the next data
        forwarded in ``direction`` with ``xor`` (default: flip its low bit).
        Several calls queue independent corruptions."""
        if direction not in _DIRECTIONS:
            raise ValueError("direction must be 'c2s' or 's2c'")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        if not 0 < xor <= 0xFF:
            raise ValueError("xor must be in 1..255")

        def do() -> None:
            self._corrupt[direction].append([int(offset), int(xor)])
        self._call(do)

    def tap(self, fn: Optional[Callable[[int, str, bytes], None]]) -> None:
        """Call ``fn(connection, direction, data)`` on the proxy thread with
        every chunk read from now on (``tap(None)`` stops).  ``fn`` must be
        quick and must not call the proxy's controls."""
        def do() -> None:
            self._tap = fn
        self._call(do)

    def rewrite(self, direction: str, fn: Optional[_Rewriter]) -> None:
        """Pass each whole frame forwarded in ``direction`` ("c2s" or "s2c")
        through ``fn(frame) -> bytes or None`` (None: forward it unchanged).
        ``frame`` is one message without its 4-byte NetBIOS length, which is
        recomputed for what ``fn`` returns.  Applies to connections accepted
        after this call (their framing is followed from their first byte);
        ``rewrite(direction, None)`` switches it off.  If ``fn`` raises, that
        connection is reset and the exception kept in ``rewrite_error``."""
        if direction not in _DIRECTIONS:
            raise ValueError("direction must be 'c2s' or 's2c'")
        if fn is not None and not callable(fn):
            raise TypeError("fn must be callable or None")

        def do() -> None:
            self._rewrite[direction] = fn
        self._call(do)

    def pause(self) -> None:
        """Stop reading and writing on every connection (new ones too)."""
        def do() -> None:
            self._paused = True
        self._call(do)

    def resume(self) -> None:
        def do() -> None:
            self._paused = False
        self._call(do)

    def heal(self) -> None:
        """Switch every fault off (blackhole, delay, refuse, pause, pending
        corruptions)."""
        def do() -> None:
            self._blackhole = False
            self._paused = False
            self._refuse = False
            self._delay = {"c2s": 0.0, "s2c": 0.0}
            self._corrupt = {"c2s": [], "s2c": []}
            self._rewrite = {"c2s": None, "s2c": None}
        self._call(do)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (joined with ``timeout``) and close all sockets."""
        with self._lock:
            self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<FaultProxy %s:%s -> %s:%s conns=%d>" % (
            self.host, self.port, self.target[0], self.target[1],
            self.connections)

    # ------------------------------------------------------------------
    # plumbing

    @staticmethod
    def _dir_names(direction: str) -> Tuple[str, ...]:
        if direction == "both":
            return _DIRECTIONS
        if direction in _DIRECTIONS:
            return (direction,)
        raise ValueError("direction must be 'c2s', 's2c' or 'both'")

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, InterruptedError):
                pass  # the pipe is full: the thread is being woken anyway
            except OSError:
                pass

    def _call(self, fn: Callable):
        """Run ``fn`` on the proxy thread and return its result."""
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box: dict = {}
        with self._lock:
            closed = self._closed
            if not closed:
                self._cmds.append((fn, done, box))
        if closed:
            if self.error is not None:
                raise RuntimeError("FaultProxy thread died") from self.error
            # the thread is gone and so are the sockets: just set the flags
            return fn()
        self._wake()
        if not done.wait(30.0):
            raise RuntimeError("FaultProxy thread did not answer")
        if "exc" in box:
            raise box["exc"]
        return box.get("result")

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._cmds:
                    return
                fn, done, box = self._cmds.popleft()
            try:
                box["result"] = fn()
            except BaseException as exc:  # handed to the caller
                box["exc"] = exc
            done.set()

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                self._loop_once()
        except BaseException as exc:  # pragma: no cover - bug guard
            self.error = exc
        finally:
            self._shutdown()

    def _next_timeout(self) -> Optional[float]:
        deadline = None
        for p in self._pipes:
            for d in p.dirs():
                if d.pending:
                    t = d.pending[0][0]
                    if deadline is None or t < deadline:
                        deadline = t
        for t in self._connect_deadlines.values():
            if deadline is None or t < deadline:
                deadline = t
        if deadline is None:
            return None
        return max(0.0, deadline - time.monotonic())

    def _loop_once(self) -> None:
        events = self._sel.select(self._next_timeout())
        for key, mask in events:
            data = key.data
            if data is _WAKE:
                self._drain_wake()
            elif data is _LISTEN:
                self._accept()
            else:
                pipe, sock = data
                if not pipe.closed:
                    self._on_event(pipe, sock, mask)
        self._run_commands()
        now = time.monotonic()
        for pipe, deadline in list(self._connect_deadlines.items()):
            if deadline <= now and not pipe.connected:
                self._abort(pipe)
        for pipe in list(self._pipes):
            if pipe.closed:
                continue
            for d in pipe.dirs():
                self._release_due(pipe, d, now)
                if pipe.closed:
                    break
                self._flush(pipe, d)
                if pipe.closed:
                    break
            if not pipe.closed:
                self._refresh(pipe)

    def _drain_wake(self) -> None:
        while True:
            try:
                if not self._wake_r.recv(4096):
                    return
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def _accept(self) -> None:
        for _ in range(64):
            try:
                client, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with self._lock:
                too_many = self._conn_count >= self.max_connections
            if self._refuse or too_many:
                _rst_close(client)
                continue
            client.setblocking(False)
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            server = socket.socket(socket.AF_INET if ":" not in self.target[0]
                                   else socket.AF_INET6, socket.SOCK_STREAM)
            server.setblocking(False)
            try:
                server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            with self._cond:
                pipe = _Pipe(client, server, self._total_connections)
                for d in pipe.dirs():
                    if self._rewrite[d.name] is not None:
                        d.frames = bytearray()
                self._conn_count += 1
                self._total_connections += 1
                self._cond.notify_all()
            self._pipes.append(pipe)
            err = server.connect_ex(self.target)
            if err == 0:
                pipe.connected = True
            elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN,
                         errno.EALREADY):
                self._connect_deadlines[pipe] = (time.monotonic()
                                                 + self.connect_timeout)
            else:
                self._abort(pipe)
                continue
            self._refresh(pipe)

    def _on_event(self, pipe: _Pipe, sock: socket.socket, mask: int) -> None:
        if sock is pipe.server and not pipe.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._abort(pipe)
                return
            pipe.connected = True
            self._connect_deadlines.pop(pipe, None)
            self._refresh(pipe)
            return
        read_dir = pipe.c2s if sock is pipe.client else pipe.s2c
        write_dir = pipe.s2c if sock is pipe.client else pipe.c2s
        if mask & selectors.EVENT_WRITE:
            self._flush(pipe, write_dir)
            if pipe.closed:
                return
        if mask & selectors.EVENT_READ:
            self._read(pipe, read_dir)
            if pipe.closed:
                return
        self._refresh(pipe)

    def _read(self, pipe: _Pipe, d: _Dir) -> None:
        room = self.max_buffer - d.buffered
        if room <= 0 or self._paused or d.eof:
            return
        try:
            data = d.src.recv(min(self.chunk_size, room))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._abort(pipe)
            return
        if not data:
            d.eof = True
            if d.frames:            # a frame cut short by the EOF goes on as it is
                d.outbuf += d.frames
                del d.frames[:]
                self._flush(pipe, d)
                if pipe.closed:
                    return
            self._maybe_shutdown(pipe, d)
            return
        if self._tap is not None:
            self._tap(pipe.index, d.name, data)
        if self._blackhole:
            with self._lock:
                self._bytes_dropped += len(data)
            return
        data = self._apply_corruption(d.name, data)
        if d.frames is not None:
            try:
                data = self._apply_rewrite(d, data)
            except Exception as exc:  # the test's function failed
                if self.rewrite_error is None:
                    self.rewrite_error = exc
                self._abort(pipe)
                return
            if not data:
                return
        delay = self._delay[d.name]
        if delay > 0 or d.pending:
            release = time.monotonic() + delay
            if d.pending and d.pending[-1][0] > release:
                release = d.pending[-1][0]  # keep the stream in order
            d.pending.append((release, data))
            d.pending_bytes += len(data)
        else:
            d.outbuf += data
            self._flush(pipe, d)

    def _apply_corruption(self, name: str, data: bytes) -> bytes:
        todo = self._corrupt[name]
        if not todo:
            return data
        buf = None
        n = len(data)
        keep = []
        applied = 0
        for item in todo:
            offset, xor = item
            if offset < n:
                if buf is None:
                    buf = bytearray(data)
                buf[offset] ^= xor
                applied += 1
            else:
                item[0] = offset - n
                keep.append(item)
        self._corrupt[name] = keep
        if applied:
            with self._lock:
                self._corruptions_applied += applied
        return bytes(buf) if buf is not None else data

    def _apply_rewrite(self, d: _Dir, data: bytes) -> bytes:
        """Complete frames of ``d`` (after ``data``) through its rewrite
        function; an incomplete tail waits in ``d.frames``."""
        buf = d.frames
        buf += data
        fn = self._rewrite[d.name]
        out = bytearray()
        start = 0
        while len(buf) - start >= 4:
            length = _FRAME_LEN.unpack_from(buf, start)[0] & 0xFFFFFF
            end = start + 4 + length
            if end > len(buf):
                break
            frame = bytes(buf[start + 4:end])
            new = fn(frame) if fn is not None else None
            if new is not None:
                frame = bytes(new)
                if len(frame) > 0xFFFFFF:
                    raise ValueError("rewritten frame longer than 0xFFFFFF")
            out += _FRAME_LEN.pack(len(frame)) + frame
            start = end
        del buf[:start]
        return bytes(out)

    def _release_due(self, pipe: _Pipe, d: _Dir, now: float) -> None:
        while d.pending and d.pending[0][0] <= now:
            _t, data = d.pending.popleft()
            d.pending_bytes -= len(data)
            d.outbuf += data

    def _flush(self, pipe: _Pipe, d: _Dir) -> None:
        if self._paused or self._blackhole or not pipe.connected:
            return
        while d.outbuf:
            try:
                n = d.dst.send(d.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._abort(pipe)
                return
            del d.outbuf[:n]
            with self._lock:
                self._bytes[d.name] += n
        self._maybe_shutdown(pipe, d)

    def _maybe_shutdown(self, pipe: _Pipe, d: _Dir) -> None:
        """Forward a FIN once everything before it has been forwarded."""
        if (not d.eof or d.shut or d.buffered or self._blackhole
                or self._paused or not pipe.connected or pipe.closed):
            return
        try:
            d.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        d.shut = True
        if pipe.c2s.shut and pipe.s2c.shut:
            self._close_pipe(pipe, rst=False)

    def _refresh(self, pipe: _Pipe) -> None:
        """(Re)register both sockets with the events they need now."""
        if pipe.closed:
            return
        for sock in (pipe.client, pipe.server):
            if sock is pipe.server and not pipe.connected:
                mask = selectors.EVENT_WRITE
            else:
                read_dir = pipe.c2s if sock is pipe.client else pipe.s2c
                write_dir = pipe.s2c if sock is pipe.client else pipe.c2s
                mask = 0
                if (pipe.connected and not self._paused and not read_dir.eof
                        and read_dir.buffered < self.max_buffer):
                    mask |= selectors.EVENT_READ
                if (pipe.connected and not self._paused
                        and not self._blackhole and write_dir.outbuf):
                    mask |= selectors.EVENT_WRITE
                if (read_dir.eof and not read_dir.shut and not self._blackhole
                        and not self._paused and not read_dir.buffered):
                    self._maybe_shutdown(pipe, read_dir)
                    if pipe.closed:
                        return
            old = pipe.masks[sock]
            if mask == old:
                continue
            try:
                if old == 0:
                    self._sel.register(sock, mask, (pipe, sock))
                elif mask == 0:
                    self._sel.unregister(sock)
                else:
                    self._sel.modify(sock, mask, (pipe, sock))
            except (OSError, ValueError, KeyError):
                self._abort(pipe)
                return
            pipe.masks[sock] = mask

    def _close_pipe(self, pipe: _Pipe, rst: bool) -> None:
        if pipe.closed:
            return
        pipe.closed = True
        self._connect_deadlines.pop(pipe, None)
        for sock in (pipe.client, pipe.server):
            if pipe.masks.get(sock):
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass
                pipe.masks[sock] = 0
            if rst:
                _rst_close(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        try:
            self._pipes.remove(pipe)
        except ValueError:
            pass
        with self._cond:
            self._conn_count -= 1
            self._cond.notify_all()

    def _abort(self, pipe: _Pipe) -> None:
        self._close_pipe(pipe, rst=True)

    def _shutdown(self) -> None:
        for pipe in list(self._pipes):
            self._close_pipe(pipe, rst=False)
        for obj in (self._listener,):
            try:
                self._sel.unregister(obj)
            except (KeyError, ValueError, OSError):
                pass
            obj.close()
        with self._lock:
            self._closed = True
        # answer callers that queued a command while we were stopping
        self._run_commands()
        try:
            self._sel.unregister(self._wake_r)
        except (KeyError, ValueError, OSError):
            pass
        self._sel.close()
        with self._lock:
            self._wake_r.close()
            self._wake_w.close()
