"""Multichannel (SMB 3.x): one session over several TCP connections.

Theory of operation
-------------------
Channel 0 is the client's own connection (``client.connection``), with the
connect worker, reconnect and recovery as always.  A :class:`Channel` is one
more TCP connection to an address the server listed
(FSCTL_QUERY_NETWORK_INTERFACE_INFO), bound to one session
(SESSION_SETUP with SMB2_SESSION_FLAG_BINDING, done by the upper layer's
*binder*, see ``smblayer.fs.binding``).  Each channel has its own socket,
demux thread, MessageId table, credit gate, sender (send lock), liveness
(timers, ECHO probes, keepalive, soft timeout) and signing key; the session
(its id, encryption keys, trees and opens) is shared.  The channel's tables
share the client's MID-table lock, the one lock that guards task states, so
a task moves the same way whichever channel carries it.

A channel is the "client" its parts (Sender, Demux, Liveness) are built
with: it offers the few public names they read (``connection``, ``state``,
``generation``, ``host``/``port``, ``timeouts``, ``iod``,
``command_name``, ``wait_for_state``).

Sending (:meth:`ChannelSet.route`): the client's request path asks, once
the client is ACTIVE, which channel a single request goes on
(:meth:`route_compound` for a compound: channel 0 but in a failover).  READ and
WRITE of the bound session go where the :class:`ChannelPicker` says
(``smblayer.transport.picker``, the one routing policy): channel 0 while
it carries them without a standing queue, spilling over to the next
channels only when it does (a slow link), the least loaded when every
channel queues.  Everything else
stays on channel 0 (metadata, compounds, CREATE, locks, and the caller
fast path).  A task pinned to a channel (the binding legs) goes there or
fails.  CANCEL goes on the request's own channel (``ChannelSet.cancel``).

Break acknowledgements go back on the channel the break came in on.  On
SMB 3.x the server picks any channel of the open's session for a break
([MS-SMB2] 3.3.4.6 and 3.3.4.7 by 3.3.4.1.6; Samba: its oldest live
connection of the client, so an extra channel once channel 0 was bound
again) and takes the acknowledgement on any channel bound to that
session (3.3.5.22: the session is looked up on the receiving connection).
The client answers where the server spoke: the channel it chose is the
one known to work.  :meth:`ChannelSet.break_in` remembers, by FileId or
LeaseKey (bytes 8..24 of both the notification and the acknowledgement),
the channel of the last break; :meth:`route` sends the acknowledgement
there while that channel is active and the open is of the bound session,
else as any other request (channel 0, or a carrier while channel 0 fails
over).

Order: requests on different channels are not ordered with each other.
The one place the upper layer relied on order (fs sends a CLOSE right
behind a file's WRITEs, which a server completes first on one connection)
checks ``task.channel`` and waits for the WRITEs when any went elsewhere.

Failover: when a channel's socket breaks (or its soft timeout fires) its
requests in flight are requeued at once: a sync caller resends from its own
thread, an async one is resent on smbiod; the resend picks a live channel
(channel 0 at worst) and carries SMB2_FLAGS_REPLAY_OPERATION (it is a
second send).  The dead channel is re-established by the channel worker
with the client's ReconnectPolicy back-off; the interface list is queried
again then and every ``REQUERY_INTERVAL`` seconds, and new addresses get
channels (up to ``max_channels``).

Losing channel 0 while another channel is active is a failover too: the
connect worker (which owns the client state and ``failing_over``) keeps
the client ACTIVE, requeues channel 0's requests, and :meth:`route` sends
every request of the bound session (compounds, CREATE, break
acknowledgements...) on an active channel meanwhile (the least loaded; a
re-authentication's SESSION_SETUP legs all on the first active one: one
exchange, one connection; keys are not derived again on re-authentication,
so the channels' keys hold).  The
connect worker reconnects channel 0 with its usual
back-off and, instead of recovery, asks :meth:`ChannelSet.rebind` to bind
the new connection to the session (:class:`MainChannel`: channel 0 as the
binder sees it; its signing key is then the binding's).  Only when no
channel is left (:meth:`channel_died` calls ``end_failover``) or the
binding fails is it today's reconnect: a reconnect handler drops every
extra channel first (the session is set up anew), and after recovery the
worker binds them again.

Other sessions of the client are on channel 0 alone (:meth:`carries`): the
server knows a session on the connections it was set up or bound on, and
an extra channel signs with the bound session's key.  So a request of
another session never goes on an extra channel: during a failover it waits
for channel 0 (the client's ``_wait_sendable`` asks the connect worker's
``carries``), e.g. a new session's SESSION_SETUP.  And losing channel 0
while another session is set up is no failover (:meth:`can_take_over`):
the server logged that session off with its only connection, so it is the
reconnect and recovery, which set every session up again.  Every session
counts, guest and anonymous too (``sessions_up``: the client's
``session_up``, under the state lock the decision is taken under).

Lock order: the set's ``_lock`` is a leaf (nothing else is taken under it);
the worker runs connects and bindings with no lock held.
"""
from __future__ import annotations

import logging
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional

from ..config import DialectRange
from ..errors import (SmbAuthError, SmbClosedError, SmbConnectionError, SmbError,
                      SmbMultichannelError)
from ..proto import smb2
from .connect import MAX_SENDS, Connection, negotiate, open_socket
from .credits import CreditGate, CreditsAborted
from .demux import Demux
from .hooks import STAGE_SESSION
from .inflight import InFlight
from .picker import SPILL_DELAY, ChannelPicker
from .probe import Liveness
from .compound import CompoundLost
from .send import Retry, Sender, shutdown
from .states import ClientState
from .task import SmbTask, TaskState, move

if TYPE_CHECKING:
    from ..proto.netif import NetworkInterface

log = logging.getLogger("smblayer")

REQUERY_INTERVAL = 600.0      # seconds between interface queries (cifs.ko: 600)
GENERATION_BASE = 1 << 40     # channel connection generations never meet channel 0's
CLOSE_WAIT = 2.0
#: breaks whose acknowledgement channel is remembered (one per FileId/LeaseKey)
BREAKS_REMEMBERED = 256
_BREAK_KEY = slice(8, 24)     # FileId or LeaseKey in a break and in its acknowledgement
#: spread over the channels; everything else stays on channel 0
SPREAD_COMMANDS = frozenset({smb2.Command.READ, smb2.Command.WRITE})

CONNECTING, BINDING, ACTIVE, DEAD, CLOSED = "connecting", "binding", "active", "dead", "closed"


class ChannelInfo:
    """What ``client.channels`` shows of one channel: ``index`` (0 is the
    client's own connection), ``state`` ("active", "connecting", "binding",
    "dead", "closed"), ``local_address`` and ``remote_address`` ((host,
    port) or None), ``error`` (why it is dead, or None)."""

    __slots__ = ("index", "state", "local_address", "remote_address", "error")

    def __init__(self, index: int, state: str, local_address, remote_address, error=None):
        self.index = index
        self.state = state
        self.local_address = local_address
        self.remote_address = remote_address
        self.error = error

    def __repr__(self) -> str:
        return (f"<Channel {self.index} {self.state} {self.local_address} -> "
                f"{self.remote_address}>")


class MainChannel:
    """Channel 0 (the client's own connection) as the binder sees it when
    it is bound to the session again after a failover: ``index`` 0,
    ``host``/``port``, ``connection`` (the client's), ``signer`` (set by
    the binder; the connection keeps it as ``bound_signer``).  Its counters: requests moved
    off it (``failovers``), ``rebinds`` and their ``binding_legs``."""

    def __init__(self, client):
        self._client = client
        self.index = 0
        self.host = client.host
        self.port = client.port
        self.signer = None
        self.failovers = 0
        self.rebinds = 0
        self.binding_legs = 0
        self.breaks = 0                   # break notifications received on channel 0
        self.break_acks = 0               # ... and acknowledgements sent on it

    @property
    def connection(self) -> Optional[Connection]:
        return self._client.connection

    def counters(self) -> dict:
        return {"index": 0, "failovers": self.failovers, "rebinds": self.rebinds,
                "binding_legs": self.binding_legs, "breaks": self.breaks,
                "break_acks": self.break_acks}


class Channel:
    """One extra connection of a multichannel session; see the module docstring."""

    def __init__(self, owner: "ChannelSet", index: int, address: str):
        client = owner.client
        self._owner = owner
        self._client = client
        self.index = index
        self.host = address               # the parts log and name threads with these
        self.port = client.port
        self.timeouts = client.timeouts
        self.iod = client.iod
        self.phase = CONNECTING
        self.connection: Optional[Connection] = None
        self.signer = None                # the channel's signing key (set by the binder)
        self.error: Optional[BaseException] = None
        self.ops = 0
        self.bytes_sent = 0
        self.failovers = 0                # requests moved off this channel when it died
        self.binding_legs = 0             # SESSION_SETUPs (bindings) sent on it
        self.breaks = 0                   # break notifications received on it
        self.break_acks = 0               # break acknowledgements sent on it
        self.reconnects = 0
        self.retry_at = 0.0
        self._delays = None
        self._generations = 0
        self._closed = threading.Event()
        self.inflight = InFlight(lock=owner.table_lock)
        self.credits = CreditGate()
        stats = owner.stats
        self.liveness = Liveness(self, self.inflight, self.credits, stats,
                                 echo_task=self._echo_task, wake=owner.wake)
        self.sender = Sender(self, self.inflight, self.credits, self.liveness, stats)
        self.sender.attach(self._requeue_unsent, owner.wake)
        self.liveness.attach(self.sender, self.connection_lost)

    # -- what the parts read (the "client" view) --------------------------------------

    @property
    def state(self) -> ClientState:
        if self._closed.is_set():
            return ClientState.CLOSED
        return ClientState.ACTIVE if self.phase in (ACTIVE, BINDING) else \
            ClientState.RECONNECTING

    @property
    def generation(self) -> int:
        conn = self.connection
        return conn.generation if conn is not None else -1

    def command_name(self, command: int) -> str:
        return self._client.command_name(command)

    def wait_for_state(self, state: ClientState, timeout: Optional[float] = None) -> bool:
        if state is ClientState.CLOSED:
            return self._closed.wait(timeout)
        return self.state is state

    @property
    def local_address(self) -> Optional[tuple]:
        conn = self.connection
        try:
            return conn.sock.getsockname()[:2] if conn is not None else None
        except OSError:
            return None

    def info(self) -> ChannelInfo:
        state = CLOSED if self._closed.is_set() else self.phase
        return ChannelInfo(self.index, state, self.local_address, (self.host, self.port),
                           self.error)

    def counters(self) -> dict:
        return {"index": self.index, "state": self.info().state, "address": self.host,
                "ops": self.ops, "bytes_sent": self.bytes_sent,
                "credits": self.credits.available, "in_flight": self.credits.in_flight,
                "failovers": self.failovers, "reconnects": self.reconnects,
                "binding_legs": self.binding_legs, "breaks": self.breaks,
                "break_acks": self.break_acks}

    def _echo_task(self, timeouts=None) -> SmbTask:
        session = self._owner.session
        task = SmbTask(smb2.Command.ECHO, (b"\x04\x00\x00\x00",), timeouts=timeouts,
                       priority=True, session_id=getattr(session, "session_id", 0),
                       security=session)
        task.channel = self
        task.pinned = True
        return task

    # -- connection life ---------------------------------------------------------------

    def open(self, deadline_budget: float) -> None:
        """Connect and negotiate (the same dialect as channel 0), start the
        demux; the channel is then BINDING (only pinned tasks)."""
        client = self._client
        main = client.negotiated
        if main is None:
            raise SmbConnectionError("client is not connected")
        sock = open_socket(self.host, self.port, deadline_budget)
        try:
            negotiated = negotiate(sock, DialectRange(main.dialect, main.dialect),
                                   time.monotonic() + deadline_budget,
                                   require_signing=client.require_signing,
                                   ciphers=client.ciphers,
                                   signing_algorithms=client.signing_algorithms,
                                   posix=client.posix, multichannel=True,
                                   client_guid=client.client_guid)
        except BaseException:
            sock.close()
            raise
        if negotiated.server_guid != main.server_guid:
            sock.close()
            raise SmbMultichannelError(
                f"{self.host}:{self.port} is another server (its ServerGuid differs); "
                "no channel opened", reason="server", dialect=main.dialect.name,
                address=self.host)
        sock.settimeout(None)
        self._generations += 1
        conn = Connection(sock, GENERATION_BASE * self.index + self._generations, negotiated)
        owner = self._owner
        conn.demux = Demux(self, conn, self.inflight, self.credits, self.liveness, owner.stats,
                           sessions=owner.sessions, wake=owner.wake,
                           deliver_break=self._break_in,
                           note_change=self._client.changes.note,
                           connection_lost=self.connection_lost)
        with self.sender.lock, self.inflight.lock:
            self.inflight.reset(negotiated.next_message_id)
            self.credits.reset(negotiated.credits_granted)
            self.connection = conn
            self.signer = None
            self.phase = BINDING
        conn.demux.start()
        self.liveness.connection_started(time.monotonic())

    def _break_in(self, reply) -> None:
        """A break notification came in on this channel (smbiod)."""
        self._owner.deliver_break(reply, self)

    def activated(self) -> None:
        with self.inflight.lock:
            self.phase = ACTIVE
            self.error = None
            self._delays = None

    def connection_lost(self, conn: Connection, error: Optional[BaseException]) -> None:
        """The channel's socket broke (demux) or its soft timeout fired
        (liveness): requeue what was in flight on a live channel, and let
        the worker bring the channel back."""
        owner = self._owner
        table = self.inflight
        woken: List[SmbTask] = []
        # The writer registers a request only under the MID-table lock and
        # after seeing conn.lost false there: none joins the table after this sweep.
        with table.lock:
            if conn.lost:
                return
            conn.lost = True
            conn.lost_error = error
            if self.phase != CLOSED:
                self.phase = DEAD
            self.error = error
            woken = self._hand_over(table.take_generation(conn.generation), sent=True)
        shutdown(conn.sock)
        self.credits.wake_all()
        if not self._closed.is_set():
            log.warning("smblayer: channel %d to %s:%s lost (%s); %d request(s) move to "
                        "another channel", self.index, self.host, self.port,
                        error or "closed", len(woken))
        self._restart(woken)
        owner.channel_died(self)

    def _hand_over(self, tasks: List[SmbTask], sent: bool) -> List[SmbTask]:
        """Requests of a lost connection of this channel (MID-table lock
        held): to be resent on a live channel, or failed (a pinned one; a
        sent one also when it must not be repeated).  Returns them."""
        woken: List[SmbTask] = []
        for task in tasks:
            if task.state.final:
                continue
            if task.group is not None:
                move(task, TaskState.FAILED)        # the compound is resent whole
                task.error = CompoundLost(f"{self.command_name(task.command)} lost with "
                                          f"channel {self.index}; the compound is resent")
            elif task.pinned or (sent and (task.sends >= MAX_SENDS or not task.replayable)):
                move(task, TaskState.FAILED)
                task.error = SmbConnectionError(
                    f"channel {self.index} to {self.host}:{self.port} lost while "
                    f"{self.command_name(task.command)} was "
                    f"{'in flight' if sent else 'waiting to be sent'}")
            else:
                move(task, TaskState.REISSUE)
                self.failovers += sent
            woken.append(task)
        return woken

    def _restart(self, woken: List[SmbTask]) -> None:
        owner = self._owner
        for task in woken:
            if task.future is not None and task.state is TaskState.REISSUE:
                owner.iod_resend(task)
            else:
                owner.wake(task)

    def _requeue_unsent(self, tasks: List[SmbTask]) -> None:
        """The sender's hand-back: ``tasks`` were queued on a connection of
        this channel that went away before its writer took them (never
        sent): they go to a live channel as in a failover."""
        with self.inflight.lock:
            woken = self._hand_over(tasks, sent=False)
        self._restart(woken)

    def close(self, error: Optional[BaseException] = None) -> None:
        """Stop for good (the set closes, or the session went away)."""
        self._closed.set()
        self.phase = CLOSED
        conn = self.connection
        if conn is not None:
            self.connection_lost(conn, error or SmbClosedError("channel closed"))
            demux = conn.demux
            if demux is not None:
                demux.stop()
                if demux.thread.ident is not None and \
                        demux.thread is not threading.current_thread():
                    demux.thread.join(CLOSE_WAIT)
            conn.sock.close()

    def drop(self, error: BaseException) -> None:
        """Take the connection down now (channel 0 reconnects, binding
        failed); the worker may bring it back."""
        conn = self.connection
        if conn is not None:
            self.connection_lost(conn, error)
            demux = conn.demux
            if demux is not None:
                demux.stop()
            conn.sock.close()

    # -- sending -------------------------------------------------------------------------

    def send(self, tasks, related: bool, abort: Callable[[], bool]):
        """Put ``tasks`` (one, or a compound) on this channel (credits,
        MessageId, signing); Retry when the channel cannot carry them now
        (the caller picks again)."""
        task = tasks[0]
        conn = self.connection
        if conn is None or conn.lost or (self.phase != ACTIVE and not task.pinned):
            if task.pinned:
                raise SmbConnectionError(f"channel {self.index} to {self.host} is not "
                                         "connected")
            raise Retry()
        need = self.sender.queue(conn, tasks)
        try:
            self.credits.take(need, task.priority, lambda: conn.lost or abort())
        except CreditsAborted:
            for t in tasks:
                if t.state.final:
                    raise t.error or SmbClosedError("request ended") from None
            raise Retry() from None
        for t in tasks:
            t.channel = self
            self.bytes_sent += t.payload_size
        self.sender.transmit(conn, tasks, related, need, False)
        if task.command == smb2.Command.SESSION_SETUP:
            self.binding_legs += 1
        elif task.command == smb2.Command.OPLOCK_BREAK:
            self.break_acks += 1
        self.ops += len(tasks)
        return None


class ChannelSet:
    """The extra channels of one client (multichannel); see the module docstring.

    Built by the client with what the channels' parts need: the MID-table
    lock, the counters, the sessions by id, and the client callables
    ``wake(task)``, ``deliver_break(reply, channel)``, ``resend(task)`` (async) and
    ``before_reissue(task)``."""

    #: spread READ/WRITE over the extra channels
    spread = True
    #: ... onto a channel past channel 0 only when the ones before it hold a
    #: standing queue of this many seconds (smblayer.transport.picker); 0:
    #: always, to the channel with the fewest credits in flight
    spill_delay = SPILL_DELAY

    def __init__(self, client, *, max_channels: int, table_lock, stats,
                 sessions: Dict[int, object], wake: Callable, deliver_break: Callable,
                 resend: Callable, before_reissue: Callable, connector=None, sessions_up=()):
        self.client = client
        self.main = MainChannel(client)
        self._connector = connector       # its failing_over, end_failover()
        self.max_channels = max(1, int(max_channels))
        self.table_lock = table_lock
        self.stats = stats
        self.sessions = sessions          # by id, with keys: the demuxes decrypt with them
        self.sessions_up = sessions_up    # every session set up (connector's)
        self.wake = wake
        self.deliver_break = deliver_break
        self._resend = resend
        self.before_reissue = before_reissue
        self.session = None               # the bound session
        self._binder = None
        self.interfaces: List["NetworkInterface"] = []
        self.channels: List[Channel] = []
        self._lock = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._requery_at = float("inf")
        self._requery_now = False
        self._suspended = False
        self._break_channels: Dict[bytes, Channel] = {}    # under _lock
        self.picker = ChannelPicker(self.spill_delay)
        client.add_reconnect_handler(self._before_recovery, stage=STAGE_SESSION - 1)
        client.add_active_handler(self._after_recovery)

    # -- starting -----------------------------------------------------------------------

    def start(self, session, binder) -> List[ChannelInfo]:
        """Bind channels of ``session`` (in this thread): ask the binder for
        the interfaces, open up to ``max_channels - 1`` channels to listed
        addresses.  A channel that cannot be bound is left dead (its
        ``error`` says why; the worker retries it) unless the reason is a
        refusal that no retry mends (raised)."""
        with self._lock:
            if self.session is not None and self.session is not session:
                raise SmbMultichannelError("channels are bound to another session of this "
                                           "client", reason="session")
            self.session = session
            self._binder = binder
        self.interfaces = binder.query_interfaces()
        self._requery_at = time.monotonic() + REQUERY_INTERVAL
        for address in self._wanted():
            channel = self._new_channel(address)
            try:
                self._establish(channel)
            except SmbAuthError:
                raise
            except SmbError as exc:
                log.warning("smblayer: channel %d to %s not bound: %s", channel.index,
                            address, exc)
        self._ensure_worker()
        return [c.info() for c in self.channels]

    def add(self, address: str) -> ChannelInfo:
        """Open and bind one more channel to ``address`` (a listed one) now;
        raises what prevented it (SmbMultichannelError, SmbAuthError...)."""
        if self._binder is None:
            raise SmbMultichannelError("multichannel is not started on this client",
                                       reason="session")
        if address not in {i.address for i in self.interfaces}:
            raise SmbMultichannelError(
                f"{address} is not among the interfaces the server listed; no channel opened",
                reason="address", address=address)
        channel = self._new_channel(address)
        try:
            self._establish(channel)
        except BaseException:
            with self._lock:
                if channel in self.channels:
                    self.channels.remove(channel)
            channel.close()
            raise
        return channel.info()

    def _wanted(self) -> List[str]:
        """Addresses that should get a channel and have none yet."""
        from ..proto.netif import channel_addresses      # only multichannel pays for it
        have: Dict[str, int] = {}
        for channel in self.channels:
            have[channel.host] = have.get(channel.host, 0) + 1
        out = []
        for address in channel_addresses(self.interfaces, self.max_channels, self.client.host):
            if have.get(address, 0):
                have[address] -= 1
            else:
                out.append(address)
        room = self.max_channels - 1 - len(self.channels)
        return out[:max(0, room)]

    def _new_channel(self, address: str) -> Channel:
        with self._lock:
            index = 1 + max((c.index for c in self.channels), default=0)
            channel = Channel(self, index, address)
            self.channels.append(channel)
            return channel

    def _establish(self, channel: Channel) -> None:
        """Connect, negotiate and bind ``channel`` (no lock held)."""
        client = self.client
        budget = client.timeouts.connect_timeout
        try:
            channel.open(budget)
            self._binder.bind(channel)
        except BaseException as exc:
            channel.error = exc
            channel.drop(exc if isinstance(exc, SmbError) else
                         SmbConnectionError(f"binding failed: {exc!r}"))
            self.channel_died(channel)
            raise
        channel.activated()
        log.info("smblayer: channel %d to %s:%s bound to session 0x%x", channel.index,
                 channel.host, channel.port, getattr(self.session, "session_id", 0))

    # -- routing (the client's request path) ----------------------------------------------

    def route(self, task: SmbTask) -> Optional[Channel]:
        """The channel ``task`` goes on, None for channel 0."""
        if task.pinned:
            channel = task.channel
            if channel is self.main:        # binding channel 0 again
                self.main.binding_legs += task.command == smb2.Command.SESSION_SETUP
                return None
            return channel
        task.channel = None
        if task.command == smb2.Command.OPLOCK_BREAK:
            channel = self._break_channel(task)
            if channel is not None:
                return channel
        connector = self._connector
        if connector is not None and connector.failing_over:
            if not self.carries(task):
                return None                 # another session's: it waits for channel 0
            return self._carrier(task)
        session = self.session
        if not self.spread or task.command not in SPREAD_COMMANDS or task.security is None or \
                task.security is not session:
            return None
        now = time.monotonic()
        picker = self.picker
        if picker.keep(task, now):
            return None                     # channel 0 carries it without a queue
        active = [c for c in self.channels if c.phase == ACTIVE]
        if not active:
            return None
        candidates = [(0, self.client.credit_load())]
        candidates += [(c.index, c.credits.in_flight) for c in active]
        index = picker.pick(task, candidates, now)
        if index == 0:
            return None
        for channel in active:
            if channel.index == index:
                return channel
        return None

    def route_compound(self, tasks) -> Optional[Channel]:
        """:meth:`route` for a compound: channel 0 (None) unless channel 0
        fails over.  Every element forgets the channel it last went on: one
        sent on a carrier during a failover and sent again on channel 0
        (a reconnect, the compound resent whole) was signed, and its reply
        checked, with that channel's key (``task.channel``'s), and its
        CANCEL went there."""
        for task in tasks:
            if not task.pinned:
                task.channel = None
        connector = self._connector
        if connector is not None and connector.failing_over:
            return self.route(tasks[0])
        return None

    def carries(self, task: SmbTask) -> bool:
        """May an extra channel carry ``task``?  Only a request of the bound
        session (or of none): another session of this client exists on
        channel 0's connection alone, the server knows it on no other
        ([MS-SMB2] 3.3.5.2.9), and an extra channel's signing key is the
        bound session's (Samba answers such a request STATUS_USER_SESSION_DELETED,
        signed with neither key)."""
        security = task.security
        return security is None or security is self.session

    def break_in(self, reply, channel: Optional[Channel]) -> None:
        """A break notification came in on ``channel`` (None: channel 0):
        its acknowledgement goes back there (smbiod, before the handlers)."""
        key = bytes(reply.body[_BREAK_KEY])
        with self._lock:
            remembered = self._break_channels
            remembered.pop(key, None)
            if channel is None:
                self.main.breaks += 1
                return
            channel.breaks += 1
            if len(remembered) >= BREAKS_REMEMBERED:      # a break that needed no ack
                del remembered[next(iter(remembered))]
            remembered[key] = channel

    def _break_channel(self, task: SmbTask) -> Optional[Channel]:
        """The active extra channel the break ``task`` acknowledges came in
        on, or None (channel 0, or as any request)."""
        key = bytes(memoryview(task.body[0])[_BREAK_KEY])
        with self._lock:
            channel = self._break_channels.pop(key, None)
        if channel is not None and channel.phase == ACTIVE and task.security is self.session:
            return channel
        if self._connector is None or not self._connector.failing_over:
            self.main.break_acks += 1
        return None

    def _carrier(self, task: SmbTask) -> Optional[Channel]:
        """Channel 0 is down: the active channel with the fewest credits in
        flight carries the request; None (after ending the failover: the
        client reconnects) if no channel is active.  A re-authentication's
        SESSION_SETUP legs all take the first active channel: the legs of
        one exchange go on one connection (a server takes a leg on another
        channel for a binding, [MS-SMB2] 3.2.5.3)."""
        best: Optional[Channel] = None
        first = task.command == smb2.Command.SESSION_SETUP
        for channel in self.channels:
            if channel.phase == ACTIVE and (
                    best is None or channel.credits.in_flight < best.credits.in_flight):
                best = channel
                if first:
                    break
        if best is None:
            self._connector.end_failover()
        return best

    # -- channel 0's failover (called by the connect worker) ----------------------------------

    def can_take_over(self) -> bool:
        """(state lock held) May the session go on without channel 0 (another
        channel is active)?  Not while another session is set up (``sessions_up``,
        guest ones too): it lived on channel 0's connection alone, so the server
        logged it off with it; only a reconnect and recovery set it up again."""
        session = self.session
        if session is None or self._binder is None or self._closed or \
                any(other is not session for other in self.sessions_up):
            return False
        return any(c.phase == ACTIVE for c in self.channels)

    def moved(self, count: int) -> None:
        """``count`` requests in flight on channel 0 move to other channels."""
        self.main.failovers += count

    def rebind(self, conn: Connection) -> bool:
        """Bind channel 0's new connection ``conn`` (already the client's)
        to the session, in the connect worker's thread; False if it could
        not be bound (the caller recovers as after any reconnect)."""
        binder = self._binder
        if binder is None or self._closed:
            return False
        try:
            binder.bind(self.main)
        except BaseException as exc:  # noqa: BLE001
            log.warning("smblayer: channel 0 to %s:%s not bound again: %s; the session "
                        "is set up anew", self.client.host, self.client.port, exc)
            self.main.signer = None
            return False
        self.main.rebinds += 1
        conn.bound_signer = (self.session, self.main.signer)
        return True

    def cancel(self, task: SmbTask) -> bool:
        """Send CANCEL for ``task`` on its own channel; False if it went on channel 0."""
        channel = task.channel
        if channel is None or channel is self.main:
            return False
        conn = channel.connection
        if conn is not None and conn.generation == task.generation and not conn.lost:
            channel.sender.cancel(conn, task)
        return True

    def iod_resend(self, task: SmbTask) -> None:
        try:
            self.client.iod.call_soon(self._resend, task)
        except RuntimeError:            # smbiod shut down: the client closed
            pass

    # -- the worker: bring channels back, re-query interfaces ---------------------------------

    def channel_died(self, channel: Channel) -> None:
        """Schedule ``channel``'s return (the back-off of ReconnectPolicy)."""
        if channel.phase == CLOSED:
            return
        channel.phase = DEAD
        now = time.monotonic()
        if channel.retry_at > now:
            return                      # already scheduled for this failure
        if channel._delays is None:
            channel._delays = iter(self.client.reconnect.delays())
        delay = next(channel._delays, self.client.reconnect.max_delay)
        channel.retry_at = now + delay
        with self._lock:
            self._requery_now = True
            self._lock.notify_all()
        self._ensure_worker()
        connector = self._connector
        if connector is not None and connector.failing_over and \
                not any(c.phase == ACTIVE for c in self.channels):
            connector.end_failover()        # nothing carries the session: reconnect

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, daemon=True,
                name=f"smblayer-channels-{self.client.host}:{self.client.port}")
            self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    now = time.monotonic()
                    due = [c for c in self.channels if c.phase == DEAD and c.retry_at <= now]
                    requery = self._requery_now or now >= self._requery_at
                    if self._suspended or self.client.state is not ClientState.ACTIVE:
                        due, requery = [], False
                    if not due and not requery:
                        waits = [c.retry_at for c in self.channels if c.phase == DEAD]
                        until = min(waits + [self._requery_at]) - now
                        self._lock.wait(max(0.05, min(until, REQUERY_INTERVAL)))
                        continue
                    self._requery_now = False
                if requery:
                    self._requery()
                for channel in due:
                    self._revive(channel)
        except BaseException:  # noqa: BLE001
            log.exception("smblayer: channel worker failed")
        finally:
            with self._lock:
                self._thread = None

    def _revive(self, channel: Channel) -> None:
        if channel.phase != DEAD:
            return
        try:
            self._establish(channel)
        except (SmbAuthError, SmbMultichannelError) as exc:
            log.warning("smblayer: channel %d to %s refused: %s; not retried",
                        channel.index, channel.host, exc)
            channel.phase = CLOSED
            return
        except BaseException as exc:  # noqa: BLE001
            log.info("smblayer: channel %d to %s not back yet: %s", channel.index,
                     channel.host, exc)
            return
        channel.reconnects += 1
        log.warning("smblayer: channel %d to %s:%s is back", channel.index, channel.host,
                    channel.port)

    def _requery(self) -> None:
        binder = self._binder
        if binder is None:
            return
        self._requery_at = time.monotonic() + REQUERY_INTERVAL
        try:
            interfaces = binder.query_interfaces()
        except SmbError as exc:
            log.info("smblayer: interface query failed: %s", exc)
            return
        self.interfaces = interfaces
        for address in self._wanted():
            channel = self._new_channel(address)
            try:
                self._establish(channel)
            except SmbAuthError:
                channel.phase = CLOSED
            except SmbError:
                pass                    # dead: the worker retries it

    def requery_soon(self) -> None:
        """Ask the worker to query the interfaces now (and add channels)."""
        with self._lock:
            self._requery_now = True
            self._lock.notify_all()
        self._ensure_worker()

    # -- channel 0 reconnects ---------------------------------------------------------------------

    def _before_recovery(self, client) -> None:
        """Channel 0 reconnected (connect worker, before the session is set
        up again): the extra channels belong to the old session; drop them."""
        self._suspended = True
        for channel in list(self.channels):
            if channel.phase in (ACTIVE, BINDING, CONNECTING):
                channel.drop(SmbConnectionError("channel 0 reconnected; the session is "
                                                "set up again"))

    def _after_recovery(self, client) -> None:
        """The client is ACTIVE again (smbiod): bind the channels again, now."""
        self._suspended = False
        now = time.monotonic()
        for channel in self.channels:
            if channel.phase == DEAD:
                channel.retry_at = now
        with self._lock:
            self._requery_now = True
            self._lock.notify_all()
        self._ensure_worker()

    # -- views and the end -------------------------------------------------------------------------

    def infos(self) -> List[ChannelInfo]:
        return [c.info() for c in self.channels]

    def counters(self) -> List[dict]:
        return [c.counters() for c in self.channels]


    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self.channels = self.channels, []
            self._lock.notify_all()
        for channel in channels:
            channel.close()
        client = self.client
        client.remove_reconnect_handler(self._before_recovery)
        client.remove_active_handler(self._after_recovery)
        connector = self._connector
        if connector is not None:
            connector.end_failover()
