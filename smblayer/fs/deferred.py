"""Deferred close, as cifs.ko's ``closetimeo``: a closed file's handle kept
open for a while so that opening the same file again costs no round trip.

Theory of operation
-------------------
When a file is closed while it holds a lease with handle caching (RH or
RWH), the CLOSE is not sent: the handle is *parked* in its Tree's
:class:`DeferredCloses` for up to ``tree.deferred_close`` seconds (default
:data:`DEFAULT_DEFERRED_CLOSE`, 5; 0 or None: off).  That holds for files
opened for writing too: their ``close()`` first puts every write on the
server and sets the write time (``smblayer.fs.closing``), so nothing
waits for the deferral.  Not parked: a file holding byte-range locks (a
CLOSE releases them), one whose handle was lost, one of an old connection.

The next ``tree.open`` of the same path takes the handle back with no
CREATE when :func:`reusable` says it serves that open -- the one place
that defines compatible access:

* the same share access, and a durable handle if the open asks one (or
  one that asked it too: the server's answer would be the same);
* the access asked is within the handle's: a handle opened for writing
  serves a later reader (cifs.ko asks the same open flags; a wider handle
  is as good on the wire, and the reader's file object only reads);
* "r", "a" (the file exists: we hold it open) and "w", which truncates
  the kept handle (SET_INFO EndOfFile 0: one round trip instead of the
  CREATE's; named streams are kept, as with cifs.ko's O_TRUNC); never
  "x" (it must fail on the existing file), never extra create contexts.

A kept handle of the path that does not serve the open is closed for real
first (it would conflict).  A parked handle holds read caching, so no
other client changed the file without breaking it first, and every CREATE
of this tree that may change it closes it first (``opening``): the size
it knows (``info.size``, set at park time) is the file's.  (A break races
with the next reuse: a write by another client that a reuse overtakes
is seen by the reads, which go to the server, but not in the size an
"a" open appends at -- appends from two clients without a lock are racy
anyway.)

Breaks ([MS-SMB2] 3.2.5.19.2).  The handle stays registered with the
tree's break router while parked.  A lease break that keeps handle
caching (RWH to RH: another client opens to read) is acknowledged and the
handle stays parked.  One that takes handle caching away closes the
handle for real *before* anything is acknowledged, as the spec asks of a
client's cached handles; the lease then has no open left and nothing is
acknowledged (cifs.ko does the same).  A handle is also closed for real
when

* its time is up (one reaper thread per tree while something was parked
  in the last 10 s, waiting on a Condition for the earliest deadline);
* another open of the path on this tree cannot reuse it (above), or
  another CREATE of this tree may change the file (``write_bytes``'s
  compound, ``remove``, ``rename``, ``rmdir`` at or above it: ``opening``
  and ``close_under``);
* the tree disconnects or closes, the session logs off, the client closes
  or the interpreter exits (``Tree.disconnect`` runs at exit; before a
  LOGOFF the CLOSEs are not waited for: they share its round trip);
* more than :data:`MAX_PARKED` handles would be parked (the oldest goes).

Kept bytes (:mod:`smblayer.fs.readcache`, ``tree.read_cache``, default
64 KiB, 0 or None: off).  cifs.ko serves reads from the page cache while
it holds a read lease; so do we, for the bytes last read from a handle: a
file object open for reading only, on a handle holding a lease with read
caching, keeps what one read call got from the server (up to
``read_cache`` bytes, and whether the file ended there; a read right
after it with nothing changed between them adds to it) on the Handle
(``Handle.data``); a later read of a range it holds through that handle
-- typically by the next opener reusing the parked handle -- is answered
from it with no round trip, and so is a ``read()`` to the end when the
bytes reach it (no size asked either).  The parked handles of a tree keep
at most :data:`~smblayer.fs.readcache.READ_CACHE_PARKED` bytes (1 MiB) in
all.  Coherence:

* through this process (any client, session, tree or handle): the
  ``changes.value`` its clients share (``REGISTRY.changes``) takes a new
  value whenever a request that may change what a READ returns (CREATE,
  WRITE, LOCK, IOCTL, SET_INFO) is sent *and* when it is answered (a late
  reply too), and when a break comes in (in the receive thread, before the
  break is handled). Kept bytes carry the mark taken before their READs
  were sent; they are kept only if it did not move until the reply was in,
  and served only while it has not moved since. So our own write, truncate
  or set-size of the file, through another handle, tree or client of the
  process, drops them before its reply reaches its caller (the server's
  break to our other lease may come later than that reply; we do not wait
  for it). Conservative: any such request, for any file, drops every
  handle's kept bytes;
* another process or machine: it cannot change the file, nor lock a range
  of it, without breaking our read lease first. The break drops the bytes
  before anything else happens (``Tree._on_break``: before the kept handle
  is closed or the break acknowledged), and bytes are served only while
  the handle's lease still has read caching: the next read after the break
  goes to the server (as with cifs.ko's page cache, a read before the
  break has arrived is answered from the kept bytes);
* a reconnect: bytes carry the connection generation they were read on;
  a reclaimed kept handle drops them (its lease may have been broken
  meanwhile);
* a kept handle closed for real (its time, the tree's or client's close,
  a conflicting open, eviction) drops them; so does a "w" reuse (the
  truncation) and a file's real close.

A file object open for writing never reads from, nor fills, kept bytes.

Reconnects (:meth:`DeferredCloses.recover`, the tree's STAGE_HANDLE
recovery): a parked durable handle is reclaimed like an open file's, and
stays parked if its lease still caches handles (else it is closed); a
handle that was not durable, or whose reclaim fails, died with the old
connection and is dropped without a CLOSE.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Deque, List, Optional, Tuple

from ..errors import SmbError, SmbStatusError
from ..proto.status import NtStatus
from .ops import (DELETE, FILE_APPEND_DATA, FILE_OPEN, FILE_OPEN_IF, FILE_OVERWRITE,
                  FILE_OVERWRITE_IF, FILE_SHARE_ALL, FILE_WRITE_DATA, LEASE_HANDLE, LEASE_READ,
                  OPLOCK_LEASE, Handle)
from .readcache import READ_CACHE, READ_CACHE_PARKED, cached_bytes
from .recovery import recover_files

__all__ = ["DeferredCloses", "DeferredCloseMixin", "DEFAULT_DEFERRED_CLOSE", "MAX_PARKED",
           "may_park", "reusable"]

log = logging.getLogger("smblayer")

#: seconds a closed file's handle is kept (cifs.ko's closetimeo default)
DEFAULT_DEFERRED_CLOSE = 5.0
#: handles parked per tree at most
MAX_PARKED = 64
_REAPER_IDLE = 10.0      # seconds the reaper thread waits with nothing parked
_REUSED_AS_IS = (FILE_OPEN, FILE_OPEN_IF)
_REUSED_TRUNCATED = (FILE_OVERWRITE, FILE_OVERWRITE_IF)
_CHANGES = FILE_WRITE_DATA | FILE_APPEND_DATA | DELETE     # an open that may change the file

if TYPE_CHECKING:
    _Entry = Tuple[float, Handle]       # (deadline, handle)


def _caches_handles(handle: Handle) -> bool:
    return handle.oplock_level == OPLOCK_LEASE and \
        handle.lease_state & (LEASE_READ | LEASE_HANDLE) == LEASE_READ | LEASE_HANDLE


def may_park(raw) -> bool:
    """Whether closing ``raw`` (an SmbRawFile) should keep its handle: a
    lease with handle caching on the live connection, a tree that defers
    closes, no byte-range lock held, and the file does not refuse it
    (``keep_handle``)."""
    handle = raw.handle
    if not raw.keep_handle or not _caches_handles(handle) or handle.closed:
        return False
    tree = raw.tree
    return bool(tree.deferred_close) and handle.generation == tree.client.generation and \
        not raw.locks


def reusable(handle: Handle, access: int, disposition: int, share_access: int,
             durable: bool) -> bool:
    """Whether the kept ``handle`` serves an open of its path asking
    ``access``, ``disposition``, ``share_access`` and (``durable``) a
    durable handle (see the module docstring)."""
    return (disposition in _REUSED_AS_IS or disposition in _REUSED_TRUNCATED) and \
        access & ~handle.access == 0 and handle.share_access == share_access and \
        (not durable or handle.durable or handle.create_guid is not None) and \
        _caches_handles(handle)


def _log_close(future) -> None:
    """A CLOSE not waited for: its failure is logged (where the reply is read)."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("smblayer: deferred CLOSE failed: %s", future.exception())


class DeferredCloses:
    """The parked handles of one Tree (see the module docstring)."""

    def __init__(self, tree) -> None:
        self.tree = tree
        self._cond = threading.Condition()
        # (deadline, handle) by deadline; a handle is in here or nowhere
        self._parked: Deque[_Entry] = collections.deque()
        self._reaper: Optional[threading.Thread] = None
        self._stop = False              # close_all: the reaper leaves now
        self.reused = 0                 # opens served from the park (statistics, tests)

    def __len__(self) -> int:
        with self._cond:
            return len(self._parked)

    def handles(self) -> List[Handle]:
        """The parked handles, the next to expire first."""
        with self._cond:
            return [h for _d, h in self._parked]

    # -- parking and reuse ------------------------------------------------------------

    def park(self, raw) -> bool:
        """``raw`` (an SmbRawFile, its writes on the server) is being
        closed: keep its handle instead of sending CLOSE?  True when parked
        (the caller sends nothing)."""
        seconds = self.tree.deferred_close
        handle = raw.handle
        if not may_park(raw):
            return False
        evicted: List[Handle] = []
        with self._cond:
            if handle.data is not None and cached_bytes(handle) + sum(
                    cached_bytes(h) for _d, h in self._parked) > READ_CACHE_PARKED:
                handle.data = None          # the tree-wide bound of kept bytes
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

    def reuse(self, path: str, access: int, disposition: int = FILE_OPEN,
              share_access: int = FILE_SHARE_ALL, durable: bool = False) -> Optional[Handle]:
        """A parked handle of ``path`` that serves this open (:func:`reusable`),
        taken out of the park (truncated for "w"), or None; a parked handle
        of ``path`` that does not serve it is closed for real first."""
        found = None
        stale: List[Handle] = []
        with self._cond:
            for entry in list(self._parked):
                handle = entry[1]
                if handle.path != path:
                    continue
                self._parked.remove(entry)
                if found is None and handle.generation == self.tree.client.generation and \
                        reusable(handle, access, disposition, share_access, durable):
                    found = handle
                else:
                    stale.append(handle)
        self._close(stale)
        if found is None:
            return None
        found.deferred = False
        if disposition in _REUSED_TRUNCATED:
            found.data = None
        if disposition in _REUSED_TRUNCATED and found.info.size:
            try:
                self.tree.ops.set_end_of_file(found, 0)
            except SmbError:
                self._close([found])
                raise
        self.reused += 1
        return found

    def opening(self, path: str, access: int, disposition: int) -> None:
        """A CREATE of ``path`` on this tree is about to be sent (not a
        reuse).  If it may change the file (it writes, deletes, renames or
        overwrites), the kept handles of the path and below it are closed
        for real first: the break the server sends them for our own open
        could be handled after the next reuse, which would then trust a
        stale size."""
        if self._parked and (access & _CHANGES or disposition not in _REUSED_AS_IS):
            self.close_under(path)

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

    # -- breaks -----------------------------------------------------------------------------

    def on_break(self, kind: str, handle: Handle, new_level: int) -> bool:
        """A break for ``handle`` (smbiod).  False: it is not parked (the
        tree handles the break).  Else it is handled: a lease keeping handle
        caching is acknowledged and the handle stays parked (a reuse
        meanwhile is as good: the lease keeps R and H); otherwise the
        handle is taken out and closed for real, and nothing is
        acknowledged."""
        keeps = kind == "lease" and new_level & LEASE_HANDLE
        with self._cond:
            entry = next((e for e in self._parked if e[1] is handle), None)
            if entry is None:
                return False
            if not keeps:
                self._parked.remove(entry)
        if not keeps:
            self._close([handle])
            return True
        try:
            self.tree.ops.ack_break(handle, new_level)
        except SmbError as exc:
            log.warning("smblayer: acknowledging the break on %r failed: %s",
                        handle.path, exc)
        handle.lease_state = new_level
        return True

    def _take(self, handle: Handle) -> Optional[_Entry]:
        with self._cond:
            for entry in self._parked:
                if entry[1] is handle:
                    self._parked.remove(entry)
                    return entry
        return None

    def _repark(self, entry: _Entry) -> bool:
        """Put ``entry`` back in deadline order (False: the park was closed
        meanwhile, or the lease lost handle caching)."""
        if not _caches_handles(entry[1]):
            return False
        with self._cond:
            if self._stop:
                return False
            index = sum(1 for e in self._parked if e[0] <= entry[0])
            self._parked.insert(index, entry)
            entry[1].deferred = True
            self._start_reaper()
            self._cond.notify_all()
        return True

    def take(self, handle: Handle) -> bool:
        """Take ``handle`` out of the park (True if it was parked)."""
        return self._take(handle) is not None

    def close_taken(self, handle: Handle) -> None:
        """Close for real a handle taken out of the park (or the directory
        cache's, which closes its handles here too)."""
        self._close([handle])

    def close_all(self, wait: bool = True) -> None:
        """Close every parked handle for real (tree disconnect, exit).
        ``wait=False``: their CLOSEs are sent and not waited for (a
        TREE_DISCONNECT and LOGOFF sent next take the same round trip)."""
        with self._cond:
            handles = [h for _d, h in self._parked]
            self._parked.clear()
            self._stop = True
            self._cond.notify_all()
        self._close(handles, wait)

    # -- reconnects -------------------------------------------------------------------------

    def recover(self) -> None:
        """After a reconnect (the tree's STAGE_HANDLE recovery): reclaim the
        parked durable handles, keep those still caching handles; drop the
        others (the server closed them with the connection)."""
        with self._cond:
            if not self._parked:
                return
            entries = list(self._parked)
            self._parked.clear()
        for entry in entries:
            entry[1].data = None          # the lease may have been lost meanwhile
        generation = self.tree.client.generation
        reclaims = []
        for entry in entries:
            handle = entry[1]
            if handle.generation == generation:
                self._repark(entry)
            elif handle.durable and self.tree.ops.durable_handles:
                reclaims.append(_Reclaim(self, entry))
            else:
                self._drop(handle)
        recover_files(reclaims)

    def _drop(self, handle: Handle) -> None:
        """Forget a handle the server no longer has."""
        handle.deferred = False
        handle.data = None
        handle.closed = True
        if self.tree._breaks is not None:
            self.tree._breaks.remove(handle)

    # -- closing for real -------------------------------------------------------------------

    def _close(self, handles: List[Handle], wait: bool = True) -> None:
        tree = self.tree
        for handle in handles:
            handle.deferred = False
            handle.data = None
            if tree._breaks is not None:
                tree._breaks.remove(handle)
            if handle.generation != tree.client.generation or not tree.connected:
                handle.closed = True        # gone with the old connection
                continue
            try:
                if wait:
                    tree.ops.close(handle)
                else:
                    handle.closed = True
                    tree.client.run_task_async(tree.ops.close_task(handle)) \
                        .add_internal_callback(_log_close)
            except (SmbError, RuntimeError) as exc:     # RuntimeError: the client shut down
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


class _Reclaim:
    """A parked durable handle to reclaim after a reconnect (the protocol
    of :func:`smblayer.fs.recovery.recover_files`)."""

    def __init__(self, closes: DeferredCloses, entry: _Entry) -> None:
        self.closes, self.entry = closes, entry

    def _recover(self, last_try: bool = True) -> bool:
        closes, handle = self.closes, self.entry[1]
        tree = closes.tree
        try:
            new = tree.ops.reclaim(handle)
        except SmbError as exc:
            if not last_try and isinstance(exc, SmbStatusError) and \
                    exc.status == NtStatus.OBJECT_NAME_NOT_FOUND:
                return False               # the old connection's smbd may still hold it
            log.debug("smblayer: kept handle of %r not reclaimed: %s", handle.path, exc)
            closes._drop(handle)
            return True
        breaks = tree._breaks
        if breaks is not None:
            breaks.remove(handle)
        handle.fid, handle.generation, handle.durable = new.fid, new.generation, new.durable
        handle.oplock_level, handle.lease_state = new.oplock_level, new.lease_state
        if breaks is not None:
            breaks.add(tree, handle)
        if not closes._repark(self.entry):
            closes._close([handle])
        return True


class DeferredCloseMixin:
    """``deferred_close`` and the park of a Tree."""

    #: seconds a file's handle under a handle-caching lease is kept after
    #: close for a reopen with no round trip; 0 or None: off
    deferred_close: Optional[float] = DEFAULT_DEFERRED_CLOSE
    #: bytes a file's handle keeps of what was last read from it while it
    #: holds a read lease, served again with no READ (0 or None: off)
    read_cache: Optional[int] = READ_CACHE
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
