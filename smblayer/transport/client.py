"""SmbClient: one shared connection to one server, and every request's
well-defined behaviour on it.  This module keeps the client's state, its
public API and the request paths, and builds and wires the transport's other
modules (``_build_core``; docs/architecture.rst lists them and their
interfaces).  Each is given what it works with and the client callables it
needs; none reads the client's private attributes.

Theory of operation
-------------------
Client state moves only through ``_move``, under ``_state_cond``, and the
table below (the connect worker is given both).  The connect worker makes
every move but two: whoever finds a connection lost (demux, probe) moves
ACTIVE to RECONNECTING as it reports it, and close() (any thread) moves to
CLOSED::

    CONNECTING --negotiated----------------> ACTIVE
    ACTIVE --reset/EOF/bad frame/soft timeout--> RECONNECTING
    RECONNECTING --reconnected, recovery done--> ACTIVE
    any --close() / first connect failed / fork (in the child)--> CLOSED

A caller's request: wait until the client can carry it (ACTIVE; a soft
request waits at most until its deadline), take credits (FIFO), then the
sender puts it on the wire.  ``run_task`` parks on the task's lock until
the demux completes it; ``run_task_async`` returns a Future settled where
the reply is read, its callbacks on smbiod (completion.py), and while the
client is not ACTIVE the request waits in a list, not in a pool worker, so
user work can never starve recovery.

When a connection is lost the requests in flight are requeued at once:
sync callers wait for ACTIVE and resend, async ones wait in the list and are
resent by the connect worker after recovery (each task's ``on_reissue``
hook may rebuild it first).  A request that is not safe to repeat, or was
sent MAX_SENDS times, fails instead.

Lock order (take only downward): registry lock > _state_cond > send lock
(Sender.lock) > MID-table lock (InFlight.lock) > credit gate.  The connect
worker's and smbiod's own locks are leaves.  Waiters are woken and Futures
settled only after every one of these locks is released (the reader's
read_lock aside); user callbacks run on smbiod.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, InvalidStateError
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Optional, Sequence

from ..config import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy
from ..errors import (SmbCancelledError, SmbClosedError, SmbConnectionError, SmbError,
                      SmbProtocolError, SmbTimeoutError, status_error)
from ..loopcheck import check_not_in_loop
from ..proto import smb1, smb2
from ..proto.framing import MAX_FRAME
from ..proto.negotiate import NegotiateResult
from ..proto.status import NtStatus, is_error
from ..records import Record
from .completion import BLOCKING_STATUSES, SmbFuture
from .compound import CompoundMixin
from .connect import CLOSE_WAIT, MAX_SENDS, Connection, ConnectWorker
from .credits import CreditGate, CreditsAborted
from .demux import Demux, withdraw_placement
from .multichannel import MultichannelMixin
from .hooks import STAGE_HANDLE, STAGE_OTHER, STAGE_SESSION, STAGE_TREE, HandlersMixin, Hooks
from .inflight import InFlight
from .iod import SmbIod
from .probe import Liveness
from .registry import EXIT_WAIT, REGISTRY
from .send import NOT_NOW, Retry, Sender
from .stats import ClientStats, command_name
from .states import CLIENT_TRANSITIONS, ClientState
from .task import CHANGING_COMMANDS, IllegalTransition, Reply, SmbTask, TaskState, move

log = logging.getLogger("smblayer")

# Enum members as module constants (see task.py: the hot path's enum cost)
_ACTIVE, _CLOSED = ClientState.ACTIVE, ClientState.CLOSED
_DONE, _NEW, _REISSUE = TaskState.DONE, TaskState.NEW, TaskState.REISSUE
_SMB1_COMMANDS = frozenset(int(c) for c in smb1.Command)
_SMB2_LAST_COMMAND = int(max(smb2.Command))
_SESSION_EXPIRED = int(NtStatus.NETWORK_SESSION_EXPIRED)

TEARDOWN_WAIT = 2.0          # the longest a CLOSE / TREE_DISCONNECT / LOGOFF waits

__all__ = ["SmbClient", "BreakNotification", "get_client", "ClientState", "CLIENT_TRANSITIONS",
           "STAGE_SESSION", "STAGE_TREE", "STAGE_HANDLE", "STAGE_OTHER", "MAX_SENDS",
           "CLOSE_WAIT", "TEARDOWN_WAIT", "EXIT_WAIT"]


class BreakNotification(Record):
    """An unsolicited server message (oplock or lease break) as received."""

    __slots__ = ("client", "reply")

    def __init__(self, client: "SmbClient", reply: Reply) -> None:
        self.client = client
        self.reply = reply

    @property
    def command(self) -> int:
        return self.reply.header.command


class SmbClient(CompoundMixin, HandlersMixin, MultichannelMixin):
    """A shared connection to one server; see the module docstring.

    Build it with :func:`smblayer.get_client` (shared, refcounted) or
    directly (private, refcount 1).
    """

    #: ``state``: CONNECTING, ACTIVE, RECONNECTING or CLOSED (a ClientState; a slot: on
    __slots__ = ("state",)  # 3.11 a class default would keep every read of it unspecialised)
    #: references handed out by get_client() and not yet released
    refcount: int = 0
    #: the current connection generation (socket, negotiate result, demux), or None
    connection: Optional[Connection] = None

    def __init__(self, host: str, port: int = 445, *,
                 dialects: DialectRange = DialectRange(),
                 timeouts: TimeoutPolicy = TimeoutPolicy(),
                 reconnect: ReconnectPolicy = ReconnectPolicy(),
                 require_signing: bool = False, ciphers: Optional[tuple] = None,
                 signing_algorithms: Optional[tuple] = None, iod_workers: int = 16,
                 posix: bool = False, multichannel: bool = False, max_channels: int = 4,
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
        self.posix = bool(posix)        # offer the SMB3 POSIX extensions (3.1.1)
        if not isinstance(max_channels, int) or not 1 <= max_channels <= 32:
            raise ValueError(f"max_channels must be 1..32, not {max_channels!r}")
        self.multichannel = bool(multichannel)   # offer SMB2_GLOBAL_CAP_MULTI_CHANNEL (3.x)
        self.max_channels = max_channels         # channel 0 included
        self.client_guid = os.urandom(16)      # stable across reconnects
        self.refcount = 1
        self._registry = _registry
        self._key = _key
        self._forked = False
        self.changes = REGISTRY.changes     # moves with every possible change

        self.state = ClientState.CONNECTING     # (instance attributes, no Enum class
        self.connection = None                  # default: CPython 3.11 specialises
        self._channels = None                   # their reads then)
        self._last_dialect: Optional[Dialect] = None    # what a closed client spoke
        self._stats = ClientStats()
        self._teardown_stalled: Optional[tuple] = None   # (generation, last_rx) of a stall
        self.hooks = Hooks()
        self._sessions: Dict[int, object] = {}      # SessionId -> session (decrypt, echo)
        self.default_security = None                # SMB1: the session that signs echoes
        self.smb1_signing = None                    # SMB1: per-connection signing state
        self._extensions: Dict[str, object] = {}     # under _extensions_lock (a leaf)
        self._extensions_lock = threading.Lock()

        self._iod = SmbIod(name=f"smbiod-{host}:{port}", max_workers=iod_workers)
        self._build_core()
        REGISTRY.track(self)
        self._connector.connect_first()
        if self.state is _CLOSED:
            error = self._connector.connect_error or SmbClosedError("client closed")
            self._iod.shutdown(wait=False)
            if error.host is None:
                error.host, error.port = self.host, self.port
            raise error

    def _build_core(self) -> None:
        """The parts of the transport and how they are wired: each gets what
        it works with (and the few client callables it needs) when built."""
        self._state_cond = threading.Condition()
        self._credits = credits = CreditGate()
        self._inflight = inflight = InFlight()
        self._liveness = liveness = Liveness(self, inflight, credits, self._stats,
                                             echo_task=self._echo_task, wake=self._wake)
        self._sender = sender = Sender(self, inflight, credits, liveness, self._stats)
        self._connector = connector = ConnectWorker(
            self, state_cond=self._state_cond, move=self._move,
            inflight=inflight, credits=credits, sender=sender, liveness=liveness,
            stats=self._stats, hooks=self.hooks, new_demux=self._new_demux,
            wake=self._wake, resend=self._send_async)
        liveness.attach(sender, connector.connection_lost)

    def _new_demux(self, conn: Connection) -> Demux:
        return Demux(self, conn, self._inflight, self._credits, self._liveness, self._stats,
                     sessions=self._sessions, wake=self._wake,
                     deliver_break=self._deliver_break, note_change=self.changes.note,
                     connection_lost=self._connector.connection_lost)

    # -- public properties ---------------------------------------------------

    @property
    def negotiated(self) -> Optional[NegotiateResult]:
        conn = self.connection
        return conn.negotiated if conn is not None else None

    @property
    def dialect(self) -> Optional[Dialect]:
        negotiated = self.negotiated
        # closed: the dialect it spoke (the fs layer picks SMB1 or SMB2 code
        # by it; the call then fails with SmbClosedError, not AttributeError)
        return negotiated.dialect if negotiated is not None else self._last_dialect

    @property
    def generation(self) -> int:
        """Bumped by every new connection (reconnects included)."""
        return self._connector.generation

    @property
    def iod(self) -> SmbIod:
        """The smbiod pool: upper layers may run their callbacks here."""
        return self._iod

    @property
    def local_address(self) -> Optional[tuple]:
        """The (host, port) of our end of the current connection, or None."""
        conn = self.connection
        if conn is None:
            return None
        try:
            return conn.sock.getsockname()[:2]
        except OSError:
            return None

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.host}:{self.port} {self.state.value} "
                f"dialect={self.dialect.name if self.dialect else None} refs={self.refcount}>")

    def __enter__(self) -> "SmbClient":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def wait_for_state(self, state: ClientState, timeout: Optional[float] = None) -> bool:
        """Block until the client is in ``state`` (True) or ``timeout`` seconds
        passed (False).  Any thread."""
        with self._state_cond:
            return self._state_cond.wait_for(lambda: self.state is state, timeout)

    def command_name(self, command: int) -> str:
        conn = self.connection
        return command_name(conn.wire.is_smb1 if conn is not None else False, command)

    # -- requests -------------------------------------------------------------

    def run_task(self, task: SmbTask, *, wait: Optional[float] = None) -> Reply:
        """Send ``task`` and wait for its reply (reissuing it across a
        reconnect).  Raises SmbStatusError for an error status, and the
        SmbError subclass that describes any other failure.  With ``wait``
        the caller waits at most that many seconds in all; then the request
        is abandoned (CANCEL sent, its MessageId kept for the late reply)
        and SmbTimeoutError raised: for close paths that must not hang.
        On a thread running an asyncio event loop it raises
        BlockingInLoopError (use smblayer.aio there)."""
        check_not_in_loop()
        self._check_task(task)
        conn = self.connection          # (a teardown request: a bounded wait)
        if wait is None and conn is not None and task.command in conn.wire.teardown_commands:
            wait = self._teardown_budget()
        if wait is not None and wait <= 0:
            raise self._annotate(SmbTimeoutError(
                f"{self.command_name(task.command)} not sent: the server did not answer "
                "the previous one"), task)
        limit = None if wait is None else time.monotonic() + wait
        task.parking = threading.Lock()
        task.parking.acquire()
        try:
            while True:
                demux = self._send_all((task,), False, limit, fast=limit is None)
                if demux is not None:          # the caller fast path: read our reply
                    try:
                        demux.read_for(task)
                    finally:
                        demux.release_reader_role()
                if limit is None:
                    task.parking.acquire()
                elif not self._park(task, limit):
                    raise SmbTimeoutError(f"{self.command_name(task.command)}: no reply "
                                          f"within {wait:g} s; abandoned")
                if task.state is not _REISSUE:
                    reply = task.reply
                    if reply is None or reply.status != _SESSION_EXPIRED or \
                            not self._renewed((task,)):
                        break
        except BaseException as exc:
            # Ctrl-C, a bounded wait ran out, or an error while waiting: stop
            # waiting, keep the MID reserved for the late reply, tell the server.
            error = exc if isinstance(exc, SmbTimeoutError) else \
                SmbCancelledError("request interrupted")
            conn = self.connection
            if wait is not None and isinstance(exc, SmbTimeoutError) and conn is not None \
                    and task.command in conn.wire.teardown_commands:
                self._teardown_stalled = (self.generation, self._liveness.last_rx)
            self._abandon(task, error)
            raise self._annotate(exc, task) if isinstance(exc, SmbError) else exc
        return self._finish(task)

    def _teardown_budget(self) -> float:
        """How long a teardown request may wait: TEARDOWN_WAIT, or nothing
        once one went unanswered on this connection and nothing came since
        (closing ten files on a dead server takes 2 s, not 20)."""
        stalled = self._teardown_stalled
        if stalled is not None and stalled == (self.generation, self._liveness.last_rx):
            return 0.0
        return TEARDOWN_WAIT

    def run_task_async(self, task: SmbTask) -> Future:
        """Send ``task`` and return a Future; its callbacks run on smbiod.
        Cancelling the Future cancels the request."""
        self._check_task(task)
        future = SmbFuture(self._iod, self, task)
        task.future = future
        conn = self.connection
        if self.state is _ACTIVE and conn is not None and not conn.lost and \
                self._credits.available > 1:
            self._send_async(task)
        else:
            # Not connected or short of credits: never block the caller.
            self._later(self._send_async, task)
        return future

    def _later(self, fn, *args) -> None:
        """Run ``fn(*args)`` on smbiod; a closed client's is shut down:
        SmbClosedError (not smbiod's RuntimeError)."""
        try:
            self._iod.call_soon(fn, *args)
        except RuntimeError:
            raise SmbClosedError("client closed") from None

    def echo(self, timeouts: Optional[TimeoutPolicy] = None) -> float:
        """One ECHO round trip; returns the round-trip time in seconds."""
        start = time.monotonic()
        self.run_task(self._echo_task(timeouts))
        return time.monotonic() - start

    def echo_async(self, timeouts: Optional[TimeoutPolicy] = None) -> Future:
        return self.run_task_async(self._echo_task(timeouts))

    def _echo_task(self, timeouts=None) -> SmbTask:
        """An ECHO carrying a session's id (and signed by it) when one exists:
        some servers refuse an ECHO with SessionId 0 after SESSION_SETUP."""
        conn = self.connection
        if conn is None:
            raise SmbClosedError("client is not connected")
        wire = conn.wire
        task = SmbTask(wire.echo_command, wire.echo_parts)   # (keywords: a dict, ~2 k instr.)
        task.timeouts, task.priority = timeouts, True
        if wire.is_smb1:
            task.security = self.default_security
        else:
            task.security = session = next(iter(self._sessions.values()), None)
            task.session_id = getattr(session, "session_id", 0)
        return task

    def hold_sends(self) -> bool:
        """Before sending several async requests in a row from one thread
        (an event loop's burst): they are queued and written together, in one
        system call, by ``release_sends()`` (call it only if this returned
        True; never wait for a reply in between; a send that must wait for
        credits writes the batch first).  False: a writer is busy and writes
        them with its batch anyway."""
        return self._sender.hold()

    def release_sends(self) -> None:
        """End ``hold_sends``: what was queued meanwhile goes out now."""
        self._sender.release()

    def withdraw_placement(self, task: SmbTask) -> None:
        """Take back the buffer lent as ``task.recv_buffer`` (before the
        call that lent it returns, answered or not): nothing writes into it
        afterwards and the layer holds no export of it."""
        withdraw_placement(self._inflight, task)

    def cancel_task(self, task: SmbTask) -> bool:
        """Cancel ``task`` from any thread; its waiter gets SmbCancelledError.
        False if it had already finished."""
        return self._abandon(task, SmbCancelledError("request cancelled"))

    def stats(self) -> dict:
        """Per-command counters (mountstats style) plus a "_client" entry."""
        conn = self.connection
        extra = {"state": self.state.value, "generation": self.generation,
                 "dialect": conn.negotiated.dialect.name if conn else None,
                 "credits": self._credits.available,
                 "in_flight": len(self._inflight.pending),
                 "channels": self._channels.counters() if self._channels is not None else [],
                 "channel0": self._channels.main.counters() if self._channels is not None
                 else {}}
        return self._stats.snapshot(extra, self._liveness.not_responding_since,
                                    time.monotonic())

    # -- lifetime -------------------------------------------------------------

    def release(self) -> None:
        """Drop one reference; the last one closes the client."""
        registry = self._registry
        if registry is not None:
            if registry.release(self, self._key):
                self.close()
            return
        self.refcount -= 1
        if self.refcount <= 0:
            self.close()

    def close(self) -> None:
        """Close now, whatever the refcount (any thread): every waiter gets
        SmbClosedError, the threads stop, the socket closes.  Bounded: it
        never waits long for a thread stuck on a dead server."""
        if self._registry is not None:
            self._registry.forget(self, self._key)
        connector = self._connector
        with self._state_cond:
            if self.state is _CLOSED and self.connection is None:
                return
            if self.state is not _CLOSED:
                self._move(_CLOSED)
            conn, self.connection = self.connection, None
            if conn is not None:
                self._last_dialect = conn.negotiated.dialect
        self._credits.wake_all()
        self.close_channels()
        connector.fail_everything(SmbClosedError("client closed"))
        if conn is not None:
            connector.close_connection(conn, join=True)
        self._connector.join(CLOSE_WAIT)
        self._iod.shutdown(wait=True, timeout=CLOSE_WAIT)

    def detach_after_fork(self) -> None:
        """In a forked child (the registry calls this): the client must not
        use the parent's socket or threads; it is CLOSED, with fresh locks."""
        self._forked = True
        # Fresh parts first (a fresh state condition among them): a parent
        # thread that no longer exists here may have held the old locks.
        self._build_core()
        self._connector.move_closed()
        self._channels = None          # the parent's channels: never touched here
        conn, self.connection = self.connection, None
        if conn is not None:
            try:
                conn.sock.detach()       # never shutdown(): that would cut the parent
            except OSError:
                pass

    # -- state (under _state_cond) ----------------------------------------------

    def _move(self, new: ClientState) -> None:
        """The one place the client state changes (caller holds _state_cond;
        the connect worker and close() call it)."""
        old = self.state
        if new not in CLIENT_TRANSITIONS[old]:
            raise IllegalTransition("client", old, new)
        self.state = new
        self._state_cond.notify_all()

    # -- sending --------------------------------------------------------------

    def _check_task(self, task: SmbTask) -> None:
        if not isinstance(task, SmbTask):
            raise TypeError(f"expected an SmbTask, not {type(task).__name__}")
        state = task.state
        if state is not _NEW:
            if not state.final:
                raise ValueError("task is already running")
            move(task, _NEW)
            # run again: nothing of the last run stays (a new task has none)
            task.reply = task.error = task.parking = None
            if not task.pinned:
                task.channel = None
            task.sends = 0
            task.t_first_sent = 0.0
        conn = self.connection
        if conn is not None:
            wire = conn.wire
            limit = wire.max_request
            # A command the dialect does not have makes the server hang up
            # (and the request would be resent after every reconnect).
            if wire.is_smb1:
                if task.command not in _SMB1_COMMANDS:
                    raise ValueError(f"command 0x{task.command:02x} is not an SMB1 command "
                                     "this client speaks (the connection is SMB1)")
            elif task.command > _SMB2_LAST_COMMAND:
                raise ValueError(f"command 0x{task.command:02x} does not exist in "
                                 f"{conn.negotiated.dialect.name}")
        else:
            limit = MAX_FRAME
        if task.payload_size + 256 > limit:
            raise ValueError(f"request of {task.payload_size} bytes exceeds the "
                             f"{limit}-byte frame limit of this dialect")
        if self._forked:
            raise SmbClosedError("client belongs to the parent process (fork); "
                                 "call get_client() again in the child")
        if task.command in CHANGING_COMMANDS:
            self.changes.note()
        task.context_client = self
        task.t_queued = time.monotonic()
        if task.cancel_requested:
            raise SmbCancelledError("request cancelled before it was sent")

    def _wait_sendable(self, task: SmbTask, limit: Optional[float] = None,
                       park: bool = False) -> Optional[Connection]:
        """Block until the client can carry ``task``; return the connection.
        With ``park`` (async tasks) never block: enter the waiting list and
        return None instead."""
        conn = self.connection
        if self.state is _ACTIVE and conn is not None and not conn.lost and \
                not task.state.final:
            return conn          # the common case, without the state lock
        connector = self._connector
        in_recovery = threading.get_ident() == connector.ident
        with self._state_cond:
            gave_up = connector.gave_up
            while True:
                if task.state.final:
                    raise task.error or SmbCancelledError("request cancelled")
                if connector.gave_up != gave_up:
                    raise connector.pending_error
                state = self.state
                conn = self.connection
                if state is _ACTIVE and conn is not None and \
                        (not conn.lost or connector.carries(task)):
                    return conn     # (channel 0 lost: another channel carries it)
                if state is _CLOSED:
                    raise SmbClosedError("client closed")
                if in_recovery:
                    # Recovery's own requests (SESSION_SETUP, TREE_CONNECT...).
                    if conn is not None and not conn.lost:
                        return conn
                    raise SmbConnectionError(f"connection to {self.host}:{self.port} lost "
                                             "during recovery")
                if state is ClientState.RECONNECTING and not connector.running:
                    connector.kick()            # reconnecting gave up earlier: retry
                policy = task.timeouts or self.timeouts
                deadline = limit
                if not policy.hard:
                    error = connector.pending_error
                    if task.timed_out and error is not None:
                        raise error
                    bound = self._liveness.bound(task)
                    deadline = bound if deadline is None else min(deadline, bound)
                if park:
                    connector.park(task)
                    return None
                if deadline is None:
                    self._state_cond.wait()      # hard: wait for the server forever
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = connector.pending_error
                    raise SmbTimeoutError(
                        f"server {self.host}:{self.port} not reachable in time"
                        + (f" ({error})" if error is not None else ""))
                self._state_cond.wait(remaining)

    def _credits_starved(self, left: int) -> None:
        """The credit gate's first waiter needs more than ``left`` and no
        reply is coming to grant it: ask for credits with an ECHO (its
        header asks for more when few are left), or with none left drop the
        connection (the reconnect starts the credits over)."""
        log.warning("smblayer: %s:%s left the client %d credit(s) and nothing in flight; %s",
                    self.host, self.port, left, "asking for more" if left else "reconnecting")
        conn = self.connection
        if left:
            try:
                self._later(self._liveness.keepalive)
            except SmbClosedError:
                pass                    # the waiter's abort() sees it
        elif conn is not None:
            self._connector.connection_lost(conn, SmbProtocolError(
                f"{self.host}:{self.port} left the client no credits"))

    def _take_credits(self, conn: Connection, tasks: Sequence[SmbTask], need: int) -> None:
        if self._credits.take_now(need, tasks[0].priority):
            return                    # at hand: no closure, no waiting

        def abort() -> bool:
            return self.state is _CLOSED or conn.lost or \
                any(t.state.final for t in tasks)
        try:
            # a held batch (hold_sends) is written before waiting: its
            # replies are what grant the credits
            self._credits.take(need, tasks[0].priority, abort, self._sender.release,
                               self._credits_starved)
        except CreditsAborted:
            if self.state is _CLOSED:
                raise SmbClosedError("client closed") from None
            for task in tasks:
                if task.state.final:
                    raise task.error or SmbCancelledError("request cancelled") from None
            raise Retry() from None

    def _send_all(self, tasks: Sequence[SmbTask], related: bool,
                  limit: Optional[float] = None, park: bool = False, fast: bool = False):
        """Send ``tasks`` (one, or a compound).  False if parked (``park``);
        with ``fast`` the demux whose reader role the caller now holds (the
        sender took it, see Sender.transmit), else None."""
        first = tasks[0]
        conn = self.connection
        # The common case skips the wait: routed, then the one-step send (a
        # request routed to channel 0 of a multichannel client too).
        quick = not first.sends and self.state is _ACTIVE and conn is not None and \
            not conn.lost
        while True:
            if not quick:
                conn = self._wait_sendable(first, limit, park)
                if conn is None:
                    return False
                for task in tasks:
                    if task.sends and task.generation != conn.generation:
                        self._before_reissue(task)
            channels = self._channels
            try:
                if channels is not None:                   # multichannel: which one
                    channel = channels.route(first) if len(tasks) == 1 else \
                        channels.route_compound(tasks)
                    if channel is not None:
                        for task in tasks:
                            if task.sends and task.generation != channel.generation:
                                self._before_reissue(task)
                        return channel.send(tasks, related, self._is_closed)
                    if conn.lost:
                        raise Retry()   # channel 0 down and no channel left: reconnect
                if quick:
                    sent = self._sender.send_now(conn, tasks, related, fast)
                    if sent is not NOT_NOW:
                        return sent
                need = self._sender.queue(conn, tasks)
                self._take_credits(conn, tasks, need)
                return self._sender.transmit(conn, tasks, related, need, fast)
            except Retry:
                quick = False           # wait until the client can carry them

    def _is_closed(self) -> bool:
        return self.state is _CLOSED

    def _before_reissue(self, task: SmbTask) -> None:
        """Give the task's ``on_reissue`` hook its say before a resend."""
        hook = task.on_reissue
        if hook is None:
            return
        if not hook(task):
            raise SmbConnectionError(
                f"{self.command_name(task.command)} to {self.host}:{self.port} was in "
                "flight when the connection was lost and cannot be reissued")
        task.body = tuple(task.body)
        task.payload_size = sum(map(len, task.body))

    def _send_async(self, task: SmbTask) -> None:
        """Send an async task (an async compound's first task sends the
        compound); it waits in the list (not here) while the client is not
        ACTIVE."""
        group = task.group
        tasks = (task,) if group is None else group.tasks
        try:
            self._send_all(tasks, group is not None and group.related, park=True)
        except Exception as exc:  # noqa: BLE001
            self._connector.fail_task(task, exc)
        except BaseException:
            # Ctrl-C while the caller's own thread was sending: the request
            # is cancelled and the interrupt reaches the caller.
            for t in tasks:
                self._abandon(t, SmbCancelledError("request interrupted"))
            raise

    def send_oneway(self, task: SmbTask) -> bool:
        """Send a small SMB1 request that has no reply (an oplock break
        acknowledgement) once, like NT_CANCEL: it gets a MID and is signed
        by ``task.security`` under the send lock, but is not registered in
        the MID table, has no timer, takes no credit and is never reissued.
        Returns False (nothing sent) unless the client is ACTIVE."""
        conn = self.connection
        if self.state is not _ACTIVE or conn is None or conn.lost:
            return False
        if not conn.wire.is_smb1:
            raise ValueError("send_oneway is for SMB1 requests without a response")
        return self._sender.oneway(conn, task)

    # -- waiting and finishing --------------------------------------------------

    def _park(self, task: SmbTask, limit: Optional[float]) -> bool:
        """Wait for the task's wake-up; False when ``limit`` passed first."""
        if limit is None:
            task.parking.acquire()
            return True
        return task.parking.acquire(timeout=max(0.0, limit - time.monotonic()))

    def _annotate(self, exc: SmbError, task: SmbTask) -> SmbError:
        """Give an error the context of the request it ended."""
        if exc.host is None:
            exc.host, exc.port = self.host, self.port
        if not exc.command:
            exc.command = self.command_name(task.command)
        if exc.path is None and task.path is not None:
            exc.path = task.path
        if exc.sends is None:
            exc.sends = task.sends
        return exc

    def _finish(self, task: SmbTask) -> Reply:
        if task.state is not _DONE:
            raise self._annotate(task.error or SmbCancelledError("request cancelled"), task)
        reply = task.reply
        security = task.security
        if security is not None:
            try:
                security.verify(task, reply)
            except SmbProtocolError as exc:
                self._reply_rejected(task, exc)
                raise
        status = reply.status
        if status and status not in task.ok_statuses and is_error(status):
            raise self._annotate(status_error(status, self.command_name(task.command),
                                              task.path), task)
        return reply

    def _reply_rejected(self, task: SmbTask, error: SmbProtocolError) -> None:
        """A reply failed its session's check (a bad signature, or unsigned or
        unencrypted where the session requires it): drop the connection it
        came on, as the demux does for a frame that fails decryption
        ([MS-SMB2] 3.2.5.1.3 lets the client disconnect).  The stream is
        suspect, and a CREATE it answered may have opened a handle whose
        FileId cannot be believed: the server closes that open with the
        connection (a durable one when its timeout runs out) instead of
        keeping it as long as the client lives.  The caller still gets the
        error (the request is not resent: it may have been carried out)."""
        channel = task.channel
        conn = channel.connection if channel is not None else self.connection
        if conn is None or conn.lost or conn.generation != task.generation:
            return
        log.warning("smblayer: %s:%s: %s; dropping the connection", self.host, self.port, error)
        lost = channel.connection_lost if channel is not None else self._connector.connection_lost
        self._iod.call_soon(lost, conn, error)

    def _resend_needed(self, tasks: Sequence[SmbTask]) -> bool:
        """After the wait: must ``tasks`` (one, or a compound) go out again?
        Yes when one lost its connection (REISSUE) or its session expired
        and was renewed (see ``_renewed``)."""
        expired = False
        for task in tasks:
            if task.state is _REISSUE:
                return True
            reply = task.reply
            if reply is not None and reply.status == _SESSION_EXPIRED:
                expired = True
        return expired and self._renewed(tasks)

    def _renewed(self, tasks: Sequence[SmbTask]) -> bool:
        """A reply says STATUS_NETWORK_SESSION_EXPIRED: the task's session
        re-authenticates in place (``security.renew(task)``, blocking; raises
        SmbAuthError if it cannot).  True if it did and the request (the
        whole compound) must be sent again."""
        for task in tasks:
            reply = task.reply
            if task.state is _DONE and reply is not None and \
                    reply.status == NtStatus.NETWORK_SESSION_EXPIRED:
                renew = getattr(task.security, "renew", None)
                if renew is None or not renew(task):
                    return False
                with self._inflight.lock:
                    for t in tasks:
                        if t.state is _DONE:
                            move(t, _NEW)
                        t.reply = None
                return True
        return False

    def _settle_future(self, task: SmbTask) -> None:
        """Settle an async task's Future (the one place that does): where it
        completed, or on smbiod when that may block (see completion.py)."""
        future = task.future
        if future is None:
            return
        reply = task.reply
        try:
            if reply is not None and reply.status == _SESSION_EXPIRED and \
                    self._renewed((task,)):
                self._send_async(task)
                return
            result = self._finish(task)
        except BaseException as exc:  # noqa: BLE001 - no traceback kept (task.error too):
            settle, result = future.set_exception, exc.with_traceback(None)  # its frames
        else:                               # would keep a canceller's buffers exported
            settle = future.set_result
        try:
            settle(result)
        except InvalidStateError:   # the caller cancelled it meanwhile
            pass
        future.forget_cancel()
        task.future = None          # no cycle keeps the task alive

    def _wake(self, task: SmbTask) -> None:
        """Hand a task that changed state to whoever waits on it (never under
        a layer lock): a sync waiter's parking lock is released; a Future is
        settled here (its user callbacks go to smbiod) unless that may block."""
        if task.future is not None:
            if task.state is _REISSUE:
                return        # it waits in the list; the connect worker resends it
            group = task.group
            if group is None:
                reply = task.reply
                if reply is None or reply.status not in BLOCKING_STATUSES:   # not needs_iod()
                    return self._settle_future(task)   # here: its callbacks go to smbiod
                settle, args = self._settle_future, (task,)
            elif group.settle_here_or_defer():
                settle, args = group.settle, ()
            else:
                return        # settled here, or its last element is not final yet
            try:
                self._iod.call_soon(settle, *args)
            except RuntimeError:          # smbiod is shut down: the client closed
                settle(*args)
        else:
            parking = task.parking
            if parking is not None and parking.locked():
                try:
                    parking.release()
                except RuntimeError:
                    pass

    def _abandon(self, task: SmbTask, error: SmbError) -> bool:
        """Stop waiting for ``task``: its MessageId stays reserved until the
        late reply arrives (then discarded), and the server gets a CANCEL."""
        with self._inflight.lock:
            if task.state.final:
                return False
            was_sent = task.state.in_flight
            move(task, TaskState.CANCELLED)
            task.error = error
            task.cancel_requested = True
            conn = self.connection
        channels = self._channels
        if was_sent and channels is not None and task.channel is not None:
            self._iod.call_soon(channels.cancel, task)     # on the request's own channel
        elif was_sent and conn is not None and conn.generation == task.generation:
            self._iod.call_soon(self._sender.cancel, conn, task)
            if conn.demux is not None:
                conn.demux.kick()           # a caller reading for it stops
        self._credits.wake_all()
        with self._state_cond:
            self._connector.unpark(task)
            self._state_cond.notify_all()
        self._wake(task)
        return True

    def _deliver_break(self, reply: Reply, channel=None) -> None:
        """A break notification came in (smbiod) on channel 0 or ``channel``."""
        channels = self._channels
        if channels is not None:
            channels.break_in(reply, channel)     # its acknowledgement goes back there
        self.hooks.breaks.run(BreakNotification(self, reply))

    # -- compatibility (tests read these) --------------------------------------------

    @property
    def _conn(self) -> Optional[Connection]:
        return self.connection

    @property
    def _reconnect_pending_error(self) -> Optional[BaseException]:
        return self._connector.pending_error


def get_client(host: str, port: int = 445, *,
               dialects: Optional[DialectRange] = None,
               timeouts: Optional[TimeoutPolicy] = None,
               reconnect: Optional[ReconnectPolicy] = None,
               client_class: Optional[type] = None,
               **options) -> SmbClient:
    """A shared, refcounted SmbClient for (host, port, options): connects and
    negotiates on first use.  Release it with ``client.release()`` or use it
    as a context manager.

    ``client_class``: an SmbClient subclass to build (a protocol package's
    client); it is part of the sharing key, so callers asking for the same
    class share one client."""
    if not isinstance(host, str) or not host:
        raise TypeError("host must be a non-empty string")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, not {port!r}")
    if client_class is None:
        client_class = SmbClient
    elif not (isinstance(client_class, type) and issubclass(client_class, SmbClient)):
        raise TypeError("client_class must be SmbClient or a subclass")
    return REGISTRY.get(host, port, client_class,
                        dialects=dialects if dialects is not None else DialectRange(),
                        timeouts=timeouts if timeouts is not None else TimeoutPolicy(),
                        reconnect=reconnect if reconnect is not None else ReconnectPolicy(),
                        **options)
