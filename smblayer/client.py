"""SmbClient: one shared connection to one server, and every request's
well-defined behaviour on it.

Theory of operation
-------------------
Threads (DESIGN.md "Threads"): callers send; one demux thread per socket
generation receives and completes; smbiod runs async completions, break and
reconnect callbacks and echo probes; the connect worker (only while needed)
connects, negotiates, reconnects and is the only writer of ``state`` and of
the connection: the demux and the probe loop only *report* a lost
connection (``_connection_lost``), the worker takes it down (``_take_down``:
RECONNECTING, close the socket, requeue the requests in flight).  close()
is the one exception, from any thread, by design.

State machine (written only by the connect worker, and by close())::

    CONNECTING --negotiated, handlers done--> ACTIVE
    CONNECTING --first connect fails-------> CLOSED (get_client raises)
    ACTIVE --reset/EOF/bad frame/soft timeout--> RECONNECTING
    RECONNECTING --reconnected, handlers done--> ACTIVE
    any --close()--> CLOSED

Sending (any thread): wait for ACTIVE, take credits (FIFO, one credit kept for
echo and break acknowledgements), then under the send lock allocate the
MessageId, build and protect (sign/encrypt) the header, register the task in
the MID table, and ``sendmsg`` header and payload as separate buffers, so
MessageIds reach the wire in order.

Timers: every sent task has a deadline on a heap; the demux selector wakes
for the earliest.  An expired task starts the probe loop on smbiod: one ECHO
at a time, every ``echo_interval``.  Echo answered: timers re-arm (the server
is slow, not dead).  Unanswered: hard mode logs "not responding, still
trying" once and keeps probing; soft mode, after ``soft_timeout``, asks the
connect worker to reconnect; if that fails the task raises SmbTimeoutError,
otherwise it is reissued.

Lock order: registry lock > _state (Condition) > _send_lock > _mid_lock >
credit gate.  Futures are completed and callbacks run only after
every lock is released.
"""
from __future__ import annotations

import collections
import enum
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from . import _connect
from ._credits import CreditGate, CreditsAborted
from ._demux import Demux
from ._wire import PLACEMENT_HEAD, wire_for
from .config import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy
from .errors import (SmbCancelledError, SmbClosedError, SmbConnectionError, SmbError,
                     SmbProtocolError, SmbTimeoutError, status_error)
from .proto import smb2
from .proto.credits import credits_needed
from .proto.framing import MAX_FRAME, PlacedFrame, frame_prefix
from .proto.negotiate import NegotiateResult
from .proto.status import is_error
from .stats import ClientStats, command_name
from .task import FINAL_STATES, Reply, SmbTask, TaskState

log = logging.getLogger("smblayer")

_NEVER = float("inf")
MAX_SENDS = 5                # a request is sent at most this often across reconnects
CREDIT_TARGET = 512          # credits we try to hold (SMB2)
CREDIT_ASK = 64              # extra credits asked per request while below target


class ClientState(enum.Enum):
    CONNECTING = "connecting"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class BreakNotification:
    """An unsolicited server message (oplock or lease break) as received."""

    client: "SmbClient"
    reply: Reply

    @property
    def command(self) -> int:
        return self.reply.header.command


class _Connection:
    """One socket generation: the socket, what was negotiated, its demux."""

    def __init__(self, sock: socket.socket, generation: int, negotiated: NegotiateResult):
        self.sock = sock
        self.generation = generation
        self.negotiated = negotiated
        self.wire = wire_for(negotiated)
        self.demux: Optional[Demux] = None
        self.lost = False
        self.lost_error: Optional[BaseException] = None
        self.replies = 0          # demux thread only: did this connection ever answer?
        self.taken_down = False   # the connect worker has closed it and requeued its tasks
        self.scratch = memoryview(b"")   # demux thread only: large ciphertexts land here




class SmbClient:
    """A shared connection to one server; see the module docstring.

    Build it with :func:`smblayer.get_client` (shared, refcounted) or
    directly (private, refcount 1).
    """

    #: ClientState: CONNECTING, ACTIVE, RECONNECTING or CLOSED
    state: ClientState = ClientState.CONNECTING
    #: references handed out by get_client() and not yet released
    refcount: int = 0

    def __init__(self, host: str, port: int = 445, *,
                 dialects: DialectRange = DialectRange(),
                 timeouts: TimeoutPolicy = TimeoutPolicy(),
                 reconnect: ReconnectPolicy = ReconnectPolicy(),
                 require_signing: bool = False, ciphers: Optional[tuple] = None,
                 signing_algorithms: Optional[tuple] = None, iod_workers: int = 16,
                 _registry=None, _key=None):
        if not isinstance(dialects, DialectRange):
            raise TypeError("dialects must be a DialectRange")
        if not isinstance(timeouts, TimeoutPolicy):
            raise TypeError("timeouts must be a TimeoutPolicy")
        if not isinstance(reconnect, ReconnectPolicy):
            raise TypeError("reconnect must be a ReconnectPolicy")
        self.host = host
        self.port = int(port)
        self.dialects = dialects
        self.timeouts = timeouts
        self.reconnect = reconnect
        self.require_signing = require_signing
        # 3.1.1 negotiate contexts, in preference order (wire ids); None = all.
        self.ciphers = tuple(ciphers) if ciphers else None
        self.signing_algorithms = tuple(signing_algorithms) if signing_algorithms else None
        self.client_guid = os.urandom(16)
        self.refcount = 1
        self._registry = _registry
        self._key = _key
        self._forked = False

        self._state_cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._mid_lock = threading.Lock()
        self._credits = CreditGate()

        self.state = ClientState.CONNECTING
        self._conn: Optional[_Connection] = None
        self._generation = 0
        self._connect_error: Optional[BaseException] = None
        self._reconnect_pending_error: Optional[BaseException] = None

        # MID table and timers (under _mid_lock).  Timers live in one FIFO
        # queue per timeout value: deadlines in a queue only grow, so the
        # head is the earliest and completed tasks are dropped from the head.
        self._pending: Dict[int, SmbTask] = {}
        self._timers: Dict[float, collections.deque] = {}
        self._timer_wake_at = float("inf")     # when the demux plans to wake
        self._next_mid = 0
        self._reissue: List[SmbTask] = []      # async tasks to resend after reconnect

        self._stats = ClientStats()
        self._reconnect_handlers: List[Callable] = []
        self._break_handlers: List[Callable] = []
        self._sessions: Dict[int, object] = {}      # SessionId -> session (decrypt)
        self.default_security = None                # SMB1: the session that signs echoes
        self.smb1_signing = None                    # SMB1: per-connection signing state
        self._probing = False
        self._gave_up = 0                      # bumped each time reconnecting gives up
        self._handshake_threads: set = set()   # smbiod threads running reconnect handlers
        self._last_conn_useful = True
        self._not_responding_since: Optional[float] = None
        self._soft_expired = False

        from .iod import SmbIod
        self._iod = SmbIod(name=f"smbiod-{host}:{port}", max_workers=iod_workers)
        self._connector = _connect.ConnectWorker(self)
        self._connector.kick()
        with self._state_cond:
            self._state_cond.wait_for(lambda: self.state is not ClientState.CONNECTING)
            if self.state is ClientState.CLOSED:
                error = self._connect_error
                self._iod.shutdown(wait=False)
                raise error if error is not None else SmbClosedError("client closed")

    # -- public properties ---------------------------------------------------

    @property
    def negotiated(self) -> Optional[NegotiateResult]:
        conn = self._conn
        return conn.negotiated if conn is not None else None

    @property
    def dialect(self) -> Optional[Dialect]:
        negotiated = self.negotiated
        return negotiated.dialect if negotiated is not None else None

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def iod(self):
        """The smbiod pool: upper layers may run their callbacks here."""
        return self._iod

    def __repr__(self) -> str:
        return (f"<SmbClient {self.host}:{self.port} {self.state.value} "
                f"dialect={self.dialect.name if self.dialect else None} refs={self.refcount}>")

    def __enter__(self) -> "SmbClient":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- requests -------------------------------------------------------------

    def run_task(self, task: SmbTask) -> Reply:
        """Send ``task`` and wait for its reply (reissuing it across a
        reconnect).  Raises SmbStatusError for an error status, and the
        SmbError subclass that describes any other failure."""
        self._check_task(task)
        try:
            while True:
                self._send(task)
                task._parking.acquire()          # woken by demux/close/cancel/reconnect
                if task.state is not TaskState.REISSUE:
                    break
        except BaseException:
            # Ctrl-C or an error while waiting: stop waiting, keep the MID
            # reserved for the late reply, tell the server (CANCEL).
            self._abandon(task, SmbCancelledError("request interrupted"))
            raise
        return self._finish(task)

    def run_task_async(self, task: SmbTask) -> Future:
        """Send ``task`` and return a Future completed on smbiod."""
        self._check_task(task)
        future: Future = Future()
        task.future = future
        future.add_done_callback(lambda f, t=task: f.cancelled() and self.cancel_task(t))
        conn = self._conn
        if self.state is ClientState.ACTIVE and conn is not None and \
                self._credits.available > 1:
            try:
                self._send(task)
            except BaseException as exc:  # noqa: BLE001
                self._settle_future(task, exc)
        else:
            # Not connected or short of credits: wait on smbiod, not here.
            self._iod.call_soon(self._send_async, task)
        return future

    def echo(self, timeouts: Optional[TimeoutPolicy] = None) -> float:
        """One ECHO round trip; returns the round-trip time in seconds."""
        start = time.monotonic()
        self.run_task(self._echo_task(timeouts))
        return time.monotonic() - start

    def echo_async(self, timeouts: Optional[TimeoutPolicy] = None) -> Future:
        return self.run_task_async(self._echo_task(timeouts))

    def _echo_task(self, timeouts=None) -> SmbTask:
        conn = self._conn
        wire = conn.wire if conn is not None else None
        if wire is None:
            raise SmbClosedError("client is not connected")
        return SmbTask(wire.echo_command, wire.echo_body(), timeouts=timeouts, priority=True,
                       security=self.default_security if wire.is_smb1 else None)

    def cancel_task(self, task: SmbTask) -> bool:
        """Cancel ``task`` from any thread; its waiter gets SmbCancelledError."""
        return self._abandon(task, SmbCancelledError("request cancelled"))

    # -- handlers -------------------------------------------------------------

    def add_reconnect_handler(self, fn: Callable[["SmbClient"], None]) -> None:
        """``fn(client)`` runs on smbiod after every re-negotiate, before
        waiting requests are reissued (redo SESSION_SETUP, tree connects)."""
        self._reconnect_handlers.append(fn)

    def remove_reconnect_handler(self, fn: Callable) -> None:
        try:
            self._reconnect_handlers.remove(fn)
        except ValueError:
            pass

    def add_break_handler(self, fn: Callable[[BreakNotification], None]) -> None:
        """``fn(notification)`` runs on smbiod for every oplock/lease break."""
        self._break_handlers.append(fn)

    def remove_break_handler(self, fn: Callable) -> None:
        try:
            self._break_handlers.remove(fn)
        except ValueError:
            pass

    def register_session(self, session_id: int, session) -> None:
        """Make ``session.decrypt(frame)`` available to the demux for
        transform (encrypted) frames carrying ``session_id``."""
        self._sessions[session_id] = session

    def unregister_session(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)

    def stats(self) -> dict:
        """Per-command counters (mountstats style) plus a "_client" entry."""
        conn = self._conn
        extra = {"state": self.state.value, "generation": self._generation,
                 "dialect": conn.negotiated.dialect.name if conn else None,
                 "credits": self._credits.available, "in_flight": len(self._pending)}
        return self._stats.snapshot(extra, self._not_responding_since, time.monotonic())

    # -- lifetime -------------------------------------------------------------

    def release(self) -> None:
        """Drop one reference; the last one closes the client."""
        registry = self._registry
        if registry is not None:
            if registry.release(self):
                self.close()
            return
        self.refcount -= 1
        if self.refcount <= 0:
            self.close()

    def close(self) -> None:
        """Close now, whatever the refcount (any thread): every waiter gets
        SmbClosedError, the threads stop, the socket closes."""
        if self._registry is not None:
            self._registry.forget(self)
        with self._state_cond:
            if self.state is ClientState.CLOSED and self._conn is None:
                return
            self.state = ClientState.CLOSED
            conn, self._conn = self._conn, None
            self._state_cond.notify_all()
        self._credits.wake_all()
        self._fail_everything(SmbClosedError("client closed"))
        if conn is not None:
            self._close_connection(conn, join=True)
        self._connector.join(5.0)
        self._iod.shutdown(wait=True)

    def _after_fork_in_child(self) -> None:
        """The child must not use the parent's socket or threads."""
        self._forked = True
        self.state = ClientState.CLOSED
        conn, self._conn = self._conn, None
        self._state_cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._mid_lock = threading.Lock()
        self._credits = CreditGate()
        self._pending = {}
        if conn is not None:
            try:
                conn.sock.detach()       # never shutdown(): that would cut the parent
            except OSError:
                pass

    # -- sending --------------------------------------------------------------

    def _check_task(self, task: SmbTask) -> None:
        if not isinstance(task, SmbTask):
            raise TypeError(f"expected an SmbTask, not {type(task).__name__}")
        if task.state is not TaskState.NEW and task.state not in FINAL_STATES:
            raise ValueError("task is already running")
        conn = self._conn
        limit = conn.wire.max_request if conn is not None else MAX_FRAME
        if task.payload_size + 256 > limit:
            raise ValueError(f"request of {task.payload_size} bytes exceeds the "
                             f"{limit}-byte frame limit of this dialect")
        if self._forked:
            raise SmbClosedError("client belongs to the parent process (fork); "
                                 "call get_client() again in the child")
        task.state = TaskState.NEW
        task.reply = task.error = None
        task._parking = None
        task.sends = 0
        task.context_client = self
        task.t_queued = time.monotonic()
        if task.cancel_requested:
            raise SmbCancelledError("request cancelled before it was sent")

    def _wait_sendable(self, task: SmbTask) -> _Connection:
        """Block until the client can carry ``task``; returns the connection."""
        conn = self._conn
        if self.state is ClientState.ACTIVE and conn is not None and not conn.lost and \
                task.state not in FINAL_STATES:
            return conn          # the common case, without the state lock
        with self._state_cond:
            gave_up = self._gave_up
            while True:
                if task.state in FINAL_STATES:
                    raise task.error or SmbCancelledError("request cancelled")
                if self._gave_up != gave_up:
                    raise self._reconnect_pending_error
                state = self.state
                conn = self._conn
                if state is ClientState.RECONNECTING and not self._connector.running:
                    self._connector.kick()      # reconnecting gave up earlier: retry
                if state is ClientState.ACTIVE and conn is not None and not conn.lost:
                    return conn
                if state is ClientState.CLOSED:
                    raise SmbClosedError("client closed")
                if (threading.get_ident() in self._handshake_threads and conn is not None
                        and not conn.lost):
                    return conn
                policy = self._effective(task)
                if policy.hard:
                    self._state_cond.wait()        # hard: wait for the server forever
                    continue
                # Soft: a request that already hit its soft timeout waits for the
                # reconnect attempt (bounded by connect_timeout) and fails if it
                # fails; a new request waits at most timeout + soft_timeout.
                error = self._reconnect_pending_error
                if task.timed_out:
                    if error is not None:
                        raise error
                    self._state_cond.wait()
                    continue
                budget = policy.timeout + policy.soft_timeout
                remaining = task.t_queued + budget - time.monotonic()
                if remaining <= 0:
                    raise error or SmbTimeoutError(
                        f"server {self.host}:{self.port} not reachable within {budget:g} s")
                self._state_cond.wait(remaining)

    def _effective(self, task: SmbTask) -> TimeoutPolicy:
        return task.timeouts or self.timeouts

    @staticmethod
    def _charge(conn: _Connection, task: SmbTask) -> int:
        """Set the task's CreditCharge; return the credits it consumes.  The
        send payload is what follows the fixed body (body[0]): the WRITE
        data, the IOCTL input ([MS-SMB2] 3.2.4.1.5)."""
        body = task.body
        task.credit_charge = conn.wire.charge(
            task.command, task.payload_size - len(body[0]) if body else 0,
            task.expected_response)
        task.send_credits = credits_needed(task.credit_charge)
        return task.send_credits

    def _take_credits(self, conn: _Connection, task: SmbTask) -> None:
        self._charge(conn, task)

        def abort() -> bool:
            return self.state is ClientState.CLOSED or conn.lost or task.state in FINAL_STATES
        try:
            self._credits.take(task.send_credits, task.priority, abort)
        except CreditsAborted:
            if self.state is ClientState.CLOSED:
                raise SmbClosedError("client closed") from None
            raise _Retry() from None

    def _send(self, task: SmbTask) -> None:
        """Wait until sendable, take credits and put ``task`` on the wire."""
        while True:
            conn = self._wait_sendable(task)
            if task.state in (TaskState.NEW, TaskState.REISSUE):
                task.state = TaskState.QUEUED
            try:
                self._take_credits(conn, task)
            except _Retry:
                if task.state in FINAL_STATES:
                    raise task.error or SmbCancelledError("request cancelled") from None
                continue
            try:
                self._transmit(conn, task)
                return
            except _Retry:
                continue

    def _transmit(self, conn: _Connection, task: SmbTask) -> None:
        wire = conn.wire
        policy = self._effective(task)
        stats = self._stats.command(wire, task.command)
        with self._send_lock:
            if conn.lost or conn is not self._conn:
                self._credits.grant(task.send_credits, task.send_credits)
                raise _Retry()
            now = time.monotonic()
            with self._mid_lock:
                mid = self._register(conn, task, now)
                wake = False if task.is_probe else self._arm_timer(task, policy, now)
            credit_request = self._credit_request(wire, task.send_credits)
            header = wire.build_header(task, mid, credit_request)
            security = task.security
            if security is not None:
                parts = security.protect(task, header, [header, *task.body])
                size = sum(map(len, parts))
            else:
                parts = (header, *task.body)
                size = len(header) + task.payload_size
            self._put_on_wire(conn, parts, size)
            stats.ops += 1
            stats.bytes_sent += size + 4
            stats.queue_time += now - task.t_queued
            if task.sends > 1:
                stats.retransmissions += 1
        if wake and conn.demux is not None:
            conn.demux.wake()

    def _register(self, conn: _Connection, task: SmbTask, now: float) -> int:
        """Give ``task`` its MessageId and enter it in the MID table (under
        the send and MID locks)."""
        mid = self._allocate_mid(conn.wire, task.send_credits)
        task.message_id = mid
        task.generation = conn.generation
        task.async_id = None
        task.timed_out = False
        task.sends += 1
        task.t_sent = now
        task.state = TaskState.SENT
        if task.future is None and task._parking is None:
            task._parking = threading.Lock()
            task._parking.acquire()
        self._pending[mid] = task
        return mid

    def _put_on_wire(self, conn: _Connection, parts, size: int) -> None:
        """sendmsg one frame (under the send lock)."""
        try:
            _sendmsg_all(conn.sock, (frame_prefix(size), *parts), size + 4)
        except OSError as exc:
            # Make the demux see the broken socket; it starts the reconnect
            # and the requests in flight are reissued.
            log.debug("smblayer: send failed on %s:%s: %s", self.host, self.port, exc)
            _shutdown(conn.sock)
        except BaseException:
            # Interrupted (Ctrl-C) possibly mid-frame: the stream can't be
            # trusted; reconnect, and the other requests are reissued.
            _shutdown(conn.sock)
            raise

    # -- compound requests ----------------------------------------------------------

    def run_compound(self, tasks: Sequence[SmbTask], related: bool = True) -> List[Reply]:
        """Send ``tasks`` as one SMB2 compound request (one frame, one round
        trip; [MS-SMB2] 3.2.4.1.4) and return their replies in order.  With
        ``related`` the later requests work on the first one's handle (their
        bodies carry FileId 0xFF..FF).  If a reconnect interrupts it, the
        whole compound is sent again.  Errors raise as in run_task."""
        tasks = list(tasks)
        if not tasks:
            raise ValueError("an empty compound")
        conn = self._conn
        if conn is not None and conn.wire.is_smb1:
            raise ValueError("compound requests need SMB2 or later")
        for task in tasks:
            self._check_task(task)
        try:
            while True:
                self._send_compound(tasks, related)
                for task in tasks:
                    task._parking.acquire()
                if not any(t.state is TaskState.REISSUE for t in tasks):
                    break
                for task in tasks:          # resend the whole chain
                    task.state, task.reply, task._parking = TaskState.NEW, None, None
        except BaseException:
            for task in tasks:
                self._abandon(task, SmbCancelledError("request interrupted"))
            raise
        return [self._finish(task) for task in tasks]

    def _send_compound(self, tasks: List[SmbTask], related: bool) -> None:
        first = tasks[0]
        while True:
            conn = self._wait_sendable(first)
            total = 0
            for task in tasks:
                task.state = TaskState.QUEUED
                total += self._charge(conn, task)
            try:
                self._credits.take(total, False, lambda: self.state is ClientState.CLOSED or
                                   conn.lost)
            except CreditsAborted:
                if self.state is ClientState.CLOSED:
                    raise SmbClosedError("client closed") from None
                continue
            try:
                self._transmit_compound(conn, tasks, related, total)
                return
            except _Retry:
                continue

    def _transmit_compound(self, conn: _Connection, tasks: List[SmbTask], related: bool,
                           credits: int) -> None:
        wire = conn.wire
        with self._send_lock:
            if conn.lost or conn is not self._conn:
                self._credits.grant(credits, credits)
                raise _Retry()
            now = time.monotonic()
            wake = False
            with self._mid_lock:
                mids = [self._register(conn, task, now) for task in tasks]
                for task in tasks:
                    wake |= self._arm_timer(task, self._effective(task), now)
            elements = []
            last = len(tasks) - 1
            for i, (task, mid) in enumerate(zip(tasks, mids)):
                header = wire.build_header(task, mid, self._credit_request(wire,
                                                                           task.send_credits))
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
                parts = security.protect_compound(tasks, elements)
            else:
                parts = [p for element in elements for p in element]
            size = sum(map(len, parts))
            self._put_on_wire(conn, parts, size)
            for task in tasks:
                stats = self._stats.command(wire, task.command)
                stats.ops += 1
                stats.queue_time += now - task.t_queued
            self._stats.command(wire, tasks[0].command).bytes_sent += size + 4
        if wake and conn.demux is not None:
            conn.demux.wake()

    def _arm_timer(self, task: SmbTask, policy: TimeoutPolicy, now: float) -> bool:
        """Start ``task``'s timer (under _mid_lock); True if the demux must
        wake to shorten its wait."""
        task.timed_out = False
        task.deadline = deadline = now + policy.timeout
        queue = self._timers.get(policy.timeout)
        if queue is None:
            queue = self._timers[policy.timeout] = collections.deque()
        queue.append((deadline, task))
        if deadline < self._timer_wake_at:
            self._timer_wake_at = deadline
            return True
        return False

    def _allocate_mid(self, wire, count: int) -> int:
        if wire.is_smb1:
            mid = self._next_mid
            while mid in self._pending or mid == 0xFFFF:
                mid = (mid + 1) & 0xFFFF
            self._next_mid = (mid + 1) & 0xFFFF
            return mid
        mid = self._next_mid
        self._next_mid += count
        return mid

    def _credit_request(self, wire, used: int) -> int:
        if wire.is_smb1:
            return 0
        if self._credits.available + used < CREDIT_TARGET:
            return used + CREDIT_ASK
        return used

    # -- waiting and finishing --------------------------------------------------

    def _finish(self, task: SmbTask) -> Reply:
        if task.state is not TaskState.DONE:
            raise task.error or SmbCancelledError("request cancelled")
        reply = task.reply
        security = task.security
        if security is not None:
            security.verify(task, reply)
        status = reply.status
        if status and status not in task.ok_statuses and is_error(status):
            raise status_error(status, _command_name(self, task.command), task.path)
        return reply

    def _settle_future(self, task: SmbTask, error: Optional[BaseException]) -> None:
        future = task.future
        if future is None or future.done():
            return
        if error is None:
            try:
                result = self._finish(task)
            except BaseException as exc:  # noqa: BLE001
                future.set_exception(exc)
            else:
                future.set_result(result)
        else:
            future.set_exception(error)

    def _send_async(self, task: SmbTask) -> None:
        try:
            self._send(task)
        except BaseException as exc:  # noqa: BLE001
            self._settle_future(task, exc)

    def _wake(self, task: SmbTask) -> None:
        """Hand a task that changed state to whoever waits on it.  Never
        call under a layer lock for async tasks (futures complete on smbiod)."""
        if task.future is not None:
            if task.state is TaskState.REISSUE:
                return        # the connect worker resends it after reconnect
            self._iod.call_soon(self._settle_future, task, task.error)
        else:
            parking = task._parking
            if parking is not None and parking.locked():
                try:
                    parking.release()
                except RuntimeError:
                    pass

    def _abandon(self, task: SmbTask, error: SmbError) -> bool:
        """Stop waiting for ``task``: its MessageId stays reserved until the
        late reply arrives (then discarded), and the server gets a CANCEL."""
        with self._mid_lock:
            if task.state in FINAL_STATES:
                return False
            was_sent = task.state in (TaskState.SENT, TaskState.INTERIM)
            task.state = TaskState.CANCELLED
            task.error = error
            task.cancel_requested = True
            conn = self._conn
        if was_sent and conn is not None and conn.generation == task.generation:
            self._iod.call_soon(self._send_cancel, conn, task)
        self._credits.wake_all()
        with self._state_cond:
            self._state_cond.notify_all()
        self._wake(task)
        return True

    def send_oneway(self, task: SmbTask) -> bool:
        """Send a small SMB1 request that has no reply (an oplock break
        acknowledgement) once, like NT_CANCEL: it gets a MID and is signed
        by ``task.security`` under the send lock, but is not registered in
        the MID table, has no timer, takes no credit and is never reissued.
        Returns False (nothing sent) unless the client is ACTIVE."""
        conn = self._conn
        if self.state is not ClientState.ACTIVE or conn is None or conn.lost:
            return False
        wire = conn.wire
        if not wire.is_smb1:
            raise ValueError("send_oneway is for SMB1 requests without a response")
        with self._send_lock:
            if conn.lost or conn is not self._conn:
                return False
            with self._mid_lock:
                mid = self._allocate_mid(wire, 1)
            task.message_id = mid
            task.generation = conn.generation
            header = wire.build_header(task, mid, 0)
            parts = [header, *task.body]
            if task.security is not None:
                parts = task.security.protect(task, header, parts)
            message = b"".join(parts)
            try:
                conn.sock.sendall(frame_prefix(len(message)) + message)
            except OSError:
                _shutdown(conn.sock)       # the demux sees it and reconnects
                return False
        task.state = TaskState.DONE
        stats = self._stats.command(wire, task.command)
        stats.ops += 1
        stats.bytes_sent += len(message) + 4
        return True

    def _send_cancel(self, conn: _Connection, task: SmbTask) -> None:
        parts = conn.wire.cancel_message(task)
        if task.security is not None and hasattr(task.security, "protect_cancel"):
            parts = task.security.protect_cancel(task, parts)
        size = sum(len(p) for p in parts)
        with self._send_lock:
            if conn.lost or conn is not self._conn:
                return
            try:
                _sendmsg_all(conn.sock, (frame_prefix(size), *parts), size + 4)
            except OSError:
                pass
        self._stats.command(conn.wire, task.command).cancels += 1

    # -- the demux side ------------------------------------------------------------

    def _claim_placement(self, conn: _Connection, head, length: int) -> Optional[memoryview]:
        """FrameReader's placement hook (demux thread): the caller's buffer
        for a READ response's data, if its task offered one; for a large
        encrypted frame, the connection's reusable ciphertext buffer (the
        plaintext is then decrypted to where it belongs)."""
        if head[0] == 0xFD:
            if len(conn.scratch) < length:
                conn.scratch = memoryview(bytearray(length))
            return conn.scratch[:length - len(head)]
        found = conn.wire.placement(head, length)
        if found is None:
            return None
        return self._placement_target(conn, *found)

    def _placement_target(self, conn: _Connection, mid: int,
                          data_len: int) -> Optional[memoryview]:
        with self._mid_lock:
            task = self._pending.get(mid)
            if task is None or task.generation != conn.generation or \
                    task.state not in (TaskState.SENT, TaskState.INTERIM):
                return None
            buffer = task.recv_buffer
        if buffer is None or len(buffer) < data_len:
            return None
        return buffer[:data_len]

    def _dispatch(self, conn: _Connection, message) -> None:
        """Complete the task(s) a frame answers (demux thread)."""
        encrypted = False
        if type(message) is PlacedFrame:
            if message.head[0] != 0xFD:
                self._dispatch_one(conn, conn.wire, message.head, False, message.tail)
                return
            message = self._decrypt_placed(conn, message.head, message.tail)
            if message is None:
                return
            encrypted = True
        elif message[0] == 0xFD:             # b"\xfdSMB": a transform header
            message = self._decrypt(message)
            encrypted = True
        wire = conn.wire
        if not wire.is_smb1 and len(message) >= 24 and (
                message[20] or message[21] or message[22] or message[23]):
            try:
                parts = smb2.split_compound(message)
            except smb2.MalformedMessage as exc:
                raise SmbProtocolError(f"bad compound response: {exc}") from None
            view = memoryview(message)
            for offset, length in parts:
                self._dispatch_one(conn, wire, view[offset:offset + length], encrypted)
        else:
            self._dispatch_one(conn, wire, message, encrypted)

    def _dispatch_one(self, conn: _Connection, wire, message, encrypted: bool,
                      placed: Optional[memoryview] = None) -> None:
        try:
            mid, status, granted, interim, async_id, body = wire.route(message)
        except (smb2.MalformedMessage, ValueError) as exc:
            raise SmbProtocolError(f"malformed message from server: {exc}") from None
        if mid == wire.unsolicited_id:
            self._iod.call_soon(self._deliver_break,
                                Reply(wire.parse_header, message, body, status, encrypted))
            return
        now = time.monotonic()
        retired = 0
        with self._mid_lock:
            task = self._pending.get(mid)
            if task is None or task.generation != conn.generation:
                self._stats.unmatched += 1
                unmatched = True
            else:
                unmatched = False
                if interim:
                    # STATUS_PENDING: the server is alive and working on it.
                    task.async_id = async_id
                    if task.state is TaskState.SENT:
                        task.state = TaskState.INTERIM
                    if not task.is_probe:
                        self._arm_timer(task, self._effective(task), now)
                else:
                    del self._pending[mid]
                    retired = task.send_credits
        if granted or retired:
            self._credits.grant(granted, retired)
        if unmatched:
            log.warning("smblayer: %s:%s sent a reply for unknown MessageId %d; dropped",
                        self.host, self.port, mid)
            return
        if interim:
            return
        reply = Reply(wire.parse_header, message, body, status, encrypted)
        stats = self._stats.command(wire, task.command)
        stats.bytes_recv += len(message) + 4
        if placed is not None:
            reply.placed = placed
            stats.bytes_recv += len(placed)
        stats.rtt += now - task.t_sent
        stats.exec_time += now - task.t_queued
        if status and is_error(status):
            stats.errors += 1
        if task.state is TaskState.CANCELLED:
            # A late reply to an abandoned request: discard it, but let the
            # upper layer clean up (e.g. close the handle a CREATE opened).
            if task.on_late_reply is not None:
                self._iod.call_soon(task.on_late_reply, reply)
            return
        conn.replies += 1
        task.reply = reply
        task.t_done = now
        task.state = TaskState.DONE
        self._wake(task)

    def _decrypt_placed(self, conn: _Connection, head: bytes, tail: memoryview):
        """Decrypt a large transform frame whose ciphertext sits in the
        scratch buffer: a READ payload goes straight into the caller's
        buffer (then None is returned: it is dispatched here); anything else
        comes back as the plaintext message."""
        from .security.crypto import TRANSFORM_HEADER_SIZE, DecryptError
        session = self._session_for(head)
        size = len(head) - TRANSFORM_HEADER_SIZE + len(tail)
        cipher = getattr(session, "cipher", None)
        try:
            stream = cipher.decrypt_stream(head, size) if cipher is not None else None
            if stream is None:
                return session.decrypt(bytes(head) + bytes(tail))
            plain = bytearray(PLACEMENT_HEAD)
            first = len(head) - TRANSFORM_HEADER_SIZE
            stream.update_into(memoryview(head)[TRANSFORM_HEADER_SIZE:], memoryview(plain))
            stream.update_into(tail[:PLACEMENT_HEAD - first], memoryview(plain)[first:])
            rest = tail[PLACEMENT_HEAD - first:]
            found = conn.wire.placement(plain, size)
            target = self._placement_target(conn, *found) if found is not None else None
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
        self._dispatch_one(conn, conn.wire, bytes(plain), True, target)
        return None

    def _session_for(self, frame):
        from .security.crypto import transform_session_id
        try:
            session = self._sessions.get(transform_session_id(frame))
        except ValueError:
            session = None
        if session is None:
            raise SmbProtocolError("encrypted frame for an unknown session")
        return session

    def _decrypt(self, message):
        from .security.crypto import DecryptError
        session = self._session_for(message)
        try:
            return session.decrypt(message)
        except DecryptError as exc:
            raise SmbProtocolError(f"cannot decrypt a frame: {exc}") from None

    def _deliver_break(self, reply: Reply) -> None:
        note = BreakNotification(self, reply)
        for fn in list(self._break_handlers):
            try:
                fn(note)
            except Exception:  # noqa: BLE001
                log.exception("smblayer: break handler %r failed", fn)

    # -- timers and probing (demux drives, smbiod probes) ----------------------

    def _service_timers(self) -> Optional[float]:
        """Fire expired timers; return the seconds until the next one (demux)."""
        now = time.monotonic()
        wake_at = self._timer_wake_at
        if now < wake_at:
            # Nothing can have expired: new timers only lower _timer_wake_at.
            return None if wake_at == _NEVER else wake_at - now
        earliest = _NEVER
        expired = []
        with self._mid_lock:
            for queue in self._timers.values():
                while queue:
                    deadline, task = queue[0]
                    if task.deadline != deadline or task.timed_out or \
                            task.state not in (TaskState.SENT, TaskState.INTERIM):
                        queue.popleft()           # completed or re-armed
                    elif deadline <= now:
                        queue.popleft()
                        task.timed_out = True
                        expired.append(task)
                    else:
                        earliest = min(earliest, deadline)
                        break
            self._timer_wake_at = earliest
            start = bool(expired) and not self._probing
            if start:
                self._probing = True
        conn = self._conn
        for task in expired:
            if conn is not None:
                self._stats.command(conn.wire, task.command).timeouts += 1
        if start:
            self._iod.call_soon(self._probe_loop)
        return None if earliest == _NEVER else max(0.0, earliest - now)

    def _expired_tasks(self) -> List[SmbTask]:
        with self._mid_lock:
            return [t for t in self._pending.values()
                    if t.timed_out and t.state in (TaskState.SENT, TaskState.INTERIM)]

    def _probe_loop(self) -> None:
        """Probe the server with ECHO while some request is overdue (smbiod)."""
        unanswered_since: Optional[float] = None
        probe: Optional[SmbTask] = None
        try:
            while self.state is not ClientState.CLOSED:
                expired = self._expired_tasks()
                if not expired:
                    return
                interval = min(self._effective(t).echo_interval for t in expired)
                if probe is None or probe.done or probe.generation != self._generation:
                    probe = self._send_probe()
                answered = self._wait_probe(probe, interval)
                now = time.monotonic()
                if answered:
                    probe = None
                    unanswered_since = None
                    self._server_ok()
                    self._rearm(expired, now)
                    continue
                if unanswered_since is None:
                    unanswered_since = now - interval
                self._server_not_responding()
                soft = [t for t in expired if not self._effective(t).hard]
                if soft and any(now - unanswered_since >= self._effective(t).soft_timeout
                                for t in soft):
                    self._soft_timeout(soft)
                    unanswered_since = None
                    probe = None
        finally:
            with self._mid_lock:
                self._probing = False
            if self._expired_tasks() and self.state is not ClientState.CLOSED:
                with self._mid_lock:
                    if not self._probing:
                        self._probing = True
                        restart = True
                    else:
                        restart = False
                if restart:
                    self._iod.call_soon(self._probe_loop)

    def _send_probe(self) -> Optional[SmbTask]:
        """Send one ECHO unless the socket is not writable (a sender is stuck
        in sendmsg holding the send lock): then no echo is queued."""
        conn = self._conn
        if conn is None or conn.lost or self.state is not ClientState.ACTIVE:
            return None
        if self._send_lock.locked():
            return None
        task = self._echo_task()
        task.is_probe = True
        task.context_client = self
        task.t_queued = time.monotonic()
        if not self._credits.try_take(self._charge(conn, task)):
            return None      # no credit: counts as an unanswered probe
        try:
            self._transmit(conn, task)
        except (_Retry, SmbError):
            return None
        return task

    def _wait_probe(self, probe: Optional[SmbTask], interval: float) -> bool:
        if probe is None:
            # Nothing could be sent: wait one interval (close() cuts it short).
            with self._state_cond:
                self._state_cond.wait_for(lambda: self.state is ClientState.CLOSED, interval)
            return False
        if probe._parking.acquire(timeout=interval):
            return probe.state is TaskState.DONE
        return False

    def _rearm(self, tasks: List[SmbTask], now: float) -> None:
        with self._mid_lock:
            for task in tasks:
                if task.timed_out and task.state in (TaskState.SENT, TaskState.INTERIM):
                    self._arm_timer(task, self._effective(task), now)
        conn = self._conn
        if conn is not None and conn.demux is not None:
            conn.demux.wake()

    def _server_not_responding(self) -> None:
        if self._not_responding_since is None:
            self._not_responding_since = time.monotonic()
            log.warning("smblayer: server %s:%s not responding, still trying",
                        self.host, self.port)

    def _server_ok(self) -> None:
        since = self._not_responding_since
        if since is not None:
            self._not_responding_since = None
            self._stats.not_responding_time += time.monotonic() - since
            log.warning("smblayer: server %s:%s OK", self.host, self.port)

    def _soft_timeout(self, tasks: List[SmbTask]) -> None:
        """Soft mode gave up probing: reconnect; if that fails the tasks get
        SmbTimeoutError (the connect worker decides)."""
        log.warning("smblayer: server %s:%s soft timeout; reconnecting", self.host, self.port)
        conn = self._conn
        self._soft_expired = True
        if conn is not None:
            self._connection_lost(conn, SmbTimeoutError(
                f"server {self.host}:{self.port} did not answer within the soft timeout"))

    # -- connection management (connect worker) ------------------------------------

    def _connection_lost(self, conn: _Connection, error: Optional[BaseException]) -> None:
        """The demux (or a soft timeout) reports ``conn`` unusable: mark it
        and hand over to the connect worker, the only writer of the socket
        and of the client state."""
        with self._state_cond:
            if conn.lost:
                return
            conn.lost = True
            conn.lost_error = error
            self._last_conn_useful = conn.replies > 0
            self._state_cond.notify_all()
        self._credits.wake_all()        # senders waiting for credits see conn.lost
        self._connector.kick()

    def _take_down(self, conn: _Connection) -> None:
        """Connect worker: leave ACTIVE, close the lost socket, wake the
        requests that were in flight on it (to be reissued or failed)."""
        with self._state_cond:
            if conn.taken_down:
                return
            conn.taken_down = True
            if self.state is not ClientState.CLOSED:
                self.state = ClientState.RECONNECTING
            self._state_cond.notify_all()
        log.warning("smblayer: connection to %s:%s lost: %s", self.host, self.port,
                    conn.lost_error or "closed")
        self._close_connection(conn, join=True)
        self._requeue_in_flight(conn, conn.lost_error)
        self._credits.wake_all()

    def _requeue_in_flight(self, conn: _Connection, error: Optional[BaseException]) -> None:
        """Wake every task sent on ``conn``: to be reissued, or failed when
        it must not be repeated (protocol violation, not replayable)."""
        woken = []
        with self._mid_lock:
            for mid, task in list(self._pending.items()):
                if task.generation != conn.generation:
                    continue
                del self._pending[mid]
                if task.state in FINAL_STATES:
                    continue
                if isinstance(error, SmbProtocolError):
                    # The server broke the protocol: repeating would not help.
                    task.state, task.error = TaskState.FAILED, error
                elif task.sends >= MAX_SENDS:
                    task.state = TaskState.FAILED
                    task.error = (SmbTimeoutError if task.timed_out else SmbConnectionError)(
                        f"{_command_name(self, task.command)} to {self.host}:{self.port} was "
                        f"sent {task.sends} times and each time the connection was lost "
                        "before the reply; giving up")
                elif not task.replayable:
                    task.state = TaskState.FAILED
                    task.error = SmbConnectionError(
                        f"connection to {self.host}:{self.port} lost while "
                        f"{_command_name(self, task.command)} was in flight; the request "
                        "is not safe to repeat and was not reissued")
                elif task.is_probe:
                    task.state, task.error = TaskState.FAILED, SmbConnectionError("probe lost")
                else:
                    task.state = TaskState.REISSUE
                    if task.future is not None:
                        self._reissue.append(task)
                woken.append(task)
            self._timers = {}
        for task in woken:
            self._wake(task)

    def _close_connection(self, conn: _Connection, join: bool) -> None:
        demux = conn.demux
        if demux is not None:
            demux.stop()
        _shutdown(conn.sock)
        if join and demux is not None and demux.thread.ident is not None and \
                demux.thread is not threading.current_thread():
            demux.thread.join(5.0)
        conn.sock.close()

    def _connect_loop(self) -> None:
        """Connect (or reconnect) until ACTIVE, closed, or given up (worker)."""
        first = self.state is ClientState.CONNECTING
        policy = self.reconnect
        delays = iter(policy.delays())
        # A connection that died before answering anything does not reset the
        # backoff: a server that accepts and drops at once is not hammered.
        attempt = 0 if self._last_conn_useful else 1
        failures = 0
        while True:
            if self.state is ClientState.CLOSED:
                return
            conn_now = self._conn
            if conn_now is not None and conn_now.lost:
                self._take_down(conn_now)
            if not first and conn_now is not None and not conn_now.lost and \
                    self.state is ClientState.ACTIVE:
                return
            if failures and policy.max_attempts is not None and failures >= policy.max_attempts:
                self._give_up(SmbConnectionError(
                    f"cannot reconnect to {self.host}:{self.port} after "
                    f"{failures} attempt{'s' if failures > 1 else ''}"))
                return
            if attempt:
                delay = next(delays, policy.max_delay)
                with self._state_cond:
                    self._state_cond.wait_for(lambda: self.state is ClientState.CLOSED, delay)
                if self.state is ClientState.CLOSED:
                    return
            attempt += 1
            try:
                conn = self._open_connection()
            except SmbError as exc:
                if first:
                    self._connect_error = exc
                    with self._state_cond:
                        self.state = ClientState.CLOSED
                        self._state_cond.notify_all()
                    return
                failures += 1
                log.warning("smblayer: reconnect to %s:%s failed (attempt %d): %s",
                            self.host, self.port, failures, exc)
                self._reconnect_failed(exc)
                continue
            if self._activate(conn, first):
                return
            failures += 1

    def _open_connection(self) -> _Connection:
        policy = self.timeouts
        deadline = time.monotonic() + policy.connect_timeout
        sock = _connect.open_socket(self.host, self.port, policy.connect_timeout)
        try:
            negotiated = _connect.negotiate(sock, self.dialects, deadline,
                                            require_signing=self.require_signing,
                                            ciphers=self.ciphers,
                                            signing_algorithms=self.signing_algorithms,
                                            client_guid=self.client_guid)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self._generation += 1
        return _Connection(sock, self._generation, negotiated)

    def _activate(self, conn: _Connection, first: bool) -> bool:
        """Install ``conn``, run reconnect handlers, go ACTIVE.  False if
        the connection broke again during the handshake."""
        negotiated = conn.negotiated
        # The demux runs before the connection is published, so close() always
        # finds a started thread to stop.
        conn.demux = Demux(self, conn)
        conn.demux.start()
        with self._state_cond:
            if self.state is ClientState.CLOSED:
                self._close_connection(conn, join=True)
                return True
            old = self._conn
            with self._send_lock, self._mid_lock:
                self._conn = conn
                self.smb1_signing = None      # SMB1 signing starts over per connection
                self.default_security = None
                self._next_mid = negotiated.next_message_id
                self._timers = {}
                self._timer_wake_at = _NEVER
                self._credits.reset(negotiated.credits_granted)
            self._state_cond.notify_all()
        if old is not None and old is not conn:
            old.lost = True
        if not first:
            self._stats.reconnects += 1
            log.warning("smblayer: reconnected to %s:%s (%s)", self.host, self.port,
                        negotiated.dialect.name)
            if not self._run_reconnect_handlers(conn):
                return False
        with self._state_cond:
            if self.state is ClientState.CLOSED:
                return True
            if conn.lost:
                return False
            self.state = ClientState.ACTIVE
            self._reconnect_pending_error = None
            self._soft_expired = False
            self._state_cond.notify_all()
        with self._mid_lock:
            resend, self._reissue = self._reissue, []
        for task in resend:
            if task.state is TaskState.REISSUE:
                self._iod.call_soon(self._send_async, task)
        return True

    def _run_reconnect_handlers(self, conn: _Connection) -> bool:
        for fn in list(self._reconnect_handlers):
            future = self._iod.submit(self._in_handshake, fn)
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001
                log.warning("smblayer: reconnect handler %r failed: %s", fn, exc)
                if conn.lost:
                    return False
        return not conn.lost

    def _in_handshake(self, fn: Callable) -> None:
        """Run a reconnect handler on smbiod; its requests may go out while the
        client is still RECONNECTING."""
        me = threading.get_ident()
        self._handshake_threads.add(me)
        try:
            fn(self)
        finally:
            self._handshake_threads.discard(me)

    def _reconnect_failed(self, error: SmbError) -> None:
        """One reconnect attempt failed: soft requests stop waiting."""
        if self._soft_expired:
            error = SmbTimeoutError(
                f"server {self.host}:{self.port} timed out and reconnecting failed: {error}")
        with self._state_cond:
            self._reconnect_pending_error = error
            self._state_cond.notify_all()
        with self._mid_lock:
            stuck = [t for t in self._reissue if not self._effective(t).hard]
            self._reissue = [t for t in self._reissue if self._effective(t).hard]
        for task in stuck:
            task.state, task.error = TaskState.FAILED, error
            self._wake(task)

    def _give_up(self, error: SmbError) -> None:
        """ReconnectPolicy.max_attempts reached: everyone waiting now fails
        (hard mode too); the next new request starts a fresh reconnect."""
        if self._soft_expired:
            error = SmbTimeoutError(f"server {self.host}:{self.port} timed out and "
                                    f"reconnecting failed: {error}")
        with self._state_cond:
            self._reconnect_pending_error = error
            self._gave_up += 1
            self._state_cond.notify_all()
        self._fail_everything(error)

    def _fail_everything(self, error: BaseException) -> None:
        with self._mid_lock:
            tasks = [t for t in self._pending.values() if t.state not in FINAL_STATES]
            tasks += [t for t in self._reissue if t.state not in FINAL_STATES]
            self._pending.clear()
            self._reissue = []
            self._timers = {}
            for task in tasks:
                task.state, task.error = TaskState.FAILED, error
        for task in tasks:
            self._wake(task)
        with self._state_cond:
            self._state_cond.notify_all()


class _Retry(Exception):
    """Internal: the connection changed under a sender; start over."""


def _sendmsg_all(sock: socket.socket, parts, total: int) -> None:
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


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _command_name(client: SmbClient, command: int) -> str:
    conn = client._conn
    return command_name(conn.wire.is_smb1 if conn is not None else False, command)
