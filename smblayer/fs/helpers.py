"""Tree's os/shutil-level helpers, as a mixin: ``exists``, ``isdir``,
``walk``, ``glob``, ``rmtree``, ``copyfile``, ``copytree``... written over a
few path primitives, so that any class with those primitives gets them:
:class:`~smblayer.fs.tree.Tree` (one share) and
:class:`~smblayer.fs.dfs.DfsTree` (a DFS namespace, whose primitives follow
links, so the helpers cross links too and hand out namespace paths).

The primitives a class provides: ``file_info``, ``scandir``, ``mkdir``,
``rmdir``, ``remove``, ``open``, ``read_bytes``, ``write_bytes``,
``_set_filetimes``, ``io_read_size``, ``io_write_size`` and
``max_in_flight``.  Paths in are share-relative with "/" or "\\"; paths
out use "/" (``outpath``).  Data copies go through the one copy engine,
:mod:`smblayer.fs.transfer`.
"""
from __future__ import annotations

import os
import re
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from ..errors import SmbStatusError, status_error
from ..proto.status import NtStatus
from .ops import FileInfo, normpath, outpath  # noqa: F401 - normpath/outpath re-exported

# fnmatch, shutil, concurrent.futures and .transfer are imported in the
# methods that use them: a one-shot command (ls, stat) loads none of them
# (cold start, issue 20).

__all__ = ["TreeHelpers", "DirEntry", "normpath", "outpath", "join", "split_dirs",
           "server_pattern", "glob_match", "unhidden"]


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


# Statuses that mean "there is nothing at this path": exists()/isdir()/isfile()
# answer False for them, as os.path.exists does for ENOENT and friends.
_NOT_THERE = frozenset({
    NtStatus.OBJECT_NAME_NOT_FOUND, NtStatus.OBJECT_PATH_NOT_FOUND, NtStatus.NO_SUCH_FILE,
    NtStatus.NOT_FOUND, NtStatus.DELETE_PENDING, NtStatus.OBJECT_NAME_INVALID,
    NtStatus.OBJECT_PATH_INVALID, NtStatus.OBJECT_PATH_SYNTAX_BAD, NtStatus.NOT_A_DIRECTORY,
    NtStatus.FILE_IS_A_DIRECTORY,
})
_MAGIC = re.compile(r"[*?[]")
NOT_THERE = _NOT_THERE              # public spellings for smblayer.aio
has_magic = _MAGIC.search
_PARALLEL = 8               # threads for many small operations (rmtree, copytree)


# The walk and glob rules, shared by Tree (below) and smblayer.aio's AsyncTree
# (which lists concurrently): one definition of what matches.

def split_dirs(entries: Sequence["DirEntry"]) -> Tuple[List["DirEntry"], List["DirEntry"]]:
    """(directories, files) of one listing, for walk."""
    dirs = [e for e in entries if e.is_dir()]
    return dirs, [e for e in entries if not e.is_dir()]


def server_pattern(part: str) -> str:
    """What QUERY_DIRECTORY is asked for a glob component: the component
    itself when the server can match it (``*``/``?`` only), else "*"."""
    return part if "[" not in part else "*"


def glob_match(entries, part: str, include_hidden: bool) -> List["DirEntry"]:
    """The entries matching one glob component (case-insensitive, as SMB
    is; a name starting with "." only if ``part`` does or ``include_hidden``)."""
    import fnmatch
    hidden_ok = include_hidden or part.startswith(".")
    lowered = part.lower()
    return [e for e in entries if fnmatch.fnmatchcase(e.name.lower(), lowered) and
            (hidden_ok or not e.name.startswith("."))]


def unhidden(entries: List["DirEntry"]) -> List["DirEntry"]:
    """The entries whose name does not start with "." (``**`` without
    ``include_hidden``)."""
    return [e for e in entries if not e.name.startswith(".")]


class DirEntry:
    """One entry of ``Tree.scandir``, like ``os.DirEntry``."""

    __slots__ = ("name", "path", "info")

    def __init__(self, name: str, path: str, info: FileInfo):
        self.name = name
        self.path = path
        self.info = info

    def is_dir(self) -> bool:
        return self.info.is_dir

    def is_file(self) -> bool:
        return not self.info.is_dir

    def is_symlink(self) -> bool:
        return False

    def stat(self) -> os.stat_result:
        return self.info.to_stat()

    def inode(self) -> int:
        return self.info.file_index

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"


class TreeHelpers:
    """The os/shutil-level helpers (see the module's doc)."""

    # What walk() passes to onerror and skips (a DfsTree adds a dead DFS link).
    _WALK_ERRORS: Tuple[type, ...] = (SmbStatusError,)

    def _info_or_none(self, path) -> Optional[FileInfo]:
        """FileInfo of ``path``, or None where a status says nothing is there."""
        try:
            return self.file_info(path)
        except SmbStatusError as exc:
            if exc.status in _NOT_THERE:
                return None
            raise
        except ValueError:
            return None             # a name no SMB path can have (wildcards)

    def exists(self, path) -> bool:
        """Like os.path.exists: False (never an error) when nothing is there."""
        return self._info_or_none(path) is not None

    def isdir(self, path) -> bool:
        info = self._info_or_none(path)
        return info is not None and info.is_dir

    def isfile(self, path) -> bool:
        info = self._info_or_none(path)
        return info is not None and not info.is_dir

    def getsize(self, path) -> int:
        return self.file_info(path).size

    def makedirs(self, path, exist_ok: bool = False) -> None:
        parts = normpath(path).split("\\")
        for i in range(1, len(parts) + 1):
            try:
                self.mkdir("\\".join(parts[:i]))
            except FileExistsError:
                if i == len(parts) and not exist_ok:
                    raise

    # -- os/shutil-level helpers (paths out with "/") -----------------------------------

    def walk(self, top="", topdown: bool = True,
             onerror: Optional[Callable[[OSError], None]] = None
             ) -> Iterator[Tuple[str, List[str], List[str]]]:
        """Like ``os.walk``: (dirpath, dirnames, filenames) for ``top`` and
        every directory below it, one directory query each.  Top-down, the
        caller may prune ``dirnames`` in place.  A directory that cannot be
        listed is skipped (``onerror(exc)`` is called with the error); a
        lost connection still raises."""
        for dirpath, dirs, files in self.walk_entries(top, topdown, onerror):
            names = [d.name for d in dirs]
            yield dirpath, names, [f.name for f in files]
            if topdown:                       # descend into what the caller left
                by_name = {d.name: d for d in dirs}
                dirs[:] = [by_name[n] for n in names if n in by_name]

    def walk_entries(self, top="", topdown: bool = True,
                     onerror: Optional[Callable[[OSError], None]] = None
                     ) -> Iterator[Tuple[str, List[DirEntry], List[DirEntry]]]:
        """``walk`` with DirEntry lists (sizes and times without a stat each)."""
        top = outpath(top)
        try:
            entries = list(self.scandir(top))
        except self._WALK_ERRORS as exc:
            if onerror is not None:
                onerror(exc)
            return
        dirs, files = split_dirs(entries)
        if topdown:
            yield top, dirs, files
        for d in list(dirs):
            yield from self.walk_entries(d.path, topdown, onerror)
        if not topdown:
            yield top, dirs, files

    def glob(self, pattern, *, recursive: bool = False,
             include_hidden: bool = False) -> List[str]:
        """Paths matching ``pattern`` like ``glob.glob`` (sorted, with "/"):
        ``*``, ``?`` and ``[...]`` in any component, ``**`` for any depth
        with ``recursive``.  A component with ``*``/``?`` only is matched by
        the server (QUERY_DIRECTORY's pattern, one query); the result is
        checked here again.  Matching is case-insensitive, as SMB is; names
        starting with "." match only a pattern starting with "." unless
        ``include_hidden``."""
        return [e.path for e in self.glob_entries(pattern, recursive=recursive,
                                                  include_hidden=include_hidden)]

    def glob_entries(self, pattern, *, recursive: bool = False,
                     include_hidden: bool = False) -> List[DirEntry]:
        """``glob`` as DirEntry objects, sorted by path: each match's type,
        size and times come from the directory query that found it (a
        component without wildcards costs one stat)."""
        pattern = outpath(pattern)
        if not pattern:
            return []
        if not _MAGIC.search(pattern):
            entry = self._entry_or_none(pattern)
            return [entry] if entry is not None else []
        # (path, its DirEntry where a directory query gave one)
        found: List[Tuple[str, Optional[DirEntry]]] = [("", None)]
        parts = pattern.split("/")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            step: List[Tuple[str, Optional[DirEntry]]] = []
            for base, _entry in found:
                if recursive and part == "**":
                    step.extend(self._glob_deep(base, last, include_hidden))
                elif _MAGIC.search(part):
                    step.extend((e.path, e) for e in self._glob_dir(base, part, include_hidden)
                                if last or e.is_dir())
                else:
                    step.append((join(base, part), None))
            found = step
        entries = [entry or self._entry_or_none(path) for path, entry in found]
        return sorted((e for e in entries if e is not None), key=lambda e: e.path)

    def _entry_or_none(self, path: str) -> Optional[DirEntry]:
        info = self._info_or_none(path)
        return None if info is None else DirEntry(path.rsplit("/", 1)[-1], path, info)

    def _glob_dir(self, base: str, part: str, include_hidden: bool) -> List[DirEntry]:
        """Entries of ``base`` matching one pattern component."""
        try:
            entries = self.scandir(base, server_pattern(part))
        except SmbStatusError as exc:
            if exc.status in _NOT_THERE:
                return []
            raise
        return glob_match(entries, part, include_hidden)

    def _glob_deep(self, base: str, last: bool,
                   include_hidden: bool) -> List[Tuple[str, Optional[DirEntry]]]:
        """``**``: ``base`` and every directory below it (and the files too
        when ``**`` is the last component), as (path, DirEntry or None)."""
        out: List[Tuple[str, Optional[DirEntry]]] = [] if last else [(base, None)]
        for _dirpath, dirs, files in self.walk_entries(base):
            if not include_hidden:
                dirs[:] = unhidden(dirs)
                files = unhidden(files)
            out.extend((d.path, d) for d in dirs)
            if last:
                out.extend((f.path, f) for f in files)
        return out

    def rmtree(self, path, ignore_errors: bool = False,
               onerror: Optional[Callable[[Callable, str, tuple], None]] = None) -> None:
        """Delete the directory ``path`` and everything in it, like
        ``shutil.rmtree`` (errors raise unless ``ignore_errors``, or go to
        ``onerror(function, path, exc_info)``).  Files are deleted a few at a
        time in parallel."""
        def failed(function: Callable, where: str, exc: BaseException) -> None:
            if ignore_errors:
                return
            if onerror is None:
                raise exc
            onerror(function, where, (type(exc), exc, exc.__traceback__))

        top = outpath(path)
        if not top:
            raise ValueError("rmtree: refusing to delete the share root")
        try:
            info = self.file_info(top)
        except SmbStatusError as exc:
            failed(self.file_info, top, exc)
            return
        if not info.is_dir:
            failed(self.rmtree, top, status_error(NtStatus.NOT_A_DIRECTORY, "rmtree", top))
            return
        listing_errors: List[OSError] = []
        for dirpath, _dirs, files in self.walk_entries(top, topdown=False,
                                                        onerror=listing_errors.append):
            for entry, exc in self._each(self.remove, [f.path for f in files]):
                failed(self.remove, entry, exc)
            try:
                self.rmdir(dirpath)
            except SmbStatusError as exc:
                failed(self.rmdir, dirpath, exc)
        for exc in listing_errors:
            failed(self.scandir, exc.filename or top, exc)

    def _each(self, function: Callable[[str], object],
              items: Sequence[str]) -> List[Tuple[str, BaseException]]:
        """Run ``function(item)`` for every item, up to _PARALLEL at a time;
        the (item, error) pairs of those that failed with an SmbStatusError."""
        failures: List[Tuple[str, BaseException]] = []

        def run(item: str) -> None:
            try:
                function(item)
            except SmbStatusError as exc:
                failures.append((item, exc))

        if len(items) <= 1:
            for item in items:
                run(item)
            return failures
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(
                min(_PARALLEL, len(items)), thread_name_prefix="smblayer-tree") as pool:
            for future in [pool.submit(run, item) for item in items]:
                future.result()
        return failures

    def copyfile(self, src, dst) -> str:
        """Copy the file ``src`` to ``dst`` (created or overwritten) on this
        share, like ``shutil.copyfile``; returns ``dst``.  The data goes
        through the client (:func:`smblayer.fs.transfer.copy_remote`:
        pipelined reads and writes, one compound for a small file)."""
        import shutil
        from . import transfer
        src_p, dst_p = outpath(src), outpath(dst)
        if src_p.lower() == dst_p.lower():
            raise shutil.SameFileError(f"{src_p!r} and {dst_p!r} are the same file")
        transfer.copy_remote(self, src_p, self, dst_p)
        return dst_p

    def read_chunks(self, f) -> Iterator[bytes]:
        """The rest of the unbuffered file ``f`` (``open(..., buffering=0)``)
        in steps of pipelined READs (:func:`smblayer.fs.transfer.read_chunks`)."""
        from . import transfer
        return transfer.read_chunks(self, f)

    def copytree(self, src, dst, dirs_exist_ok: bool = False,
                 preserve_times: bool = True) -> str:
        """Copy the directory tree ``src`` to ``dst`` on this share, like
        ``shutil.copytree``: ``dst`` must not exist unless ``dirs_exist_ok``;
        files are copied a few at a time in parallel with their modification
        times (``preserve_times``).  Returns ``dst``."""
        src_p, dst_p = outpath(src), outpath(dst)
        if (dst_p + "/").lower().startswith((src_p + "/").lower()):
            raise ValueError(f"copytree: cannot copy {src_p!r} into itself ({dst_p!r})")
        if not self.file_info(src_p).is_dir:
            raise status_error(NtStatus.NOT_A_DIRECTORY, "copytree", src_p)
        files: List[DirEntry] = []
        for dirpath, _dirs, dir_files in self.walk_entries(src_p):
            target = dst_p + dirpath[len(src_p):]
            try:
                self.mkdir(target)
            except FileExistsError:
                if not dirs_exist_ok:
                    raise
            files.extend(dir_files)

        by_path = {f.path: f for f in files}
        failures = self._copy_small(by_path, src_p, dst_p, preserve_times)

        def copy_one(path: str) -> None:
            target = dst_p + path[len(src_p):]
            self.copyfile(path, target)
            if preserve_times:
                info = by_path[path].info
                self._set_filetimes(target, info.last_access_time, info.last_write_time)

        failures += self._each(copy_one, list(by_path))
        if failures:
            raise failures[0][1]
        return dst_p

    def _copy_small(self, by_path, src_p: str, dst_p: str,
                    preserve_times: bool) -> List[Tuple[str, BaseException]]:
        """copytree's small files, several whole-file compounds in flight
        from this thread (:mod:`smblayer.fs.many`); they leave ``by_path``.
        The failures, as ``_each`` gives them."""
        from .many import can_batch, copy_files, fits     # only copytree needs it
        if not can_batch(self):
            return []
        small = [p for p, e in by_path.items() if fits(self, e.info.size)]
        items = ((p, dst_p + p[len(src_p):],
                  (by_path[p].info.last_access_time, by_path[p].info.last_write_time)
                  if preserve_times else None) for p in small)
        failures: List[Tuple[str, BaseException]] = []
        for path, _n, error in copy_files(self, self, items):
            if isinstance(error, SmbStatusError):
                failures.append((path, error))
            elif error is not None:
                raise error
        for p in small:
            del by_path[p]
        return failures
