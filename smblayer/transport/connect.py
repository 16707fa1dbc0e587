"""Connect, reconnect and recovery: the connect worker.

Theory of operation
-------------------
The connect worker is the only writer of the socket and of the client state
(``client._move`` through the client's transition table); close() from any
thread is the one designed exception.  The demux and the probes only
*report* a lost connection (``client._connection_lost``: the requests in
flight are requeued at once); the worker takes it down.

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
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Optional

from .states import ClientState
from ..errors import (SmbConnectionError, SmbError, SmbNegotiateError, SmbTimeoutError,
                     SmbNegotiateRefusedError, SmbProtocolError)
from ..proto import smb2
from ..proto.framing import FrameReader, FramingError, frame_prefix
from ..proto.negotiate import NegotiateFailed, NegotiateResult, Negotiator, Outgoing

log = logging.getLogger("smblayer")

MIN_ATTEMPT = 0.5      # the shortest connect attempt worth making (seconds)


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with Nagle off and keepalive on."""
    try:
        # An ASCII name goes as bytes: a str makes getaddrinfo load the idna
        # codec (and unicodedata), a cost every one-shot command paid.
        name = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((name, port), timeout=timeout)
    except OSError as exc:
        raise SmbConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def negotiate(sock: socket.socket, dialects, deadline: float, *,
              require_signing: bool = False, client_guid: bytes,
              ciphers=None, signing_algorithms=None, posix: bool = False) -> NegotiateResult:
    """Run the negotiate exchange on a fresh socket (blocking, bounded by
    ``deadline``, a time.monotonic() value)."""
    negotiator = Negotiator(dialects, client_guid=client_guid, salt=os.urandom(32),
                            require_signing=require_signing, ciphers=ciphers,
                            signing_algorithms=signing_algorithms, posix=posix)
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
    except socket.timeout:
        raise SmbConnectionError("timed out waiting for the negotiate response") from None
    except OSError as exc:
        raise SmbConnectionError(f"negotiate failed: {exc}") from exc


def _send_outgoing(sock: socket.socket, out: Outgoing, deadline: float) -> None:
    data = out.to_bytes()
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall(frame_prefix(len(data)) + data)


def _read_frame(sock: socket.socket, reader: FrameReader, deadline: float) -> bytes:
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
    """Runs connect/reconnect attempts.  ``kick()`` starts the thread
    (idempotent); ``connect_first()`` runs the first connect inline."""

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._again = False
        self.ident: Optional[int] = None       # the thread running recovery now

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
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def connect_first(self) -> None:
        """The first connect, in the caller's thread."""
        try:
            self._connect_loop(first=True)
        except BaseException as exc:  # noqa: BLE001
            client = self._client
            if client._connect_error is None:
                client._connect_error = exc if isinstance(exc, SmbError) else \
                    SmbConnectionError(f"connect failed: {exc!r}")
            client._move_closed()
            if not isinstance(exc, Exception):
                raise

    def _run(self) -> None:
        client = self._client
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
            client._fail_everything(SmbConnectionError("connect worker failed"))

    # -- the loop ------------------------------------------------------------------

    def _connect_loop(self, first: bool) -> None:
        """Connect (or reconnect) until ACTIVE, closed, or given up."""
        client = self._client
        policy = client.reconnect
        delays = iter(policy.delays())
        # A connection that died before answering anything does not reset the
        # backoff: a server that accepts and drops at once is not hammered.
        attempt = 0 if client._last_conn_useful else 1
        failures = 0
        while True:
            if client.state is ClientState.CLOSED:
                return
            conn_now = client._conn
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
            client._expire_waiting()
            attempt += 1
            try:
                conn = self._open_connection()
            except SmbError as exc:
                if first:
                    client._connect_error = exc
                    client._move_closed()
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
                     max(MIN_ATTEMPT, client._earliest_waiting_deadline() - now))
        deadline = now + budget
        sock = open_socket(client.host, client.port, budget)
        try:
            negotiated = negotiate(sock, client.dialects, deadline,
                                   require_signing=client.require_signing,
                                   ciphers=client.ciphers,
                                   signing_algorithms=client.signing_algorithms,
                                   posix=client.posix,
                                   client_guid=client.client_guid)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return client._new_connection(sock, negotiated)

    def _activate(self, conn, first: bool) -> bool:
        """Install ``conn``, run recovery, go ACTIVE, reissue.  False if the
        connection broke again during recovery."""
        client = self._client
        if not client._install(conn):
            return True                     # closed meanwhile
        if not first:
            client._stats.reconnects += 1
            log.warning("smblayer: reconnected to %s:%s (%s)", client.host, client.port,
                        conn.negotiated.dialect.name)
            if not self._recover(conn):
                return False
        if not client._go_active(conn):
            return client.state is ClientState.CLOSED
        return True

    def _recover(self, conn) -> bool:
        """Run the reconnect handlers, in stage order, in this thread."""
        client = self._client
        self.ident = threading.get_ident()
        try:
            for _stage, fn in client._recovery_order():
                try:
                    fn(client)
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
        if not client._mark_taken_down(conn):
            return
        log.warning("smblayer: connection to %s:%s lost: %s", client.host, client.port,
                    conn.lost_error or "closed")
        client._close_connection(conn, join=True)
        client._requeue_in_flight(conn, conn.lost_error)
        client._credits.wake_all()

    def _reconnect_failed(self, error: SmbError) -> None:
        """One reconnect attempt failed: soft requests that timed out stop waiting."""
        client = self._client
        if client._liveness.soft_expired:
            error = SmbTimeoutError(
                f"server {client.host}:{client.port} timed out and reconnecting failed: {error}")
        client._fail_waiting(error, soft_only=True)
        client._expire_waiting()

    def _give_up(self, error: SmbError) -> None:
        """ReconnectPolicy.max_attempts reached: everyone waiting now fails
        (hard mode too); the next new request starts a fresh reconnect."""
        client = self._client
        if client._liveness.soft_expired:
            error = SmbTimeoutError(f"server {client.host}:{client.port} timed out and "
                                    f"reconnecting failed: {error}")
        client._fail_waiting(error, soft_only=False)
        client._fail_everything(error)
