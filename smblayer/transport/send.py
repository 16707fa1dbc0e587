"""The one send primitive: every frame the client writes goes through here.

Theory of operation
-------------------
A combining writer.  A caller does not write its request itself: it
appends it (one request, or a compound of several) to the outbox (a deque:
no lock), then tries to take the send lock.  Whoever holds the send lock is
the writer: it drains the outbox -- under the MID-table lock each request
gets its MessageIds, enters the in-flight table and has its timer armed;
then, outside that lock, each gets its header built and protected (signed
or encrypted by ``task.security``), and the whole batch goes out with one
``sendmsg`` of separate buffers (payloads are never concatenated).  A
caller that finds the send lock taken returns at once: the writer sends its
request too (whoever releases the send lock looks at the outbox again, so
nothing is left behind).  MessageIds, SMB1 signing sequence numbers and 3.x
encryption nonces are so given in the order the frames reach the wire.

Why: ``sendmsg`` releases the GIL.  With one lock held across each
caller's write, the holder waited for the GIL while every other caller
queued on the lock (a convoy: two context switches per request); the
writer instead sends what piled up meanwhile in one system call.

Cancel: the tasks move to SENT under the MID-table lock, when the writer
takes them, through the task transition table.  A task cancelled before
that point (still in the outbox) is never sent: the writer drops it, its
credits go back (and the other elements of its compound fail with its
error).  One cancelled after it is a cancel of a sent request: an SMB
CANCEL (sent here too, after the request itself), its MessageId kept for
the late reply.  A request whose connection was lost, replaced or closed
before the writer took it goes back to be sent again (``requeue``), never
having been on the wire; its credits went with that connection.

Before that, :meth:`Sender.queue` moves the tasks to QUEUED and sets their
CreditCharge (the credits the caller then takes from the gate).

The one-step path (:meth:`Sender.send_now`): when nothing is queued, the
send lock is free and the credits are at hand without waiting, a request
(or compound) is queued, charged, numbered, armed and written in one step,
under one hold of the send lock and of the MID-table lock -- the same moves
in the same order, without the outbox, the second lock hold and the credit
gate's closure.  Anything else returns ``NOT_NOW`` having done nothing, and
the caller takes the general path above (a held writer, ``hold_sends``,
is never bypassed).

Also here: one-way SMB1 messages (an oplock break acknowledgement) and
CANCEL, which have no reply, no MID-table entry and no timer: written by
their caller under the send lock.

Interface: built with the client (read: ``connection``, the current
generation, ``host``/``port`` and ``iod``), the in-flight table, the credit
gate, liveness (``deadline``) and the counters; ``attach(requeue, wake)``
gives the connect worker's hand-back of requests that were never sent and
the client's wake-up.  ``lock``
is the send lock of the lock order (the connect worker takes it to publish
a new connection); releasing it writes what was queued meanwhile.
"""
from __future__ import annotations

import _socket
import collections
import logging
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Deque, List, Optional, Sequence

from ..errors import SmbCancelledError
from ..proto import smb2
from ..proto.credits import MULTI_CREDIT_COMMANDS, credits_needed, request_sizes
from ..proto.framing import MAX_FRAME, frame_prefix, pack_length
from .sockets import Socket
from .task import SmbTask, TaskState, can_move, move

# Enum members as module constants (see task.py: the hot path's enum cost)
_DONE, _FAILED, _NEW, _QUEUED, _SENT = \
    TaskState.DONE, TaskState.FAILED, TaskState.NEW, TaskState.QUEUED, TaskState.SENT

log = logging.getLogger("smblayer")

CREDIT_TARGET = 2048         # credits we try to hold (SMB2): a 64 MiB window of 1 MiB I/O
CREDIT_ASK = 64              # extra credits asked per request while below target


class Retry(Exception):
    """The connection changed under a sender; start over."""


#: ``Sender.send_now`` did nothing: take the general path
NOT_NOW = object()
_QUEUED_BIT = _QUEUED.bit
_PACK_LENGTH = pack_length


#: buffers per sendmsg (IOV_MAX is 1024 on Linux)
_MAX_BUFFERS = 512
#: a batch holding this many bytes is written before the next request is
#: built: a large protected frame may sit in a buffer its security reuses
#: for the next large one (security/crypto.py, REUSE_FROM = 64 KiB)
_FLUSH_BYTES = 32 * 1024


def charge_task(wire, task: SmbTask) -> int:
    """Set the task's CreditCharge; return the credits it consumes: from
    max(send payload, expected response) ([MS-SMB2] 3.2.4.1.5), both read
    from the whole body whatever its split (``request_sizes``).  (A function:
    CPython 3.11 does not specialise a staticmethod called through ``self``.)"""
    if wire.is_smb1 or task.command not in MULTI_CREDIT_COMMANDS:
        task.credit_charge = charge = wire.flat_charge       # size-independent
    else:
        send, expected = request_sizes(task.command, task.body, task.expected_response,
                                       task.payload_size)
        task.credit_charge = charge = wire.charge(task.command, send, expected)
    task.send_credits = credits = credits_needed(charge)
    return credits


class SendLock:
    """The send lock: whoever releases it writes what was queued while it
    was held (see the module docstring)."""

    __slots__ = ("_lock", "_after", "acquire", "locked")

    def __init__(self, after) -> None:
        self._lock = lock = threading.Lock()
        self.acquire = lock.acquire
        self.locked = lock.locked
        self._after = after

    def release(self) -> None:
        self._lock.release()
        self._after()

    def __enter__(self) -> "SendLock":
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Sender:
    """Owns the send lock and the outbox; see the module docstring."""

    def __init__(self, client, inflight, credits, liveness, stats) -> None:
        self._client = client
        self._inflight = inflight
        self._credits = credits
        self._liveness = liveness
        self._stats = stats
        self._outbox: Deque[tuple] = collections.deque()   # (conn, tasks, related, credits)
        self._requeue = self._wake = None
        self.lock = SendLock(self._flush)   # held by the writer
        self._raw_lock = self.lock._lock
        self._holder = None                 # the thread in hold(), if any

    def attach(self, requeue, wake) -> None:
        """The connect worker's ``requeue(tasks)`` (hand requests that were
        never sent back to be sent again: their connection went away while
        they were queued) and the client's ``wake(task)``."""
        self._requeue = requeue
        self._wake = wake

    def queue(self, conn, tasks: Sequence[SmbTask]) -> int:
        """Move ``tasks`` to QUEUED (a cancelled one raises) and charge them;
        return the credits they consume."""
        with self._inflight.lock:
            for task in tasks:
                if not can_move(task, _QUEUED):
                    raise task.error or SmbCancelledError("request cancelled")
            for task in tasks:
                move(task, _QUEUED)
        wire, need = conn.wire, 0
        for task in tasks:              # (a loop: no generator per request)
            need += charge_task(wire, task)
        return need

    def transmit(self, conn, tasks: Sequence[SmbTask], related: bool, credits: int,
                 fast: bool = False):
        """Queue one request, or a compound of several, for ``conn`` and
        write the outbox unless a writer is at it (then it is sent by that
        writer; the caller waits for the reply as usual).  ``credits`` were
        taken for them; they go back if nothing is sent.

        ``fast`` (a synchronous caller): if this caller writes and nothing
        else is in flight or queued, take the demux's reader role before the
        request goes out and return the demux (the caller reads its own
        reply and releases the role); a later writer hands the role back to
        the demux (kick).  None otherwise."""
        if conn.lost or conn is not self._client.connection:
            self._credits.grant(credits, credits)
            raise Retry()
        entry = (conn, tasks, related, credits)
        mine = entry if fast else None
        if self._outbox or not self._raw_lock.acquire(False):
            self._outbox.append(entry)      # a deque: no lock (the writer pops under one)
            return self._write_queued(mine)
        return self._write_queued(mine, [entry])    # nothing queued: ours goes at once

    def send_now(self, conn, tasks: Sequence[SmbTask], related: bool, fast: bool = False):
        """The common request's short path: nothing queued, the send lock
        free and the credits at hand.  The request (one, or a compound) is
        queued, charged, numbered and written with one hold of the send lock
        and of the MID-table lock (``queue``, the credit gate and
        ``transmit`` take three steps and six lock holds for it).  Returns
        what ``transmit`` returns, or ``NOT_NOW`` when nothing was done (a
        writer is at work, something is queued, or the credits are short:
        use the general path)."""
        if conn.lost or conn is not self._client.connection:
            raise Retry()
        lock = self._raw_lock
        if self._outbox or not lock.acquire(False):
            return NOT_NOW
        try:                            # (``_as_writer``, spelled out: no bound method,
            reader = self._send_now(conn, tasks, related, fast)   # no argument tuple)
        except BaseException:
            self._writer_failed()
            raise
        lock.release()
        if self._outbox:                # queued while we held the lock
            if reader is not None and reader is not NOT_NOW:
                reader.release_reader_role()   # their replies come too: the demux reads
                reader = None
            self._write_queued(None)
        return reader

    def _send_now(self, conn, tasks: Sequence[SmbTask], related: bool, fast: bool):
        """``send_now`` under the send lock."""
        reader = None
        inflight = self._inflight
        wire = conn.wire
        single = len(tasks) == 1
        with inflight.lock:
            need = 0
            for task in tasks:
                if not task.state.allowed & _QUEUED_BIT:
                    raise task.error or SmbCancelledError("request cancelled")
                need += charge_task(wire, task)
            if not self._credits.take_now(need, tasks[0].priority):
                return NOT_NOW
            demux = conn.demux
            if fast and not inflight.pending and demux is not None and \
                    demux.take_reader_role():
                reader = demux
            now = time.monotonic()
            wake = False
            for task in tasks:
                task.state = _QUEUED
                inflight.register(task, inflight.allocate(wire.is_smb1, task.send_credits),
                                  conn.generation, now)
                if not task.is_probe and inflight.arm(task, self._liveness.deadline(task, now)):
                    wake = True
        try:
            if single:
                self._send_single(conn, tasks[0], need, now)
            else:
                self._send_batch(((conn, tasks, related, need),), now)
        except BaseException:
            shutdown(conn.sock)         # as in _drain: the MessageIds can't be trusted
            if reader is not None:
                reader.release_reader_role()
            raise
        if demux is not None:
            if wake:
                demux.wake()
            if reader is None and demux.fast_reader:
                demux.kick()            # another request joined: the demux reads again
        return reader

    def hold(self) -> bool:
        """Take the writer's role if it is free, without waiting (a caller
        about to send several requests in a row: they queue, and
        ``release`` writes them together).  False: a writer is at work and
        will write them anyway."""
        if not self.lock.acquire(False):
            return False
        self._holder = threading.get_ident()
        return True

    def release(self) -> None:
        """End this thread's ``hold`` (nothing if it holds none): write what
        was queued meanwhile.  Also called before the holder would wait for
        credits: the replies to what it queued are what grant them."""
        if self._holder == threading.get_ident():
            self._holder = None
            self.lock.release()

    def _flush(self) -> None:
        """The send lock was released: write what was queued meanwhile."""
        if self._outbox:
            self._write_queued(None)

    def _write_queued(self, mine, held: Optional[list] = None):
        """Be the writer while there is something to write and nobody else
        is; the demux whose reader role ``mine``'s caller took, or None.
        ``held``: the send lock is held already, to write these entries."""
        reader = None
        lock = self._raw_lock
        entries = held
        while True:
            if entries is None and (not self._outbox or not lock.acquire(False)):
                return reader           # a writer sends it (it looks again after release)
            taken = self._as_writer(self._drain, mine, entries)
            entries = None
            if taken is not None:
                reader = taken
            elif reader is not None:
                # Others joined and this caller sent them: their replies
                # come too, so the demux reads (as a kick would have it).
                reader.release_reader_role()
                reader = None
        return reader

    def _as_writer(self, write, *args):
        """``write(*args)`` with the send lock the caller took, then release
        it; if that fails, what was queued meanwhile is still written."""
        try:
            result = write(*args)
        except BaseException:
            self._writer_failed()
            raise
        self._raw_lock.release()
        return result

    def _writer_failed(self) -> None:
        """The writer's write raised: release the send lock; what was queued
        meanwhile is still written (by smbiod: nobody may be left to)."""
        self._raw_lock.release()
        if self._outbox:
            self._client.iod.call_soon(self._flush)

    def _drain(self, mine, entries: Optional[list]):
        """Send ``entries``, or everything in the outbox (holding the send
        lock)."""
        inflight = self._inflight
        client = self._client
        reader = None
        batch = []
        dropped: list = []
        woken: list = []
        wake = False
        outbox = self._outbox
        with inflight.lock:
            if entries is None:
                entries = []
                while outbox:
                    entries.append(outbox.popleft())
            now = time.monotonic()
            for entry in entries:
                conn, tasks = entry[0], entry[1]
                if conn.lost or conn is not client.connection:
                    dropped += tasks        # lost, replaced or closed after it queued
                    continue
                cancelled = None
                for task in tasks:      # (a loop: no list per request)
                    if not can_move(task, _SENT):
                        cancelled = task
                        break
                if cancelled is not None:
                    self._withdraw(entry, cancelled, woken)
                    continue
                if entry is mine and len(entries) == 1 and not inflight.pending and \
                        conn.demux is not None and conn.demux.take_reader_role():
                    reader = conn.demux
                smb1 = conn.wire.is_smb1
                for task in tasks:
                    mid = inflight.allocate(smb1, task.send_credits)
                    inflight.register(task, mid, conn.generation, now)
                    if not task.is_probe:
                        wake |= inflight.arm(task, self._liveness.deadline(task, now))
                batch.append(entry)
        for task in woken:
            self._wake(task)
        if dropped:
            self._requeue(dropped)
        if not batch:
            return reader
        try:
            self._send_batch(batch, now)
        except BaseException:
            # Interrupted (Ctrl-C) with requests taken but maybe not written:
            # their MessageIds can't be trusted; reconnect and reissue them.
            shutdown(batch[0][0].sock)
            if reader is not None:
                reader.release_reader_role()
            raise
        demux = batch[0][0].demux
        if demux is not None:
            if wake:
                demux.wake()
            if demux.fast_reader and reader is None:
                demux.kick()       # another request joined: the demux reads again
        return reader

    def _withdraw(self, entry, cancelled: SmbTask, woken: list) -> None:
        """``entry`` was cancelled before the writer took it: it is not sent,
        its credits go back, the rest of its compound fails with the same
        error (under the MID-table lock; ``woken`` gets them)."""
        self._credits.grant(entry[3], entry[3])
        error = cancelled.error or SmbCancelledError("request cancelled")
        for task in entry[1]:
            if not task.state.final:
                move(task, _FAILED)
                task.error = error
                woken.append(task)

    def _send_batch(self, batch: list, now: float) -> None:
        """Build every request of ``batch`` (taken, in MessageId order) and
        write them with as few ``sendmsg`` calls as the buffers allow."""
        conn = batch[0][0]
        buffers: list = []
        total = 0
        wire = conn.wire
        for _conn, tasks, related, credits in batch:
            try:
                parts = self._build(conn, tasks, related)
            except Exception as exc:  # noqa: BLE001 - that request fails, the rest go
                self._fail_unbuilt(tasks, credits, exc)
                continue
            size = sum(map(len, parts))
            if len(buffers) + len(parts) >= _MAX_BUFFERS and buffers:
                self._write(conn, buffers, total)
                buffers, total = [], 0
            buffers.append(frame_prefix(size))
            buffers += parts
            total += size + 4
            if total >= _FLUSH_BYTES:
                self._write(conn, buffers, total)
                buffers, total = [], 0
            self._count(wire, tasks, size + 4, now)
        if buffers:
            self._write(conn, buffers, total)

    def _send_single(self, conn, task: SmbTask, credits: int, now: float) -> None:
        """``_send_batch`` of one request that is not a compound (``_build``,
        ``frame_prefix`` and ``_write`` spelled out: three calls and two
        buffer lists fewer per request)."""
        wire = conn.wire
        security = task.security
        try:
            header = wire.build_header(task, task.message_id,
                                       self._credit_request(wire, task.send_credits))
            if security is not None:
                parts = security.protect(task, header, [header, *task.body])
                size = sum(map(len, parts))
            else:
                parts = None
                size = len(header) + sum(map(len, task.body))
        except Exception as exc:  # noqa: BLE001 - it fails, unsent
            self._fail_unbuilt((task,), credits, exc)
            return
        task.counters = counters = self._stats.command(wire, task.command)
        counters.ops += 1
        counters.queue_time += now - task.t_queued
        if task.sends > 1:
            counters.retransmissions += 1
        counters.bytes_sent += size + 4
        if not 0 < size <= MAX_FRAME:
            frame_prefix(size)          # raises FramingError
        buffers = (_PACK_LENGTH(size), *parts) if parts is not None else \
            (_PACK_LENGTH(size), header, *task.body)
        try:
            sock = conn.sock
            sent = sock.sendmsg(buffers)        # (sendmsg_all's first step, without the call)
            if sent != size + 4:
                sendmsg_all(sock, buffers, size + 4, sent)
        except OSError as exc:
            log.debug("smblayer: send failed on %s:%s: %s", self._client.host,
                      self._client.port, exc)
            shutdown(conn.sock)         # as in _write
        except BaseException:
            shutdown(conn.sock)
            raise

    def _count(self, wire, tasks: Sequence[SmbTask], size: int, now: float) -> None:
        """The send-side counters of a request (or compound) of ``size`` bytes."""
        first = None
        command = self._stats.command
        for task in tasks:
            task.counters = counters = command(wire, task.command)
            counters.ops += 1
            counters.queue_time += now - task.t_queued
            if task.sends > 1:
                counters.retransmissions += 1
            first = first or counters
        first.bytes_sent += size

    def _fail_unbuilt(self, tasks: Sequence[SmbTask], credits: int, error: Exception) -> None:
        """A request could not be built or protected: it fails, unsent."""
        inflight = self._inflight
        self._credits.grant(credits, credits)
        with inflight.lock:
            for task in tasks:
                inflight.retire(task.message_id, task.generation)
                if not task.state.final:
                    move(task, _FAILED)
                    task.error = error
        for task in tasks:
            self._wake(task)

    def _build(self, conn, tasks: Sequence[SmbTask], related: bool) -> list:
        wire = conn.wire
        if len(tasks) == 1:
            task = tasks[0]
            header = wire.build_header(task, task.message_id,
                                       self._credit_request(wire, task.send_credits))
            if task.security is not None:
                return task.security.protect(task, header, [header, *task.body])
            return [header, *task.body]
        elements: List[list] = []
        last = len(tasks) - 1
        for i, task in enumerate(tasks):
            header = wire.build_header(task, task.message_id,
                                       self._credit_request(wire, task.send_credits))
            parts = [header, *task.body]
            if i != last:
                length = len(header) + task.payload_size
                pad = -length % 8
                if pad:
                    parts.append(bytes(pad))
                smb2.set_next_command(header, length + pad)
            if related and i:
                smb2.add_flags(header, smb2.FLAG_RELATED_OPERATIONS)
            elements.append(parts)
        security = tasks[0].security
        if security is not None:
            return security.protect_compound(tasks, elements)
        return [p for element in elements for p in element]

    def _credit_request(self, wire, used: int) -> int:
        if wire.is_smb1:
            return 0
        if self._credits.available + used < CREDIT_TARGET:
            return used + CREDIT_ASK
        return used

    def _write(self, conn, buffers, total: int) -> None:
        """sendmsg framed buffers (under the send lock)."""
        try:
            sendmsg_all(conn.sock, buffers, total)
        except OSError as exc:
            # The demux sees the broken socket; the connect worker reconnects
            # and the requests in flight are reissued.
            log.debug("smblayer: send failed on %s:%s: %s", self._client.host,
                      self._client.port, exc)
            shutdown(conn.sock)
        except BaseException:
            # Interrupted (Ctrl-C) possibly mid-frame: the stream can't be
            # trusted; reconnect, and the other requests are reissued.
            shutdown(conn.sock)
            raise

    def oneway(self, conn, task: SmbTask) -> bool:
        """Send a request that has no reply (SMB1 break acknowledgement) once,
        through the task table (NEW, QUEUED, SENT, DONE: no reply will come);
        False (the task FAILED) if the connection changed."""
        inflight = self._inflight
        if task.state.final:
            move(task, _NEW)                      # the task object is run again
        with inflight.lock:
            move(task, _QUEUED)                   # a task already running is refused
        size = self._oneway(conn, task)
        with inflight.lock:
            if not size:
                move(task, _FAILED)
                return False
            move(task, _SENT)
            move(task, _DONE)
        counters = self._stats.command(conn.wire, task.command)
        counters.ops += 1
        counters.bytes_sent += size
        return True

    def _oneway(self, conn, task: SmbTask) -> int:
        """The bytes of a one-way message sent, 0 if the connection changed."""
        wire = conn.wire
        with self.lock:
            if conn.lost or conn is not self._client.connection:
                return 0
            with self._inflight.lock:
                mid = self._inflight.allocate(wire.is_smb1, 1)
            task.message_id = mid
            task.generation = conn.generation
            header = wire.build_header(task, mid, 0)
            parts = [header, *task.body]
            if task.security is not None:
                parts = task.security.protect(task, header, parts)
            size = sum(map(len, parts))
            self._write(conn, (frame_prefix(size), *parts), size + 4)
        return size + 4

    def cancel(self, conn, task: SmbTask) -> None:
        """Send a CANCEL for ``task`` (which was sent on ``conn``)."""
        parts = conn.wire.cancel_message(task)
        if task.security is not None and hasattr(task.security, "protect_cancel"):
            parts = task.security.protect_cancel(task, parts)
        size = sum(len(p) for p in parts)
        with self.lock:
            if conn.lost or conn is not self._client.connection:
                return
            try:
                sendmsg_all(conn.sock, (frame_prefix(size), *parts), size + 4)
            except OSError:
                return
        self._stats.command(conn.wire, task.command).cancels += 1


def sendmsg_all(sock: Socket, parts, total: int, sent: Optional[int] = None) -> None:
    """sendmsg every buffer, resuming after partial sends, without joining
    (``sent``: the bytes a first sendmsg of ``parts`` already sent)."""
    if sent is None:
        sent = sock.sendmsg(parts)
    if sent == total:
        return
    views = [memoryview(p).cast("B") for p in parts]
    while True:
        while sent:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0
        if not views:
            return
        sent = sock.sendmsg(views)


def shutdown(sock: Socket) -> None:
    try:
        sock.shutdown(_socket.SHUT_RDWR)
    except OSError:
        pass
