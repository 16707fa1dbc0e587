"""AsyncTree: the Tree API as coroutines.

Theory of operation.  An AsyncTree wraps a connected blocking ``Tree``
(``.sync``) and never calls its blocking methods from the loop.  Each
operation is the FileOps *plan* the blocking Tree runs (``stat_plan``,
``mkdir_plan``, ``delete_plan``, ``rename_plan`` ...: one request or one
related compound, see ``smblayer.fs.smb2ops``), awaited with
``run_task_async`` / ``run_compound_async`` instead of waited for; a
multi-step operation (a listing: CREATE, QUERY_DIRECTORY until the end,
CLOSE) is a coroutine over such plans; the helpers (walk, glob, rmtree,
makedirs, exists) are built on those, and list directories concurrently
where the blocking ones go one by one.

Run in a worker thread (``asyncio.to_thread``), because they are rare or
multi-step sequences not yet expressed as plans: ``connect`` and ``close``
(negotiate, SESSION_SETUP, TREE_CONNECT, LOGOFF), ``copy`` (server-side
copy-chunk), opening a watch's directory after a reconnect, and on SMB1, a
DFS namespace or a POSIX tree every metadata operation (SMB1's FileOps have
no plans; DFS follows links and POSIX retries on symlinks, both multi-step).
File data is async on every dialect.
"""
from __future__ import annotations

import asyncio
import functools
import os
import time
import weakref
from typing import AsyncIterator, Callable, List, Optional, Tuple

from ..errors import SmbStatusError, status_error
from ..fs.ops import FILE_APPEND_DATA, FILE_NON_DIRECTORY_FILE, FILE_READ_ATTRIBUTES, \
    FILE_READ_DATA, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, LEASE_HANDLE, LEASE_READ, \
    LEASE_WRITE, OPLOCK_LEASE, OPLOCK_NONE, SYNCHRONIZE, FileInfo, ns_to_filetime
from ..fs.helpers import NOT_THERE, DirEntry, glob_match, has_magic, join, normpath, \
    outpath, server_pattern, split_dirs, unhidden
from ..fs.tree import parse_mode
from ..proto.status import NtStatus
from .core import AsyncClient, AwaitableContext, run_plan
from .file import AsyncFile
from .watch import AsyncWatch

#: directories listed at once by walk/glob/rmtree, files removed at once by rmtree
CONCURRENCY = 16
LEASE_RWH = LEASE_READ | LEASE_HANDLE | LEASE_WRITE


class AsyncTree:
    """A connected share for coroutines (from ``await aio.connect(...)``)."""

    def __init__(self, tree):
        self.sync = tree
        self.client = AsyncClient(tree.client)
        self.share = tree.share
        ops = tree.ops
        #: the FileOps whose plans are awaited (None: SMB1 or DFS, run in threads)
        self.plans = ops if hasattr(ops, "stat_plan") and not getattr(tree, "dfs", False) \
            and not getattr(ops, "posix", False) else None
        self._files: "weakref.WeakSet[AsyncFile]" = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<AsyncTree {self.sync!r}>"

    async def _op(self, name: str, *args, **kwargs):
        """FileOps ``name``: its plan awaited, or in a thread where there are
        no plans or a symbolic link is on the way (the blocking ops follow
        it, in more round trips)."""
        if self.plans is not None:
            try:
                return await run_plan(self.client.sync,
                                      getattr(self.plans, name + "_plan")(*args, **kwargs))
            except SmbStatusError as exc:
                if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                    raise
        return await asyncio.to_thread(functools.partial(getattr(self.sync.ops, name), *args,
                                                         **kwargs))

    def _check(self) -> None:
        if not self.sync.connected:
            raise ValueError(f"{self.sync!r} is not connected")

    # -- lifetime ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the open async files, then the tree (``Tree.close``, in a
        thread: TREE_DISCONNECT, LOGOFF, releasing the client)."""
        for f in list(self._files):
            try:
                await f.close()
            except OSError:
                pass
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> "AsyncTree":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- metadata ------------------------------------------------------------------------

    async def file_info(self, path="") -> FileInfo:
        self._check()
        return await self._op("stat", normpath(path))

    async def stat(self, path="") -> os.stat_result:
        """An ``os.stat_result``, like ``Tree.stat`` (one round trip)."""
        return (await self.file_info(path)).to_stat()

    async def _info_or_none(self, path) -> Optional[FileInfo]:
        try:
            return await self.file_info(path)
        except SmbStatusError as exc:
            if exc.status in NOT_THERE:
                return None
            raise
        except ValueError:
            return None

    async def exists(self, path) -> bool:
        return await self._info_or_none(path) is not None

    async def isdir(self, path) -> bool:
        info = await self._info_or_none(path)
        return info is not None and info.is_dir

    async def isfile(self, path) -> bool:
        info = await self._info_or_none(path)
        return info is not None and not info.is_dir

    async def getsize(self, path) -> int:
        return (await self.file_info(path)).size

    async def utime(self, path, times: Optional[Tuple[float, float]] = None) -> None:
        """Set (atime, mtime) in seconds, or both to now."""
        self._check()
        ns = (time.time_ns(),) * 2 if times is None else \
            tuple(int(t * 1_000_000_000) for t in times)
        await self._op("set_times", normpath(path), ns_to_filetime(ns[0]),
                       ns_to_filetime(ns[1]))

    # -- directories ------------------------------------------------------------------------

    async def _list(self, path: str, pattern: str = "*") -> List[FileInfo]:
        """CREATE the directory, QUERY_DIRECTORY until the end, CLOSE."""
        ops, client = self.plans, self.client.sync
        handle = None
        if ops is not None:
            try:
                handle = await run_plan(client, ops.opendir_plan(path))
            except SmbStatusError as exc:
                if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                    raise
        if handle is None:
            return list(await asyncio.to_thread(self.sync.ops.listdir, path, pattern))
        entries: List[FileInfo] = []
        try:
            restart = True
            while True:
                batch = await run_plan(client, ops.query_dir_plan(handle, pattern, restart))
                if batch is None:
                    return entries
                restart = False
                entries.extend(batch)
        finally:
            close = run_plan(client, ops.close_plan(handle))
            try:
                await close
            except asyncio.CancelledError:
                raise
            except SmbStatusError:
                pass

    async def scandir(self, path="", pattern: str = "*") -> List[DirEntry]:
        """The entries of directory ``path`` (a list of DirEntry)."""
        self._check()
        base = outpath(path)
        return [DirEntry(info.name, join(base, info.name), info)
                for info in await self._list(normpath(path), pattern)]

    async def listdir(self, path="") -> List[str]:
        self._check()
        return [info.name for info in await self._list(normpath(path))]

    async def mkdir(self, path) -> None:
        self._check()
        await self._op("mkdir", normpath(path))

    async def makedirs(self, path, exist_ok: bool = False) -> None:
        parts = normpath(path).split("\\")
        for i in range(1, len(parts) + 1):
            try:
                await self.mkdir("\\".join(parts[:i]))
            except FileExistsError:
                if i == len(parts) and not exist_ok:
                    raise

    async def rmdir(self, path) -> None:
        self._check()
        await self._op("delete", normpath(path), True)

    async def remove(self, path) -> None:
        self._check()
        await self._op("delete", normpath(path), False)

    unlink = remove

    async def rename(self, src, dst) -> None:
        """Rename; FileExistsError if ``dst`` exists."""
        self._check()
        await self._op("rename", normpath(src), normpath(dst), False)

    async def replace(self, src, dst) -> None:
        """Rename, overwriting a file ``dst``."""
        self._check()
        await self._op("rename", normpath(src), normpath(dst), True)

    async def walk(self, top="", topdown: bool = True,
                   onerror: Optional[Callable[[OSError], None]] = None
                   ) -> AsyncIterator[Tuple[str, List[str], List[str]]]:
        """Like ``os.walk``, as an async iterator; top-down, pruning the
        yielded ``dirnames`` in place works."""
        async for dirpath, dirs, files in self.walk_entries(top, topdown, onerror):
            names = [d.name for d in dirs]
            yield dirpath, names, [f.name for f in files]
            if topdown:
                by_name = {d.name: d for d in dirs}
                dirs[:] = [by_name[n] for n in names if n in by_name]

    async def walk_entries(self, top="", topdown: bool = True,
                           onerror: Optional[Callable[[OSError], None]] = None):
        """``walk`` with DirEntry lists."""
        top = outpath(top)
        try:
            entries = await self.scandir(top)
        except SmbStatusError as exc:
            if onerror is not None:
                onerror(exc)
            return
        dirs, files = split_dirs(entries)
        if topdown:
            yield top, dirs, files
        for d in list(dirs):
            async for item in self.walk_entries(d.path, topdown, onerror):
                yield item
        if not topdown:
            yield top, dirs, files

    async def glob(self, pattern, *, recursive: bool = False,
                   include_hidden: bool = False) -> List[str]:
        """Like ``Tree.glob`` (same matching rules); the directories of one
        level are listed concurrently."""
        pattern = outpath(pattern)
        if not pattern:
            return []
        if not has_magic(pattern):
            return [pattern] if await self.exists(pattern) else []
        parts = pattern.split("/")
        found: List[Tuple[str, bool]] = [("", True)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if recursive and part == "**":
                steps = await _gather(self._glob_deep(base, last, include_hidden)
                                      for base, _k in found)
                found = [(p, True) for step in steps for p in step]
            elif has_magic(part):
                steps = await _gather(self._glob_dir(base, part, include_hidden)
                                      for base, _k in found)
                found = [(e.path, True) for step in steps for e in step
                         if last or e.is_dir()]
            else:
                found = [(join(base, part), False) for base, _k in found]
        unknown = [p for p, known in found if not known]
        there = dict(zip(unknown, await _gather(self.exists(p) for p in unknown)))
        return sorted(p for p, known in found if known or there[p])

    async def _glob_dir(self, base: str, part: str, include_hidden: bool) -> List[DirEntry]:
        try:
            entries = await self.scandir(base, server_pattern(part))
        except SmbStatusError as exc:
            if exc.status in NOT_THERE:
                return []
            raise
        return glob_match(entries, part, include_hidden)

    async def _glob_deep(self, base: str, last: bool, include_hidden: bool) -> List[str]:
        out = [] if last else [base]
        async for _dirpath, dirs, files in self.walk_entries(base):
            if not include_hidden:
                dirs[:] = unhidden(dirs)
                files = unhidden(files)
            out.extend(d.path for d in dirs)
            if last:
                out.extend(f.path for f in files)
        return out

    async def rmtree(self, path) -> None:
        """Delete the directory ``path`` and everything in it (files of a
        directory removed concurrently); errors raise."""
        top = outpath(path)
        if not top:
            raise ValueError("rmtree: refusing to delete the share root")
        if not (await self.file_info(top)).is_dir:
            raise status_error(NtStatus.NOT_A_DIRECTORY, "rmtree", top)
        async for dirpath, _dirs, files in self.walk_entries(top, topdown=False):
            await _gather(self.remove(f.path) for f in files)
            await self.rmdir(dirpath)

    # -- files -------------------------------------------------------------------------------

    def open(self, path, mode: str = "rb") -> AwaitableContext:
        """Open ``path`` (binary modes as ``Tree.open``): ``await`` it, or
        ``async with tree.open(p, "rb") as f``.  See AsyncFile."""
        readable, writable, append, binary, disposition = parse_mode(mode)
        if not binary:
            raise ValueError("async files are binary: use a mode with 'b'")
        return AwaitableContext(self._open(path, mode, readable, writable, append, disposition))

    async def _open(self, path, mode, readable, writable, append, disposition) -> AsyncFile:
        self._check()
        access = SYNCHRONIZE | FILE_READ_ATTRIBUTES
        if readable:
            access |= FILE_READ_DATA
        if writable:
            access |= FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_ATTRIBUTES
        tree = self.sync
        # As Tree.open: a durable handle (with the lease Samba requires for
        # one), so the file survives a reconnect (AsyncFile: reconnects).
        durable = tree.durable and tree.ops.durable_handles
        level = OPLOCK_LEASE if durable else OPLOCK_NONE
        with tree.opening(level):
            handle = await self._op("open", normpath(path), access=access,
                                    disposition=disposition,
                                    create_options=FILE_NON_DIRECTORY_FILE, oplock=level,
                                    lease_state=LEASE_RWH if durable else 0, durable=durable)
            f = AsyncFile(tree, handle, mode, readable=readable, writable=writable,
                          append=append, level=level)
        f.on_close = self._files.discard
        self._files.add(f)
        return f

    async def read_bytes(self, path) -> bytes:
        """The whole file: one compound round trip for a small one."""
        self._check()
        if self.plans is not None:
            data = await run_plan(self.client.sync, self.plans.read_whole_plan(
                normpath(path), self.sync.io_read_size))
            if data is not None:
                return data
        async with self.open(path, "rb") as f:
            return await f.read()

    async def read_range(self, path, start: int, end: Optional[int] = None) -> bytes:
        """Bytes ``start`` to ``end`` (None: the end of the file): one
        compound round trip (CREATE+READ+CLOSE) when they fit one READ."""
        self._check()
        if end is not None and end <= start:
            return b""
        if self.plans is not None and end is not None and \
                end - start <= self.sync.io_read_size:
            data = await run_plan(self.client.sync, self.plans.read_range_plan(
                normpath(path), start, end - start))
            if data is not None:
                return data
        async with self.open(path, "rb") as f:
            await f.seek(start)
            return await f.read(-1 if end is None else end - start)

    async def write_bytes(self, path, data) -> int:
        """Create or overwrite ``path``: one compound round trip when it fits
        one WRITE."""
        self._check()
        view = memoryview(data).cast("B")
        if self.plans is not None and len(view) <= self.sync.io_write_size:
            written = await run_plan(self.client.sync,
                                     self.plans.write_whole_plan(normpath(path), view))
            if written is not None:
                return written
        async with self.open(path, "wb") as f:
            return await f.write(view)

    async def copy(self, src, dst) -> int:
        """Server-side copy (``Tree.copy``, in a worker thread)."""
        return await asyncio.to_thread(self.sync.copy, src, dst)

    def watch(self, path="", recursive: bool = False, **options) -> "AsyncWatch":
        """Watch directory ``path`` (SMB2+): ``async with tree.watch(p) as
        w: async for event in w``; cancelling the iterating coroutine (or
        leaving the block) closes it."""
        self._check()
        return AsyncWatch(self, path, recursive=recursive, **options)


async def _gather(aws) -> list:
    """Run ``aws`` concurrently, at most CONCURRENCY at a time, in order."""
    aws = list(aws)
    if len(aws) <= 1:
        return [await a for a in aws]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(aw):
        async with gate:
            return await aw
    return await asyncio.gather(*(one(a) for a in aws))
