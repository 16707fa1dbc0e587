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

The registry knows its clients only through this small interface (it never
imports the client module): ``state``, ``refcount``, ``close()``,
``run_exit_handlers()`` and ``detach_after_fork()``; a client passes its
sharing key when it releases or forgets itself.  ``get_client`` lives beside
SmbClient (client.py), which builds clients and hands them to
``REGISTRY.get``.
"""
from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Tuple

from .states import ClientState

EXIT_WAIT = 3.0              # interpreter exit: time for the exit handlers in all


class ChangeMark:
    """``value`` moves to a value it never had whenever a request that may
    change what a READ returns (task.CHANGING_COMMANDS) is sent or answered
    by any client of this process, or a break comes in to any of them
    (``REGISTRY.changes``, each client's ``changes``): what bytes kept
    from a read are checked against (smblayer.fs.readcache).  Process-wide:
    two clients of this process writing and reading one file see each
    other's writes at once, as one client's handles do."""

    __slots__ = ("value", "_count")

    def __init__(self) -> None:
        self.value = 0
        self._count = itertools.count(1)

    def note(self) -> None:
        """A change may have happened (any thread: ``next`` is atomic)."""
        self.value = next(self._count)


class Registry:
    def __init__(self):
        self._lock = threading.Lock()
        self._clients: Dict[Tuple, object] = {}
        self._all = weakref.WeakSet()
        self.changes = ChangeMark()         # shared by every client of the process

    def get(self, host: str, port: int, client_class: type, **options):
        """The live client of ``client_class`` for (host, port, options) with
        one more reference, or a new one built outside the lock."""
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
        fresh.close()
        return client

    def _existing(self, key):
        """The live client for ``key`` with one more reference (under the lock)."""
        client = self._clients.get(key)
        if client is not None and client.state is not ClientState.CLOSED:
            client.refcount += 1
            return client
        return None

    def release(self, client, key) -> bool:
        """Drop one reference; True if it was the last (caller closes)."""
        with self._lock:
            client.refcount -= 1
            if client.refcount > 0:
                return False
            if self._clients.get(key) is client:
                del self._clients[key]
            return True

    def forget(self, client, key) -> None:
        with self._lock:
            if self._clients.get(key) is client:
                del self._clients[key]

    def clients(self):
        with self._lock:
            return list(self._clients.values())

    def track(self, client) -> None:
        """Every client, shared or private: for fork and interpreter exit."""
        self._all.add(client)

    def at_exit(self) -> None:
        clients = list(self._all)
        if not clients:
            return
        # the exit handlers (a session's: its files' deferred work) run on a
        # thread of their own, bounded by EXIT_WAIT; a program that closed its
        # sessions left none, and spares that thread (a one-shot command)
        handled = [c for c in clients if c.hooks.exit]
        if handled:
            worker = threading.Thread(target=lambda: [c.run_exit_handlers() for c in handled],
                                      name="smblayer-exit", daemon=True)
            worker.start()
            worker.join(EXIT_WAIT)
        for client in clients:
            client.close()

    # fork safety
    def before_fork(self) -> None:
        self._lock.acquire()

    def after_fork_parent(self) -> None:
        self._lock.release()

    def after_fork_child(self) -> None:
        self._lock = threading.Lock()
        self._clients = {}
        for client in list(self._all):
            client.detach_after_fork()


REGISTRY = Registry()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=REGISTRY.before_fork,
                        after_in_parent=REGISTRY.after_fork_parent,
                        after_in_child=REGISTRY.after_fork_child)
atexit.register(REGISTRY.at_exit)
