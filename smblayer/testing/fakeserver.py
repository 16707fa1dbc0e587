"""A scriptable fake SMB2 (and minimal SMB1) server for hostile-reply tests.

``FakeSmbServer(dialect=0x0311, handler=None)`` listens on 127.0.0.1:<free
port> (``.port``) and serves every accepted connection from ONE background
thread driven by :mod:`selectors`.  It answers negotiation itself:

* an SMB1 multi-protocol negprot offering "SMB 2.???" is answered with an SMB2
  NEGOTIATE response of DialectRevision 0x02FF (MessageId 0), the SMB2
  NEGOTIATE that follows with the configured dialect;
* an SMB1 negprot offering "SMB 2.002" to a 0x0202 server is answered with
  0x0202 at once; one offering "NT LM 0.12" to an SMB1 server
  (``dialect=0x0100``) with an NT LM 0.12 response;
* an SMB2 NEGOTIATE is answered with the configured dialect - even when the
  client did not offer it (that is how a hostile server is scripted) - and,
  for 0x0311, preauth-integrity (SHA-512), encryption (AES-128-GCM) and
  signing (AES-CMAC) contexts.

Every request after negotiation is handed to ``handler(conn, header,
message)`` on the server thread; ``header`` is :func:`smb2.parse_header`'s
result (:func:`smb1.parse_header`'s on an SMB1 connection) and ``message``
the request bytes without the length prefix.  A handler must not block: to
answer later it schedules with ``conn.call_later(delay, fn, *args)``.

``conn`` (:class:`FakeConnection`) offers ``send_raw(bytes)`` (raw bytes on the
socket), ``send_frame(message)`` (with the 4-byte length prefix),
``reply(header, body=..., status=0, credits=None, message_id=None, flags=0,
async_id=None)``, ``interim(header, async_id)`` (STATUS_PENDING),
``close()`` (FIN), ``reset()`` (RST via SO_LINGER 0) and ``call_later``.

Ready-made behaviours (factories returning handlers; each acts on the first
``times`` requests, None meaning all, and passes the others - and every
CANCEL - to ``then``, the echo responder by default)::

    echo_responder              answer ECHO; other commands get NOT_SUPPORTED
    garbage()                   a frame of non-SMB bytes
    oversized_length(mode)      "type": a prefix whose first byte is non-zero
                                (length > 0xFFFFFF); "max": 0x00FFFFFF and then
                                nothing more
    unknown_message_id()        a reply with a MessageId nobody sent, then (by
                                default) the proper reply
    truncated_header()          a 30-byte frame starting with b"\\xfeSMB"
    eof_mid_frame()             length 200, 50 bytes, then close
    stall()                     never answer
    pending_then_reply(delay)   STATUS_PENDING interim (ASYNC flag, AsyncId),
                                the final reply ``delay`` seconds later
    delayed(seconds)            the ``then`` handler, ``seconds`` later
    reset_connection()          RST the connection instead of answering

A behaviour factory may be passed uncalled (``handler=garbage``).

Everything is bounded: ``close()`` (or leaving the ``with`` block) stops the
thread and closes every socket, and the thread never outlives
``max_lifetime`` seconds (default 60).  Exceptions raised by handlers are
caught, recorded in ``server.errors`` and close that connection: they never
reach ``threading.excepthook``.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import os
import selectors
import socket
import struct
import threading
import time
from typing import Callable, List, Optional, Sequence

from ..proto import smb1, smb2
from ..proto.framing import FrameReader, FramingError
from ..proto.status import NtStatus
from ._net import LISTEN, WAKE, open_listener
from ._net import rst_close as _rst_close

__all__ = [
    "FakeSmbServer", "FakeConnection", "echo_responder", "garbage", "oversized_length",
    "unknown_message_id", "truncated_header", "eof_mid_frame", "stall",
    "pending_then_reply", "delayed", "reset_connection", "Behaviour",
    "SMB1_DIALECT", "negotiate_response",
]

SMB1_DIALECT = 0x0100                 # Dialect.SMB1: answer an NT LM 0.12 negprot
WILDCARD_REVISION = 0x02FF
ERROR_BODY = b"\x09\x00\x00\x00\x00\x00\x00\x00\x00"   # [MS-SMB2] 2.2.2, ByteCount 0
CIPHER_AES_128_GCM = 0x0002
SIGNING_AES_CMAC = 0x0001
_LISTEN, _WAKE = LISTEN, WAKE


def _pad8(n: int) -> int:
    return (8 - n % 8) % 8


def _mid(header) -> int:
    return header.mid if isinstance(header, smb1.Header) else header.message_id


# ---------------------------------------------------------------------------
# NEGOTIATE responses


def negotiate_response(dialect: int, message_id: int, *, credits: int = 64,
                       server_guid: bytes = b"fake-smb-server!",
                       security_mode: int = smb2.SecurityMode.SIGNING_ENABLED,
                       capabilities: Optional[int] = None,
                       cipher: int = CIPHER_AES_128_GCM, signing: int = SIGNING_AES_CMAC,
                       salt: Optional[bytes] = None, credit_charge: int = 0) -> bytes:
    """A complete SMB2 NEGOTIATE response message (no length prefix)."""
    if capabilities is None:
        capabilities = 0
        if dialect >= 0x0210 and dialect != WILDCARD_REVISION:
            capabilities |= smb2.Capabilities.LARGE_MTU | smb2.Capabilities.LEASING
        if 0x0300 <= dialect < 0x0311:
            capabilities |= smb2.Capabilities.ENCRYPTION
    header = smb2.pack_header(smb2.Command.NEGOTIATE, message_id,
                              flags=smb2.Flags.SERVER_TO_REDIR, credit_request=credits,
                              credit_charge=credit_charge)
    contexts = b""
    ctx_count = 0
    if dialect == 0x0311:
        salt = os.urandom(32) if salt is None else salt
        items = [
            (smb2.ContextType.PREAUTH_INTEGRITY_CAPABILITIES,
             struct.pack("<HHH", 1, len(salt), smb2.HASH_SHA512) + salt),
            (smb2.ContextType.ENCRYPTION_CAPABILITIES, struct.pack("<HH", 1, cipher)),
            (smb2.ContextType.SIGNING_CAPABILITIES, struct.pack("<HH", 1, signing)),
        ]
        ctx_count = len(items)
        chunks = []
        for i, (ctype, data) in enumerate(items):
            chunk = struct.pack("<HHI", ctype, len(data), 0) + data
            if i != len(items) - 1:
                chunk += bytes(_pad8(len(chunk)))
            chunks.append(chunk)
        contexts = b"".join(chunks)
    now = int((time.time() + 11644473600) * 10_000_000)
    body_offset = smb2.HEADER_SIZE + smb2.NEGOTIATE_RESPONSE.size      # 128, 8-aligned
    fixed = smb2.NEGOTIATE_RESPONSE.pack(
        65, security_mode, dialect, ctx_count, server_guid[:16].ljust(16, b"\0"),
        capabilities, 8 * 1024 * 1024, 8 * 1024 * 1024, 8 * 1024 * 1024, now, 0,
        body_offset, 0, body_offset if ctx_count else 0)
    tail = contexts if ctx_count else b"\0"          # StructureSize 65: one buffer byte
    return bytes(header) + fixed + tail


def smb1_negotiate_response(request: smb1.Header, dialect_index: int, *,
                            max_mpx: int = 50) -> bytes:
    """An NT LM 0.12 negprot response (extended security) for ``dialect_index``,
    or the "no common dialect" answer when it is 0xFFFF."""
    flags = smb1.Flags.REPLY | smb1.Flags.CASE_INSENSITIVE | smb1.Flags.CANONICALIZED_PATHS
    header = smb1.pack_header(smb1.Command.NEGOTIATE, request.mid, tid=request.tid,
                              uid=request.uid, pid=request.pid, flags=flags,
                              flags2=request.flags2)
    if dialect_index == 0xFFFF:
        words, data = smb1.pack_params(struct.pack("<H", 0xFFFF))
        return bytes(header) + words + data
    caps = (smb1.Capabilities.UNICODE | smb1.Capabilities.LARGE_FILES
            | smb1.Capabilities.NT_SMBS | smb1.Capabilities.STATUS32
            | smb1.Capabilities.NT_FIND | smb1.Capabilities.EXTENDED_SECURITY)
    now = int((time.time() + 11644473600) * 10_000_000)
    words = smb1.NT_NEGOTIATE_WORDS.pack(dialect_index, 0x03, max_mpx, 1, 65536, 65536,
                                         0, caps, now, 0, 0)
    w, d = smb1.pack_params(words, b"fake-smb-server!")
    return bytes(header) + w + d


def _smb1_dialects(message) -> List[str]:
    _words, data = smb1.parse_params(message)
    names = []
    for item in bytes(data).split(b"\x00"):
        if item.startswith(b"\x02"):
            names.append(item[1:].decode("ascii", "replace"))
    return names


# ---------------------------------------------------------------------------
# connections


class FakeConnection:
    """One accepted connection; see the module docstring."""

    def __init__(self, server: "FakeSmbServer", sock: socket.socket, index: int):
        self.server = server
        self.sock = sock
        self.index = index               # 0 for the first connection accepted
        self.peer = sock.getpeername()
        self.reader = FrameReader(64 * 1024)
        self.negotiated = False
        self.smb1 = False                # an SMB1 (NT LM 0.12) connection
        self.dialect: Optional[int] = None
        self.closed = False
        self.requests: List[object] = []  # parsed headers of requests after negotiate
        self._send_lock = threading.Lock()
        self._smb1_params: dict = {}     # MID -> (words, data) of an SMB1 ECHO request
        self._next_async_id = 0x1000 + index * 0x10000

    def __repr__(self) -> str:
        return (f"<FakeConnection #{self.index} {self.peer} "
                f"dialect={self.dialect and hex(self.dialect)} closed={self.closed}>")

    # -- sending (any thread) ------------------------------------------------

    def send_raw(self, data: bytes) -> bool:
        """Write ``data`` as is (no framing).  False if the connection is gone."""
        with self._send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def send_frame(self, message: bytes) -> bool:
        """Write ``message`` with its 4-byte direct-TCP length prefix."""
        return self.send_raw(struct.pack(">I", len(message)) + bytes(message))

    def reply(self, header, body: Optional[bytes] = None, status: int = 0,
              credits: Optional[int] = None, message_id: Optional[int] = None,
              flags: int = 0, async_id: Optional[int] = None,
              command: Optional[int] = None) -> bool:
        """Answer the request ``header``.  ``body`` defaults to an ECHO
        response (SMB2) or an echo of the request's data (SMB1) for ECHO and
        to an ERROR response body otherwise; ``credits`` to what the request
        asked for (at least 1)."""
        if isinstance(header, smb1.Header):
            return self._reply_smb1(header, body, status, message_id, flags, command)
        command = header.command if command is None else command
        if body is None:
            body = smb2.ECHO_BODY if command == smb2.Command.ECHO and status == 0 else ERROR_BODY
        if credits is None:
            credits = max(1, header.credits, header.credit_charge)
        response = smb2.pack_header(
            command, header.message_id if message_id is None else message_id,
            credit_charge=header.credit_charge, credit_request=credits,
            flags=smb2.Flags.SERVER_TO_REDIR | flags, tree_id=header.tree_id,
            session_id=header.session_id, async_id=async_id, status=status)
        return self.send_frame(bytes(response) + bytes(body))

    def _reply_smb1(self, header: smb1.Header, body, status, message_id, flags, command):
        command = header.command if command is None else command
        if body is None:
            if command == smb1.Command.ECHO and status == 0:
                _words, data = self._smb1_params.pop(header.mid, (b"", b""))
                w, d = smb1.pack_params(struct.pack("<H", 1), bytes(data))
                body = w + d
            else:
                body = b"\x00\x00\x00"
        hflags = (smb1.Flags.REPLY | smb1.Flags.CASE_INSENSITIVE
                  | smb1.Flags.CANONICALIZED_PATHS | flags)
        response = smb1.pack_header(command, header.mid if message_id is None else message_id,
                                    tid=header.tid, uid=header.uid, pid=header.pid,
                                    flags=hflags, flags2=header.flags2, status=status)
        return self.send_frame(bytes(response) + bytes(body))

    def interim(self, header, async_id: Optional[int] = None,
                credits: Optional[int] = None) -> int:
        """Send a STATUS_PENDING interim response (ASYNC flag, AsyncId);
        returns the AsyncId to use for the final reply."""
        if async_id is None:
            self._next_async_id += 1
            async_id = self._next_async_id
        self.reply(header, body=ERROR_BODY, status=NtStatus.PENDING, credits=credits,
                   async_id=async_id)
        return async_id

    def close(self) -> None:
        """Close the connection (FIN)."""
        self.server._on_loop(lambda: self.server._drop(self, rst=False))

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0)."""
        self.server._on_loop(lambda: self.server._drop(self, rst=True))

    def call_later(self, delay: float, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the server thread ``delay`` seconds from now."""
        self.server.call_later(delay, fn, *args)

    def answer_negotiate(self, message: bytes, dialect: Optional[int] = None) -> None:
        """The built-in negotiation, for a custom ``negotiate_handler``."""
        self.server.answer_negotiate(self, message, dialect)


# ---------------------------------------------------------------------------
# the server


class FakeSmbServer:
    """See the module docstring.

    ``credits``: credits granted by the NEGOTIATE response.
    ``max_connections``: connections served; later ones are accepted and
    reset at once (they still count in ``accepted``).
    ``negotiate_handler(conn, message)``: replaces the built-in negotiation
    for messages that arrive before it completed; it may call
    ``conn.answer_negotiate(message)``, ``conn.close()`` etc.
    """

    def __init__(self, dialect: int = 0x0311, handler: Optional[Callable] = None, *,
                 credits: int = 64, max_connections: Optional[int] = None,
                 negotiate_handler: Optional[Callable] = None,
                 max_lifetime: float = 60.0, host: str = "127.0.0.1",
                 smb1_max_mpx: int = 50):
        self.dialect = int(dialect)
        if getattr(handler, "_behaviour_factory", False):
            handler = handler()
        self.handler = handler if handler is not None else echo_responder
        self.credits = credits
        self.max_connections = max_connections
        self.negotiate_handler = negotiate_handler
        self.max_lifetime = float(max_lifetime)
        self.smb1_max_mpx = smb1_max_mpx
        self.errors: List[BaseException] = []
        self.connections: List[FakeConnection] = []
        self.accepted = 0
        self.requests: List[object] = []     # every request header after negotiate
        self._cond = threading.Condition()
        self._timers: list = []
        self._seq = itertools.count()
        self._cmds: list = []
        self._stopping = False
        self._closed = False

        self._listener, self._wake_r, self._wake_w, self._sel = open_listener(host, 0, 64)
        self.host, self.port = self._listener.getsockname()[:2]
        self._deadline = time.monotonic() + self.max_lifetime
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fakesmb-{self.port}")
        self._thread.start()

    # -- public -------------------------------------------------------------

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "FakeSmbServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<FakeSmbServer {self.host}:{self.port} dialect=0x{self.dialect:04x} "
                f"conns={len(self.connections)}>")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (joined with ``timeout``) and close every socket."""
        with self._cond:
            self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def call_later(self, delay: float, fn: Callable, *args) -> None:
        with self._cond:
            heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay),
                                          next(self._seq), fn, args))
        self._wake()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (bounded) until ``predicate()`` holds; it is re-checked after
        every accept, request and close."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: len(self.requests) >= n, timeout)

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: self.accepted >= n, timeout)

    # -- loop plumbing ------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_loop(self, fn: Callable) -> None:
        """Run ``fn`` on the server thread (now if we are on it)."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            fn()
            return
        done = threading.Event()
        with self._cond:
            self._cmds.append((fn, done))
        self._wake()
        done.wait(5.0)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        break
                    now = time.monotonic()
                    if now >= self._deadline:
                        break
                    timeout = self._deadline - now
                    if self._timers:
                        timeout = min(timeout, max(0.0, self._timers[0][0] - now))
                for key, _mask in self._sel.select(timeout):
                    if key.data is _WAKE:
                        self._drain_wake()
                    elif key.data is _LISTEN:
                        self._accept()
                    else:
                        self._readable(key.data)
                self._run_commands()
                self._run_timers()
        except BaseException as exc:  # noqa: BLE001 - recorded, never raised in a thread
            self.errors.append(exc)
        finally:
            self._shutdown()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(256):
                pass
        except OSError:
            pass

    def _run_commands(self) -> None:
        while True:
            with self._cond:
                if not self._cmds:
                    return
                fn, done = self._cmds.pop(0)
            try:
                fn()
            finally:
                done.set()

    def _run_timers(self) -> None:
        while True:
            with self._cond:
                if not self._timers or self._timers[0][0] > time.monotonic():
                    return
                _when, _seq, fn, args = heapq.heappop(self._timers)
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(exc)

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            if self.max_connections is not None and \
                    len(self.connections) >= self.max_connections:
                _rst_close(sock)
                self._notify()
                continue
            sock.settimeout(5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = FakeConnection(self, sock, len(self.connections))
            self.connections.append(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._notify()

    def _readable(self, conn: FakeConnection) -> None:
        if conn.closed:
            return
        try:
            n = conn.sock.recv_into(conn.reader.buffer())
        except (BlockingIOError, InterruptedError, socket.timeout):
            return
        except OSError:
            self._drop(conn, rst=False)
            return
        if n == 0:
            self._drop(conn, rst=False)
            return
        try:
            frames = conn.reader.feed(n)
        except FramingError as exc:
            self.errors.append(exc)
            self._drop(conn, rst=True)
            return
        for frame in frames:
            if conn.closed:
                return
            try:
                self._message(conn, bytes(frame))
            except Exception as exc:  # noqa: BLE001 - a handler bug closes the connection
                self.errors.append(exc)
                self._drop(conn, rst=True)
                return

    def _message(self, conn: FakeConnection, message: bytes) -> None:
        if not conn.negotiated:
            if self.negotiate_handler is not None:
                self.negotiate_handler(conn, message)
            else:
                self.answer_negotiate(conn, message)
            return
        if conn.smb1:
            header = smb1.parse_header(message)
            if header.command == smb1.Command.ECHO:
                if len(conn._smb1_params) > 1024:
                    conn._smb1_params.clear()
                conn._smb1_params[header.mid] = smb1.parse_params(message)
        else:
            header = smb2.parse_header(message)
        conn.requests.append(header)
        with self._cond:
            self.requests.append(header)
            self._cond.notify_all()
        self.handler(conn, header, message)

    def answer_negotiate(self, conn: FakeConnection, message: bytes,
                         dialect: Optional[int] = None) -> None:
        """The built-in negotiation (see the module docstring)."""
        dialect = self.dialect if dialect is None else int(dialect)
        if message[:4] == smb1.PROTOCOL_ID:
            header = smb1.parse_header(message)
            if header.command != smb1.Command.NEGOTIATE:
                raise ValueError(f"SMB1 command 0x{header.command:02x} before negotiate")
            offered = _smb1_dialects(message)
            if dialect == SMB1_DIALECT:
                index = offered.index(smb1.NT_LM_DIALECT) \
                    if smb1.NT_LM_DIALECT in offered else 0xFFFF
                conn.send_frame(smb1_negotiate_response(header, index,
                                                        max_mpx=self.smb1_max_mpx))
                if index != 0xFFFF:
                    conn.negotiated, conn.smb1, conn.dialect = True, True, SMB1_DIALECT
                return
            if dialect == 0x0202 and smb1.SMB2_002_DIALECT in offered:
                conn.send_frame(negotiate_response(0x0202, 0, credits=self.credits))
                conn.negotiated, conn.dialect = True, 0x0202
                return
            if smb1.SMB2_WILDCARD_DIALECT in offered:
                conn.send_frame(negotiate_response(WILDCARD_REVISION, 0, credits=1))
                return
            conn.send_frame(smb1_negotiate_response(header, 0xFFFF))
            return
        header = smb2.parse_header(message)
        if header.command != smb2.Command.NEGOTIATE:
            raise ValueError(f"SMB2 command 0x{header.command:02x} before negotiate")
        if dialect == SMB1_DIALECT:
            self._drop(conn, rst=False)     # an SMB1-only server hangs up on SMB2
            return
        conn.send_frame(negotiate_response(dialect, header.message_id, credits=self.credits,
                                           credit_charge=header.credit_charge))
        conn.negotiated, conn.dialect = True, dialect

    def _drop(self, conn: FakeConnection, rst: bool) -> None:
        with conn._send_lock:
            if conn.closed:
                return
            conn.closed = True
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if rst:
            _rst_close(conn.sock)
        else:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()
        self._notify()

    def _shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._closed = True
            cmds, self._cmds = self._cmds, []
            self._timers = []
        for conn in list(self.connections):
            self._drop(conn, rst=False)
        for _fn, done in cmds:
            done.set()
        for s in (self._listener, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        self._sel.close()
        self._notify()


# ---------------------------------------------------------------------------
# behaviours


def _is_cancel(header) -> bool:
    if isinstance(header, smb1.Header):
        return header.command == smb1.Command.NT_CANCEL
    return header.command == smb2.Command.CANCEL


def echo_responder(conn: FakeConnection, header, message) -> None:
    """The normal server: ECHO answered, CANCEL ignored, anything else gets
    STATUS_NOT_SUPPORTED."""
    if _is_cancel(header):
        return
    echo = smb1.Command.ECHO if conn.smb1 else smb2.Command.ECHO
    if header.command == echo:
        conn.reply(header)
    else:
        conn.reply(header, status=NtStatus.NOT_SUPPORTED)


def _behaviour(factory):
    factory._behaviour_factory = True
    return factory


class Behaviour:
    """Base of the ready-made behaviours: ``act`` on the first ``times``
    requests (None: all); the rest, and every CANCEL, go to ``then``."""

    def __init__(self, times: Optional[int] = None, then: Callable = echo_responder,
                 commands: Optional[Sequence[int]] = None):
        self.times = times
        self.then = then
        self.commands = None if commands is None else frozenset(commands)
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, conn: FakeConnection, header, message) -> None:
        with self._lock:
            use = not _is_cancel(header) and \
                (self.commands is None or header.command in self.commands) and \
                (self.times is None or self.count < self.times)
            if use:
                self.count += 1
        if use:
            self.act(conn, header, message)
        else:
            self.then(conn, header, message)

    def act(self, conn: FakeConnection, header, message) -> None:  # pragma: no cover
        raise NotImplementedError


class _Fn(Behaviour):
    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self._fn = fn

    def act(self, conn, header, message):
        self._fn(conn, header, message)


@_behaviour
def garbage(times: Optional[int] = None, payload: bytes = b"this is not an SMB message, "
            b"just some hostile garbage bytes" * 3, **kwargs) -> Behaviour:
    """Answer with a frame of non-SMB bytes."""
    return _Fn(lambda conn, h, m: conn.send_frame(payload), times=times, **kwargs)


@_behaviour
def oversized_length(mode: str = "type", times: Optional[int] = None, **kwargs) -> Behaviour:
    """``"type"``: a prefix 0x01000000 (> 0xFFFFFF, first byte non-zero) and
    some bytes; ``"max"``: a prefix of 0x00FFFFFF and then nothing."""
    if mode not in ("type", "max"):
        raise ValueError("mode must be 'type' or 'max'")
    data = b"\x01\x00\x00\x00" + b"\xfeSMB" + bytes(60) if mode == "type" else b"\x00\xff\xff\xff"
    return _Fn(lambda conn, h, m: conn.send_raw(data), times=times, **kwargs)


@_behaviour
def unknown_message_id(times: Optional[int] = None, offset: int = 0x10000000,
                       then_reply: bool = True, **kwargs) -> Behaviour:
    """Reply with a MessageId nobody sent (granting no credits), then, if
    ``then_reply``, with the proper reply."""
    def act(conn, header, message):
        bogus = (_mid(header) + offset) & (0xFFFF if conn.smb1 else 0xFFFFFFFFFFFFFFFE)
        conn.reply(header, message_id=bogus, credits=0)
        if then_reply:
            echo_responder(conn, header, message)
    return _Fn(act, times=times, **kwargs)


@_behaviour
def truncated_header(times: Optional[int] = None, **kwargs) -> Behaviour:
    """Answer with a 30-byte frame that starts like an SMB2 header."""
    return _Fn(lambda conn, h, m: conn.send_frame(b"\xfeSMB" + bytes(26)), times=times,
               **kwargs)


@_behaviour
def eof_mid_frame(times: Optional[int] = None, length: int = 200, sent: int = 50,
                  **kwargs) -> Behaviour:
    """Send a length prefix of ``length``, ``sent`` bytes of it, then close."""
    def act(conn, header, message):
        conn.send_raw(struct.pack(">I", length) + (b"\xfeSMB" + bytes(sent))[:sent])
        conn.close()
    return _Fn(act, times=times, **kwargs)


@_behaviour
def stall(times: Optional[int] = None, **kwargs) -> Behaviour:
    """Never answer."""
    return _Fn(lambda conn, h, m: None, times=times, **kwargs)


@_behaviour
def reset_connection(times: Optional[int] = None, **kwargs) -> Behaviour:
    """RST the connection instead of answering."""
    return _Fn(lambda conn, h, m: conn.reset(), times=times, **kwargs)


@_behaviour
def pending_then_reply(delay: float = 1.0, times: Optional[int] = None,
                       **kwargs) -> Behaviour:
    """A STATUS_PENDING interim response (ASYNC flag and an AsyncId) at once,
    the final (async) reply ``delay`` seconds later."""
    def act(conn, header, message):
        if conn.smb1:       # SMB1 has no interim responses: just answer late
            conn.call_later(delay, echo_responder, conn, header, message)
            return
        aid = conn.interim(header)
        conn.call_later(delay, functools.partial(conn.reply, header, credits=0, async_id=aid))
    return _Fn(act, times=times, **kwargs)


@_behaviour
def delayed(seconds: float = 1.0, times: Optional[int] = None,
            then: Callable = echo_responder, **kwargs) -> Behaviour:
    """Hand the request to ``then`` ``seconds`` later."""
    def act(conn, header, message):
        conn.call_later(seconds, then, conn, header, message)
    return _Fn(act, times=times, then=then, **kwargs)
