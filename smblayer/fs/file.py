"""SmbRawFile: an open SMB file as an ``io.RawIOBase``.

``Tree.open`` wraps it in io.BufferedReader/BufferedWriter/BufferedRandom
(and io.TextIOWrapper for text modes).  The file object owns its I/O:

* **Reads** are split into ``io_read_size`` chunks kept in flight together
  (at least ``max_in_flight``, more on a link with latency: the file's
  ``IoWindow`` grows to the bandwidth-delay product, window.py);
  ``readinto`` receives each READ reply straight into the caller's buffer
  where it can.  Sequential reads are read ahead: the
  next chunks are already on the wire when the next call comes.
* **Writes are write-behind**: ``write`` queues WRITE requests and returns;
  at most the window's count x the write size is in flight per file (a write
  waits for the oldest beyond that).  A failed WRITE raises at the next
  write, flush or close, never silently lost; ``flush`` waits for all,
  ``close`` flushes.
* **Open files survive reconnects**: the Tree asks a durable handle. After a
  reconnect the tree's STAGE_HANDLE recovery (``smblayer.fs.recovery``, after
  every session and tree) calls ``_recover``: the durable handle is reclaimed
  (DH2C/DHnC), or, where that is impossible, reopened by path when the file is
  provably the one we had open (same file id, size and last-write time,
  nothing written by us since). The ``Handle`` object keeps its identity and
  gets the new FileId; every request of this file still waiting to be reissued
  is rebuilt with it (each data task carries its builder in ``task.context``).
  A file that cannot be recovered fails its next call with
  ``SmbConnectionError`` naming it, and closes quietly.

Lock order: the buffered wrapper's lock > ``_write_lock`` (the write-behind
state; held while waiting for WRITE replies) > ``_lock`` (the FileId and the
requests in flight; short sections only, never held while waiting for a
reply: the recovery takes it).

Oplock and lease breaks reach the file through the Tree: ``_on_break``
pushes what the buffered wrapper (``owner``) holds and waits for the
writes in flight before the Tree acknowledges, then the Tree calls the
user's ``on_break(file, new_level)``.
"""
from __future__ import annotations

import collections
import io
import logging
import threading
import weakref
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Deque, Iterable, List, Optional, Set, Tuple

from ..errors import SmbConnectionError, SmbError, SmbStatusError
from ..proto.status import NtStatus
from ..task import SmbTask
from .closing import STALE_HANDLE as _STALE_HANDLE
from .closing import ClosingMixin
from .closing import on_smbiod as _on_smbiod
from .locks import LockingBuffer, LockingFile
from . import readcache
from .ops import FILE_OPEN, Handle
from .window import IoWindow

log = logging.getLogger("smblayer")

MAX_IN_FLIGHT = 8
_READ_AHEAD_AFTER = 2          # sequential reads before read-ahead starts
_SMALL_REST = 64 << 10          # a file with no more left: read with one plain READ
_READ_ALLOC = 64 << 20          # read(n) allocates n bytes up to this, more only if known there

if TYPE_CHECKING:
    Builder = Callable[[Handle], SmbTask]


class SmbRawFile(ClosingMixin, LockingFile, io.RawIOBase):
    """Unbuffered binary file on a share.  Not for direct construction:
    use ``Tree.open(path, mode, buffering=0)``."""

    max_in_flight = MAX_IN_FLIGHT
    #: sequential reads start read-ahead (off for a named pipe: a READ sent
    #: ahead would take the next message)
    read_ahead = True
    #: ``close()`` may keep the handle open for the next open of the path
    #: (deferred close, :mod:`smblayer.fs.deferred`); False on a file that
    #: no one opens again (an upload's temporary file, renamed next)
    keep_handle = True

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
        self._lock = threading.Lock()          # the handle's fid, _tasks, _lost
        self._tasks: Set[SmbTask] = set()      # data requests not yet answered
        self._lost: Optional[SmbConnectionError] = None
        self._lost_reported = False            # the caller has seen _lost: close quietly
        self._closing = None                   # builder of a CLOSE sent behind writes
        self._last_write = False               # set by the buffered wrapper's close
        self._tail: Optional[Tuple[int, bytes]] = None   # a last WRITE to send with the CLOSE
        self._write_end = -1                   # where the last queued write ends
        self._written = False                  # we changed the file: no reopen by path
        # write-behind, under _write_lock (a writer and a break's flush may race)
        self._write_lock = threading.RLock()
        self._writes: Deque[Tuple[object, SmbTask, int]] = collections.deque()
        self._write_bytes = 0
        self._write_error: Optional[BaseException] = None
        # read-ahead: (offset, length, future, task, buffer) in file order
        self._ahead: Deque[Tuple[int, int, object, SmbTask, bytearray]] = collections.deque()
        self._leftover: Optional[Tuple[int, bytes]] = None
        self._ra_free: list = []              # read-ahead buffers free for reuse
        self._next_read = -1
        self._sequential = 0
        # requests in flight per pipelined transfer: grows to the link's
        # bandwidth-delay product from the replies' round trips (window.py)
        self._window = IoWindow.for_chunk(self.max_in_flight,
                                          max(tree.io_read_size, tree.io_write_size))
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

    @property
    def durable(self) -> bool:
        """Whether the server granted a durable handle (it survives a reconnect)."""
        return self._handle.durable

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

    # -- requests ----------------------------------------------------------------

    @property
    def _client(self):
        return self._tree.client

    @property
    def _ops(self):
        return self._tree.ops

    def _check_live(self) -> None:
        """Raise the error of a handle that did not survive a reconnect."""
        lost = self._lost
        if lost is not None:
            self._lost_reported = True
            raise lost
        if self._lock_lost is not None:
            self._raise_lock_lost()
        if not self._tree.connected:
            raise ValueError(f"{self._tree!r} is not connected")

    def _build(self, build: Builder) -> SmbTask:
        """A data request built from the handle's current FileId and kept
        in ``_tasks`` until answered, so a recovery can rebuild it."""
        with self._lock:
            self._check_live()
            task = build(self._handle)
            task.context = build
            task.on_reissue = self._on_reissue
            self._tasks.add(task)
        return task

    def _on_reissue(self, task: SmbTask) -> bool:
        """The client resends ``task`` after a reconnect: rebuild it with
        the FileId the recovery left (False: the handle was lost)."""
        with self._lock:
            if self._lost is not None or task.context is self._closing:
                return False
            task.body = task.context(self._handle).body
            return True

    def _settled(self, task: SmbTask) -> None:
        with self._lock:
            self._tasks.discard(task)

    def _failure(self, exc: BaseException) -> BaseException:
        """The error to raise for a failed data request: the lost-handle
        error if the handle died with the connection."""
        if self._lost is not None and isinstance(exc, SmbError):
            return self._lost
        lock_lost = self._lock_lost
        if lock_lost is not None and isinstance(exc, SmbError):
            self._lock_lost = None          # reported once (a conflict it caused, typically)
            return lock_lost
        return exc

    def _raise(self, exc: BaseException) -> None:
        if exc is self._lost:
            self._lost_reported = True
        raise exc

    def _start(self, build: Builder):
        """Send a data request without waiting: (task, Future)."""
        task = self._build(build)
        try:
            return task, self._client.run_task_async(task)
        except BaseException:
            self._settled(task)
            raise

    def _result(self, task: SmbTask, future):
        try:
            reply = future.result()
            self._window.sample(task.t_done - task.t_sent)
            return reply
        except BaseException as exc:
            self._raise(self._failure(exc))
        finally:
            self._settled(task)

    def _run(self, build: Builder):
        """Send a data request and wait for its reply."""
        task = self._build(build)
        try:
            return self._client.run_task(task)
        except BaseException as exc:
            self._raise(self._failure(exc))
        finally:
            self._settled(task)

    def _call(self, fn: Callable[[Handle], object]):
        """A metadata call on the handle (query/set info, flush).  If a
        recovery swapped the FileId while it waited, it runs once more."""
        self._check_live()
        handle = self._handle
        fid = handle.fid
        try:
            return fn(handle)
        except SmbStatusError as exc:
            if exc.status not in _STALE_HANDLE:
                raise
            self._check_live()
            if handle.fid == fid:
                raise
            return fn(handle)

    def _pipeline(self, items: Iterable[Tuple[Builder, object]],
                  consume: Callable[[object, object], None]) -> None:
        """Send the (builder, tag) ``items`` with up to the window's count
        in flight; ``consume(reply, tag)`` runs for each, in order.  On
        an smbiod thread (break callbacks) one at a time: an smbiod worker
        must not wait for Futures that smbiod completes."""
        if _on_smbiod():
            for build, length in items:
                consume(self._run(build), length)
            return
        pending: Deque = collections.deque()
        try:
            for build, length in items:
                pending.append((*self._start(build), length))
                if len(pending) >= self._window.count:
                    task, future, n = pending.popleft()
                    consume(self._result(task, future), n)
            while pending:
                task, future, n = pending.popleft()
                consume(self._result(task, future), n)
        finally:
            for task, future, _n in pending:  # only on an error or interrupt
                future.cancel()
                self._settled(task)

    # -- reading -------------------------------------------------------------------

    def readinto(self, buffer) -> int:
        self._need(readable=True)
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        self._drain_writes()
        n = self._read_into(self._pos, view)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._need(readable=True)
        # no huge buffer for read(1 << 40) of a small file: beyond 64 MiB at
        # most what is known to be there (a short read is fine for raw I/O)
        buf = bytearray(min(size, max(self._size - self._pos, _READ_ALLOC)))
        n = self.readinto(buf)
        # copied out, never resized: a task the receive thread drops late may
        # still hold a view of it (BufferError)
        return bytes(buf) if n == len(buf) else bytes(memoryview(buf)[:n])

    def readall(self) -> bytes:
        self._need(readable=True)
        self._drain_writes()
        if self._handle.data is not None and not self._ahead and self._leftover is None:
            kept = readcache.rest(self, self._pos)      # all of it kept (fs.readcache)
            if kept is not None:
                self._pos += len(kept)
                return kept
        size = self._call(self._ops.query_info).size
        parts = []
        want = max(size - self._pos, 0)
        while True:
            ask = want or self._tree.io_read_size
            buf = bytearray(ask)
            n = self._read_into(self._pos, memoryview(buf))
            if n:
                parts.append(buf if n == ask else memoryview(buf)[:n])     # as in read()
                self._pos += n
            if n < ask:
                break
            want = 0           # the file grew meanwhile: read on until EOF
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def _read_into(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset``, read-ahead first; bytes read (fewer
        only at the end of the file)."""
        if offset == self._next_read:
            self._sequential += 1
        else:
            self._sequential = 0
            self._drop_read_ahead()
        if self._handle.data is not None and not self._ahead and self._leftover is None:
            done = readcache.serve(self, offset, view)     # kept bytes (fs.readcache)
            if done >= 0:
                self._next_read = offset + done
                return done
        done, eof = self._take_read_ahead(offset, view)
        if not eof and done < len(view):
            self._drop_read_ahead()
            mark = readcache.stamp(self) if not done else None
            if self._size - offset - done <= _SMALL_REST and \
                    len(view) - done <= self._tree.io_read_size:
                n = self._read_one(offset + done, view[done:])
            else:
                n = self._read_chunks(offset + done, (view[done:],))
            eof = n < len(view) - done
            done += n
            if mark is not None:
                readcache.keep(self, mark, offset, view[:n], eof)
        self._next_read = offset + done
        # Read ahead for sequential calls too small to fill the pipeline
        # themselves (a big call pipelines its own chunks, placed in its buffer).
        if not eof and self.read_ahead and self._sequential >= _READ_AHEAD_AFTER and \
                not _on_smbiod() and \
                len(view) < self._window.count * self._tree.io_read_size:
            self._read_ahead(offset + done)
        return done

    def _read_one(self, offset: int, view: memoryview) -> int:
        """One READ into ``view`` (no bigger than a READ), waited for with
        ``run_task`` (its caller fast path: this thread reads the reply, no
        hand-off to the demux thread and back) and copied (what is left
        of the file is small): 19% fewer instructions per open + read 4 KiB
        + close of a kept handle than the pipeline's Future and placement."""
        ops, size = self._ops, len(view)
        # the builder must not refer to ``view``: the task keeps its builder
        # (a reissue builds it again) and may outlive this call a little (a
        # receive thread's last reference), which would keep the caller's
        # buffer exported (``del buf[n:]`` in read() raised BufferError)
        data = ops.parse_read(self._run(lambda h: ops.read_task(h, offset, size)))
        n = min(len(data), size)
        view[:n] = data[:n]
        return n

    def _take_read_ahead(self, offset: int, view: memoryview) -> Tuple[int, bool]:
        """Copy what the read-ahead holds for ``offset`` on into ``view``:
        (bytes copied, end of file seen)."""
        done = 0
        if self._leftover is not None:
            start, data = self._leftover
            self._leftover = None
            if start == offset:
                done = min(len(data), len(view))
                view[:done] = data[:done]
                if done < len(data):
                    self._leftover = (start + done, data[done:])
        ops = self._ops
        while self._ahead and done < len(view):
            start, length, future, task, buf = self._ahead[0]
            if start != offset + done:
                self._drop_read_ahead()
                break
            self._ahead.popleft()
            try:
                data = ops.parse_read(self._result(task, future))
            except BaseException:
                self._drop_read_ahead()
                raise
            got = min(len(data), length)
            take = min(got, len(view) - done)
            view[done:done + take] = data[:take]
            done += take
            if take < got:         # the rest of this chunk waits for the next call
                self._leftover = (start + take, bytes(data[take:got]))
            del data
            self._ra_free.append(buf)     # answered: its buffer can take the next READ
            if got < length:
                self._drop_read_ahead()
                return done, True
        return done, False

    def _read_ahead(self, offset: int) -> None:
        """Keep up to the window's count of READs on the wire after ``offset``."""
        step = self._tree.io_read_size
        if self._leftover is not None:
            offset = self._leftover[0] + len(self._leftover[1])
        end = self._ahead[-1][0] + self._ahead[-1][1] if self._ahead else offset
        ops = self._ops
        placeable = self._tree._placement_ok()
        while len(self._ahead) < self._window.count:
            buf = self._ra_free.pop() if self._ra_free else bytearray(step)
            into = memoryview(buf)[:step] if placeable and len(buf) >= step else None
            task, future = self._start(
                lambda h, o=end, n=step, into=into: ops.read_task(h, o, n, into=into)
                if into is not None else ops.read_task(h, o, n))
            self._ahead.append((end, step, future, task, buf))
            end += step

    def _drop_read_ahead(self) -> None:
        """Forget the read-ahead (its buffers too: a late reply may still
        land in them)."""
        self._leftover = None
        while self._ahead:
            _start, _n, future, task, _buf = self._ahead.popleft()
            future.cancel()
            self._settled(task)

    def readinto_many(self, buffers: Iterable,
                      done: Optional[Callable[[object, int], object]] = None) -> int:
        """Read on from the current position into each of ``buffers`` in
        turn, pipelined across them: the READs of the next buffer go out
        while those of this one are on the wire, so the window stays full
        (a ``readinto`` per buffer drains it at the end of every call: a
        round trip lost each time, and never more in flight than one
        buffer holds).  ``buffers`` is taken lazily and is advanced while
        the buffers before are still being filled (never yield one buffer
        twice before it is done).  ``done(buffer, n)`` runs, in order, as
        each buffer is complete (``n`` bytes in it, fewer only where the
        file ends): the buffer is the caller's again (nothing writes into
        it).  Stops at the end of the file; returns the bytes read."""
        self._need(readable=True)
        self._drain_writes()
        self._drop_read_ahead()
        n = self._read_chunks(self._pos, buffers, done)
        self._pos = self._next_read = self._pos + n
        return n

    def _read_chunks(self, offset: int, views: Iterable,
                     done: Optional[Callable[[object, int], object]] = None) -> int:
        """READ into each of ``views`` in turn from ``offset``, pipelined
        across them, until the first short chunk (end of file)."""
        ops, step = self._ops, self._tree.io_read_size
        state = [0, False]            # bytes delivered, end of file seen
        placeable = self._tree._placement_ok()
        lent: Set[SmbTask] = set()    # READs lent a slice of a view, not yet consumed
        withdraw = self._client.withdraw_placement

        def lend(handle: Handle, o: int, n: int, into: memoryview, mine: list) -> SmbTask:
            task = ops.read_task(handle, o, n, into=into)
            lent.add(task)
            mine.append(task)         # a reissue builds it again: all are withdrawn
            return task

        def items():
            pos = offset
            for buffer in views:
                view = memoryview(buffer).cast("B")
                record = [buffer, 0]             # the buffer, bytes in it so far
                for start in range(0, len(view), step):
                    if state[1]:
                        return
                    into = view[start:start + step]
                    mine: List[SmbTask] = []
                    last = start + step >= len(view)
                    # (only a READ lent the slice refers to it: a task the
                    # receive thread drops late must not hold the buffer)
                    yield ((lambda h, o=pos + start, n=len(into), into=into, mine=mine:
                            lend(h, o, n, into, mine)) if placeable
                           else (lambda h, o=pos + start, n=len(into): ops.read_task(h, o, n))
                           ), (into, mine, record, last)
                pos += len(view)

        def consume(reply, item) -> None:
            into, mine, record, last = item
            try:
                if state[1]:
                    return
                data = ops.parse_read(reply)
                got = min(len(data), len(into))
                if got and data.obj is not into.obj:       # not received in place: copy
                    into[:got] = data[:got]
                del data
                state[0] += got
                record[1] += got
                if got < len(into):
                    state[1] = True
                complete = last or state[1]
            finally:
                # answered: nothing writes into its slice any more, and no
                # reference to it stays
                for task in mine:
                    lent.discard(task)
                    withdraw(task)
            if complete and done is not None:
                done(record[0], record[1])

        try:
            self._pipeline(items(), consume)
        finally:
            # The caller's buffers are its own again before we return: no
            # READ (abandoned or still arriving) writes into them or holds
            # a view of them after this.
            for task in lent:
                withdraw(task)
        return state[0]

    # -- writing -------------------------------------------------------------------

    def write(self, data) -> int:
        self._need(readable=False)
        with self._write_lock:
            return self._write(data)

    def _write(self, data) -> int:
        self._raise_write_error()
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        if self._last_write and not self._writes and self._tail is None and \
                not self._append and len(view) <= self._tree.io_write_size and \
                self._ops.compound_close and not _on_smbiod():
            # The buffered wrapper is closing and this fits one WRITE: it goes
            # out with the CLOSE as one compound (one round trip).
            self._written = True
            self._tail = (self._pos, bytes(view))
            self._pos = self._write_end = self._pos + len(view)
            self._size = max(self._size, self._pos)
            return len(view)
        self._drop_read_ahead()
        self._next_read = -1
        offset = self._size if self._append else self._pos
        if self._writes and offset != self._write_end:
            # Requests in flight are not ordered (deferred sends, reissues):
            # a write that may overlap earlier ones waits for them.
            self._drain_writes()
        keep = isinstance(data, bytes)          # immutable: no copy needed
        step = self._tree.io_write_size
        ops = self._ops
        for start in range(0, len(view), step):
            chunk = view[start:start + step]
            if not keep:
                chunk = bytes(chunk)             # the caller may reuse its buffer
            self._queue_write(lambda h, o=offset + start, c=chunk: ops.write_task(h, o, c),
                              len(chunk))
        n = len(view)
        self._pos = self._write_end = offset + n
        self._size = max(self._size, self._pos)
        return n

    @property
    def _write_limit(self) -> int:
        return self._window.count * self._tree.io_write_size

    def _queue_write(self, build: Builder, n: int) -> None:
        self._written = True
        if _on_smbiod():
            self._drain_writes()
            self._check_written(self._ops.parse_write(self._run(build)), n)
            return
        while self._writes and self._write_bytes + n > self._write_limit:
            self._complete_write()
            self._raise_write_error()
        task, future = self._start(build)
        self._writes.append((future, task, n))
        self._write_bytes += n

    def _complete_write(self) -> None:
        """Wait for the oldest WRITE; a failure is kept for the next call."""
        future, task, n = self._writes[0]
        try:
            reply = self._result(task, future)
            self._check_written(self._ops.parse_write(reply), n)
        except SmbError as exc:
            if self._write_error is None:
                self._write_error = exc
        finally:
            self._writes.popleft()
            self._write_bytes -= n

    def _check_written(self, written: int, n: int) -> None:
        if written < n:
            raise SmbStatusError(NtStatus.DISK_FULL, "WRITE", self.name,
                                 message=f"short write ({written} of {n} bytes)")

    def _drain_writes(self) -> None:
        """Wait for every WRITE in flight; raise the first failure."""
        with self._write_lock:
            while self._writes:
                self._complete_write()
            self._raise_write_error()

    def _raise_write_error(self) -> None:
        error, self._write_error = self._write_error, None
        if error is not None:
            self._raise(error)

    def flush(self) -> None:
        """Wait until every write has reached the server (errors raise here)."""
        if self.closed:
            return
        if self._lost is not None and self._lost_reported:
            self._writes.clear()        # cancelled with the lost handle, already reported
            self._write_bytes = 0
            self._write_error = None
            return
        self._drain_writes()

    # -- position and size ---------------------------------------------------------

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            self._drain_writes()
            self._size = self._call(self._ops.query_info).size
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
        self._drain_writes()
        self._drop_read_ahead()
        self._written = True
        self._call(lambda h: self._ops.set_end_of_file(h, size))
        self._size = size
        return size

    def fsync(self) -> None:
        """Wait for the writes, then SMB FLUSH: ask the server to commit the
        file to stable storage."""
        self._checkClosed()
        self._drain_writes()
        self._call(self._ops.flush)

    def stat(self):
        """A fresh StatResult of the open file (QUERY_INFO)."""
        self._checkClosed()
        self._drain_writes()
        return self._call(self._ops.query_info).to_stat()

    # -- lifetime: close() (fs.closing) --------------------------------------------

    def _on_break(self) -> None:
        """Before a break is acknowledged (smbiod): push the buffered
        writes and wait for those in flight (a failure stays for the next
        call)."""
        if not self._writable:
            return
        owner = self.owner
        try:
            owner.flush()
        except ValueError:
            pass                     # closed meanwhile: its close flushed it
        except Exception as exc:  # noqa: BLE001 - the ack must go out regardless
            if self._write_error is None:
                self._write_error = exc
            log.warning("smblayer: flushing %r before an oplock break failed: %s",
                        self.name, exc)

    # -- recovery (reconnect handler thread) -------------------------------------------

    def _recover(self, last_try: bool = True) -> bool:
        """After a reconnect (sessions and trees are back): reclaim the
        durable handle, or reopen the file when provably the same, or mark
        it lost.  Requests waiting to be reissued are rebuilt or cancelled.

        False (only when not ``last_try``): the server does not know the
        durable handle yet; the old connection's smbd may still be
        disconnecting it, so the caller retries a little later."""
        handle = self._handle
        if handle.closed or self._lost is not None:
            return True
        client = self._client
        ops = self._ops
        new: Optional[Handle] = None
        reason = "the server keeps no durable handle for it"
        how = "reclaimed"
        if handle.durable and ops.durable_handles:
            try:
                new = ops.reclaim(handle)
            except SmbStatusError as exc:
                if not last_try and exc.status == NtStatus.OBJECT_NAME_NOT_FOUND:
                    return False
                reason = f"the server refused to reclaim its durable handle ({exc})"
            except SmbError as exc:
                reason = f"the server refused to reclaim its durable handle ({exc})"
        if new is None:
            how = "reopened"
            try:
                new = self._reopen()
            except SmbError as exc:
                reason = f"{reason}; reopening it failed ({exc})"
            except _NotProvable as exc:
                reason = f"{reason}; {exc}"
        breaks = self._tree._breaks
        if breaks is not None:
            breaks.remove(handle)
        with self._lock:
            if new is not None:
                handle.fid = new.fid
                handle.oplock_level, handle.lease_state = new.oplock_level, new.lease_state
                handle.lease_key = new.lease_key if new.lease_key is not None else \
                    handle.lease_key
                handle.durable = new.durable
                handle.create_guid = new.create_guid or handle.create_guid
                handle.generation = client.generation
                # Rebuild the requests built before this point (those not
                # sent yet too: _on_reissue sees only resends).
                tasks = []
                for task in self._tasks:
                    if task.done:
                        continue
                    if task.context is self._closing:
                        tasks.append(task)
                    else:
                        task.body = task.context(handle).body
            else:
                error = SmbConnectionError(
                    f"{handle.path!r}: the open file did not survive the reconnect to "
                    f"{client.host}:{client.port}: {reason}; its pending I/O is lost")
                error.path = handle.path
                self._lost = error
                handle.closed = True           # gone on the server: close() is quiet
                tasks = list(self._tasks)
        if new is not None:
            if breaks is not None and handle.oplock_level:
                breaks.add(self._tree, handle)
            log.info("smblayer: %r %s after the reconnect", handle.path, how)
            self._relock(how)
            for task in tasks:
                # A CLOSE sent behind writes: the reissued writes are not
                # ordered, so close() sends it again once they are answered.
                task.cancel()
            return True
        log.warning("smblayer: %s", self._lost)
        for task in tasks:
            task.cancel()
        return True

    def _reopen(self) -> Handle:
        """Open the path again, only if it is provably the file we had
        open: same file id, size and last-write time, and nothing written
        by us since we last knew them."""
        handle = self._handle
        known = handle.info
        if self._written:
            raise _NotProvable("it was written since it was opened, so its identity "
                               "on the server cannot be proven")
        if not known.file_index:
            raise _NotProvable("its file id is unknown, so its identity cannot be proven")
        ops = self._ops
        new = ops.open(handle.path, access=handle.access, disposition=FILE_OPEN,
                       create_options=handle.create_options, share_access=handle.share_access,
                       oplock=handle.requested_oplock, lease_state=handle.requested_lease,
                       durable=handle.durable)
        try:
            now = ops.query_info(new)
            same = (now.file_index, now.size, now.last_write_time) == \
                (known.file_index, known.size, known.last_write_time)
        except BaseException:
            _close_quietly(ops, new)
            raise
        if not same:
            _close_quietly(ops, new)
            raise _NotProvable("the file on the server is not the one we had open (its "
                               "id, size or last-write time changed)")
        return new


class _NotProvable(Exception):
    """Internal: a reopen by path would not provably open the same file."""


def _close_quietly(ops, handle: Handle) -> None:
    try:
        ops.close(handle)
    except SmbError as exc:
        log.debug("smblayer: closing %r failed: %s", handle.path, exc)


class _WriteBehindBuffer:
    """Mixin for the io buffered classes over an SmbRawFile: ``flush`` also
    waits for the write-behind (a failed WRITE raises there); ``close``
    hands the buffer to the raw file and lets it send the CLOSE right
    behind the writes (the raw close waits for them and raises a failure)."""

    def flush(self) -> None:
        super().flush()
        self.raw.flush()

    def close(self) -> None:
        raw = self.raw
        if raw.closed:
            return
        raw._last_write = True       # what the flush hands over may go with the CLOSE
        try:
            super().flush()
        finally:
            raw._last_write = False
            raw.close()


class BufferedWriter(LockingBuffer, _WriteBehindBuffer, io.BufferedWriter):
    """io.BufferedWriter with write-behind semantics (see _WriteBehindBuffer)."""


class BufferedRandom(LockingBuffer, _WriteBehindBuffer, io.BufferedRandom):
    """io.BufferedRandom with write-behind semantics (see _WriteBehindBuffer)."""
