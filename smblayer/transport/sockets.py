"""TCP sockets without ``socket.py``.

Theory of operation: ``import socket`` runs ``socket.py``, whose
``IntEnum._convert_`` calls build enums of every AF_*, SOCK_*, MSG_* and
AI_* constant: ~10 M instructions, about 5 % of a one-shot ``smblayer
ls``.  The transport needs none of that: the C module ``_socket`` has the
socket type itself (connect, sendmsg, recv_into, settimeout, shutdown,
detach...), getaddrinfo and the constants.  What socket.py adds that the
transport used is here: :func:`create_connection` (each address
getaddrinfo gives, in turn) and :func:`socketpair` (socket.py's emulation
only where the platform has no socketpair).  Sockets made here are
``_socket.socket`` objects, socket.socket's base class.
"""
from __future__ import annotations

import _socket

__all__ = ["create_connection", "socketpair", "Socket"]

#: the type of the sockets made here
Socket = _socket.socket


def create_connection(host, port: int, timeout: float) -> Socket:
    """A TCP socket connected to the first address of ``host`` that answers
    (as socket.create_connection); the last error if none does."""
    error = None
    for family, kind, proto, _name, address in _socket.getaddrinfo(
            host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    if error is None:
        raise OSError(f"getaddrinfo found no address for {host!r}")
    try:
        raise error
    finally:
        error = None                   # no reference cycle through the traceback


def socketpair():
    """A connected pair of sockets (a wake-up channel)."""
    if hasattr(_socket, "socketpair"):
        return _socket.socketpair()
    import socket                      # socket.py emulates it (Windows)
    return socket.socketpair()
