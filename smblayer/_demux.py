"""The per-socket receive thread (sunrpc's xprt receive path).

It waits on a selector whose timeout is the next request deadline, reads
into the ``FrameReader``'s buffer with ``recv_into`` and hands each complete
frame to ``client._dispatch``, which finds the waiter by MessageId/MID and
wakes it.  It also fires the request timers.  It never sends, never runs
user code, and never touches client state: when the socket breaks it tells
the connect worker and exits, one thread per socket generation.
"""
from __future__ import annotations

import logging
import select
import socket
import threading

from .errors import SmbProtocolError
from ._wire import PLACEMENT_HEAD
from .proto.framing import FrameReader, FramingError

log = logging.getLogger("smblayer")


class Demux:
    """Receive loop for one connection generation."""

    def __init__(self, client, conn):
        self._client = client
        self._conn = conn
        self._reader = FrameReader(
            claim=lambda head, length: client._claim_placement(conn, head, length),
            claim_head=PLACEMENT_HEAD)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._stopping = False
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

    def _run(self) -> None:
        client, conn = self._client, self._conn
        sock = conn.sock
        reader = self._reader
        recv_into = sock.recv_into
        dispatch = client._dispatch
        service_timers = client._service_timers
        poller = _Poller()
        sock_fd = sock.fileno()
        error = None
        try:
            poller.register(sock_fd)
            poller.register(self._wake_r.fileno())
            while not self._stopping:
                for fd in poller.poll(service_timers()):
                    if fd != sock_fd:
                        self._drain_wake()
                        continue
                    try:
                        n = recv_into(reader.buffer())
                    except (BlockingIOError, InterruptedError):
                        continue
                    if n == 0:
                        raise ConnectionResetError("server closed the connection (EOF)"
                                                   + (" mid-frame" if reader.pending else ""))
                    for frame in reader.feed(n):
                        dispatch(conn, frame)
        except FramingError as exc:
            error = SmbProtocolError(f"bad frame from {client.host}:{client.port}: {exc}")
        except SmbProtocolError as exc:
            error = exc
        except OSError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the thread must report, never die silently
            log.exception("smblayer: demux thread failed")
            error = exc
        finally:
            poller.close()
            self._wake_r.close()
            self._wake_w.close()
        if not self._stopping:
            client._connection_lost(conn, error)

    def _drain_wake(self) -> None:
        self._wake_pending = False
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass


class _Poller:
    """The smallest readable-fd poller: epoll where there is one, else poll."""

    def __init__(self):
        self._epoll = getattr(select, "epoll", None)
        self._p = self._epoll() if self._epoll else select.poll()

    def register(self, fd: int) -> None:
        self._p.register(fd, select.EPOLLIN if self._epoll else select.POLLIN)

    def poll(self, timeout):
        if self._epoll:
            events = self._p.poll(-1 if timeout is None else timeout)
        else:
            events = self._p.poll(None if timeout is None else timeout * 1000.0)
        return [fd for fd, _mask in events]

    def close(self) -> None:
        if self._epoll:
            self._p.close()
