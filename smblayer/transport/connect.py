"""Connect, reconnect and recovery: the connect worker.

Theory of operation
-------------------
The connect worker runs a client's connection life: it publishes the
current :class:`Connection` generation (``client.connection``), moves the
client state (through ``move``, the client's own ``_move`` and its
transition table, under ``state_cond``, the client state condition of the
lock order), and owns the async requests waiting for a connection
(``waiting``) and the give-up bookkeeping.  It is the only writer of the
socket and of the client state; close() from any thread is the one designed
exception (it calls ``move`` and :meth:`fail_everything`).  The demux
and the probes only *report* a lost connection
(:meth:`ConnectWorker.connection_lost`: the requests in flight are requeued
at once); the worker takes it down.

Its interface to the rest of the client is what it is given when built:
the state condition, the in-flight table, the credit gate, the sender
(whose lock it takes to publish a connection), liveness, the counters, the
hooks, and four callables of the client: ``move(state)``,
``new_demux(conn)``, ``wake(task)`` (hand a task that changed state to its
waiter) and ``resend(task)`` (send an async task again, on smbiod).

The first connect runs in the thread that builds the client (no thread
start on the fast path).  Later ones run in a worker thread that exists only
while there is work.  A connect attempt is bounded by ``connect_timeout``;
failed attempts back off by ``ReconnectPolicy`` (with jitter).  After a
successful negotiate the worker installs the new connection generation
(its demux thread starts), then runs *recovery* itself, in this thread, so no
user work can starve it: the reconnect handlers in stage order (sessions,
trees, open handles, others; see ``client.add_reconnect_handler``), whose
requests may go out while the client is still RECONNECTING.  Then the client
is ACTIVE, the "active again" callbacks go to smbiod, and the requests that
waited are reissued (each task's ``on_reissue`` hook may rebuild or decline
it).  Soft requests waiting for a connection fail at their deadline.

Multichannel (``failover``, the client's ChannelSet): when channel 0 is
lost while another channel is active, the worker sets ``failing_over``
instead of leaving ACTIVE; the requests are resent at once (the ChannelSet
routes them to a live channel), and after reconnecting, the new connection
is bound to the session (``failover.rebind``) instead of recovery.  When
no channel is left (``end_failover``) or the binding fails, it is the
reconnect and recovery above.  A request the other channels do not carry
(another session's, :meth:`ConnectWorker.carries`) waits for channel 0
meanwhile.
"""
from __future__ import annotations

import _socket
import logging
import os
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Set

from ..errors import (SmbClosedError, SmbConnectionError, SmbError, SmbNegotiateError,
                      SmbNegotiateRefusedError, SmbProtocolError, SmbTimeoutError)
from ..proto import smb2
from ..proto.framing import FrameReader, FramingError, frame_prefix
from ..proto.negotiate import NegotiateFailed, NegotiateResult, Negotiator, Outgoing
from .compound import CompoundLost
from .send import shutdown
from .sockets import Socket, create_connection
from .states import ClientState
from .task import SmbTask, TaskState, move
from .wire import wire_for

log = logging.getLogger("smblayer")

MIN_ATTEMPT = 0.5      # the shortest connect attempt worth making (seconds)
MAX_SENDS = 5          # a request is sent at most this often across reconnects
CLOSE_WAIT = 2.0       # how long close() waits for threads to stop


class Connection:
    """One socket generation: the socket, what was negotiated, its demux."""

    def __init__(self, sock: Socket, generation: int, negotiated: NegotiateResult):
        self.sock = sock
        self.generation = generation
        self.negotiated = negotiated
        self.wire = wire_for(negotiated)
        self.demux = None
        self.lost = False
        self.lost_error: Optional[BaseException] = None
        self.taken_down = False   # the connect worker has closed it and requeued its tasks
        #: multichannel: (session, signer) when this connection was bound to
        #: ``session`` as its channel 0 again (its signing key is the binding's)
        self.bound_signer: Optional[tuple] = None


def open_socket(host: str, port: int, timeout: float) -> Socket:
    """A connected TCP socket with Nagle off and keepalive on."""
    try:
        # An ASCII name goes as bytes: a str makes getaddrinfo load the idna
        # codec (and unicodedata), a cost every one-shot command paid.
        name = host.encode("ascii") if host.isascii() else host
        sock = create_connection(name, port, timeout)
    except OSError as exc:
        raise SmbConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
    return sock


def negotiate(sock: Socket, dialects, deadline: float, *,
              require_signing: bool = False, client_guid: bytes,
              ciphers=None, signing_algorithms=None, posix: bool = False,
              multichannel: bool = False) -> NegotiateResult:
    """Run the negotiate exchange on a fresh socket (blocking, bounded by
    ``deadline``, a time.monotonic() value)."""
    negotiator = Negotiator(dialects, client_guid=client_guid, salt=os.urandom(32),
                            require_signing=require_signing, ciphers=ciphers,
                            signing_algorithms=signing_algorithms, posix=posix,
                            multichannel=multichannel)
    reader = FrameReader(65536)
    step = negotiator.start()
    try:
        while True:
            _send_outgoing(sock, step, deadline)
            try:
                message = _read_frame(sock, reader, deadline)
            except (SmbConnectionError, ConnectionResetError) as exc:
                raise SmbNegotiateRefusedError(
                    f"{dialects.min}..{dialects.max}: the server closed the connection in "
                    f"answer to NEGOTIATE ({exc}); it speaks none of these dialects") from None
            step = negotiator.receive(message)
            if not isinstance(step, Outgoing):
                return step
    except SmbError:
        raise
    except NegotiateFailed as exc:
        raise SmbNegotiateError(str(exc)) from None
    except (smb2.MalformedMessage, FramingError) as exc:
        raise SmbProtocolError(f"malformed negotiate response: {exc}") from None
    except _socket.timeout:
        raise SmbConnectionError("timed out waiting for the negotiate response") from None
    except OSError as exc:
        raise SmbConnectionError(f"negotiate failed: {exc}") from exc


def _send_outgoing(sock: Socket, out: Outgoing, deadline: float) -> None:
    data = out.to_bytes()
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall(frame_prefix(len(data)) + data)


def _read_frame(sock: Socket, reader: FrameReader, deadline: float) -> bytes:
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        n = sock.recv_into(reader.buffer())
        if n == 0:
            raise SmbConnectionError("server closed the connection during negotiate")
        frames = reader.feed(n)
        if frames:
            if len(frames) > 1 or reader.pending:
                raise SmbProtocolError("unexpected extra data after the negotiate response")
            return bytes(frames[0])


class ConnectWorker:
    """Runs connect/reconnect attempts and owns the connection life; see the
    module docstring.  ``kick()`` starts the thread (idempotent);
    ``connect_first()`` runs the first connect inline."""

    def __init__(self, client, *, state_cond: threading.Condition,
                 move: Callable[[ClientState], None], inflight, credits, sender, liveness,
                 stats, hooks, new_demux: Callable, wake: Callable[[SmbTask], None],
                 resend: Callable[[SmbTask], None]):
        self._client = client
        self.state_cond = state_cond
        self.move = move                       # the client's move (caller holds state_cond)
        self._inflight = inflight
        self._credits = credits
        self._sender = sender
        self._liveness = liveness
        self._stats = stats
        self._hooks = hooks
        self._new_demux = new_demux
        self._wake = wake
        self._resend = resend
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._again = False
        self.ident: Optional[int] = None       # the thread running recovery now
        self.generation = 0                    # bumped by every new connection
        self.waiting: List[SmbTask] = []       # async tasks waiting for ACTIVE (state_cond)
        self.gave_up = 0                       # bumped each time reconnecting gives up
        self.pending_error: Optional[BaseException] = None   # why reconnecting fails now
        self.connect_error: Optional[BaseException] = None   # why the first connect failed
        self._last_conn_useful = True
        #: multichannel: the ChannelSet that can carry the session while
        #: channel 0 is down (``can_take_over()``, ``rebind(conn)``), or None
        self.failover = None
        #: channel 0 is lost (or being bound again) while another channel of
        #: its session carries the requests: the client stays ACTIVE (state_cond)
        self.failing_over = False
        #: every session set up on the client, guest and anonymous ones too
        #: (state_cond; ``client.session_up``): what ``can_take_over`` counts
        self.sessions_up: Set[object] = set()
        sender.attach(self.requeue_unsent, wake)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def kick(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(
                target=self._run, daemon=True,
                name=f"smblayer-connect-{self._client.host}:{self._client.port}")
            self._thread.start()

    def join(self, timeout: float) -> None:
        with self._lock:            # kick() starts the thread under it
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def connect_first(self) -> None:
        """The first connect, in the caller's thread."""
        try:
            self._connect_loop(first=True)
        except BaseException as exc:  # noqa: BLE001
            if self.connect_error is None:
                self.connect_error = exc if isinstance(exc, SmbError) else \
                    SmbConnectionError(f"connect failed: {exc!r}")
            self.move_closed()
            if not isinstance(exc, Exception):
                raise

    def _run(self) -> None:
        try:
            while True:
                self._connect_loop(first=False)
                with self._lock:
                    if not self._again:
                        self._thread = None
                        return
                    self._again = False
        except BaseException:  # noqa: BLE001
            log.exception("smblayer: connect worker failed")
            with self._lock:
                self._thread = None
            self.fail_everything(SmbConnectionError("connect worker failed"))

    # -- the loop ------------------------------------------------------------------

    def _connect_loop(self, first: bool) -> None:
        """Connect (or reconnect) until ACTIVE, closed, or given up."""
        client = self._client
        policy = client.reconnect
        delays = iter(policy.delays())
        # A connection that died before answering anything does not reset the
        # backoff: a server that accepts and drops at once is not hammered.
        attempt = 0 if self._last_conn_useful else 1
        failures = 0
        while True:
            if client.state is ClientState.CLOSED:
                return
            conn_now = client.connection
            if conn_now is not None and conn_now.lost:
                self._take_down(conn_now)
            if not first and conn_now is not None and not conn_now.lost and \
                    client.state is ClientState.ACTIVE:
                return
            if failures and policy.max_attempts is not None and failures >= policy.max_attempts:
                self._give_up(SmbConnectionError(
                    f"cannot reconnect to {client.host}:{client.port} after "
                    f"{failures} attempt{'s' if failures > 1 else ''}"))
                return
            if attempt:
                delay = next(delays, policy.max_delay)
                client.wait_for_state(ClientState.CLOSED, delay)
                if client.state is ClientState.CLOSED:
                    return
            self.expire_waiting()
            attempt += 1
            try:
                conn = self._open_connection()
            except SmbError as exc:
                if first:
                    self.connect_error = exc
                    self.move_closed()
                    return
                failures += 1
                log.warning("smblayer: reconnect to %s:%s failed (attempt %d): %s",
                            client.host, client.port, failures, exc)
                self._reconnect_failed(exc)
                continue
            if self._activate(conn, first):
                return
            failures += 1

    def _open_connection(self):
        client = self._client
        now = time.monotonic()
        # An attempt never outlasts the soft deadline of a request waiting
        # for it: that request must fail then, not when the attempt ends.
        budget = min(client.timeouts.connect_timeout,
                     max(MIN_ATTEMPT, self._earliest_waiting_deadline() - now))
        deadline = now + budget
        sock = open_socket(client.host, client.port, budget)
        try:
            negotiated = negotiate(sock, client.dialects, deadline,
                                   require_signing=client.require_signing,
                                   ciphers=client.ciphers,
                                   signing_algorithms=client.signing_algorithms,
                                   posix=client.posix, multichannel=client.multichannel,
                                   client_guid=client.client_guid)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self.generation += 1
        return Connection(sock, self.generation, negotiated)

    def _activate(self, conn, first: bool) -> bool:
        """Install ``conn``, run recovery, go ACTIVE, reissue.  False if the
        connection broke again during recovery."""
        client = self._client
        if not self._install(conn):
            return True                     # closed meanwhile
        if not first and self.failing_over:
            if self._rebound(conn):
                return True
            if conn.lost or client.state is ClientState.CLOSED:
                return client.state is ClientState.CLOSED
        if not first:
            self._stats.reconnects += 1
            log.warning("smblayer: reconnected to %s:%s (%s)", client.host, client.port,
                        conn.negotiated.dialect.name)
            if not self._recover(conn):
                return False
        if not self._go_active(conn):
            return client.state is ClientState.CLOSED
        return True

    def _rebound(self, conn) -> bool:
        """Channel 0 came back while another channel carried the session:
        bind ``conn`` to the session (no new SESSION_SETUP, no recovery).
        False when it could not (every channel is gone, the binding
        failed): the caller then recovers as after any reconnect, on
        ``conn``: a binding made but not taken into use is forgotten (the
        session set up anew there signs with its own new key, not the
        binding's)."""
        client = self._client
        failover = self.failover                # None once the channels closed (logoff)
        self.ident = threading.get_ident()      # the binding legs go on ``conn``
        try:
            bound = failover is not None and failover.rebind(conn)
        finally:
            self.ident = None
        with self.state_cond:
            bound = bound and self.failing_over and not conn.lost and \
                client.state is ClientState.ACTIVE
            if not bound:
                conn.bound_signer = None
                self._end_failover()
                return False
            self.failing_over = False
        log.warning("smblayer: channel 0 to %s:%s is back, bound to the session again",
                    client.host, client.port)
        return self._go_active(conn)

    def carries(self, task: SmbTask) -> bool:
        """Channel 0 is down: does another channel carry ``task`` (a request
        of the bound session; another session's waits for channel 0)?"""
        failover = self.failover
        return self.failing_over and failover is not None and failover.carries(task)

    def _end_failover(self) -> None:
        """(state_cond held) No channel carries the session any more: leave
        ACTIVE, reconnect and recover as usual."""
        if self.failing_over:
            self.failing_over = False
            if self._client.state is ClientState.ACTIVE:
                self.move(ClientState.RECONNECTING)
            self.state_cond.notify_all()

    def end_failover(self) -> None:
        """The last channel that carried the session while channel 0 was
        down is gone too (the ChannelSet says so, any thread)."""
        with self.state_cond:
            if not self.failing_over:
                return
            self._end_failover()
        self.kick()

    def _recover(self, conn) -> bool:
        """Run the reconnect handlers, in stage order, in this thread."""
        client = self._client
        self.ident = threading.get_ident()
        try:
            for fn in self._hooks.reconnect:
                try:
                    fn(client)
                except SmbConnectionError as exc:
                    # The connection broke, or a handler needs a new one (a
                    # session the server would not set up again): this
                    # attempt failed; a new connection and a whole recovery
                    # follow, after the back-off.
                    log.warning("smblayer: reconnect handler %r failed: %s", fn, exc)
                    self.connection_lost(conn, exc)
                    return False
                except Exception as exc:  # noqa: BLE001
                    log.warning("smblayer: reconnect handler %r failed: %s", fn, exc)
                if conn.lost or client.state is ClientState.CLOSED:
                    return False
        finally:
            self.ident = None
        return not conn.lost

    def _take_down(self, conn) -> None:
        """Leave ACTIVE, close the lost socket, requeue what was in flight."""
        client = self._client
        if not self._mark_taken_down(conn):
            return
        log.warning("smblayer: connection to %s:%s lost: %s", client.host, client.port,
                    conn.lost_error or "closed")
        self.close_connection(conn, join=True)
        self._requeue_in_flight(conn, conn.lost_error)
        self._credits.wake_all()

    def _reconnect_failed(self, error: SmbError) -> None:
        """One reconnect attempt failed: soft requests that timed out stop waiting."""
        client = self._client
        if self._liveness.soft_expired:
            error = SmbTimeoutError(
                f"server {client.host}:{client.port} timed out and reconnecting failed: {error}")
        self._fail_waiting(error, soft_only=True)
        self.expire_waiting()

    def _give_up(self, error: SmbError) -> None:
        """ReconnectPolicy.max_attempts reached: everyone waiting now fails
        (hard mode too); the next new request starts a fresh reconnect."""
        client = self._client
        if self._liveness.soft_expired:
            error = SmbTimeoutError(f"server {client.host}:{client.port} timed out and "
                                    f"reconnecting failed: {error}")
        self._fail_waiting(error, soft_only=False)
        self.fail_everything(error)

    # -- the client state (under state_cond) ------------------------------------------

    def move_closed(self) -> None:
        with self.state_cond:
            if self._client.state is not ClientState.CLOSED:
                self.move(ClientState.CLOSED)

    def park(self, task: SmbTask) -> None:
        """``task`` (async) waits for a connection (caller holds state_cond)."""
        if task not in self.waiting:
            self.waiting.append(task)

    def unpark(self, task: SmbTask) -> None:
        """``task`` stops waiting (caller holds state_cond)."""
        if task in self.waiting:
            self.waiting.remove(task)

    # -- connection life (reported by demux/probes, run here) ---------------------------

    def _install(self, conn: Connection) -> bool:
        """Publish a freshly negotiated connection.  False if the client was
        closed meanwhile."""
        client = self._client
        # The demux runs before the connection is published, so close() always
        # finds a started thread to stop.
        conn.demux = self._new_demux(conn)
        conn.demux.start()
        with self.state_cond:
            if client.state is ClientState.CLOSED:
                self.close_connection(conn, join=True)
                return False
            old = client.connection
            with self._sender.lock, self._inflight.lock:
                client.connection = conn
                client.smb1_signing = None      # SMB1 signing starts over per connection
                client.default_security = None
                self._inflight.reset(conn.negotiated.next_message_id)
                self._credits.reset(conn.negotiated.credits_granted)
            self.state_cond.notify_all()
        if old is not None and old is not conn:
            old.lost = True
        return True

    def _go_active(self, conn: Connection) -> bool:
        """Recovery is done: ACTIVE, then resend what waited."""
        client = self._client
        with self.state_cond:
            if client.state is ClientState.CLOSED or conn.lost:
                return False
            reconnected = client.state is ClientState.RECONNECTING
            if client.state is not ClientState.ACTIVE:     # (channel 0 bound again: it is)
                self.move(ClientState.ACTIVE)
            self.pending_error = None
            self._liveness.soft_expired = False
            waiting, self.waiting = self.waiting, []
        iod = client.iod
        for task in waiting:
            if not task.state.final:
                iod.call_soon(self._resend, task)
        if reconnected:
            for fn in self._hooks.active:
                iod.call_soon(fn, client)
        return True

    def connection_lost(self, conn: Connection, error: Optional[BaseException]) -> None:
        """The demux (or a soft timeout) reports ``conn`` unusable (any
        thread): mark it, requeue its requests, and start the worker."""
        client = self._client
        with self.state_cond:
            if conn.lost:
                return
            conn.lost = True
            conn.lost_error = error
            self._last_conn_useful = conn.demux is not None and conn.demux.replies > 0
            if client.state is ClientState.ACTIVE and conn is client.connection:
                if self.failing_over or (self.failover is not None and
                                         self.failover.can_take_over()):
                    self.failing_over = True    # another channel carries the session
                else:
                    self.move(ClientState.RECONNECTING)
            failing_over = self.failing_over
            self.state_cond.notify_all()
        self._requeue_in_flight(conn, error, failing_over)
        self._credits.wake_all()        # senders waiting for credits see conn.lost
        self.kick()

    def _mark_taken_down(self, conn: Connection) -> bool:
        with self.state_cond:
            if conn.taken_down:
                return False
            conn.taken_down = True
            if self._client.state is ClientState.ACTIVE and not self.failing_over:
                self.move(ClientState.RECONNECTING)
            self.state_cond.notify_all()
        return True

    def _requeue_in_flight(self, conn: Connection, error: Optional[BaseException],
                           failing_over: bool = False) -> None:
        """Wake every task sent on ``conn``: to be reissued, or failed when
        it must not be repeated (protocol violation, not replayable).  When
        ``failing_over`` another channel carries them now: async ones are
        resent at once instead of waiting for channel 0."""
        woken = []
        inflight = self._inflight
        with inflight.lock:
            for task in inflight.take_generation(conn.generation):
                if task.state.final:
                    continue
                failure = self._reissue_refusal(task, error)
                if failure is not None:
                    move(task, TaskState.FAILED)
                    task.error = failure
                else:
                    move(task, TaskState.REISSUE)
                woken.append(task)
        reissue = [t for t in woken if t.future is not None and t.state is TaskState.REISSUE]
        if failing_over and self.failover is not None:
            self.failover.moved(len(woken))
            self.requeue_now(reissue)
            woken = [t for t in woken if t not in reissue]
        elif reissue:
            with self.state_cond:
                self.waiting.extend(reissue)
        for task in woken:
            self._wake(task)

    def requeue_unsent(self, tasks: List[SmbTask]) -> None:
        """``tasks`` were queued for a connection that was lost, replaced or
        closed before the writer took them (never on the wire; the sender
        calls this): they are sent again, an async compound whole (see
        compound.py), from the start."""
        woken = []
        with self._inflight.lock:
            for task in tasks:
                if task.state.final:
                    continue
                if task.group is not None:
                    move(task, TaskState.FAILED)
                    task.error = CompoundLost("compound not sent; it is sent again")
                else:
                    move(task, TaskState.REISSUE)
                woken.append(task)
        self.requeue_now([t for t in woken if t.future is not None and
                          t.state is TaskState.REISSUE])
        for task in woken:
            if task.future is None or task.state is not TaskState.REISSUE:
                self._wake(task)

    def requeue_now(self, tasks: List[SmbTask]) -> None:
        """Resend async ``tasks`` on smbiod now."""
        for task in tasks:
            try:
                self._client.iod.call_soon(self._resend, task)
            except RuntimeError:        # smbiod is shut down: the client closed
                self.fail_task(task, SmbClosedError("client closed"))

    def _reissue_refusal(self, task: SmbTask, error: Optional[BaseException]):
        """Why ``task`` must not be resent after losing its connection, or None."""
        client = self._client
        name = client.command_name(task.command)
        if isinstance(error, SmbProtocolError):
            return error          # the server broke the protocol: repeating won't help
        if task.sends >= MAX_SENDS:
            return (SmbTimeoutError if task.timed_out else SmbConnectionError)(
                f"{name} to {client.host}:{client.port} was sent {task.sends} times and "
                "each time the connection was lost before the reply; giving up")
        if not task.replayable:
            return SmbConnectionError(
                f"connection to {client.host}:{client.port} lost while {name} was in "
                "flight; the request is not safe to repeat and was not reissued")
        if task.group is not None:
            return CompoundLost(f"{name} lost with its connection; the compound is resent")
        if task.is_probe:
            return SmbConnectionError("probe lost")
        return None

    def _policy(self, task: SmbTask):
        return task.timeouts or self._client.timeouts

    def _earliest_waiting_deadline(self) -> float:
        """The soonest soft deadline among the async requests waiting for a
        connection (inf if none)."""
        with self.state_cond:
            bounds = [self._liveness.bound(t) for t in self.waiting
                      if not self._policy(t).hard]
        return min(bounds, default=float("inf"))

    def expire_waiting(self) -> None:
        """Fail the soft async requests waiting for a connection past their
        deadline (between attempts)."""
        client = self._client
        now = time.monotonic()
        expired = []
        with self.state_cond:
            keep = []
            for task in self.waiting:
                if not self._policy(task).hard and now >= self._liveness.bound(task):
                    expired.append(task)
                else:
                    keep.append(task)
            self.waiting = keep
        for task in expired:
            self.fail_task(task, SmbTimeoutError(
                f"server {client.host}:{client.port} not reachable within "
                f"{self._policy(task).soft_bound:g} s"))

    def _fail_waiting(self, error: BaseException, soft_only: bool) -> None:
        """A reconnect attempt failed: requests that already timed out (soft)
        stop waiting; with ``soft_only`` False everyone does."""
        with self.state_cond:
            self.pending_error = error
            if not soft_only:
                self.gave_up += 1
            stuck = [t for t in self.waiting
                     if not soft_only or (t.timed_out and not self._policy(t).hard)]
            self.waiting = [t for t in self.waiting if t not in stuck]
            self.state_cond.notify_all()
        for task in stuck:
            self.fail_task(task, error)

    def fail_task(self, task: SmbTask, error: BaseException) -> None:
        """Fail ``task`` (an async compound: all of it) unless it already
        ended, and wake its waiter."""
        tasks = (task,) if task.group is None else task.group.tasks
        with self._inflight.lock:
            for t in tasks:
                if not t.state.final:
                    move(t, TaskState.FAILED)
                    t.error = error
        for t in tasks:
            self._wake(t)

    def close_connection(self, conn: Connection, join: bool) -> None:
        """Stop ``conn``'s demux and close its socket (any thread)."""
        demux = conn.demux
        if demux is not None:
            demux.stop()
        shutdown(conn.sock)
        if join and demux is not None and demux.thread.ident is not None and \
                demux.thread is not threading.current_thread():
            demux.thread.join(CLOSE_WAIT)
        conn.sock.close()

    def fail_everything(self, error: BaseException) -> None:
        """Every request in flight or waiting fails with ``error`` (close, give up)."""
        with self.state_cond:
            waiting, self.waiting = self.waiting, []
            self.state_cond.notify_all()
        with self._inflight.lock:
            tasks = [t for t in self._inflight.take_all() if not t.state.final]
            for t in waiting:             # a parked async compound: all its elements
                group = t.group
                tasks += [e for e in (group.tasks if group is not None else (t,))
                          if not e.state.final]
            for task in tasks:
                move(task, TaskState.FAILED)
                task.error = error
        for task in tasks:
            self._wake(task)
        with self.state_cond:
            self.state_cond.notify_all()
