"""Recovery of a tree and its open files after a reconnect.

Theory of operation
-------------------
When a connection is re-established, the client's connect worker runs the
reconnect handlers stage by stage (``SmbClient.add_reconnect_handler``),
before it is ACTIVE again and before the requests that waited are reissued:

``STAGE_SESSION``
    each :class:`~smblayer.fs.session.Session` runs a new SESSION_SETUP
    (with PreviousSessionId, so the server lets go of the old session's
    durable opens) -- ``Session.on_reconnect``;
``STAGE_TREE``
    each connected :class:`~smblayer.fs.tree.Tree` whose session came back
    runs TREE_CONNECT again (a new TreeId) -- ``Tree.on_reconnect``;
``STAGE_HANDLE``
    each tree's open files reclaim their durable handles (DH2C/DHnC), or
    reopen by path, or are marked lost -- :func:`recover_files`.

Each object registers its own stage when it connects and unregisters when
it goes away (:class:`TreeRecovery` does it for a tree): nothing reconnects
another object's state, and the order is the stages', not a chain of calls.
A request the waiting callers sent meanwhile goes out after all of it,
with the new SessionId, TreeId and FileId (they are read from the live
objects at send time).
"""
from __future__ import annotations

import logging
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Iterable

from ..client import STAGE_HANDLE, STAGE_TREE

log = logging.getLogger("smblayer")

__all__ = ["TreeRecovery", "recover_files", "RECLAIM_RETRIES"]

#: pauses before the reclaim rounds of :func:`recover_files`
RECLAIM_RETRIES = (0, 0.1, 0.25, 0.5)


def recover_files(files: Iterable) -> None:
    """Reclaim or reopen each open file (``SmbRawFile._recover``).  A reclaim
    can overtake the old connection's smbd still disconnecting the durable
    opens (Samba answers "not found" until it has): those files are tried
    again after short, growing pauses (a remote state, nothing local to
    wait on), the last time for good."""
    files = list(files)
    for attempt, delay in enumerate(RECLAIM_RETRIES):
        if delay:
            time.sleep(delay)
        last_try = attempt == len(RECLAIM_RETRIES) - 1
        again = []
        for raw in files:
            try:
                if not raw._recover(last_try):
                    again.append(raw)
            except Exception:  # noqa: BLE001 - the other files still recover
                log.exception("smblayer: recovering %r failed", raw)
        files = again
        if not files:
            return


class TreeRecovery:
    """A tree's two reconnect handlers: ``STAGE_TREE`` connects the tree
    again (``tree.on_reconnect()``, when the tree is connected and its
    session was set up again), ``STAGE_HANDLE`` recovers its open files
    (``tree.open_files()``)."""

    def __init__(self, tree):
        self.tree = tree
        self.client = tree.client
        self.attached = False

    def attach(self) -> None:
        if not self.attached:
            self.attached = True
            self.client.add_reconnect_handler(self.reconnect_tree, stage=STAGE_TREE)
            self.client.add_reconnect_handler(self.recover_handles, stage=STAGE_HANDLE)

    def detach(self) -> None:
        if self.attached:
            self.attached = False
            self.client.remove_reconnect_handler(self.reconnect_tree)
            self.client.remove_reconnect_handler(self.recover_handles)

    def reconnect_tree(self, client) -> None:
        tree = self.tree
        if tree.connected and tree.session.established:
            tree.on_reconnect()

    def recover_handles(self, client) -> None:
        recover_files(self.tree.open_files())
        self.tree.deferred_closes.recover()     # the handles kept after close (fs.deferred)

    def __repr__(self) -> str:
        return f"<TreeRecovery {self.tree!r}>"
