"""SmbRawFile: an open SMB file as an ``io.RawIOBase``.

``Tree.open`` wraps it in io.BufferedReader/BufferedWriter/BufferedRandom
(and io.TextIOWrapper for text modes).  Large reads and writes are split
into chunks that the Tree keeps in flight together (``Tree._pread_into``,
``Tree._pwrite``); ``readinto`` copies each READ reply straight into the
caller's buffer.

Oplock and lease breaks reach the file through the Tree: ``_on_break``
flushes what the buffered wrapper (``owner``) holds before the Tree
acknowledges, then the Tree calls the user's ``on_break(file, new_level)``.
"""
from __future__ import annotations

import io
import logging
import threading
import weakref
from typing import Callable, Optional

from .ops import Handle

log = logging.getLogger("smblayer")


class SmbRawFile(io.RawIOBase):
    """Unbuffered binary file on a share.  Not for direct construction:
    use ``Tree.open(path, mode, buffering=0)``."""

    def __init__(self, tree, handle: Handle, mode: str, *, readable: bool, writable: bool,
                 append: bool = False,
                 on_break: Optional[Callable[[object, int], None]] = None):
        super().__init__()
        self._tree = tree
        self._handle = handle
        self.name = handle.path.replace("\\", "/")
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._append = append
        self._size = handle.info.size          # known end of file (for append)
        self._pos = self._size if append else 0
        self.on_break = on_break
        self._owner: Optional[weakref.ref] = None
        self._close_lock = threading.Lock()
        handle.file = self

    # -- identity ----------------------------------------------------------------

    @property
    def handle(self) -> Handle:
        return self._handle

    @property
    def tree(self):
        return self._tree

    @property
    def owner(self):
        """The object ``Tree.open`` returned (a buffered/text wrapper, or self)."""
        owner = self._owner() if self._owner is not None else None
        return owner if owner is not None else self

    @property
    def oplock_level(self) -> int:
        return self._handle.oplock_level

    @property
    def lease_state(self) -> int:
        return self._handle.lease_state

    def __repr__(self) -> str:
        return f"<SmbRawFile {self.name!r} mode={self.mode!r}{' closed' if self.closed else ''}>"

    # -- capabilities ------------------------------------------------------------

    def readable(self) -> bool:
        self._checkClosed()
        return self._readable

    def writable(self) -> bool:
        self._checkClosed()
        return self._writable

    def seekable(self) -> bool:
        self._checkClosed()
        return True

    def _need(self, readable: bool) -> None:
        self._checkClosed()
        if readable and not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        if not readable and not self._writable:
            raise io.UnsupportedOperation("File not open for writing")

    # -- data ----------------------------------------------------------------------

    def readinto(self, buffer) -> int:
        self._need(readable=True)
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        n = self._tree._pread_into(self._handle, self._pos, view)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._need(readable=True)
        data = self._tree._pread_bytes(self._handle, self._pos, size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        self._need(readable=True)
        self._tree.check_handle(self._handle)
        size = self._tree.ops.query_info(self._handle).size
        parts = []
        want = max(size - self._pos, 0)
        while True:
            ask = want or self._tree.io_read_size
            data = self._tree._pread_bytes(self._handle, self._pos, ask)
            if data:
                parts.append(data)
                self._pos += len(data)
            if len(data) < ask:
                break
            want = 0           # the file grew meanwhile: read on until EOF
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, data) -> int:
        self._need(readable=False)
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        offset = self._size if self._append else self._pos
        n = self._tree._pwrite(self._handle, offset, view)
        self._pos = offset + n
        self._size = max(self._size, self._pos)
        return n

    # -- position and size ---------------------------------------------------------

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            self._tree.check_handle(self._handle)
            self._size = self._tree.ops.query_info(self._handle).size
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def truncate(self, size: Optional[int] = None) -> int:
        self._need(readable=False)
        size = self._pos if size is None else int(size)
        if size < 0:
            raise OSError(22, "negative size")
        self._tree.check_handle(self._handle)
        self._tree.ops.set_end_of_file(self._handle, size)
        self._size = size
        return size

    def fsync(self) -> None:
        """SMB FLUSH: ask the server to commit the file to stable storage."""
        self._checkClosed()
        self._tree.check_handle(self._handle)
        self._tree.ops.flush(self._handle)

    def stat(self):
        """A fresh StatResult of the open file (QUERY_INFO)."""
        self._checkClosed()
        self._tree.check_handle(self._handle)
        return self._tree.ops.query_info(self._handle).to_stat()

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        with self._close_lock:
            if self.closed:
                return
            try:
                super().close()
            finally:
                self._tree._close_file(self)

    def _on_break(self) -> None:
        """Before a break is acknowledged (smbiod): push the buffered writes."""
        owner = self.owner
        if owner is self or not self._writable:
            return
        try:
            owner.flush()
        except ValueError:
            pass                     # closed meanwhile: its close flushed it
        except Exception as exc:  # noqa: BLE001 - the ack must go out regardless
            log.warning("smblayer: flushing %r before an oplock break failed: %s",
                        self.name, exc)
