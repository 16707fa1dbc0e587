"""Directory leases and a metadata cache, as cifs.ko's cached_dir.

Theory of operation
-------------------
A server that grants directory leases (it says so with
SMB2_GLOBAL_CAP_DIRECTORY_LEASING at NEGOTIATE: Samba 4.22, not 4.17) lets
a client cache what a directory holds for as long as it holds a
read-caching lease on it.  On such a server the first full listing of a
directory (``listdir``, ``scandir``, ``walk``, fsspec's ``ls``) opens it
with a read/handle lease, lists it through that handle and keeps the
handle, its lease and the entries' FileInfo in the Tree's
:class:`DirCache`.  While the entry is valid:

* a full listing of the directory is answered from it;
* ``stat``/``file_info`` of a name in it (so ``exists``, ``isdir``,
  ``isfile``, fsspec's ``info`` and ``exists``) are answered from it, a
  name not in it is FileNotFoundError; both with no round trip.

An entry is valid while its lease holds R, it is younger than
``tree.dir_cache_ttl`` (30 s), its handle belongs to the client's current
connection and the client is ACTIVE (never served across a reconnect,
hard or soft: a reconnect changes the connection generation and the old
handle and lease are gone).  It is dropped

* by a lease break, synchronously on smbiod *before* the break is
  acknowledged (``Tree._on_break``), then its handle is closed;
* by this tree's own changes there: any CREATE that may change the
  directory (write or delete access, or a disposition other than open)
  drops the parent's entry (a delete or rename also every entry at or
  below the path), and so does closing a file written through this tree;
* when more than ``tree.dir_cache_size`` (16) directories are cached (the
  least recently used goes), when its time is up (at its next use), and
  with the tree (disconnect, close): a cache never outlives its tree.

``dir_cache_size = 0`` switches it off; on a server without directory
leases nothing is asked and everything is as without the cache.

An entry's FileInfo is what the listing said: no link count (``nlink``
stays 1, as cifs.ko's for what it learned from a listing) except on a
POSIX tree, whose listing entries carry it.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional

from ..errors import SmbError, status_error
from ..proto.status import NtStatus
from ..records import Record, replace
from ..transport.states import ClientState
from .ops import (DELETE, FILE_APPEND_DATA, FILE_DIRECTORY_FILE, FILE_LIST_DIRECTORY, FILE_OPEN,
                  FILE_READ_ATTRIBUTES, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, LEASE_HANDLE,
                  LEASE_READ, OPLOCK_LEASE, SYNCHRONIZE, FileInfo, Handle)

__all__ = ["DirCache", "DirCacheMixin", "DEFAULT_DIR_CACHE_SIZE", "DEFAULT_DIR_CACHE_TTL"]

log = logging.getLogger("smblayer")

#: directories a tree keeps at most
DEFAULT_DIR_CACHE_SIZE = 16
#: seconds an entry is served at most
DEFAULT_DIR_CACHE_TTL = 30.0
CAP_DIRECTORY_LEASING = 0x00000020
# Access that may change a directory's entries (or the entry of the file).
_CHANGES = FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_ATTRIBUTES | DELETE | \
    0x00040000 | 0x00080000 | 0x00000010        # WRITE_DAC, WRITE_OWNER, FILE_WRITE_EA


class _Dir(Record):
    __slots__ = ("handle", "entries", "index", "expires", "stats")

    def __init__(self, handle: Handle, entries: List[FileInfo], index: dict,
                 expires: float) -> None:
        self.handle = handle
        self.entries = entries
        self.index = index
        self.expires = expires
        # key -> os.stat_result, made on the first stat of the name: the
        # entries are never changed in place (a change drops the directory)
        self.stats: dict = {}


class DirCache:
    """The cached directories of one Tree (see the module docstring)."""

    def __init__(self, tree) -> None:
        self.tree = tree
        self._lock = threading.Lock()
        self._dirs: "collections.OrderedDict[str, _Dir]" = collections.OrderedDict()
        self.hits = 0                   # answers served (statistics, tests)

    def __len__(self) -> int:
        return len(self._dirs)

    # -- serving ---------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return path if self.tree.posix else path.lower()

    def enabled(self) -> bool:
        tree = self.tree
        n = tree.client.negotiated
        return bool(tree.dir_cache_size) and n is not None and \
            bool(n.capabilities & CAP_DIRECTORY_LEASING) and not tree.client.dialect.is_smb1

    def _valid(self, path: str) -> Optional[_Dir]:
        """Under _lock: the valid entry of directory ``path``, else None (an
        invalid one is dropped and returned for closing by the caller)."""
        entry = self._dirs.get(self._key(path))
        if entry is None:
            return None
        client = self.tree.client
        if entry.expires <= time.monotonic() or not entry.handle.lease_state & LEASE_READ or \
                entry.handle.generation != client.generation or \
                client.state is not ClientState.ACTIVE:
            return None
        self._dirs.move_to_end(self._key(path))
        return entry

    def listing(self, path: str) -> Optional[List[FileInfo]]:
        """Copies of the entries of directory ``path`` from the cache, or
        listed through a new leased handle (then cached); None when the
        cache is off or the server gives no directory lease."""
        if not self.enabled():
            return None
        with self._lock:
            entry = self._valid(path)
            if entry is not None:
                self.hits += 1
                return [replace(info) for info in entry.entries]
        self._drop_stale(path)
        return self._fill(path)

    def lookup(self, path: str) -> Optional[FileInfo]:
        """A copy of the FileInfo of ``path`` if its directory is cached
        (FileNotFoundError when the directory holds no such name), else None."""
        if not self._dirs:
            return None
        parent, _sep, name = path.rpartition("\\")
        if not name:
            return None
        with self._lock:
            entry = self._valid(parent)
            if entry is None:
                return None
            info = entry.index.get(self._key(name))
            self.hits += 1
        if info is None:
            raise status_error(NtStatus.OBJECT_NAME_NOT_FOUND, "CREATE", path)
        return replace(info)

    def stat_result(self, path: str, dev: int) -> Optional[os.stat_result]:
        """``lookup(path).to_stat(dev)``, made once per cached entry (a
        ``stat`` loop over a cached directory does no more than a dict
        lookup per name); None if the directory is not cached."""
        if not self._dirs:
            return None
        parent, _sep, name = path.rpartition("\\")
        if not name:
            return None
        key = self._key(name)
        with self._lock:
            entry = self._valid(parent)
            if entry is None:
                return None
            result = entry.stats.get(key)
            if result is None:
                info = entry.index.get(key)
                if info is not None:
                    result = entry.stats[key] = info.to_stat(dev)
            self.hits += 1
        if result is None:
            raise status_error(NtStatus.OBJECT_NAME_NOT_FOUND, "CREATE", path)
        return result

    # -- filling -------------------------------------------------------------------------------

    def _fill(self, path: str) -> Optional[List[FileInfo]]:
        tree = self.tree
        ops = tree.ops
        breaks = tree._break_router()
        with breaks.opening():
            handle = ops.open(path, access=FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES |
                              SYNCHRONIZE, disposition=FILE_OPEN,
                              create_options=FILE_DIRECTORY_FILE, oplock=OPLOCK_LEASE,
                              lease_state=LEASE_READ | LEASE_HANDLE)
            breaks.add(tree, handle)
        keep = False
        try:
            entries = ops.list_handle(handle)
            keep = handle.oplock_level == OPLOCK_LEASE and bool(handle.lease_state & LEASE_READ)
            if keep:
                entry = _Dir(handle, entries, {self._key(i.name): i for i in entries},
                             time.monotonic() + (tree.dir_cache_ttl or 0))
                with self._lock:
                    # a break may have come while listing: the lease must still hold
                    keep = bool(handle.lease_state & LEASE_READ) and not handle.closed
                    if keep:
                        old = self._dirs.pop(self._key(path), None)
                        self._dirs[self._key(path)] = entry
                        evicted = [old] if old is not None else []
                        while len(self._dirs) > tree.dir_cache_size:
                            evicted.append(self._dirs.popitem(last=False)[1])
                self._close([e.handle for e in evicted] if keep else [])
            return [replace(info) for info in entries]
        finally:
            if not keep:
                self._close([handle])

    # -- dropping ---------------------------------------------------------------------------------

    def _drop_stale(self, path: str) -> None:
        with self._lock:
            entry = self._dirs.pop(self._key(path), None)
        if entry is not None:
            self._close([entry.handle])

    def take(self, handle: Handle) -> bool:
        """A break for ``handle`` (smbiod, before it is acknowledged): drop
        its entry.  True if it was cached (the caller closes the handle)."""
        if not self._dirs:
            return False
        with self._lock:
            for key, entry in list(self._dirs.items()):
                if entry.handle is handle:
                    del self._dirs[key]
                    return True
        return False

    def changing(self, path: str, access: int, disposition: int) -> None:
        """This tree opens ``path`` (``Smb2FileOps._create_task``): drop what
        that open may make stale."""
        if self._dirs and (access & _CHANGES or disposition != FILE_OPEN):
            self.invalidate(path, below=bool(access & DELETE))

    def invalidate(self, path: str, below: bool = False) -> None:
        """Drop the entry of ``path``'s directory; ``below``: also those of
        ``path`` and below it (``path`` deleted or renamed)."""
        if not self._dirs:
            return
        key = self._key(path)
        parent = key.rpartition("\\")[0]
        with self._lock:
            hit = [k for k in self._dirs if k == parent or below and (
                k == key or k.startswith(key + "\\") or not key)]
            handles = [self._dirs.pop(k).handle for k in hit]
        self._close(handles)

    def clear(self) -> None:
        """Drop everything (the tree disconnects)."""
        with self._lock:
            handles = [e.handle for e in self._dirs.values()]
            self._dirs.clear()
        self._close(handles)

    def _close(self, handles: List[Handle]) -> None:
        tree = self.tree
        for handle in handles:
            if tree._breaks is not None:
                tree._breaks.remove(handle)
            if handle.closed:
                continue
            if handle.generation != tree.client.generation or not tree.connected:
                handle.closed = True
                continue
            try:
                tree.ops.close(handle)
            except SmbError as exc:
                log.debug("smblayer: closing cached directory %r failed: %s", handle.path, exc)


class _NoDirCache:
    """What a FileOps sees on a tree object without a cache (tests' fakes)."""

    def listing(self, path: str) -> None:
        return None

    def lookup(self, path: str) -> None:
        return None

    def changing(self, path: str, access: int, disposition: int) -> None:
        pass


NO_DIR_CACHE = _NoDirCache()


class DirCacheMixin:
    """The directory cache settings and the cache of a Tree."""

    #: directories cached at most (0 or None: no cache, no directory leases)
    dir_cache_size: Optional[int] = DEFAULT_DIR_CACHE_SIZE
    #: seconds a cached directory is served at most
    dir_cache_ttl: float = DEFAULT_DIR_CACHE_TTL
    _dir_cache: Optional[DirCache] = None

    @property
    def dir_cache(self) -> DirCache:
        """The cached directories (made on first use)."""
        cache = self._dir_cache
        if cache is None:
            with self._lock:
                if self._dir_cache is None:
                    self._dir_cache = DirCache(self)
                cache = self._dir_cache
        return cache
