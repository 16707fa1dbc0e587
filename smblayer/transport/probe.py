"""Liveness: request timers, ECHO probing, idle keepalive, hard and soft.

Theory of operation
-------------------
Every request sent gets a timer (``deadline``: ``timeout`` after the send;
for soft requests never later than their :meth:`Liveness.bound`).  The
demux thread calls :meth:`Liveness.service` whenever its selector times
out; it pops the due timers and decides:

* a soft request past its bound fails with SmbTimeoutError, even when the
  server answers probes (sunrpc's soft major timeout): its reply may have
  been lost or have come with a MessageId nobody sent, which is dropped
  ([MS-SMB2] 3.2.5.1.2).  It is abandoned like a cancelled request: CANCEL
  sent, its MessageId kept for a late reply, whose ``on_late_reply`` closes
  the handle of an abandoned CREATE.  The bound is ``timeout +
  soft_timeout`` after the first send, ``+ connect_timeout`` when a
  reconnect happened or may be coming, the clock restarted once by the
  first interim reply.  If neither the request nor its CANCEL is answered
  within another bound (a server answers a cancelled request), its reply
  was lost: the connection is dropped and the client reconnects, which
  frees the MID and its credits and closes what the lost reply opened;
* any other overdue request is marked ``timed_out`` and the probe loop
  starts on smbiod (at most one): one ECHO at a time every
  ``echo_interval``.  Answered: the server is slow, not dead; overdue
  timers re-arm.  Unanswered: *hard* logs "not responding, still trying"
  once and keeps probing; *soft*, after ``soft_timeout``, reports the
  connection lost so the connect worker reconnects.  A hard request
  without a reply past the soft bound is logged once and keeps waiting
  (killable: Ctrl-C, ``cancel()``, ``close()``).
* Long-poll requests (``task.long_poll``) have no timer once the server
  sent an interim reply: they may wait for hours.  The connection is then
  watched by keepalive.
* Keepalive: when nothing has been received for ``keepalive`` seconds an
  ECHO goes out (with a session's id when there is one); it has a timer
  like any request, so a dead idle connection is found and handled by the
  same rules before the next call needs it.

The demux never sends: probes and keepalives are sent from smbiod, here
(:meth:`Liveness.send_probe`, :meth:`Liveness.keepalive`), straight to the
sender without waiting for credits: a probe that cannot go out at once
counts as unanswered.

Interface: built with the client (read: ``state``, ``connection``,
``generation``, ``timeouts``, ``iod``, ``wait_for_state``), the in-flight
table, the credit gate, the counters and two client callables,
``echo_task()`` (an ECHO carrying a session when there is one) and
``wake(task)``; then :meth:`Liveness.attach` gives it the sender and the
connect worker's ``connection_lost``.  The demux calls :meth:`service`,
:meth:`connection_started` and sets ``last_rx``; the sender asks
:meth:`deadline`; the client and the connect worker ask :meth:`bound` of a
request waiting for a connection.
"""
from __future__ import annotations

import logging
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Tuple

from ..errors import SmbError, SmbProtocolError, SmbTimeoutError
from .send import Retry
from .states import ClientState
from .task import SmbTask, TaskState, move

# Enum members as module constants (see task.py: the hot path's enum cost)
_ACTIVE, _CLOSED, _DONE, _FAILED, _INTERIM = \
    ClientState.ACTIVE, ClientState.CLOSED, TaskState.DONE, TaskState.FAILED, TaskState.INTERIM

log = logging.getLogger("smblayer")

NEVER = float("inf")


class Liveness:
    def __init__(self, client, inflight, credits, stats, *,
                 echo_task: Callable[[], SmbTask], wake: Callable[[SmbTask], None]) -> None:
        self._client = client
        self._inflight = inflight
        self._credits = credits
        self._stats = stats
        self._echo_task = echo_task
        self._wake = wake
        self._sender = None
        self._connection_lost: Optional[Callable] = None
        self._probing = False                   # under the in-flight lock
        self._keepalive_due = NEVER            # demux thread
        # abandoned requests whose reply may be lost: (when to look, task, conn)
        self._cancelled: List[Tuple[float, SmbTask, object]] = []     # demux thread
        self._cancelled_due = NEVER
        self.not_responding_since: Optional[float] = None
        self.soft_expired = False               # a soft timeout asked for this reconnect
        self.last_rx = time.monotonic()         # written by the demux

    def attach(self, sender, connection_lost: Callable) -> None:
        """The sender (probes go out through it) and the connect worker's
        ``connection_lost`` (a soft timeout reports the connection)."""
        self._sender = sender
        self._connection_lost = connection_lost

    # -- timers (demux thread) -----------------------------------------------

    def bound(self, task: SmbTask) -> float:
        """When ``task`` stops waiting for its final reply in soft mode (for
        a hard one: when "no reply yet" is logged).  The clock starts at the
        first send (at the queueing before one) and restarts once, at the
        first interim reply ([MS-SMB2] 3.2.5.1.5: the client extends the
        request's timer); it runs ``timeout + soft_timeout``, plus
        ``connect_timeout`` when a reconnect happened or may be coming (the
        request was resent or waits for a connection, or probes go
        unanswered).  NEVER for a long-poll request the server acknowledged
        (CHANGE_NOTIFY, a blocking LOCK): it may wait for hours."""
        if task.long_poll and task.state is _INTERIM:
            return NEVER
        policy = task.timeouts or self._client.timeouts
        start = max(task.t_first_sent or task.t_queued, task.t_pending)
        if task.sends == 1 and task.state.in_flight and self.not_responding_since is None:
            return start + policy.timeout + policy.soft_timeout
        return start + policy.soft_bound

    def deadline(self, task: SmbTask, now: float) -> float:
        """When ``task``'s timer fires after a send or a re-arm at ``now``."""
        policy = task.timeouts or self._client.timeouts
        deadline = now + policy.timeout
        # (sent for the first time right now: its soft bound, counted from
        # now, ends soft_timeout after this deadline)
        if task.t_first_sent != now and not policy.hard:
            bound = self.bound(task)
            if now < bound < deadline:
                deadline = bound
        return deadline

    def connection_started(self, now: float) -> None:
        self.last_rx = now
        self._keepalive_due = now + self._client.timeouts.keepalive

    def service(self) -> Optional[float]:
        """Fire due timers and the keepalive; return the seconds until the
        next one (None: nothing planned).  Demux thread."""
        client = self._client
        inflight = self._inflight
        now = time.monotonic()
        if now < inflight.wake_at and now < self._keepalive_due and now < self._cancelled_due:
            return self._until(inflight.wake_at, now)
        expired: List[SmbTask] = []
        failed: List[SmbTask] = []
        unanswered: List[SmbTask] = []
        with inflight.lock:
            fired, _next = inflight.expire(now)
            for task in fired:
                if not task.state.in_flight:
                    continue
                policy = task.timeouts or client.timeouts
                bound = self.bound(task)
                if now >= bound:
                    if not policy.hard:
                        # The absolute soft bound, even if the server answers
                        # probes (its reply may have been lost or carried a
                        # wrong MessageId): abandoned like a cancelled request.
                        move(task, _FAILED)       # the MID stays reserved
                        task.error = SmbTimeoutError(
                            f"{client.command_name(task.command)} to {client.host}:"
                            f"{client.port}: no reply within "
                            f"{round(bound - task.t_first_sent, 1):g} s (soft)")
                        failed.append(task)
                        continue
                    if task.deadline - policy.timeout < bound:
                        unanswered.append(task)            # hard: said once per request
                if not task.timed_out:
                    task.timed_out = True
                    expired.append(task)
                if not policy.hard and bound < NEVER:
                    inflight.arm(task, bound)
            start = bool(expired) and not self._probing
            if start:
                self._probing = True
            wake_at = inflight.wake_at
        conn = client.connection
        if conn is not None:
            for task in expired + failed:
                self._stats.command(conn.wire, task.command).timeouts += 1
        if failed:
            self._abandon(conn, failed, now)
        if now >= self._cancelled_due:
            self._check_cancelled(now)
        for task in unanswered:
            log.warning("smblayer: %s to %s:%s: no reply after %.0f s although the server "
                        "answers; still waiting (hard)", client.command_name(task.command),
                        client.host, client.port, now - task.t_first_sent)
        if start:
            client.iod.call_soon(self.probe_loop)
        if now >= self._keepalive_due:
            keepalive = client.timeouts.keepalive
            if now - self.last_rx >= keepalive * 0.999:
                self._keepalive_due = now + keepalive
                client.iod.call_soon(self.keepalive)
            else:
                self._keepalive_due = self.last_rx + keepalive
        return self._until(wake_at, now)

    def _abandon(self, conn, failed: List[SmbTask], now: float) -> None:
        """Requests past their soft bound: wake their callers, tell the
        server (CANCEL, from smbiod).  Their MessageIds stay reserved: a late
        reply is discarded (and an abandoned CREATE's handle closed, through
        ``on_late_reply``).  One the server never acknowledged (no interim
        reply) is looked at again one bound later (:meth:`_check_cancelled`)."""
        iod = self._client.iod
        for task in failed:
            self._wake(task)
            if conn is not None and conn.generation == task.generation:
                iod.call_soon(self._sender.cancel, conn, task)
                if task.async_id is None:
                    policy = task.timeouts or self._client.timeouts
                    again = now + policy.timeout + policy.soft_timeout
                    self._cancelled.append((again, task, conn))
                    self._cancelled_due = min(self._cancelled_due, again)
        if conn is not None and conn.demux is not None:
            conn.demux.kick()          # a caller reading for its own reply stops

    def _check_cancelled(self, now: float) -> None:
        """A server answers a cancelled request (its result, or
        STATUS_CANCELLED).  One that answered neither the request nor its
        CANCEL within another bound, while answering probes, lost its reply
        (or sent it with a MessageId nobody sent): the connection's books are
        off -- the reply's credits never came, a CREATE's open is unknown
        to us -- so it is dropped and the client reconnects (the server then
        closes what the lost reply opened; the MessageIds are free again)."""
        due = [entry for entry in self._cancelled if entry[0] <= now]
        self._cancelled = [entry for entry in self._cancelled if entry[0] > now]
        self._cancelled_due = min((entry[0] for entry in self._cancelled), default=NEVER)
        client = self._client
        conn = client.connection
        if conn is None or conn.lost:
            return
        inflight = self._inflight
        with inflight.lock:
            lost = [task for _when, task, on in due if on is conn and
                    inflight.find(task.message_id, task.generation) is task]
        if lost:
            names = ", ".join(sorted({client.command_name(t.command) for t in lost}))
            log.warning("smblayer: %s:%s answered neither %s nor its CANCEL: a reply was "
                        "lost; reconnecting", client.host, client.port, names)
            client.iod.call_soon(self._connection_lost, conn, SmbProtocolError(
                f"{client.host}:{client.port} lost the reply to {names}"))

    def _until(self, wake_at: float, now: float) -> float:
        # (conditionals, not min()/max(): the demux asks at every wake-up)
        due = self._keepalive_due
        if wake_at < due:
            due = wake_at
        if self._cancelled_due < due:
            due = self._cancelled_due
        return due - now if due > now else 0.0

    # -- keepalive and probing (smbiod) ------------------------------------------

    def keepalive(self) -> None:
        """Send one ECHO on an idle connection (smbiod); its timer does the rest."""
        client = self._client
        if client.state is not _ACTIVE:
            return
        try:
            self._stats.keepalives += 1
            self._send_now(self._echo_task(), probe=False)
        except SmbError as exc:
            log.debug("smblayer: keepalive to %s:%s not sent: %s", client.host,
                      client.port, exc)

    def send_probe(self) -> Optional[SmbTask]:
        """Send one ECHO probe unless the socket is not writable (a sender is
        stuck in sendmsg: then a probe would only queue behind it)."""
        client = self._client
        conn = client.connection
        if conn is None or conn.lost or client.state is not _ACTIVE or \
                self._sender.lock.locked():
            return None
        return self._send_now(self._echo_task(), probe=True)

    def _send_now(self, task: SmbTask, probe: bool) -> Optional[SmbTask]:
        """Send ``task`` now or not at all: no credit wait.  A probe has no
        timer of its own and a parking lock to wait on; a keepalive is an
        ordinary request.  The task, or None if it was not sent."""
        client = self._client
        conn = client.connection
        if client.state is not _ACTIVE or conn is None or conn.lost:
            return None
        task.is_probe = probe
        task.context_client = client
        task.t_queued = time.monotonic()
        if probe:
            task.parking = threading.Lock()
            task.parking.acquire()
        sender = self._sender
        need = sender.queue(conn, (task,))
        if not self._credits.try_take(need):
            with self._inflight.lock:
                move(task, _FAILED)
            return None         # no credit: a probe counts as unanswered
        try:
            sender.transmit(conn, (task,), False, need)
        except (Retry, SmbError):
            return None
        return task

    def _overdue(self) -> List[SmbTask]:
        inflight = self._inflight
        with inflight.lock:
            return [t for t in inflight.pending.values()
                    if t.timed_out and t.state.in_flight]

    def probe_loop(self) -> None:
        """Probe the server with ECHO while some request is overdue (smbiod)."""
        client = self._client
        unanswered_since: Optional[float] = None
        probe: Optional[SmbTask] = None
        try:
            while client.state is not _CLOSED:
                overdue = self._overdue()
                if not overdue:
                    return
                policies = [t.timeouts or client.timeouts for t in overdue]
                interval = min(p.echo_interval for p in policies)
                if probe is None or probe.done or probe.generation != client.generation:
                    probe = self.send_probe()
                answered = self._wait_probe(probe, interval)
                now = time.monotonic()
                if answered:
                    probe = None
                    unanswered_since = None
                    self.server_ok()
                    self._rearm(overdue, now)
                    continue
                if unanswered_since is None:
                    unanswered_since = now - interval
                self.server_not_responding()
                if any(not p.hard and now - unanswered_since >= p.soft_timeout
                       for p in policies):
                    self._soft_timeout()
                    unanswered_since = None
                    probe = None
        finally:
            inflight = self._inflight
            with inflight.lock:
                self._probing = False
            if self._overdue() and client.state is not _CLOSED:
                with inflight.lock:
                    restart = not self._probing
                    self._probing = True
                if restart:
                    client.iod.call_soon(self.probe_loop)

    def _wait_probe(self, probe: Optional[SmbTask], interval: float) -> bool:
        client = self._client
        if probe is None:
            # Nothing could be sent: wait one interval (close() cuts it short).
            client.wait_for_state(_CLOSED, interval)
            return False
        if probe.parking.acquire(timeout=interval):
            return probe.state is _DONE
        return False

    def _rearm(self, tasks: List[SmbTask], now: float) -> None:
        client = self._client
        inflight = self._inflight
        with inflight.lock:
            for task in tasks:
                if task.timed_out and task.state.in_flight:
                    task.timed_out = False
                    if self.bound(task) < NEVER:
                        inflight.arm(task, self.deadline(task, now))
        conn = client.connection
        if conn is not None and conn.demux is not None:
            conn.demux.wake()

    def server_not_responding(self) -> None:
        if self.not_responding_since is None:
            self.not_responding_since = time.monotonic()
            log.warning("smblayer: server %s:%s not responding, still trying",
                        self._client.host, self._client.port)

    def server_ok(self) -> None:
        since = self.not_responding_since
        if since is not None:
            self.not_responding_since = None
            self._stats.not_responding_time += time.monotonic() - since
            log.warning("smblayer: server %s:%s OK", self._client.host, self._client.port)

    def _soft_timeout(self) -> None:
        """Soft mode gave up probing: reconnect; if that fails the overdue
        requests get SmbTimeoutError (the connect worker decides)."""
        client = self._client
        log.warning("smblayer: server %s:%s soft timeout; reconnecting", client.host,
                    client.port)
        self.soft_expired = True
        conn = client.connection
        if conn is not None:
            self._connection_lost(conn, SmbTimeoutError(
                f"server {client.host}:{client.port} did not answer within the soft timeout"))
