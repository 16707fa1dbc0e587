"""The per-socket receive path (sunrpc's xprt receive side): read, decrypt,
place, dispatch.

Theory of operation
-------------------
One thread per socket generation waits on a selector whose timeout is the
next timer or keepalive (``Liveness.service``), reads into the
``FrameReader``'s buffer with ``recv_into`` and dispatches each complete
frame:

* a transform (encrypted) frame is decrypted by its session; a large one is
  read into the connection's reusable ciphertext buffer and a READ payload
  is decrypted straight into the caller's buffer (placement);
* a plain READ response's data is received straight into the caller's
  buffer when its task offered one (``task.recv_buffer``);
* compound responses are split; each reply finds its task in the in-flight
  table by MessageId.  An interim STATUS_PENDING reply keeps it waiting; a
  final one completes it: a sync waiter is woken, an async task's Future is
  settled here, by the reader (its user callbacks run on smbiod; only a
  settling that may block goes to smbiod, see completion.py); the replies
  of one read are all placed before anyone is woken; a late reply to an
  abandoned task goes to its ``on_late_reply`` on smbiod;
* unsolicited messages (oplock/lease breaks) go to the break handlers on
  smbiod.

It never sends, never runs user code, and never writes client state: when
the socket breaks (or a frame breaks the protocol) it reports the loss to
the connect worker and exits.

Interface: built per connection with the client (read: ``host``/``port``,
``iod``), the connection, the in-flight table, the credit gate, liveness
(``service``, ``deadline``, ``last_rx``), the counters, the sessions by id
(decryption), and three callables: ``wake(task)`` (a task completed),
``deliver_break(reply)`` (run on smbiod) and ``connection_lost(conn,
error)``.  The sender uses the reader-role methods (``take_reader_role``,
``read_for``, ``release_reader_role``, ``kick``) and ``wake``.
"""
from __future__ import annotations

import _socket
import logging
import select
import struct
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional

from ..errors import SmbProtocolError
from ..proto import smb2
from ..proto.framing import FrameReader, FramingError, PlacedFrame
from ..proto.status import is_error
from .completion import Batch
from .sockets import Socket, socketpair
from .task import CHANGING_COMMANDS, IllegalTransition, Reply, TaskState, move
from .wire import PLACEMENT_HEAD

# Enum members as module constants (see task.py: the hot path's enum cost)
_DONE, _INTERIM = TaskState.DONE, TaskState.INTERIM
_DONE_BIT = _DONE.bit

log = logging.getLogger("smblayer")

_U32_AT = struct.Struct("<I").unpack_from
_EPOLLIN = getattr(select, "EPOLLIN", 1)

#: fast-path offers declined after a fast reader was asked to hand back the
#: role before its reply came (callers keep joining: the demux reads)
FAST_PATH_BACKOFF = 16


class Demux:
    """Receive loop for one connection generation."""

    # Slots: with more than 30 attributes an instance dict stops sharing its
    # keys, and CPython 3.11 then never specialises a ``self.method()`` call
    # (~300 instructions each, five per request on the caller fast path).
    __slots__ = ("_client", "_conn", "_inflight", "_credits", "_liveness", "_stats",
                 "_sessions", "_wake", "_deliver_break", "_note_change", "_connection_lost",
                 "_reader", "_scratch", "_batch", "_complete", "replies", "_now",
                 "_granted", "_retired", "_wake_r", "_wake_w", "_wake_pending", "_stopping",
                 "_poller", "_sock_fd", "read_lock", "fast_reader", "_kicked",
                 "_reader_ident", "_skip_fast", "_kick_r", "_kick_w", "_caller_poll",
                 "thread", "__weakref__")

    def __init__(self, client, conn, inflight, credits, liveness, stats, *,
                 sessions: Dict[int, object], wake: Callable, deliver_break: Callable,
                 note_change: Callable, connection_lost: Callable):
        self._client = client
        self._conn = conn
        self._inflight = inflight
        self._credits = credits
        self._liveness = liveness
        self._stats = stats
        self._sessions = sessions
        self._wake = wake
        self._deliver_break = deliver_break
        self._note_change = note_change   # a change may have happened (REGISTRY.changes)
        self._connection_lost = connection_lost
        self._reader = FrameReader(claim=self._claim_placement, claim_head=PLACEMENT_HEAD)
        self._scratch = memoryview(b"")   # large ciphertexts land here
        self._batch = Batch()             # completed by one read (under read_lock)
        self._complete = self._batch.add
        self.replies = 0                  # did this connection ever answer?
        self._now = 0.0                   # when the read being dispatched came
        self._granted = self._retired = 0   # credits of this read's replies (one grant)
        self._wake_r, self._wake_w = socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._stopping = False
        self._poller = _Poller()
        self._sock_fd = conn.sock.fileno()
        self._poller.register(self._sock_fd)
        self._poller.register(self._wake_r.fileno())
        self.read_lock = threading.Lock()     # whoever reads and dispatches holds it
        self.fast_reader = False              # a caller holds the reader role
        self._kicked = False
        self._reader_ident: Optional[int] = None
        self._skip_fast = 0                   # fast-path offers to decline (see read_for)
        self._kick_r, self._kick_w = socketpair()
        self._kick_r.setblocking(False)
        self._kick_w.setblocking(False)
        self._caller_poll = None
        self.thread = threading.Thread(
            target=self._run, daemon=True,
            name=f"smblayer-demux-{client.host}:{client.port}-g{conn.generation}")

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Make the loop recompute its timeout (a new, earlier deadline)."""
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self.wake()
        self.kick()

    def _run(self) -> None:
        conn = self._conn
        liveness = self._liveness
        service_timers = liveness.service
        liveness.connection_started(time.monotonic())
        poller = self._poller
        sock_fd = self._sock_fd
        read_lock = self.read_lock
        read = self._read
        error = None
        try:
            while not self._stopping:
                for fd, _mask in poller.poll(service_timers()):
                    if fd != sock_fd:
                        self._drain_wake()
                        continue
                    if not read_lock.acquire(False):
                        continue        # a caller reads (fast path); it disabled us
                    try:
                        read()
                    finally:
                        read_lock.release()
        except BaseException as exc:  # noqa: BLE001 - the thread must report, never die silently
            error = self._as_loss(exc)
        finally:
            poller.close()
            self._wake_r.close()
            self._wake_w.close()
            with read_lock:          # a fast reader sees the shut-down socket and returns
                self._kick_r.close()
                self._kick_w.close()
        if not self._stopping:
            self._connection_lost(conn, error)

    def _read(self) -> None:
        """One recv_into and the dispatch of every frame it completes (the
        caller holds read_lock).  Raises on EOF, a socket error or a frame
        that breaks the protocol."""
        reader = self._reader
        try:
            n = self._conn.sock.recv_into(reader.buffer(), 0, _socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if n == 0:
            raise ConnectionResetError("server closed the connection (EOF)"
                                       + (" mid-frame" if reader.pending else ""))
        self._liveness.last_rx = self._now = time.monotonic()
        try:
            for frame in reader.feed(n):
                self._dispatch(frame)
        finally:
            # the credits of every reply of this read in one grant, then
            # each task completed is woken once
            if self._granted or self._retired:
                granted, retired, self._granted, self._retired = \
                    self._granted, self._retired, 0, 0
                self._credits.grant(granted, retired)
            self._batch.flush(self._wake)

    def _as_loss(self, exc: BaseException) -> BaseException:
        client = self._client
        if isinstance(exc, FramingError):
            return SmbProtocolError(f"bad frame from {client.host}:{client.port}: {exc}")
        if not isinstance(exc, (SmbProtocolError, OSError)):
            log.exception("smblayer: receive path failed", exc_info=exc)
        return exc

    # -- the caller fast path --------------------------------------------------------

    def take_reader_role(self) -> bool:
        """Caller fast path (DESIGN.md "Threads"): a synchronous caller about
        to send the only request in flight takes the reader role, so it can
        read its own reply instead of waiting for this thread to wake it.
        The demux stands aside without being woken (its selector stops
        watching the socket).  False if the role is not free, or while the
        last fast reader was asked to hand it back before its reply came
        (``FAST_PATH_BACKOFF``: many callers join, the demux reads for them)."""
        if self._skip_fast:
            self._skip_fast -= 1      # callers keep joining: let the demux read for now
            return False
        if self._poller.epoll is None or self._stopping or \
                not self.read_lock.acquire(False):
            return False
        try:                            # stop watching: we read (see _Poller)
            self._poller.epoll_modify(self._sock_fd, 0)
        except (OSError, ValueError):
            self.read_lock.release()
            return False
        self._kicked = False
        self._reader_ident = threading.get_ident()
        self.fast_reader = True
        return True

    def release_reader_role(self) -> None:
        self.fast_reader = False
        self._reader_ident = None
        try:
            self._poller.epoll_modify(self._sock_fd, _EPOLLIN)   # (epoll: see take_reader_role)
        except (OSError, ValueError):
            pass
        self.read_lock.release()

    def read_for(self, task) -> None:
        """With the reader role: read and dispatch exactly as the demux would
        (breaks and async completions still go to smbiod) until ``task`` is
        no longer in flight or another request joins (``kick``)."""
        consumed = False
        try:
            waiter = self._caller_poll
            if waiter is None:
                waiter = self._caller_poll = select.poll()
                waiter.register(self._sock_fd, select.POLLIN)
                waiter.register(self._kick_r.fileno(), select.POLLIN)
            read = self._read
            sock_fd = self._sock_fd
            while task.state.in_flight and not self._kicked and not self._stopping:
                ready = waiter.poll()
                consumed = True
                for fd, _mask in ready:
                    if fd == sock_fd:
                        read()
                    else:
                        self._drain(self._kick_r)
                consumed = False
            if self._kicked and task.state.in_flight:
                # Another caller joined before our reply came: with callers
                # joining like this, taking the role and handing it back
                # costs more than it saves; decline the next offers.
                self._skip_fast = FAST_PATH_BACKOFF
        except BaseException as exc:
            # EOF, a bad frame, or Ctrl-C in the middle of a frame: the stream
            # can't be trusted any more; the connect worker takes over.
            if consumed or not isinstance(exc, KeyboardInterrupt):
                self._connection_lost(self._conn, self._as_loss(exc))
            if isinstance(exc, KeyboardInterrupt):
                raise

    def kick(self) -> None:
        """Another request joined, or the fast reader's task was cancelled:
        ask the caller reading to hand the role back to the demux."""
        if self.fast_reader and not self._kicked and \
                self._reader_ident != threading.get_ident():
            self._kicked = True       # once per holder: one byte wakes its poll
            try:
                self._kick_w.send(b"\0")
            except OSError:
                pass

    # -- placement ---------------------------------------------------------------

    def _claim_placement(self, head, length: int) -> Optional[memoryview]:
        """FrameReader's placement hook: the caller's buffer for a READ
        response's data, if its task offered one; for a large encrypted
        frame, the reusable ciphertext buffer (the plaintext is then
        decrypted to where it belongs)."""
        if head[0] == 0xFD:
            if len(self._scratch) < length:
                self._scratch = memoryview(bytearray(length))
            return self._scratch[:length - len(head)]
        found = self._conn.wire.placement(head, length)
        if found is None:
            return None
        return self._placement_target(*found)

    def _placement_target(self, mid: int, data_len: int) -> Optional[memoryview]:
        inflight = self._inflight
        with inflight.lock:           # withdraw_placement takes it too
            task = inflight.find(mid, self._conn.generation)
            if task is None or not task.state.in_flight:
                return None
            buffer = task.recv_buffer
            if buffer is None or len(buffer) < data_len:
                return None
            target = buffer[:data_len]
            task.placement = (self, target)
        return target

    def withdraw(self, task, target: memoryview) -> None:
        """No byte goes into ``target`` (``task``'s placement) once this
        returns: a frame still arriving there finishes in a private buffer.
        Takes the reader role's lock (so waits out a recv in progress)."""
        if task.reply is not None:
            return                    # its frame is complete: nothing more lands there
        self.kick()                   # a caller reading (fast path) hands the role back
        with self.read_lock:
            self._reader.redirect(target)

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self, message) -> None:
        """Complete the task(s) a frame answers."""
        encrypted = False
        wire = self._conn.wire
        if type(message) is PlacedFrame:
            if message.head[0] != 0xFD:
                self._dispatch_one(wire, message.head, False, message.tail)
                return
            message = self._decrypt_placed(message.head, message.tail)
            if message is None:
                return
            encrypted = True
        elif message[0] == 0xFD:             # b"\xfdSMB": a transform header
            message = self._decrypt(message)
            encrypted = True
        if not wire.is_smb1 and len(message) >= 24 and _U32_AT(message, 20)[0]:   # NextCommand
            try:
                parts = smb2.split_compound(message)
            except smb2.MalformedMessage as exc:
                raise SmbProtocolError(f"bad compound response: {exc}") from None
            view = memoryview(message)
            for offset, length in parts:
                self._dispatch_one(wire, view[offset:offset + length], encrypted)
        else:
            self._dispatch_one(wire, message, encrypted)

    def _dispatch_one(self, wire, message, encrypted: bool,
                      placed: Optional[memoryview] = None) -> None:
        try:
            mid, status, granted, interim, async_id, body = wire.route(message)
        except (smb2.MalformedMessage, ValueError) as exc:
            raise SmbProtocolError(f"malformed message from server: {exc}") from None
        if mid == wire.unsolicited_id:
            self._note_change()                 # at once: cached data is stale from here
            self._client.iod.call_soon(self._deliver_break,
                                       Reply(wire.header_parser, message, body, status, encrypted))
            return
        if interim:
            self._interim(mid, granted, async_id)
            return
        inflight = self._inflight
        with inflight.lock:
            task = inflight.retire(mid, self._conn.generation)
            if task is not None:
                retired = task.send_credits
                old = task.state
                late = old.final
                if not late:                    # move(task, _DONE), without the call
                    if not old.allowed & _DONE_BIT:
                        raise IllegalTransition("task", old, _DONE)
                    task.state = _DONE
        self._granted += granted
        if task is None:
            self._unmatched(mid)
            return
        if task.command in CHANGING_COMMANDS:
            self._note_change()                 # done (a late reply too): as at sending
        self._retired += retired
        now = self._now                     # this read's time
        reply = Reply(wire.header_parser, message, body, status, encrypted)
        stats = task.counters or self._stats.command(wire, task.command)
        stats.bytes_recv += len(message) + 4
        if placed is not None:
            reply.placed = placed
            stats.bytes_recv += len(placed)
        stats.rtt += now - task.t_sent
        stats.exec_time += now - task.t_queued
        if status and is_error(status):
            stats.errors += 1
        if late:
            # A late reply to an abandoned request: discard it, but let the
            # upper layer clean up (e.g. close the handle a CREATE opened) --
            # once the reply passes its session's check: a tampered FileId
            # must not close another open.  One that fails drops the
            # connection, as a frame that fails decryption does (the server
            # then closes whatever the CREATE opened).
            if task.on_late_reply is not None:
                if task.security is not None:
                    task.security.verify(task, reply)       # SmbProtocolError
                self._client.iod.call_soon(task.on_late_reply, reply)
            return
        self.replies += 1
        task.reply = reply
        task.t_done = now
        self._complete(task)

    def _interim(self, mid: int, granted: int, async_id: Optional[int]) -> None:
        """STATUS_PENDING for ``mid``: the server is alive and working on it."""
        now = self._now
        inflight = self._inflight
        with inflight.lock:
            task = inflight.find(mid, self._conn.generation)
            if task is not None:
                task.async_id = async_id
                if task.state.in_flight:
                    if not task.t_pending:
                        task.t_pending = now      # its soft bound restarts (once)
                    move(task, _INTERIM)
                    if task.long_poll:
                        inflight.disarm(task)     # may wait for hours
                        task.timed_out = False
                    elif not task.is_probe:
                        inflight.arm(task, self._liveness.deadline(task, now))
        self._granted += granted
        if task is None:
            self._unmatched(mid)

    def _unmatched(self, mid: int) -> None:
        client = self._client
        self._stats.unmatched += 1
        log.warning("smblayer: %s:%s sent a reply for unknown MessageId %d; dropped",
                    client.host, client.port, mid)

    # -- decryption ---------------------------------------------------------------

    def _decrypt_placed(self, head: bytes, tail: memoryview):
        """Decrypt a large transform frame whose ciphertext sits in the
        scratch buffer: a READ payload goes straight into the caller's
        buffer (then None is returned: it is dispatched here); anything else
        comes back as the plaintext message."""
        from ..security.crypto import TRANSFORM_HEADER_SIZE, DecryptError
        session = self._session_for(head)
        size = len(head) - TRANSFORM_HEADER_SIZE + len(tail)
        cipher = getattr(session, "cipher", None)
        wire = self._conn.wire
        try:
            stream = cipher.decrypt_stream(head, size) if cipher is not None else None
            if stream is None:
                return session.decrypt(bytes(head) + bytes(tail))
            plain = bytearray(PLACEMENT_HEAD)
            first = len(head) - TRANSFORM_HEADER_SIZE
            stream.update_into(memoryview(head)[TRANSFORM_HEADER_SIZE:], memoryview(plain))
            stream.update_into(tail[:PLACEMENT_HEAD - first], memoryview(plain)[first:])
            rest = tail[PLACEMENT_HEAD - first:]
            found = wire.placement(plain, size)
            target = self._placement_target(*found) if found is not None else None
            if target is None:
                out = bytearray(size)
                out[:PLACEMENT_HEAD] = plain
                stream.update_into(rest, memoryview(out)[PLACEMENT_HEAD:])
                stream.finalize()
                return out
            stream.update_into(rest, target)
            stream.finalize()        # only now is the data authentic
        except DecryptError as exc:
            raise SmbProtocolError(f"cannot decrypt a frame: {exc}") from None
        self._dispatch_one(wire, bytes(plain), True, target)
        return None

    def _session_for(self, frame):
        from ..security.crypto import transform_session_id
        try:
            session = self._sessions.get(transform_session_id(frame))
        except ValueError:
            session = None
        if session is None:
            raise SmbProtocolError("encrypted frame for an unknown session")
        return session

    def _decrypt(self, message):
        from ..security.crypto import DecryptError
        session = self._session_for(message)
        try:
            return session.decrypt(message)
        except DecryptError as exc:
            raise SmbProtocolError(f"cannot decrypt a frame: {exc}") from None

    def _drain_wake(self) -> None:
        self._wake_pending = False
        self._drain(self._wake_r)

    @staticmethod
    def _drain(sock: Socket) -> None:
        try:
            while sock.recv(64):
                pass
        except OSError:
            pass


def withdraw_placement(inflight, task) -> None:
    """The caller that lent ``task.recv_buffer`` takes it back: nothing is
    written into it afterwards, and every view of it the layer made is
    released (so the caller may resize or reuse the buffer at once, however
    late the receive thread drops its references to the task)."""
    with inflight.lock:
        lent, task.recv_buffer = task.recv_buffer, None
        placement, task.placement = task.placement, None
    if placement is not None:
        demux, target = placement
        demux.withdraw(task, target)
        target.release()              # also the Reply's .placed: the same view
    if lent is not None:
        lent.release()


class _Poller:
    """The smallest readable-fd poller: epoll where there is one, else poll."""

    def __init__(self):
        self.epoll = getattr(select, "epoll", None)
        self._p = self.epoll() if self.epoll else select.poll()
        #: the epoll object's modify(fd, mask): start or stop watching ``fd``,
        #: safe from another thread while the owner waits (None without
        #: epoll: the caller fast path is off)
        self.epoll_modify = self._p.modify if self.epoll else None

    def register(self, fd: int) -> None:
        self._p.register(fd, select.EPOLLIN if self.epoll else select.POLLIN)

    def poll(self, timeout):
        """The (fd, event mask) pairs ready within ``timeout`` seconds."""
        if self.epoll:
            return self._p.poll(-1 if timeout is None else timeout)
        return self._p.poll(None if timeout is None else timeout * 1000.0)

    def close(self) -> None:
        if self.epoll:
            self._p.close()
