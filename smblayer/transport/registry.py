"""The client registry: the one global of smblayer.

``get_client()`` returns the existing client for the same (host, port,
options) with its refcount raised, or builds one.  The registry is fork-safe:
in a child process every inherited client is detached (its socket is
forgotten, never shut down, so the parent's connection lives on) and the
child builds its own.  At interpreter exit every live client (shared or
private) is shut down while its threads still run: the upper layers' exit
handlers (fs closes its open files) get a bounded time, then the client
closes, so no finalizer later waits for a reply a frozen thread would
never deliver.
"""
from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Dict, Optional, Tuple

from ..config import DialectRange, ReconnectPolicy, TimeoutPolicy


class Registry:
    def __init__(self):
        self._lock = threading.Lock()
        self._clients: Dict[Tuple, object] = {}
        self._all = weakref.WeakSet()

    def get(self, host: str, port: int, client_class=None, **options):
        from .client import SmbClient
        if client_class is None:
            client_class = SmbClient
        # The class is part of the key: a subclass never shares a client
        # with the base class or another subclass.
        key = (host.lower(), int(port), client_class, tuple(sorted(options.items())))
        with self._lock:
            client = self._existing(key)
            if client is not None:
                return client
        # Connect outside the lock: one slow server must not hold up
        # get_client() for the others.  If two callers race, one client wins.
        fresh = client_class(host, port, _registry=self, _key=key, **options)
        with self._lock:
            client = self._existing(key)
            if client is None:
                self._clients[key] = fresh
                return fresh
        fresh._registry = None
        fresh.close()
        return client

    def _existing(self, key):
        """The live client for ``key`` with one more reference (under the lock)."""
        from .client import ClientState
        client = self._clients.get(key)
        if client is not None and client.state is not ClientState.CLOSED:
            client.refcount += 1
            return client
        return None

    def release(self, client) -> bool:
        """Drop one reference; True if it was the last (caller closes)."""
        with self._lock:
            client.refcount -= 1
            if client.refcount > 0:
                return False
            if self._clients.get(client._key) is client:
                del self._clients[client._key]
            return True

    def forget(self, client) -> None:
        with self._lock:
            if self._clients.get(client._key) is client:
                del self._clients[client._key]

    def clients(self):
        with self._lock:
            return list(self._clients.values())

    def track(self, client) -> None:
        """Every client, shared or private: for fork and interpreter exit."""
        self._all.add(client)

    def _at_exit(self) -> None:
        from .client import EXIT_WAIT
        clients = list(self._all)
        if not clients:
            return
        worker = threading.Thread(target=lambda: [c._run_exit_handlers() for c in clients],
                                  name="smblayer-exit", daemon=True)
        worker.start()
        worker.join(EXIT_WAIT)
        for client in clients:
            client.close()

    # fork safety
    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        self._lock = threading.Lock()
        self._clients = {}
        for client in list(self._all):
            client._after_fork_in_child()


_registry = Registry()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_registry._before_fork,
                        after_in_parent=_registry._after_fork_parent,
                        after_in_child=_registry._after_fork_child)
atexit.register(_registry._at_exit)


def get_client(host: str, port: int = 445, *,
               dialects: Optional[DialectRange] = None,
               timeouts: Optional[TimeoutPolicy] = None,
               reconnect: Optional[ReconnectPolicy] = None,
               client_class: Optional[type] = None,
               **options):
    """A shared, refcounted SmbClient for (host, port, options): connects and
    negotiates on first use.  Release it with ``client.release()`` or use it
    as a context manager.

    ``client_class``: an SmbClient subclass to build (a protocol package's
    client); it is part of the sharing key, so callers asking for the same
    class share one client."""
    if not isinstance(host, str) or not host:
        raise TypeError("host must be a non-empty string")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, not {port!r}")
    if client_class is not None:
        from .client import SmbClient
        if not (isinstance(client_class, type) and issubclass(client_class, SmbClient)):
            raise TypeError("client_class must be SmbClient or a subclass")
    return _registry.get(host, port, client_class=client_class,
                         dialects=dialects if dialects is not None else DialectRange(),
                         timeouts=timeouts if timeouts is not None else TimeoutPolicy(),
                         reconnect=reconnect if reconnect is not None else ReconnectPolicy(),
                         **options)
