"""The upper layers' callbacks on one client, in one object.

Theory of operation
-------------------
A client has four kinds of callbacks, each a :class:`Handlers` list with
the same add/remove rules (adding twice runs twice; removing an absent one
is not an error; a run works on a snapshot, so a callback may add or remove
callbacks):

* ``reconnect``: after every re-negotiate, in the connect worker, before the
  waiting requests are reissued; ordered by stage (``STAGE_SESSION``, then
  ``STAGE_TREE``, ``STAGE_HANDLE``, ``STAGE_OTHER``), in registration order
  within a stage.  Recovery runs them (connect.py).
* ``active``: on smbiod each time the client is ACTIVE again after a reconnect.
* ``breaks``: on smbiod for every unsolicited message (oplock/lease break).
* ``exit``: at interpreter exit, before the client closes (registry.py).

:class:`HandlersMixin` is the client's public face of them (``add_*`` /
``remove_*``), plus the two other registries the upper layers keep on a
client: its extensions (one object per key, e.g. fs's break router) and
its sessions by id (for decryption and ECHO signing).  It works on the
client's ``hooks``, ``_extensions`` (under ``_extensions_lock``, a leaf
lock) and ``_sessions``, which the client creates.

A failing callback is logged and does not stop the others.  None of them
runs under a layer lock.
"""
from __future__ import annotations

import logging
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, List, Tuple

log = logging.getLogger("smblayer")

# Reconnect handler stages, run in this order (DESIGN.md "Threads").
STAGE_SESSION = 10
STAGE_TREE = 20
STAGE_HANDLE = 30
STAGE_OTHER = 50


class Handlers:
    """One list of callbacks."""

    def __init__(self) -> None:
        self._entries: List[Tuple[int, Callable]] = []

    def add(self, fn: Callable, stage: int = STAGE_OTHER) -> None:
        self._entries.append((stage, fn))

    def remove(self, fn: Callable) -> None:
        """Forget every registration of ``fn``."""
        self._entries = [(s, f) for s, f in self._entries if f != fn]

    def __iter__(self) -> Iterator[Callable]:
        """A snapshot, by stage (stable: registration order within a stage)."""
        return iter([fn for _stage, fn in sorted(self._entries, key=lambda e: e[0])])

    def __len__(self) -> int:
        return len(self._entries)

    def run(self, *args) -> None:
        """Call each with ``args``; a failure is logged, the rest still run."""
        for fn in self:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one broken callback must not stop the others
                log.exception("smblayer: callback %r failed", fn)


class Hooks:
    """The four callback lists of one client; see the module docstring."""

    def __init__(self) -> None:
        self.reconnect = Handlers()
        self.active = Handlers()
        self.breaks = Handlers()
        self.exit = Handlers()


class HandlersMixin:
    """SmbClient's handler, extension and session registration API; see
    the module docstring."""

    def add_reconnect_handler(self, fn: Callable[[Any], None],
                              stage: int = STAGE_OTHER) -> None:
        """``fn(client)`` runs after every re-negotiate, in the connect
        worker, before waiting requests are reissued.  Handlers run by
        ``stage`` (STAGE_SESSION, then STAGE_TREE, STAGE_HANDLE,
        STAGE_OTHER), in registration order within a stage.  Their requests
        go out while the client is still RECONNECTING.  A handler that
        raises SmbConnectionError ends this attempt: the connection is
        dropped and the worker starts over after its back-off (any other
        exception is logged and recovery goes on)."""
        self.hooks.reconnect.add(fn, stage)

    def remove_reconnect_handler(self, fn: Callable) -> None:
        self.hooks.reconnect.remove(fn)

    def add_active_handler(self, fn: Callable[[Any], None]) -> None:
        """``fn(client)`` runs on smbiod each time the client is ACTIVE again
        after a reconnect (after recovery)."""
        self.hooks.active.add(fn)

    def remove_active_handler(self, fn: Callable) -> None:
        self.hooks.active.remove(fn)

    def extension(self, key: str, factory: Callable[[Any], object]):
        """The upper layer's per-connection object for ``key``, made by
        ``factory(client)`` on first use (fs keeps its break router here):
        it lives and dies with this client, never in a global."""
        with self._extensions_lock:
            value = self._extensions.get(key)
            if value is None:
                value = self._extensions[key] = factory(self)
            return value

    def drop_extension(self, key: str, value: object) -> bool:
        """Forget ``key`` if it still maps to ``value``; True if it did."""
        with self._extensions_lock:
            if self._extensions.get(key) is value:
                del self._extensions[key]
                return True
            return False

    def add_exit_handler(self, fn: Callable[[Any], None]) -> None:
        """``fn(client)`` runs at interpreter exit, before the client closes
        (fs flushes and closes its open files); all of them together get
        EXIT_WAIT seconds, then every client closes regardless."""
        self.hooks.exit.add(fn)

    def remove_exit_handler(self, fn: Callable) -> None:
        self.hooks.exit.remove(fn)

    def run_exit_handlers(self) -> None:
        """Run the exit handlers now (the registry does, at interpreter exit)."""
        for fn in self.hooks.exit:
            try:
                fn(self)
            except Exception as exc:  # noqa: BLE001
                log.debug("smblayer: exit handler %r failed: %s", fn, exc)

    def add_break_handler(self, fn: Callable[[Any], None]) -> None:
        """``fn(notification)`` runs on smbiod for every oplock/lease break."""
        self.hooks.breaks.add(fn)

    def remove_break_handler(self, fn: Callable) -> None:
        self.hooks.breaks.remove(fn)

    def register_session(self, session_id: int, session) -> None:
        """Make ``session`` known to the client: it decrypts transform frames
        carrying ``session_id`` and signs the client's ECHOs."""
        self._sessions[session_id] = session

    def unregister_session(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)
