"""Deferred close, as cifs.ko's ``closetimeo``: a closed file's handle kept
open for a while so that opening the same file again costs no round trip.

Theory of operation
-------------------
When a read-only file (``tree.open(path, "rb")``) is closed while it holds
a lease with handle caching (RH or RWH), the CLOSE is not sent: the handle
is *parked* in its Tree's :class:`DeferredCloses` for up to
``tree.deferred_close`` seconds (default :data:`DEFAULT_DEFERRED_CLOSE`, 5;
0 or None: off).  The next ``tree.open`` of the same path with the same
access takes it back (:meth:`DeferredCloses.reuse`): no CREATE is sent.

The handle stays registered with the tree's break router while parked, so
a lease break finds it: the tree takes it out of the park before the
break is acknowledged and closes it for real afterwards
(:meth:`DeferredCloses.take`).  It is also closed for real when

* its time is up (one reaper thread per tree while something was parked
  in the last 10 s, waiting on a Condition for the earliest deadline);
* another open of the same path on this tree does not reuse it (a
  different access: a writer): it is closed first; so are those at or
  below a path being deleted or renamed (``close_under``);
* the tree disconnects or closes, the session logs off, the client closes
  or the interpreter exits (``Tree.disconnect`` runs at exit);
* more than :data:`MAX_PARKED` handles would be parked (the oldest goes).

A reconnect makes parked handles stale (their ``generation`` is the old
connection's): they are never reused and are dropped without a CLOSE.

Only read-only files are deferred: a written file's close must report a
failed write, and its cached writes and times are settled by that CLOSE.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Deque, List, Optional, Tuple

from ..errors import SmbError
from .ops import FILE_SHARE_ALL, LEASE_HANDLE, OPLOCK_LEASE, Handle

__all__ = ["DeferredCloses", "DeferredCloseMixin", "DEFAULT_DEFERRED_CLOSE", "MAX_PARKED"]

log = logging.getLogger("smblayer")

#: seconds a closed file's handle is kept (cifs.ko's closetimeo default)
DEFAULT_DEFERRED_CLOSE = 5.0
#: handles parked per tree at most
MAX_PARKED = 64
_REAPER_IDLE = 10.0      # seconds the reaper thread waits with nothing parked


class DeferredCloses:
    """The parked handles of one Tree (see the module docstring)."""

    def __init__(self, tree) -> None:
        self.tree = tree
        self._cond = threading.Condition()
        # (deadline, handle) oldest first; a handle is in here or nowhere
        self._parked: Deque[Tuple[float, Handle]] = collections.deque()
        self._reaper: Optional[threading.Thread] = None
        self._stop = False              # close_all: the reaper leaves now
        self.reused = 0                 # opens served from the park (statistics, tests)

    def __len__(self) -> int:
        with self._cond:
            return len(self._parked)

    # -- parking and reuse ------------------------------------------------------------

    def park(self, raw) -> bool:
        """``raw`` (an SmbRawFile) is being closed: keep its handle instead
        of sending CLOSE?  True when parked (the caller sends nothing)."""
        seconds = self.tree.deferred_close
        handle = raw.handle
        if not seconds or raw.mode not in ("rb", "r") or handle.oplock_level != OPLOCK_LEASE or \
                not handle.lease_state & LEASE_HANDLE or \
                handle.generation != self.tree.client.generation:
            return False
        evicted: List[Handle] = []
        with self._cond:
            handle.deferred = True
            handle.file = None
            self._stop = False
            self._parked.append((time.monotonic() + seconds, handle))
            while len(self._parked) > MAX_PARKED:
                evicted.append(self._parked.popleft()[1])
            self._start_reaper()
            self._cond.notify_all()
        self._close(evicted)
        return True

    def reuse(self, path: str, access: int, share_access: int = FILE_SHARE_ALL
              ) -> Optional[Handle]:
        """A parked handle of ``path`` opened with ``access`` and
        ``share_access`` (taken out of the park), or None; a parked handle of
        ``path`` opened otherwise is closed for real first (it would
        conflict)."""
        found = None
        stale: List[Handle] = []
        with self._cond:
            for entry in list(self._parked):
                handle = entry[1]
                if handle.path != path:
                    continue
                self._parked.remove(entry)
                if found is None and handle.access == access and \
                        handle.share_access == share_access and \
                        handle.lease_state & LEASE_HANDLE and \
                        handle.generation == self.tree.client.generation:
                    found = handle
                else:
                    stale.append(handle)
        self._close(stale)
        if found is not None:
            found.deferred = False
            self.reused += 1
        return found

    def close_under(self, path: str) -> None:
        """Close for real the parked handles of ``path`` and below it (before
        a delete or rename there: a kept handle would hold the name)."""
        if not self._parked:
            return
        prefix = path + "\\"
        with self._cond:
            hit = [e for e in self._parked
                   if not path or e[1].path == path or e[1].path.startswith(prefix)]
            for entry in hit:
                self._parked.remove(entry)
        self._close([h for _d, h in hit])

    def take(self, handle: Handle) -> bool:
        """A break for ``handle`` (smbiod, before it is acknowledged): take
        it out of the park.  True if it was parked (then the caller closes
        it with :meth:`close_taken` once the break is acknowledged)."""
        with self._cond:
            for entry in self._parked:
                if entry[1] is handle:
                    self._parked.remove(entry)
                    return True
        return False

    def close_taken(self, handle: Handle) -> None:
        self._close([handle])

    def close_all(self) -> None:
        """Close every parked handle for real (tree disconnect, exit)."""
        with self._cond:
            handles = [h for _d, h in self._parked]
            self._parked.clear()
            self._stop = True
            self._cond.notify_all()
        self._close(handles)

    # -- closing for real -------------------------------------------------------------------

    def _close(self, handles: List[Handle]) -> None:
        tree = self.tree
        for handle in handles:
            handle.deferred = False
            if tree._breaks is not None:
                tree._breaks.remove(handle)
            if handle.generation != tree.client.generation or not tree.connected:
                handle.closed = True        # gone with the old connection
                continue
            try:
                tree.ops.close(handle)
            except SmbError as exc:
                log.debug("smblayer: deferred CLOSE of %r failed: %s", handle.path, exc)

    def _start_reaper(self) -> None:
        """Under _cond: make sure a reaper runs while something is parked."""
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, daemon=True,
                                            name="smblayer-deferred-close")
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            with self._cond:
                # the park is often empty only between a reuse and the next
                # close: linger a while rather than start a thread each time
                self._cond.wait_for(lambda: self._parked or self._stop, _REAPER_IDLE)
                if not self._parked:
                    self._reaper = None
                    return
                while self._parked and self._parked[0][0] > time.monotonic():
                    self._cond.wait(self._parked[0][0] - time.monotonic())
                expired = []
                now = time.monotonic()
                while self._parked and self._parked[0][0] <= now:
                    expired.append(self._parked.popleft()[1])
            self._close(expired)


class DeferredCloseMixin:
    """``deferred_close`` and the park of a Tree."""

    #: seconds a read-only file's handle under a handle-caching lease is kept
    #: after close for a reopen with no round trip; 0 or None: off
    deferred_close: Optional[float] = DEFAULT_DEFERRED_CLOSE
    _deferred_closes: Optional[DeferredCloses] = None

    @property
    def deferred_closes(self) -> DeferredCloses:
        """The parked handles (made on first use)."""
        closes = self._deferred_closes
        if closes is None:
            with self._lock:
                if self._deferred_closes is None:
                    self._deferred_closes = DeferredCloses(self)
                closes = self._deferred_closes
        return closes
