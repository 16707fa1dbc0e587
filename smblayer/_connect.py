"""The connect worker: the only writer of the socket and of client state.

It opens the TCP connection, negotiates within the caller's bounds, installs
the new connection generation (starting its demux thread), runs the upper
layers' reconnect handlers on smbiod and makes the client ACTIVE.  After a
reset it does the same with ``ReconnectPolicy`` backoff.  The thread exists
only while there is work: an idle, healthy client has none.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Optional

from .errors import (SmbConnectionError, SmbError, SmbNegotiateError,
                     SmbNegotiateRefusedError, SmbProtocolError)
from .proto import smb2
from .proto.framing import FrameReader, FramingError, frame_prefix
from .proto.negotiate import NegotiateFailed, NegotiateResult, Negotiator, Outgoing

log = logging.getLogger("smblayer")


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with Nagle off and keepalive on."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise SmbConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def negotiate(sock: socket.socket, dialects, deadline: float, *,
              require_signing: bool = False, client_guid: bytes,
              ciphers=None, signing_algorithms=None) -> NegotiateResult:
    """Run the negotiate exchange on a fresh socket (blocking, bounded by
    ``deadline``, a time.monotonic() value)."""
    negotiator = Negotiator(dialects, client_guid=client_guid, salt=os.urandom(32),
                            require_signing=require_signing, ciphers=ciphers,
                            signing_algorithms=signing_algorithms)
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
    """Runs connect/reconnect attempts in a thread that exists only while
    needed.  ``kick()`` starts it (idempotent)."""

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._again = False

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

    def _run(self) -> None:
        client = self._client
        try:
            while True:
                client._connect_loop()
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
