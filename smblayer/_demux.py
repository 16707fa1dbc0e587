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
import selectors
import socket
import threading

from .errors import SmbProtocolError
from .proto.framing import FrameReader, FramingError

log = logging.getLogger("smblayer")


class Demux:
    """Receive loop for one connection generation."""

    def __init__(self, client, conn):
        self._client = client
        self._conn = conn
        self._reader = FrameReader()
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
        sel = selectors.DefaultSelector()
        error = None
        try:
            sel.register(sock, selectors.EVENT_READ, True)
            sel.register(self._wake_r, selectors.EVENT_READ, False)
            while not self._stopping:
                events = sel.select(client._service_timers())
                for key, _mask in events:
                    if not key.data:
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
            sel.close()
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
