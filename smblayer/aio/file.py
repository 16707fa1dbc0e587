"""AsyncFile: an open SMB file for coroutines (binary, unbuffered).

    async with tree.open("dir/a.bin", "rb") as f:
        head = await f.read(4096)
        await f.seek(0)
        data = await f.read()

Theory of operation.  The file owns a Handle and its position; its data
requests are the FileOps' ``read_task``/``write_task`` (the codecs the
blocking file uses), run with ``run_task_async`` and awaited:

* **reads** are split into ``io_read_size`` chunks, up to ``max_in_flight``
  of them on the wire together; after two sequential reads the file reads
  ahead (the next chunks are requested before they are asked for, never
  past the size the server told).  A seek elsewhere drops the read-ahead
  (its requests are cancelled).
* **writes are write-behind**: ``write`` queues WRITE requests and returns
  once at most ``max_in_flight`` x the write size is in flight; a failed
  WRITE raises at the next ``write``, ``flush`` or ``close``, never lost.
* **cancellation**: a coroutine cancelled in ``read`` cancels the READs
  it waited for and the read-ahead (never sent, or CANCEL sent); the
  position stays where it was and the file stays usable.
* **reconnects**: the file takes part in the blocking file's recovery, not
  a copy of it.  Its handle state *is* an ``SmbRawFile`` (``_HandleState``)
  that the tree registers like any open file (``Tree.add_file``): it asks
  the same durable handle and lease, its data requests are built through
  it (kept in its ``_tasks``, each with the builder to rebuild it), and
  after a reconnect the tree's STAGE_HANDLE recovery reclaims the durable
  handle (or reopens an unchanged file we only read) and gives every
  request in flight the new FileId before it is resent: a read or a
  write-behind across a reset completes with the exact bytes.  A file that
  cannot be recovered raises ``SmbConnectionError`` naming it at its next
  call (as the blocking file does) and closes quietly.  The state object
  does no I/O of its own; its break hook (smbiod) waits for the async
  file's WRITEs in flight before the lease break is acknowledged.

One coroutine at a time per file (as with any file object).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
from typing import Deque, Optional, Set, Tuple

from ..client import TEARDOWN_WAIT
from ..errors import SmbCancelledError, SmbConnectionError, SmbError, SmbStatusError
from ..fs.file import SmbRawFile
from ..proto.status import NtStatus
from .core import wait

MAX_IN_FLIGHT = 8
_READ_AHEAD_AFTER = 2


_STALE_HANDLE = frozenset({NtStatus.FILE_CLOSED, NtStatus.INVALID_HANDLE})


class _HandleState(SmbRawFile):
    """An async file's handle, as the tree and its recovery see it: the
    blocking file's reclaim state and registration (see the module
    docstring).  Only the break hook differs: the writes to wait for are
    the async file's, whose Futures the reader settles (so smbiod may wait
    for them, bounded)."""

    def __init__(self, tree, handle, mode: str, *, readable: bool, writable: bool,
                 append: bool):
        super().__init__(tree, handle, mode, readable=readable, writable=writable,
                         append=append)
        self.writes_in_flight: Set[concurrent.futures.Future] = set()

    def _on_break(self) -> None:
        concurrent.futures.wait(list(self.writes_in_flight), timeout=TEARDOWN_WAIT)

    def release(self) -> None:
        """The async file closed: the handle is gone, the tree forgets it,
        and the io object is marked closed (without I/O)."""
        self._handle.closed = True
        self._tree.forget_file(self)
        io.RawIOBase.close(self)


class AsyncFile:
    """Not for direct construction: ``await tree.open(path, mode)``."""

    def __init__(self, tree, handle, mode: str, *, readable: bool, writable: bool,
                 append: bool, level: int = 0):
        self._tree = tree                       # the blocking Tree (ops, client)
        self._ops = tree.ops
        self._client = tree.client
        self._handle = handle
        self._state = _HandleState(tree, handle, mode, readable=readable, writable=writable,
                                   append=append)
        tree.add_file(self._state, level)
        self.name = handle.path.replace("\\", "/")
        self.mode = mode
        self._readable, self._writable = readable, writable
        self._pos = handle.info.size if append else 0
        self._append = append
        self._closed = False
        self.max_in_flight = getattr(tree, "max_in_flight", MAX_IN_FLIGHT)
        self._chunk_r = tree.io_read_size
        self._chunk_w = tree.io_write_size
        self._ahead: Deque[Tuple[int, int, asyncio.Future]] = collections.deque()
        self._buf, self._buf_off = b"", 0         # data read beyond the last request
        self._sequential = 0
        self._writes: Deque[Tuple[asyncio.Future, int]] = collections.deque()
        self._write_error: Optional[BaseException] = None

    def __repr__(self) -> str:
        return f"<AsyncFile {self.name!r} mode={self.mode!r}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handle(self):
        return self._handle

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    @property
    def durable(self) -> bool:
        """Whether the server granted a durable handle (it survives a reconnect)."""
        return self._handle.durable

    def _check(self, readable: bool) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if readable and not self._readable:
            raise io.UnsupportedOperation("not readable")
        if not readable and not self._writable:
            raise io.UnsupportedOperation("not writable")
        self._state._check_live()           # the error of a handle a reconnect lost

    def _start(self, build, write: bool = False) -> asyncio.Future:
        """Send the request ``build(handle)`` makes, through the handle state
        (a recovery rebuilds it with the new FileId); an awaitable reply.  A
        WRITE is also kept in ``writes_in_flight`` until answered (a break
        waits for it before its ack)."""
        state = self._state
        task = state._build(build)
        try:
            future = self._client.run_task_async(task)
        except BaseException:
            state._settled(task)
            raise
        if write:
            inflight = state.writes_in_flight
            inflight.add(future)
            future.add_internal_callback(inflight.discard)    # bookkeeping: no lock
        waiter = wait(future)
        waiter.add_done_callback(lambda _w: state._settled(task))
        return waiter

    async def _reply(self, waiter: asyncio.Future):
        """Await a request's reply; an error of a handle that did not
        survive a reconnect is raised as the lost-handle error naming it."""
        try:
            return await waiter
        except SmbError as exc:
            state = self._state
            state._raise(state._failure(exc))

    # -- reading -----------------------------------------------------------------------

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all to the end with -1); b"" at the end."""
        self._check(True)
        await self._drain_writes()
        if size is not None and size >= 0:
            return await self._read(size)
        chunks = []
        while True:                 # to the end, however much the file grows meanwhile
            want = max(self._handle.info.size - self._pos, 0) + self._chunk_r
            data = await self._read(want)
            chunks.append(data)
            if len(data) < want:
                return b"".join(chunks)

    async def _read(self, size: int) -> bytes:
        if size == 0:
            return b""
        start = cur = self._pos
        end = start + size
        out = bytearray()
        buf, buf_off = self._buf, self._buf_off
        if buf and buf_off <= start < buf_off + len(buf):
            out += buf[start - buf_off:end - buf_off]
            cur += len(out)
        try:
            while cur < end:
                self._plan_reads(cur, end)
                offset, length, future = self._ahead[0]
                reply = await self._reply(future)
                self._ahead.popleft()
                data = self._ops.parse_read(reply)
                need = end - cur
                if len(data) > need:              # keep the rest for the next read
                    self._buf, self._buf_off = bytes(data[need:]), cur + need
                    data = data[:need]
                out += data
                cur += len(data)
                if len(data) < min(length, need):   # the end of the file
                    self._drop_read_ahead()
                    break
        except BaseException:
            self._drop_read_ahead()            # cancelled or failed: nothing stays queued
            raise
        self._pos = cur
        self._sequential += 1
        if self._sequential >= _READ_AHEAD_AFTER:
            self._plan_reads(cur, cur + self._chunk_r * self.max_in_flight)
        return bytes(out)

    def _plan_reads(self, cur: int, end: int) -> None:
        """Put READs on the wire for [cur, end) (the window permitting);
        what is in flight from ``cur`` on is kept."""
        buf, buf_off = self._buf, self._buf_off
        if buf and buf_off <= cur < buf_off + len(buf):
            cur = buf_off + len(buf)            # the buffer covers the start
        if self._ahead and self._ahead[0][0] != cur:
            self._cancel_ahead()
        offset = self._ahead[-1][0] + self._ahead[-1][1] if self._ahead else cur
        size = self._handle.info.size
        while offset < end and len(self._ahead) < self.max_in_flight:
            if self._ahead and offset >= size:
                break                           # read-ahead never past the known end
            length = min(self._chunk_r, max(end - offset, 1))
            read_task = self._ops.read_task
            self._ahead.append((offset, length, self._start(
                lambda h, o=offset, n=length: read_task(h, o, n))))
            offset += length

    def _cancel_ahead(self) -> None:
        while self._ahead:
            self._ahead.pop()[2].cancel()

    def _drop_read_ahead(self) -> None:
        self._cancel_ahead()
        self._buf, self._buf_off = b"", 0
        self._sequential = 0

    # -- writing --------------------------------------------------------------------------

    async def write(self, data) -> int:
        """Queue ``data`` (write-behind); returns its length."""
        self._check(False)
        self._raise_write_error()
        if self._ahead:
            self._drop_read_ahead()
        view = memoryview(data).cast("B")
        if not isinstance(data, bytes):
            view = memoryview(bytes(view))      # the caller may reuse its buffer
        if self._append:
            self._pos = max(self._pos, self._handle.info.size)
        write_task = self._ops.write_task
        self._state._written = True             # no reopen by path after a reconnect
        for start in range(0, len(view), self._chunk_w):
            chunk = view[start:start + self._chunk_w]
            while len(self._writes) >= self.max_in_flight:
                await self._complete_write()
            self._writes.append((self._start(
                lambda h, o=self._pos, c=chunk: write_task(h, o, c), write=True), len(chunk)))
            self._pos += len(chunk)
            if self._pos > self._handle.info.size:
                self._handle.info.size = self._pos
        return len(view)

    async def _complete_write(self) -> None:
        future, n = self._writes[0]
        try:
            written = self._ops.parse_write(await self._reply(future))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            self._writes.popleft()
            if self._write_error is None:
                self._write_error = exc
            return
        self._writes.popleft()
        if written != n and self._write_error is None:
            self._write_error = OSError(f"{self.name}: short write ({written} of {n} bytes)")

    async def _drain_writes(self) -> None:
        while self._writes:
            await self._complete_write()
        self._raise_write_error()

    def _raise_write_error(self) -> None:
        error, self._write_error = self._write_error, None
        if error is not None:
            raise error

    async def flush(self) -> None:
        """Wait for every WRITE in flight (raises the first that failed)."""
        if not self._closed:
            await self._drain_writes()

    # -- position ---------------------------------------------------------------------------

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if whence == io.SEEK_SET:
            new = offset
        elif whence == io.SEEK_CUR:
            new = self._pos + offset
        elif whence == io.SEEK_END:
            await self._drain_writes()
            new = self._handle.info.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if new < 0:
            raise ValueError(f"negative seek position {new}")
        if new != self._pos:
            self._drop_read_ahead()
        self._pos = new
        return new

    async def tell(self) -> int:
        return self._pos

    # -- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush, then CLOSE (raises a write error after closing; a handle
        lost to a reconnect closes quietly once its error was raised)."""
        if self._closed:
            return
        state = self._state
        reported = state._lost is not None and state._lost_reported
        self._drop_read_ahead()
        error = None
        try:
            await self._drain_writes()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            error = None if exc is state._lost and reported else exc
        self._closed = True
        try:
            if state._open_on_server():
                reply = await self._reply(self._start(self._ops.close_task))
                self._ops.close_done(self._handle, reply)
        except SmbStatusError as exc:
            if exc.status not in _STALE_HANDLE:    # else: dropped with an old connection
                raise
        except (SmbConnectionError, SmbCancelledError):
            pass                        # the handle went with the connection (or is lost)
        finally:
            state.release()
            self._tree_forget()
        if error is not None:
            raise error

    def _tree_forget(self) -> None:
        forget = getattr(self, "on_close", None)
        if forget is not None:
            forget(self)

    async def __aenter__(self) -> "AsyncFile":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        """Iterating yields chunks of ``io_read_size`` bytes."""
        data = await self.read(self._chunk_r)
        if not data:
            raise StopAsyncIteration
        return data

