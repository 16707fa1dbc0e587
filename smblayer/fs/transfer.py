"""The one copy engine: whole files between a Tree and local files, and
from share to share (the CLI, :mod:`smblayer.fsspec` and
``Tree.copyfile``/``copytree`` all copy through here).

Theory of operation
-------------------
A Tree pipelines the READ/WRITE requests of an unbuffered file
(``open(..., buffering=0)``); the engine keeps that pipeline full for the
whole file and the local side out of the network's way:

* download (:func:`receive`): one ``SmbRawFile.readinto_many`` call for
  the whole file, into buffers of one READ each; as each completes (in
  order) it is written to the local file and reused for a later READ,
  while the READs after it are on the wire.  No round trip is lost between
  chunks (a ``readinto`` per chunk drained the pipeline at each chunk's
  end), and the memory is the READs in flight (the file's window, at most
  ``window.MAX_WINDOW_BYTES``) plus one buffer;
* upload (:func:`send`): a regular local file is read with ``os.pread``,
  a WRITE's worth at a time; those bytes go to the write-behind as they
  are (it keeps them, no copy) and at most the window is in flight.
  Measured on tmpfs, both cost half the CPU of a shared mapping of the
  local file (its page faults, page tables and, for an upload, a copy):
  0.16-0.22 s against 0.34-0.43 s per 256 MiB received, 0.07-0.20 s
  against 0.25-0.36 s per 256 MiB sent;
* from anything else (a pipe, stdin) an upload goes through a
  :class:`DoubleBuffer`: one helper thread reads into one buffer while
  the caller's thread sends the other.

A file that fits one request goes in one round trip (``Tree.read_bytes`` /
``write_bytes``: one compound CREATE + READ/WRITE + CLOSE where the
dialect has compounds).

Safety (:func:`put_file`, :func:`get_file`): the data goes to a temporary
name beside the destination (same folder, so the rename is atomic) that is
renamed over it only when complete (and, with ``verify``, read back and
compared by SHA-256); on any failure, Ctrl-C included, the temporary file is
removed and the destination is as it was.  ``resume`` uses the fixed name
``.NAME.smblayer-partial`` instead, resumes from its size and keeps it on
failure for the next try.

Progress is reported through a callable ``progress(nbytes)`` (the CLI's bar,
an fsspec callback), called from the caller's thread.
"""
from __future__ import annotations

import contextlib
import io
import logging
import mmap
import os
import posixpath
import stat
from concurrent.futures import ThreadPoolExecutor
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Iterator, Optional, Tuple

from ..errors import SmbError, SmbStatusError
from ..proto.status import NtStatus
from . import safeput
from .ops import normpath

log = logging.getLogger("smblayer")

__all__ = ["CHUNK", "VerifyError", "chunk_size", "upload", "download", "send", "receive",
           "put_file", "get_file", "copy_remote", "read_chunks", "remote_digest",
           "local_digest", "local_temp", "DoubleBuffer", "mapped_windows", "write_all",
           "closing"]

CHUNK = 16 * 1024 * 1024          # bytes per read()/write() call on transfers

if TYPE_CHECKING:
    Progress = Optional[Callable[[int], object]]


def _ignore(_n: int) -> None:
    pass


class VerifyError(SmbError):
    """The checksum read back after a transfer differs from the source's
    (the destination was not replaced).  ``source`` and ``dest`` name them."""

    def __init__(self, source: str, dest: str):
        super().__init__(f"--verify: the SHA-256 of {dest} differs from {source}'s after "
                         "the transfer (the destination was not replaced)")
        self.source = source
        self.dest = dest


def chunk_size(tree) -> int:
    """Bytes per read()/write() call: the Tree pipelines each call as many
    READ/WRITE requests in flight, so a call spans many of them."""
    io_size = max(getattr(tree, "io_read_size", 0), getattr(tree, "io_write_size", 0))
    return max(CHUNK, 16 * io_size)


# -- local side ---------------------------------------------------------------------


class DoubleBuffer:
    """Two buffers and one helper thread, so local disk I/O overlaps the
    network I/O of a transfer (the network side stays in the caller)."""

    def __init__(self, size: int):
        self._buffers = [memoryview(bytearray(size)), memoryview(bytearray(size))]
        self._turn = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="smblayer-local-io")
        self._pending = None

    def __enter__(self) -> "DoubleBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)

    def free(self) -> memoryview:
        """The buffer not being worked on by the helper."""
        buf = self._buffers[self._turn]
        self._turn ^= 1
        return buf

    def consume(self, view: memoryview, fn: Callable) -> None:
        """Run ``fn(view)`` on the helper after the previous one finished."""
        self.drain()
        self._pending = self._pool.submit(fn, view)

    def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def produced(self, fill: Callable) -> Iterator[memoryview]:
        """Yield views filled by ``fill(buf)`` on the helper, one ahead."""
        ahead = self._pool.submit(fill, self.free())
        while True:
            n = ahead.result()
            if not n:
                return
            current = self._buffers[self._turn ^ 1]
            ahead = self._pool.submit(fill, self.free())
            yield current[:n]


def _mappable_size(local) -> Optional[int]:
    """The size of ``local`` if it is a regular file that can be mapped
    (not a pipe, a terminal or an empty file), else None."""
    try:
        st = os.fstat(local.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) and st.st_size else None


def mapped_windows(local, start: int, end: int, access: int, span: int
                   ) -> Iterator[memoryview]:
    """Bytes ``start`` to ``end`` of the regular file ``local`` as views of
    mappings of at most ``span`` bytes, one after the other: each window is
    unmapped before the next is mapped, so what the copy keeps resident is
    bounded by ``span`` (a whole 1 GiB file mapped at once was 1 GiB of
    RSS).  Use it under ``contextlib.closing`` when leaving early.  (The
    engine itself no longer maps: see the module doc; kept for callers.)"""
    fd = local.fileno()
    pos = start
    while pos < end:
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        length = min(end, pos + span) - base
        mapped = _mmap(fd, access, length, base)
        view = memoryview(mapped)
        try:
            yield view[pos - base:]
        finally:
            view.release()
            try:
                mapped.close()
            except BufferError:
                pass      # a request still holds a slice: unmapped when that goes
        pos = base + length


def _mmap(fd: int, access: int, length: int, offset: int) -> mmap.mmap:
    """Map ``length`` bytes at ``offset``.  A window to read is pre-faulted
    where the platform can (one kernel pass instead of a fault per page); a
    window being filled is not (pre-faulting would zero every page before
    the first byte arrives instead of as the data comes)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and access == mmap.ACCESS_READ:
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ,
                         offset=offset)
    return mmap.mmap(fd, length, access=access, offset=offset)


def _fill(read_into: Callable, view: memoryview) -> int:
    """readinto() until ``view`` is full or EOF (pipes return short reads)."""
    got = 0
    while got < len(view):
        n = read_into(view[got:])
        if not n:
            break
        got += n
    return got


def write_all(f, view: memoryview) -> None:
    """``f.write`` until all of ``view`` is written."""
    while len(view):
        n = f.write(view)
        if not n:
            raise OSError(5, "short write")
        view = view[n:]


@contextlib.contextmanager
def closing(f) -> Iterator:
    """Like ``with f:``, but when the block failed (an error, Ctrl-C) an
    error from closing is logged, not raised: the first error is the one
    to report."""
    try:
        yield f
    except BaseException:
        try:
            f.close()
        except (SmbError, OSError) as exc:
            log.debug("closing %s after an error failed: %s", getattr(f, "name", f), exc)
        raise
    f.close()


# -- streams: one open remote file <-> one local file ----------------------------------


def send(tree, local: BinaryIO, f, *, offset: int = 0, progress: Progress = None) -> int:
    """Write ``local`` (from ``offset``) to the open remote file ``f`` (at
    ``offset``); return the bytes sent."""
    update = progress or _ignore
    total = 0
    size = _mappable_size(local)
    if size is not None:
        # A regular file: os.pread gives bytes, which the write-behind keeps
        # as they are (one copy; a mapping cost page-table work and a copy)
        fd, step = local.fileno(), tree.io_write_size
        while offset < size:
            data = os.pread(fd, min(step, size - offset), offset)
            if not data:
                break
            write_all(f, data)
            offset += len(data)
            total += len(data)
            update(len(data))
        return total
    if offset:
        local.seek(offset)
    with DoubleBuffer(chunk_size(tree)) as buffers:
        for view in buffers.produced(lambda buf: _fill(local.readinto, buf)):
            write_all(f, view)
            total += len(view)
            update(len(view))
    return total


def receive(tree, f, local: BinaryIO, *, offset: int = 0, progress: Progress = None) -> int:
    """Read the open remote file ``f`` (its size as at open) into
    ``local``; the first ``offset`` bytes are there already.  Return the
    bytes received (fewer if it shrank meanwhile)."""
    update = progress or _ignore
    size = f.handle.info.size
    if offset:
        offset = min(offset, size)
        f.seek(offset)
        local.seek(offset)
        local.truncate(offset)
    step = tree.io_read_size
    free: list = []                   # buffers written out, for the next READs

    def buffers(want: int) -> Iterator[memoryview]:
        while want > 0:
            yield memoryview(free.pop() if free else bytearray(step))[:min(step, want)]
            want -= step

    def done(view: memoryview, n: int) -> None:
        write_all(local, view[:n])    # the network goes on meanwhile
        free.append(view.obj)
        update(n)

    # One pipeline of READs, each received into a buffer written out as it
    # completes; the size as at open, no READ past it.
    return f.readinto_many(buffers(size - offset), done)


def upload(tree, local: BinaryIO, path: str, *, offset: int = 0,
           progress: Progress = None, keep_handle: bool = True) -> int:
    """Copy ``local`` to the remote ``path`` in large pipelined writes;
    return the bytes.  ``offset`` > 0 resumes: the remote file keeps its
    first ``offset`` bytes and ``local`` is read from there.
    ``keep_handle=False``: no deferred close (a file renamed next: its
    CLOSE goes right behind the writes, with no write time set first)."""
    with closing(tree.open(path, "r+b" if offset else "wb", buffering=0)) as f:
        f.keep_handle = keep_handle
        if offset:
            f.seek(offset)
            f.truncate(offset)
        return send(tree, local, f, offset=offset, progress=progress)


def download(tree, path: str, local: BinaryIO, *, offset: int = 0,
             progress: Progress = None) -> int:
    """Copy the remote ``path`` to ``local`` in large pipelined reads;
    return the bytes.  ``offset`` > 0 resumes: the first ``offset`` bytes
    are in ``local`` already (and not fetched again)."""
    with closing(tree.open(path, "rb", buffering=0)) as f:
        return receive(tree, f, local, offset=offset, progress=progress)


def read_chunks(tree, f) -> Iterator[bytes]:
    """The rest of the unbuffered remote file ``f`` in steps of up to
    ``tree.max_in_flight`` pipelined READs.  The steps are sized by the
    file's size at open, so the end of the file is seen without READs past
    it (a file that grew meanwhile is read on to its new end)."""
    step = tree.io_read_size * tree.max_in_flight
    want = f.handle.info.size - f.tell() + 1        # +1: see the end in the same step
    while True:
        n = min(step, want) if want > 0 else step
        data = f.read(n)
        if data:
            yield data
        if len(data) < n:
            return
        want -= len(data)


def copy_remote(src_tree, src: str, dst_tree, dst: str, *, progress: Progress = None) -> int:
    """Copy the remote file ``src`` to ``dst`` (created or overwritten;
    the trees may differ) through this client; return the bytes.  A file
    that fits one WRITE goes as one compound CREATE + WRITE + CLOSE where
    the dialect has them; anything larger in pipelined reads and writes."""
    update = progress or _ignore
    total = 0
    with closing(src_tree.open(src, "rb", buffering=0)) as fin:
        if fin.handle.info.size <= dst_tree.io_write_size:
            data = b"".join(read_chunks(src_tree, fin))
            dst_tree.write_bytes(dst, data)
            update(len(data))
            return len(data)
        with closing(dst_tree.open(dst, "wb", buffering=0)) as fout:
            for data in read_chunks(src_tree, fin):
                write_all(fout, memoryview(data))
                total += len(data)
                update(len(data))
    return total


# -- whole files, safely ---------------------------------------------------------------


def remote_digest(tree, path: str) -> bytes:
    """SHA-256 of the remote file ``path``."""
    import hashlib
    digest = hashlib.sha256()
    buf = memoryview(bytearray(chunk_size(tree)))
    with closing(tree.open(path, "rb", buffering=0)) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return digest.digest()
            digest.update(buf[:n])


def local_digest(local: BinaryIO) -> bytes:
    """SHA-256 of the open local file ``local`` (read from its start)."""
    import hashlib
    local.flush()
    local.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: local.read(1 << 20), b""):
        digest.update(block)
    return digest.digest()


@contextlib.contextmanager
def local_temp(dest: str) -> Iterator[BinaryIO]:
    """A new file beside ``dest`` (same folder, so the rename is atomic),
    opened for reading and writing; renamed over ``dest`` when the block
    succeeds, removed when it fails.  ``dest`` is never touched before."""
    folder, name = os.path.split(dest)
    while True:
        temp = os.path.join(folder, f".{name}.smblayer-{os.urandom(4).hex()}")
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:            # name the destination, not the temporary file
            raise OSError(exc.errno, exc.strerror, dest) from None
    try:
        with open(fd, "w+b") as local:
            yield local
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def _local_target(dest: str, resume: bool) -> Iterator[Tuple[BinaryIO, int]]:
    """(file, offset) to download ``dest`` into: a new temporary file beside
    it (offset 0; removed on failure) or with ``resume`` the partial file
    ``.NAME.smblayer-partial`` (offset: its size; kept on failure for the
    next resume).  Renamed over ``dest`` on success."""
    if not resume:
        with local_temp(dest) as local:
            yield local, 0
        return
    folder, name = os.path.split(dest)
    partial = os.path.join(folder, f".{name}.smblayer-partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "r+b") as local:
            yield local, os.fstat(local.fileno()).st_size
    except VerifyError:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    os.replace(partial, dest)


def get_file(tree, path: str, dest: str, *, size: Optional[int] = None, resume: bool = False,
             verify: bool = False, times: Optional[Tuple[float, float]] = None,
             progress: Progress = None) -> int:
    """Download the remote ``path`` to the local file ``dest`` safely (see
    the module's doc); ``size``: the remote size if known (a small file then
    goes in one round trip); ``times``: (atime, mtime) to give ``dest``.
    Returns the bytes moved."""
    update = progress or _ignore
    with _local_target(dest, resume) as (local, offset):
        if not offset and size is not None and size <= tree.io_read_size:
            data = tree.read_bytes(path)           # one round trip where it can
            local.write(data)
            n = len(data)
            update(n)
        else:
            n = download(tree, path, local, offset=offset, progress=update)
        if verify and local_digest(local) != remote_digest(tree, path):
            raise VerifyError(path, dest)
    if times is not None:
        os.utime(dest, times)
    return n


def _remote_size(tree, path: str) -> Optional[int]:
    try:
        st = tree.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if stat.S_ISDIR(st.st_mode) else st.st_size


def put_file(tree, local: BinaryIO, path: str, *, size: Optional[int] = None,
             resume: bool = False, verify: bool = False,
             times: Optional[Tuple[float, float]] = None, progress: Progress = None) -> int:
    """Upload ``local`` to a temporary name in the destination folder and
    rename it over ``path`` on success; on failure or Ctrl-C the temporary
    file is deleted and ``path`` stays as it was (rsync's way).  With
    ``resume`` the temporary name is ``.NAME.smblayer-partial``, resumed
    from its size and kept on failure.  ``size``: the local size if known
    (a small file then goes in two compounds: write and times, then the
    rename on that handle).  Returns the bytes moved."""
    update = progress or _ignore
    plans = safeput.has_plans(tree)
    if plans and not resume and not verify and size is not None and \
            size <= tree.io_write_size:
        # two compounds: write + times, then the rename on that handle
        data = local.read()
        try:
            n = safeput.run_one(tree, safeput.write_job(
                tree, data, path, safeput.filetimes(times) if times is not None else None))
            update(n)
            return n
        except SmbStatusError as exc:       # a link on the way: the open() path follows it
            if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                raise
        local = io.BytesIO(data)
    folder, name = posixpath.split(path)
    if resume:
        temp = posixpath.join(folder, f".{name}.smblayer-partial")
        offset = _remote_size(tree, temp) or 0
        if size is not None and offset > size:
            offset = 0
    else:
        temp, offset = safeput.temp_name(path), 0
    try:
        if not offset and size is not None and size <= tree.io_write_size:
            n = tree.write_bytes(temp, local.read())    # one round trip where it can
            update(n)
        else:
            n = upload(tree, local, temp, offset=offset, progress=update, keep_handle=False)
        if verify and local_digest(local) != remote_digest(tree, temp):
            raise VerifyError(getattr(local, "name", "stdin"), path)
        if plans:           # the times and the rename: one compound
            tree.ops.rename(normpath(temp), normpath(path), True,
                            safeput.filetimes(times) if times is not None else None)
        else:
            if times is not None:
                tree.utime(temp, times)
            tree.replace(temp, path)
    except BaseException as exc:
        if not resume or isinstance(exc, VerifyError):
            try:
                tree.remove(temp)
            except (SmbError, ValueError) as exc2:
                log.debug("removing %s failed: %s", temp, exc2)
        raise
    return n
