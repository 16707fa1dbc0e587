"""Socket plumbing shared by the loopback test servers (fake server, proxy)."""
from __future__ import annotations

import selectors
import socket
import struct
from typing import Tuple

#: selector keys' data for the listener and the wake-up socket
LISTEN = object()
WAKE = object()


def open_listener(host: str, port: int, backlog: int) -> Tuple[
        socket.socket, socket.socket, socket.socket, selectors.BaseSelector]:
    """A non-blocking listener and a wake-up socketpair, both registered on
    a new selector: (listener, wake_r, wake_w, selector)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
        listener.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, LISTEN)
        sel.register(wake_r, selectors.EVENT_READ, WAKE)
    except BaseException:
        listener.close()
        raise
    return listener, wake_r, wake_w, sel


_RST_LINGER = struct.pack("ii", 1, 0)


def rst_close(sock: socket.socket) -> None:
    """Close ``sock`` sending a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
