"""A link emulator for tests and benchmarks: a paced TCP relay on loopback.

Theory of operation
-------------------
:class:`Link` listens on ``listen_host`` (127.0.0.1 unless told; any
127.0.0.0/8 address is local on Linux) and forwards each connection it
accepts to ``target``, each direction of each connection paced at
``rate`` bytes/s: like one NIC of that speed per connection.  A thread
per direction stores and forwards up to ``CHUNK`` bytes at a time: it
receives a chunk, waits until the emulated wire has carried it (the wire
is free again ``len / rate`` seconds after it last was), then sends it.
Memory is bounded (one chunk per direction); what the sender has queued
beyond it waits in the sockets' buffers, and TCP flow control pushes back
on the sender -- a standing queue, as on a slow link.  ``rate`` 0 forwards
unpaced.

A direction ends when its source closes (or either socket fails); it then
shuts both sockets down, so the other direction ends too: a connection's
threads stop by themselves.  :meth:`Link.close` stops accepting, shuts
every connection down and joins every thread (bounded).

:class:`LinkProcess` runs a :class:`Link` in a child process of its own:
its threads then take neither the caller's GIL nor count as its CPU (a
benchmark's link emulator).  In a test, where one paced connection sleeps
most of the time, the in-process :class:`Link` is enough and simpler.
"""
from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
import time
from typing import List, Tuple

__all__ = ["Link", "LinkProcess", "CHUNK"]

log = logging.getLogger("smblayer")

#: bytes stored and forwarded at a time, per direction
CHUNK = 65536
#: seconds close() waits for each thread
JOIN_TIMEOUT = 5.0


class Link:
    """A paced TCP relay to ``target`` (see the module docstring): ``port``
    is where it listens (on ``listen_host``), ``connections`` how many it
    accepted so far.  A context manager (``close`` on exit)."""

    def __init__(self, target: Tuple[str, int], rate: float, *,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0 (0: unpaced)")
        self.target = (target[0], int(target[1]))
        self.rate = float(rate)
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []        # under _lock
        self._threads: List[threading.Thread] = []     # under _lock
        self._listener = socket.create_server((listen_host, listen_port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._start(self._accept, "accept")

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"smblayer-link-{self.port}-{name}")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                near, _ = self._listener.accept()
            except OSError:
                return                                  # closed
            try:
                far = socket.create_connection(self.target, timeout=10)
                far.settimeout(None)
            except OSError as exc:
                log.debug("smblayer: link %d: cannot reach %s: %s", self.port, self.target, exc)
                near.close()
                continue
            with self._lock:
                if self._stop.is_set():
                    near.close()
                    far.close()
                    return
                self._sockets += [near, far]
                index = self.connections
                self.connections += 1
            self._start(self._pump, f"{index}-c2s", near, far)
            self._start(self._pump, f"{index}-s2c", far, near)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        rate = self.rate
        free = time.monotonic()             # when the emulated wire is free again
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if rate:
                    free = max(free, time.monotonic()) + len(data) / rate
                    if self._stop.wait(max(0.0, free - time.monotonic())):   # pacing
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting, shut every connection down, join the threads."""
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for sock in sockets:
            sock.close()


class LinkProcess:
    """A :class:`Link` in a child process (``port``: where it listens);
    ``close`` ends the process."""

    def __init__(self, target: Tuple[str, int], rate: float, *,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        ours, theirs = multiprocessing.Pipe()
        self.process = multiprocessing.Process(
            target=_serve, args=(target, rate, listen_host, listen_port, theirs), daemon=True,
            name="smblayer-link")
        self.process.start()
        theirs.close()
        self._pipe = ours
        if not ours.poll(30):
            self.close()
            raise RuntimeError("the link process did not start")
        self.host, self.port = ours.recv()

    def __enter__(self) -> "LinkProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.process.terminate()
        self.process.join(JOIN_TIMEOUT)
        self._pipe.close()


def _serve(target: Tuple[str, int], rate: float, listen_host: str, listen_port: int,
           pipe) -> None:
    """The child process of a LinkProcess: serve until the parent ends it
    (or goes: the pipe then reads EOF)."""
    with Link(target, rate, listen_host=listen_host, listen_port=listen_port) as link:
        pipe.send((link.host, link.port))
        try:
            pipe.recv()
        except (EOFError, OSError):
            pass

