"""The one send primitive: every frame the client writes goes through here.

Theory of operation
-------------------
Under the send lock a request (or a compound of them) gets its MessageIds,
enters the in-flight table, has its timer armed, gets its header built and
protected (signed or encrypted by ``task.security``), and is written with
``sendmsg`` of separate buffers (payloads are never concatenated).  Doing all
of it under one lock makes MessageIds reach the wire in order.

The tasks move to SENT under the in-flight lock, through the task transition
table: a task cancelled before that point is not sent (its credits go back
and the sender gets its SmbCancelledError); one cancelled after it is on the
wire and gets an SMB CANCEL, sent here too, after the request itself.

Before that, :meth:`Sender.queue` moves the tasks to QUEUED and sets their
CreditCharge (the credits the caller then takes from the gate).

Also here: one-way SMB1 messages (an oplock break acknowledgement) and
CANCEL, which have no reply, no MID-table entry and no timer.

Interface: built with the client (read: ``connection``, the current
generation, and ``host``/``port``), the in-flight table, the credit gate,
liveness (``deadline``) and the counters.  ``lock`` is the send lock of the
lock order; the connect worker takes it to publish a new connection.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import List, Sequence

from ..errors import SmbCancelledError
from ..proto import smb2
from ..proto.credits import MULTI_CREDIT_COMMANDS, credits_needed, request_sizes
from ..proto.framing import frame_prefix
from .task import SmbTask, TaskState, can_move, move

log = logging.getLogger("smblayer")

CREDIT_TARGET = 2048         # credits we try to hold (SMB2): a 64 MiB window of 1 MiB I/O
CREDIT_ASK = 64              # extra credits asked per request while below target


class Retry(Exception):
    """The connection changed under a sender; start over."""


class Sender:
    """Owns the send lock; see the module docstring."""

    def __init__(self, client, inflight, credits, liveness, stats) -> None:
        self._client = client
        self._inflight = inflight
        self._credits = credits
        self._deadline = liveness.deadline
        self._stats = stats
        self.lock = threading.Lock()

    def queue(self, conn, tasks: Sequence[SmbTask]) -> int:
        """Move ``tasks`` to QUEUED (a cancelled one raises) and charge them;
        return the credits they consume."""
        with self._inflight.lock:
            for task in tasks:
                if not can_move(task, TaskState.QUEUED):
                    raise task.error or SmbCancelledError("request cancelled")
            for task in tasks:
                move(task, TaskState.QUEUED)
        return sum(self._charge(conn.wire, task) for task in tasks)

    @staticmethod
    def _charge(wire, task: SmbTask) -> int:
        """Set the task's CreditCharge; return the credits it consumes: from
        max(send payload, expected response) ([MS-SMB2] 3.2.4.1.5), both read
        from the whole body whatever its split (``request_sizes``)."""
        if wire.is_smb1 or task.command not in MULTI_CREDIT_COMMANDS:
            task.credit_charge = wire.charge(task.command, 0, 0)   # size-independent
        else:
            send, expected = request_sizes(task.command, task.body, task.expected_response,
                                           task.payload_size)
            task.credit_charge = wire.charge(task.command, send, expected)
        task.send_credits = credits_needed(task.credit_charge)
        return task.send_credits

    def transmit(self, conn, tasks: Sequence[SmbTask], related: bool, credits: int,
                 fast: bool = False):
        """Put one request, or a compound of several, on ``conn``.  ``credits``
        were taken for them; they go back if nothing is sent.

        ``fast`` (a synchronous caller): if nothing else is in flight, take
        the demux's reader role before the request goes out and return the
        demux (the caller reads its own reply and releases the role); taken
        here, under the send lock, every later sender comes after it and
        hands the role back to the demux (kick).  None otherwise."""
        inflight = self._inflight
        wire = conn.wire
        with self.lock:
            if conn.lost or conn is not self._client.connection:
                self._credits.grant(credits, credits)
                raise Retry()
            now = time.monotonic()
            wake = False
            with inflight.lock:
                cancelled = [t for t in tasks if not can_move(t, TaskState.SENT)]
                if cancelled:
                    self._credits.grant(credits, credits)
                    raise cancelled[0].error or SmbCancelledError("request cancelled")
                reader = conn.demux if fast and not inflight.pending and \
                    conn.demux is not None and conn.demux.take_reader_role() else None
                smb1 = wire.is_smb1
                for task in tasks:
                    mid = inflight.allocate(smb1, task.send_credits)
                    inflight.register(task, mid, conn.generation, now)
                    if not task.is_probe:
                        wake |= inflight.arm(task, self._deadline(task, now))
            try:
                parts = self._build(conn, tasks, related)
                size = sum(map(len, parts))
                self._write(conn, parts, size)
            except BaseException:
                if reader is not None:
                    reader.release_reader_role()
                raise
            stats = self._stats
            for task in tasks:
                counters = stats.command(wire, task.command)
                counters.ops += 1
                counters.queue_time += now - task.t_queued
                if task.sends > 1:
                    counters.retransmissions += 1
            stats.command(wire, tasks[0].command).bytes_sent += size + 4
        demux = conn.demux
        if demux is not None:
            if wake:
                demux.wake()
            if demux.fast_reader and reader is None:
                demux.kick()       # another request joined: the demux reads again
        return reader

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

    def _write(self, conn, parts, size: int) -> None:
        """sendmsg one frame (under the send lock)."""
        try:
            sendmsg_all(conn.sock, (frame_prefix(size), *parts), size + 4)
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
            move(task, TaskState.NEW)             # the task object is run again
        with inflight.lock:
            move(task, TaskState.QUEUED)          # a task already running is refused
        size = self._oneway(conn, task)
        with inflight.lock:
            if not size:
                move(task, TaskState.FAILED)
                return False
            move(task, TaskState.SENT)
            move(task, TaskState.DONE)
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
            self._write(conn, parts, size)
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


def sendmsg_all(sock: socket.socket, parts, total: int) -> None:
    """sendmsg every buffer, resuming after partial sends, without joining."""
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


def shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
