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

A failing callback is logged and does not stop the others.  None of them
runs under a layer lock.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator, List, Tuple

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
