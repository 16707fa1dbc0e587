"""The async fsspec filesystem: ``fsspec.filesystem("smblayer", asynchronous=True)``.

    fs = fsspec.filesystem("smblayer", host=..., username=..., password=...,
                           asynchronous=True)          # inside a running loop
    data = await fs._cat(["share/a", "share/b"])       # concurrently
    await fs._cat_ranges(paths, starts, ends)

Theory of operation.  ``AsyncSMBFileSystem`` is an fsspec
``AsyncFileSystem`` whose coroutines (``_info``, ``_ls``, ``_cat_file``,
``_pipe_file``, ``_put_file``, ``_get_file``, ``_rm_file``, ...) are
``smblayer.aio`` calls: so fsspec's own batching (``_cat``, ``_cat_ranges``,
``_get``, ``_put``, ``_rm`` of many paths) runs them concurrently, all on
the one shared connection (``get_client`` shares it with the blocking
``SMBFileSystem`` too).  A small file is one compound round trip
(CREATE+READ+CLOSE), and so is a byte range that fits one READ.

``SMBFileSystem(..., asynchronous=True)`` returns this class (the protocol
has one registered class); its blocking methods are fsspec's wrappers
(they run the coroutines on fsspec's own loop thread) and are meant for
``asynchronous=False``: inside a running loop await the ``_`` methods.
Files: ``await fs.open_async(path, mode)`` gives an ``smblayer.aio.AsyncFile``.
"""
from __future__ import annotations

import asyncio
import os
import posixpath
from typing import Any, Dict, Optional

from fsspec.asyn import AsyncFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.utils import isfilelike

from . import aio
from .errors import SmbStatusError
from .fsspec import SMBPathsMixin, release_when_collected

__all__ = ["AsyncSMBFileSystem"]

_LOCAL_CHUNK = 1 << 20


class AsyncSMBFileSystem(SMBPathsMixin, AsyncFileSystem):
    """fsspec AsyncFileSystem on ``smblayer.aio`` (arguments as
    ``SMBFileSystem``)."""

    def __init__(self, host: str, port: int = 445, username: Optional[str] = None,
                 password: Optional[str] = None, *, domain: Optional[str] = None,
                 encrypt: bool = False, timeout: Optional[float] = None,
                 auto_mkdir: bool = False, **kwargs: Any):
        super().__init__(**self._set_options(host, port, username, password, domain, encrypt,
                                             timeout, auto_mkdir, kwargs))
        self._trees: Dict[str, aio.AsyncTree] = {}
        self._connecting: Dict[str, asyncio.Future] = {}
        self._pid = os.getpid()
        release_when_collected(self, self._trees)

    # -- connections -----------------------------------------------------------------

    async def _tree(self, share: str) -> aio.AsyncTree:
        """The tree for ``share``, connected once (concurrent first uses
        wait for the one connect)."""
        if self._pid != os.getpid():
            self._trees, self._connecting, self._pid = {}, {}, os.getpid()
            release_when_collected(self, self._trees)
        key = share.lower()
        tree = self._trees.get(key)
        if tree is not None and tree.sync.connected:
            return tree
        pending = self._connecting.get(key)
        if pending is None:
            pending = self._connecting[key] = asyncio.ensure_future(aio.connect(
                self.host, share, self.username, self.password, **self._connect_options()))
        try:
            tree = await asyncio.shield(pending)
        finally:
            if pending.done() and self._connecting.get(key) is pending:
                del self._connecting[key]
        self._trees[key] = tree
        return tree

    async def _split(self, path):
        share, rel = self._share_path(path)
        return share, rel, await self._tree(share)

    async def close(self) -> None:
        """Disconnect this instance's trees."""
        trees = list(self._trees.values())
        self._trees.clear()             # the dict the collection hook holds
        for tree in trees:
            await tree.close()

    # -- metadata ---------------------------------------------------------------------

    async def _info(self, path, **kwargs) -> Dict[str, Any]:
        share, rel, tree = await self._split(path)
        if not rel:
            return {"name": share, "size": 0, "type": "directory"}
        return self._entry(f"{share}/{rel}", await tree.file_info(rel))

    async def _ls(self, path, detail: bool = True, **kwargs):
        share, rel, tree = await self._split(path)
        try:
            entries = [self._entry(f"{share}/{e.path}", e.info)
                       for e in await tree.scandir(rel)]
        except SmbStatusError:
            if not rel:
                raise
            info = await self._info(path)
            if info["type"] == "directory":
                raise
            entries = [info]
        return entries if detail else [e["name"] for e in entries]

    async def _exists(self, path, **kwargs) -> bool:
        try:
            share, rel, tree = await self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return not rel or await tree.exists(rel)

    async def _isdir(self, path) -> bool:
        try:
            share, rel, tree = await self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return not rel or await tree.isdir(rel)

    async def _isfile(self, path) -> bool:
        try:
            share, rel, tree = await self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return bool(rel) and await tree.isfile(rel)

    async def _size(self, path) -> int:
        return (await self._info(path))["size"]

    # -- directories ----------------------------------------------------------------------

    async def _mkdir(self, path, create_parents: bool = True, **kwargs) -> None:
        share, rel, tree = await self._split(path)
        if not rel or await tree.exists(rel):
            raise FileExistsError(self._strip_protocol(path))
        if create_parents:
            await tree.makedirs(rel, exist_ok=True)
        else:
            await tree.mkdir(rel)

    async def _makedirs(self, path, exist_ok: bool = False) -> None:
        share, rel, tree = await self._split(path)
        if not rel:
            if not exist_ok:
                raise FileExistsError(share)
            return
        try:
            await tree.makedirs(rel, exist_ok=exist_ok)
        except FileExistsError:
            if not exist_ok or not await tree.isdir(rel):
                raise

    async def _rmdir(self, path) -> None:
        share, rel, tree = await self._split(path)
        await tree.rmdir(rel)

    async def _ensure_parent(self, tree: aio.AsyncTree, rel: str) -> None:
        parent = posixpath.dirname(rel)
        if parent and not await tree.isdir(parent):
            await tree.makedirs(parent, exist_ok=True)

    # -- deleting and copying ----------------------------------------------------------------

    async def _rm_file(self, path, **kwargs) -> None:
        share, rel, tree = await self._split(path)
        await tree.remove(rel)

    async def _rm(self, path, recursive: bool = False, batch_size=None, **kwargs) -> None:
        """Delete files concurrently, then the directories deepest first."""
        paths = await self._expand_path(path, recursive=recursive)
        kinds = await asyncio.gather(*(self._isdir(p) for p in paths))
        files = [p for p, d in zip(paths, kinds) if not d]
        dirs = [p for p, d in zip(paths, kinds) if d]
        await asyncio.gather(*(self._rm_file(p) for p in files))
        for d in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
            await self._rmdir(d)

    async def _cp_file(self, path1, path2, **kwargs) -> None:
        share1, rel1, tree1 = await self._split(path1)
        share2, rel2, tree2 = await self._split(path2)
        if self.auto_mkdir:
            await self._ensure_parent(tree2, rel2)
        if await tree1.isdir(rel1):
            await self._makedirs(path2, exist_ok=True)
            return
        if tree1.sync.client is tree2.sync.client:
            await asyncio.to_thread(tree1.sync.copy, rel1, rel2, dst_tree=tree2.sync)
            return
        async with tree1.open(rel1, "rb") as src, tree2.open(rel2, "wb") as dst:
            async for data in src:
                await dst.write(data)

    # -- data -----------------------------------------------------------------------------

    async def _cat_file(self, path, start: Optional[int] = None, end: Optional[int] = None,
                        **kwargs) -> bytes:
        share, rel, tree = await self._split(path)
        if start is None and end is None:
            return await tree.read_bytes(rel)
        start = start or 0
        if start < 0 or (end is not None and end < 0):
            size = await tree.getsize(rel)
            start = max(size + start, 0) if start < 0 else start
            end = size + end if end is not None and end < 0 else end
        return await tree.read_range(rel, start, end)

    async def _pipe_file(self, path, value, mode: str = "overwrite", **kwargs) -> None:
        share, rel, tree = await self._split(path)
        if self.auto_mkdir:
            await self._ensure_parent(tree, rel)
        if mode == "create":
            async with tree.open(rel, "xb") as f:
                await f.write(value)
            return
        await tree.write_bytes(rel, value)

    async def _put_file(self, lpath, rpath, callback=DEFAULT_CALLBACK, mode: str = "overwrite",
                        **kwargs) -> None:
        share, rel, tree = await self._split(rpath)
        if os.path.isdir(lpath):
            await self._makedirs(rpath, exist_ok=True)
            return
        if mode == "create" and await tree.exists(rel):
            raise FileExistsError(self._strip_protocol(rpath))
        await self._ensure_parent(tree, rel)
        src = await asyncio.to_thread(open, lpath, "rb")
        try:
            size = os.fstat(src.fileno()).st_size
            callback.set_size(size)
            if size <= tree.sync.io_write_size:
                await tree.write_bytes(rel, await asyncio.to_thread(src.read))
                callback.relative_update(size)
                return
            async with tree.open(rel, "wb") as dst:
                while True:
                    data = await asyncio.to_thread(src.read, _LOCAL_CHUNK)
                    if not data:
                        break
                    await dst.write(data)
                    callback.relative_update(len(data))
        finally:
            src.close()

    async def _get_file(self, rpath, lpath, callback=DEFAULT_CALLBACK, outfile=None,
                        **kwargs) -> None:
        if isfilelike(lpath):
            outfile = lpath
        share, rel, tree = await self._split(rpath)
        try:
            src = await tree.open(rel, "rb") if rel else None
        except IsADirectoryError:
            src = None
        if not self._local_target(lpath, outfile, src is None):
            return
        async with src:
            callback.set_size(src.handle.info.size)
            out = outfile if outfile is not None else await asyncio.to_thread(open, lpath, "wb")
            try:
                async for data in src:
                    await asyncio.to_thread(out.write, data)
                    callback.relative_update(len(data))
            finally:
                if outfile is None:
                    out.close()

    async def open_async(self, path, mode: str = "rb", **kwargs) -> aio.AsyncFile:
        """An ``smblayer.aio.AsyncFile`` (binary modes)."""
        share, rel, tree = await self._split(path)
        if self.auto_mkdir and "r" not in mode:
            await self._ensure_parent(tree, rel)
        return await tree.open(rel, mode)

    def _open(self, path, mode: str = "rb", **kwargs):
        raise NotImplementedError("AsyncSMBFileSystem: use 'await fs.open_async(path, mode)', "
                                  "or SMBFileSystem (asynchronous=False) for blocking files")
