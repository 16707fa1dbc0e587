"""Many small files at once: the transfer engine's pipelined path.

Theory of operation
-------------------
A file that fits one READ or WRITE is copied by a job of :mod:`.batch`
(a generator of FileOps plans), several jobs in flight from the calling
thread:

* download (:func:`get_files`): one compound CREATE + READ + CLOSE, then the
  bytes go to a local temporary name renamed over the destination
  (:func:`.transfer.local_temp`), then its times;
* upload (:func:`put_files`): :func:`.safeput.write_job` -- CREATE + WRITE
  + SET_INFO (its times) of a temporary name beside the destination, then
  SET_INFO (rename over the destination) + CLOSE on that handle: two
  compounds and one open a file; on any failure the temporary file is
  deleted, so the destination is whole or as it was;
* share to share (:func:`copy_files`): the read of one and the write of the
  other, with the source's times.

A job whose file turns out not to fit (it grew, or is a symbolic link the
server did not follow) falls back to the one-file path of :mod:`.transfer`
on the calling thread.  Results come in completion order as
``(key, bytes moved, error)``; the caller decides what a failure means.
Only SMB 2+ trees that are not DFS namespaces have plans
(:func:`can_batch`); elsewhere the callers copy one file at a time.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional, Tuple

from . import batch, safeput, transfer
from .ops import normpath

__all__ = ["can_batch", "get_files", "put_files", "copy_files", "read_files", "fits",
           "make_dirs"]

Times = Optional[Tuple[float, float]]
Result = Tuple[object, int, Optional[BaseException]]


def can_batch(tree) -> bool:
    """True if ``tree`` copies small files with plans (SMB 2+, not DFS)."""
    return hasattr(tree.ops, "read_whole_plan") and not getattr(tree, "dfs", False)


def fits(tree, size: Optional[int]) -> bool:
    """True if a file of ``size`` bytes goes in one READ and one WRITE."""
    return size is not None and size <= min(tree.io_read_size, tree.io_write_size)


def _read_job(tree, path: str):
    data = yield tree.ops.read_whole_plan(normpath(path), tree.io_read_size)
    return data if data is not None else tree.read_bytes(path)


def _get_job(tree, src: str, dest: str, times: Times, dirs: bool = False):
    """``dirs``: a directory at ``src`` makes the local directory (fsspec's
    get names them among the files); the local parent is made too."""
    if dirs:
        try:
            data = yield tree.ops.read_whole_plan(normpath(src), tree.io_read_size)
        except IsADirectoryError:
            os.makedirs(dest, exist_ok=True)
            return 0
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    else:
        data = yield tree.ops.read_whole_plan(normpath(src), tree.io_read_size)
    if data is None:                   # grew, or a link: the one-file path
        return transfer.get_file(tree, src, dest, times=times)
    with transfer.local_temp(dest) as local:
        local.write(data)
    if times is not None:
        os.utime(dest, times)
    return len(data)


def _put_job(tree, local_path: str, dest: str, times: Times):
    with open(local_path, "rb") as local:
        data = local.read()
    return (yield from safeput.write_job(tree, data, dest,
                                         safeput.filetimes(times) if times is not None
                                         else None))


def _copy_job(src_tree, src: str, dst_tree, dst: str, filetimes: Optional[Tuple[int, int]]):
    data = yield src_tree.ops.read_whole_plan(normpath(src), src_tree.io_read_size)
    if data is None:
        n = transfer.copy_remote(src_tree, src, dst_tree, dst)
        if filetimes is not None:
            dst_tree.ops.set_times(normpath(dst), *filetimes)
        return n
    return (yield from safeput.write_job(dst_tree, data, dst, filetimes))


def read_files(tree, paths: Iterable[str], *,
               window: int = batch.DEFAULT_WINDOW) -> Iterator[Tuple[str, bytes, Optional[BaseException]]]:
    """The contents of many files (a large one read the ordinary way);
    yields ``(path, data, error)`` as each ends."""
    for key, data, error in batch.run(tree.client, ((p, _read_job(tree, p)) for p in paths),
                                      window):
        yield key, (data if error is None else b""), error


def get_files(tree, items: Iterable[Tuple[str, str, Times]], *, dirs: bool = False,
              window: int = batch.DEFAULT_WINDOW) -> Iterator[Result]:
    """Download small files ``(remote src, local dest, times)``; yields
    ``(src, bytes, error)`` as each ends.  ``dirs``: a remote directory
    among them makes the local one (and local parents are made)."""
    return _results(tree.client, ((src, _get_job(tree, src, dest, times, dirs))
                                  for src, dest, times in items), window)


def put_files(tree, items: Iterable[Tuple[str, str, Times]], *,
              window: int = batch.DEFAULT_WINDOW) -> Iterator[Result]:
    """Upload small files ``(local src, remote dest, times)``; yields
    ``(dest, bytes, error)`` as each ends."""
    return _results(tree.client, ((dest, _put_job(tree, src, dest, times))
                                  for src, dest, times in items), window)


def copy_files(src_tree, dst_tree, items: Iterable[Tuple[str, str, Optional[Tuple[int, int]]]],
               *, window: int = batch.DEFAULT_WINDOW) -> Iterator[Result]:
    """Copy small files ``(src, dst, filetimes)`` between two trees of one
    client (or the same tree); ``filetimes``: (access, write) FILETIMEs for
    the copy, or None.  Yields ``(src, bytes, error)``."""
    return _results(src_tree.client, ((src, _copy_job(src_tree, src, dst_tree, dst, ft))
                                      for src, dst, ft in items), window)


def _mkdir_job(tree, path: str):
    try:
        yield tree.ops.mkdir_plan(normpath(path))
    except FileExistsError:
        if not tree.isdir(path):
            raise


def make_dirs(tree, paths: Iterable[str], *, window: int = batch.DEFAULT_WINDOW) -> None:
    """Create the directories ``paths`` (their parents exist or are among
    them; one that exists already is fine): all those of one depth at once,
    a round trip a depth, not one or two a directory.  The first failure
    raises (FileExistsError naming a path that is not a directory)."""
    levels: dict = {}
    for path in paths:
        if path:
            levels.setdefault(normpath(path).count("\\"), []).append(path)
    for depth in sorted(levels):
        jobs = ((p, _mkdir_job(tree, p)) for p in levels[depth])
        for _path, _result, error in batch.run(tree.client, jobs, window):
            if error is not None:
                raise error


def _results(client, jobs, window: int) -> Iterator[Result]:
    for key, n, error in batch.run(client, jobs, window):
        yield key, (n or 0), error
