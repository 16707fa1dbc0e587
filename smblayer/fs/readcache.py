"""The bytes last read from a handle under a read lease, served again with
no round trip (cifs.ko serves reads from the page cache while it holds an
R lease).  The rules are in the theory of operation of
:mod:`smblayer.fs.deferred`; the kept bytes are ``Handle.data``:
``(mark, generation, offset, bytes, eof)``.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional

from .ops import LEASE_READ, OPLOCK_LEASE

__all__ = ["READ_CACHE", "READ_CACHE_PARKED", "stamp", "keep", "serve", "rest",
           "cached_bytes"]

#: default ``tree.read_cache``: bytes of a file kept per handle (0: off)
READ_CACHE = 64 * 1024
#: bytes the parked handles of one tree keep at most
READ_CACHE_PARKED = 1 << 20


def _reads_cached(raw) -> bool:
    handle = raw._handle
    return not raw._writable and handle.oplock_level == OPLOCK_LEASE and \
        bool(handle.lease_state & LEASE_READ) and bool(raw._tree.read_cache)


def stamp(raw) -> Optional[int]:
    """The client's change mark before a READ of ``raw`` (an SmbRawFile)
    whose bytes may be kept, or None (they are not: a file open for
    writing, no read lease, the cache off)."""
    return raw._tree.client.changes.value if _reads_cached(raw) else None


def keep(raw, mark: int, offset: int, data: memoryview, eof: bool) -> None:
    """Keep ``data``, read from ``offset`` (to the end of the file:
    ``eof``) by READs sent after ``mark`` was taken -- if nothing that may
    change a file was sent or answered and no break came in meanwhile, and
    the handle still holds its read lease on the live connection."""
    handle = raw._handle
    client = raw._tree.client
    limit = raw._tree.read_cache
    if client.changes.value != mark or len(data) > limit or \
            handle.generation != client.generation or not _reads_cached(raw):
        handle.data = None
        return
    before = handle.data
    if before is not None and before[0] == mark and before[1] == handle.generation and \
            before[2] + len(before[3]) == offset and len(before[3]) + len(data) <= limit:
        # read right after them with nothing changed since: one snapshot
        # (readall's READ of the size it asked, then the empty one at the end)
        handle.data = (mark, handle.generation, before[2], before[3] + bytes(data), eof)
    else:
        handle.data = (mark, handle.generation, offset, bytes(data), eof)


def _valid(raw):
    """``raw``'s handle's kept bytes if they may be served, else None
    (stale ones are dropped)."""
    handle = raw._handle
    kept = handle.data
    if kept is None or raw._writable:
        return None
    client = raw._tree.client
    if kept[0] != client.changes.value or kept[1] != client.generation or \
            not _reads_cached(raw):
        handle.data = None
        return None
    return kept


def serve(raw, offset: int, view: memoryview) -> int:
    """Fill ``view`` from ``offset`` with kept bytes: how many (fewer only
    at the end of the file), or -1 when they do not serve it (then what
    was kept is dropped if it is stale)."""
    kept = _valid(raw)
    if kept is None:
        return -1
    _mark, _generation, start, data, eof = kept
    end = start + len(data)
    if offset < start or (offset + len(view) > end and not eof):
        return -1
    n = max(0, min(len(view), end - offset))
    view[:n] = data[offset - start:offset - start + n]
    return n


def rest(raw, offset: int) -> Optional[bytes]:
    """The file from ``offset`` to its end if kept bytes hold all of it
    (``readall`` then asks neither the size nor the data), else None."""
    kept = _valid(raw)
    if kept is None or not kept[4] or offset < kept[2]:
        return None
    return kept[3][offset - kept[2]:]


def cached_bytes(handle) -> int:
    """Bytes ``handle`` keeps."""
    kept = handle.data
    return 0 if kept is None else len(kept[3])
