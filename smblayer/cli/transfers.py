"""get and put: local <-> remote copies of files and trees, on the one
copy engine (:mod:`smblayer.fs.transfer`: one pipeline a file, reused
buffers, temporary name and rename, resume, verify), with one
progress bar per command.  Many small files go through the engine's
pipelined path (:mod:`smblayer.fs.many`: several whole-file compounds in
flight from this thread), the large ones after them one at a time.  Also :func:`upload` and :func:`download`, the
engine with a progress bar of its own (the benchmarks in tools/ use them).
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import posixpath
import stat
import sys
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, List, Optional, Sequence, Tuple

from ..fs import transfer
from ..fs.transfer import VerifyError
from ..records import Record
from .connections import SmbUrl, open_tree, parse_url, smb_path
from .files import expand, is_remote_dir, isdir, stdout, walk
from .progress import Progress, new_bar, progress_enabled
from .words import UsageError, has_wildcard, is_url

log = logging.getLogger("smblayer")

__all__ = ["cmd_get", "cmd_put", "upload", "download", "VerifyError"]


def upload(tree, local: BinaryIO, path: str, size: Optional[int], label: str = "",
           progress: Optional[bool] = None, *, bar=None, offset: int = 0) -> int:
    """:func:`smblayer.fs.transfer.upload` with a progress bar: ``bar`` (one
    for many files), else one of its own when ``progress`` (default: on a
    terminal, for 1 MiB and more)."""
    if bar is not None:
        return transfer.upload(tree, local, path, offset=offset, progress=bar.update)
    with Progress(label, size, enabled=progress_enabled(size, progress)) as own:
        return transfer.upload(tree, local, path, offset=offset, progress=own.update)


def download(tree, path: str, local: BinaryIO, label: str = "",
             progress: Optional[bool] = None, *, bar=None, offset: int = 0) -> int:
    """:func:`smblayer.fs.transfer.download` with a progress bar, as for
    :func:`upload` (the size is known once the file is open)."""
    with transfer.closing(tree.open(path, "rb", buffering=0)) as f:
        if bar is not None:
            return transfer.receive(tree, f, local, offset=offset, progress=bar.update)
        size = f.handle.info.size
        with Progress(label, size, enabled=progress_enabled(size, progress)) as own:
            return transfer.receive(tree, f, local, offset=offset, progress=own.update)


class _Job(Record):
    """One file to copy: ``src`` and ``dest`` paths (remote ones share-
    relative), the source's size and times."""

    __slots__ = ("src", "dest", "size", "atime", "mtime", "url")

    def __init__(self, src: str, dest: str, size: int, atime: float, mtime: float,
                 url: str = "") -> None:
        self.src = src
        self.dest = dest
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.url = url    # the remote end as a URL, for error messages


def _split_get_args(paths: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    if len(paths) > 1 and not is_url(paths[-1]):
        return list(paths[:-1]), paths[-1]
    return list(paths), None


def _one_share(urls: Sequence[SmbUrl]) -> SmbUrl:
    first = urls[0]
    for url in urls[1:]:
        if (url.host, url.port, url.share.lower()) != (first.host, first.port,
                                                        first.share.lower()):
            raise UsageError("all remote paths of one command must be on one share")
    return first


def _get_one(args, tree, url: SmbUrl, job: _Job, bar) -> int:
    """Copy one remote file to a local file; returns the bytes moved."""
    args.current_url = str(url.with_path(job.src))          # for error messages
    if args.resume and _local_size(job.dest) == job.size:
        log.info("get: %s is complete already", job.dest)
        bar.update(job.size)
        return 0
    return transfer.get_file(tree, job.src, job.dest, size=job.size, resume=args.resume,
                             verify=args.verify, times=(job.atime, job.mtime),
                             progress=bar.update)


def _local_size(path: str) -> Optional[int]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _get_jobs(args, tree, url: SmbUrl, sources: List[Tuple[str, object]], dest: str,
              many: bool) -> Tuple[List[str], List[_Job]]:
    """(local directories to create, files to copy) for ``get``."""
    into_dir = many or os.path.isdir(dest)
    if many and not os.path.isdir(dest):
        raise UsageError(f"the target {dest!r} is not a directory")
    dirs: List[str] = []
    jobs: List[_Job] = []
    for path, st in sources:
        name = posixpath.basename(path) or url.share
        target = os.path.join(dest, name) if into_dir else dest
        if not isdir(st):
            jobs.append(_Job(path, target, st.st_size, st.st_atime, st.st_mtime))
            continue
        if not args.recursive:
            raise IsADirectoryError(errno.EISDIR, "Is a directory (get -r copies directories)",
                                    str(url.with_path(path)))
        for dirpath, _subdirs, files in walk(tree, path):
            rel = posixpath.relpath(dirpath, path) if path else dirpath
            local_dir = os.path.normpath(os.path.join(target, *rel.split("/")))
            dirs.append(local_dir)
            for entry in files:
                fst = entry.stat()
                jobs.append(_Job(entry.path, os.path.join(local_dir, entry.name),
                                 fst.st_size, fst.st_atime, fst.st_mtime))
    return dirs, jobs


def _get_files(tree, items):
    """fs.many's get_files, imported when first called (see _pipelined)."""
    from ..fs.many import get_files
    return get_files(tree, items)


def _put_files(tree, items):
    """fs.many's put_files, imported when first called (see _pipelined)."""
    from ..fs.many import put_files
    return put_files(tree, items)


def _pipelined(args, tree, url: SmbUrl, jobs: List[_Job], engine: Callable,
               remote_is_src: bool) -> Tuple[List[_Job], List[_Job], Callable]:
    """(small jobs, the other jobs, a function running the small ones with
    ``engine`` -- fs.many's get_files or put_files -- that yields ``(job,
    bytes, error)``).  Small files go together unless --continue or
    --verify asks for the one-file path."""
    if args.resume or args.verify or len(jobs) < 2:
        return [], jobs, None
    # fs.many (and fs.batch) load here: a one-file get or put never needs
    # them (cold start, issue 20)
    from ..fs.many import can_batch, fits
    if not can_batch(tree):
        return [], jobs, None
    small = [j for j in jobs if fits(tree, j.size)]
    by_key = {}
    for job in small:
        key = job.src if remote_is_src else job.dest
        job.url = str(url.with_path(key))
        by_key[key] = job

    def run_small(batch: List[_Job]):
        items = ((j.src, j.dest, (j.atime, j.mtime)) for j in batch)
        for key, n, error in engine(tree, items):
            yield by_key[key], n, error
    return small, [j for j in jobs if not fits(tree, j.size)], run_small


def _run_jobs(args, jobs: List[_Job], label: str, one: Callable,
              pipelined: Tuple[List[_Job], List[_Job], Optional[Callable]]) -> int:
    """Run ``one(args, job, bar)`` for each job under one progress bar;
    ``pipelined``: (small jobs, the other jobs, a function running the
    small ones that yields ``(job, bytes, error)`` as each ends), the small
    ones first.  The first failure
    stops the command (files in flight are abandoned whole: nothing is
    renamed over a destination before it is complete) and names its file."""
    total = done = 0
    small, rest, run_small = pipelined

    def label_for(job: _Job) -> None:
        if len(jobs) > 1:
            bar.label = (f"{done}/{len(jobs)} "
                         f"{posixpath.basename(job.src.replace(os.sep, '/'))}")

    with new_bar(args, label, sum(j.size for j in jobs)) as bar:
        if small:
            for job, n, error in run_small(small):
                done += 1
                label_for(job)
                if error is not None:
                    args.current_url = job.url              # for the error message
                    raise error
                bar.update(n)
                total += n
        for job in rest:
            done += 1
            label_for(job)
            total += one(args, job, bar)
    return total


def cmd_get(args) -> int:
    texts, dest = _split_get_args(args.paths)
    urls = [parse_url(t) for t in texts]
    url = _one_share(urls)
    if args.snapshot is not None:
        from .admin import get_snapshot
        return get_snapshot(args, url, dest, len(urls))
    if dest == "-" and (args.recursive or args.resume or args.verify or len(urls) > 1):
        raise UsageError("get to stdout takes one file, without -r, --continue or --verify")
    with open_tree(args, url) as tree:
        if dest == "-":
            path = smb_path(url.path)
            n = _get_stream(args, tree, path, stdout(), posixpath.basename(path))
            stdout().flush()
            log.info("get: %d bytes from %s to stdout", n, url)
            return 0
        sources: List[Tuple[str, object]] = []
        for text, u in zip(texts, urls):
            args.current_url = text
            sources.extend(expand(tree, smb_path(u.path), u))
        args.current_url = None
        many = len(sources) > 1 or any(has_wildcard(u.path) for u in urls)
        if dest is None:
            single_file = not many and not isdir(sources[0][1])
            dest = posixpath.basename(sources[0][0]) if single_file else "."
        dirs, jobs = _get_jobs(args, tree, url, sources, dest, many)
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        label = posixpath.basename(sources[0][0]) if len(sources) == 1 else url.share
        n = _run_jobs(args, jobs, label or url.share,
                      lambda a, job, bar: _get_one(a, tree, url, job, bar),
                      _pipelined(args, tree, url, jobs, _get_files, remote_is_src=True))
    log.info("get: %d bytes in %d files from %s to %s", n, len(jobs), url, dest)
    return 0


def _get_stream(args, tree, path: str, out: BinaryIO, label: str) -> int:
    with transfer.closing(tree.open(path, "rb", buffering=0)) as f:
        with new_bar(args, label, f.handle.info.size) as bar:
            return transfer.receive(tree, f, out, progress=bar.update)


def _put_jobs(args, tree, url: SmbUrl, sources: List[str], dest: str,
              into_dir: bool) -> Tuple[List[str], List[_Job]]:
    """(remote directories to create, files to copy) for ``put``;
    ``into_dir``: the destination must be a directory (several sources, or
    a URL ending in "/")."""
    if into_dir and not is_remote_dir(tree, dest):
        raise UsageError(f"the target {url} is not a directory")
    into_dir = into_dir or is_remote_dir(tree, dest)
    dirs: List[str] = []
    jobs: List[_Job] = []
    for src in sources:
        st = os.stat(src)
        name = os.path.basename(os.path.normpath(src))
        target = posixpath.join(dest, name) if into_dir else dest
        if not stat.S_ISDIR(st.st_mode):
            jobs.append(_Job(src, target, st.st_size, st.st_atime, st.st_mtime))
            continue
        if not args.recursive:
            raise IsADirectoryError(errno.EISDIR, "Is a directory (put -r copies directories)",
                                    src)
        for dirpath, subdirs, files in os.walk(src):
            subdirs.sort()
            rel = os.path.relpath(dirpath, src)
            remote_dir = target if rel == "." else posixpath.join(target, *rel.split(os.sep))
            dirs.append(remote_dir)
            for fname in sorted(files):
                local = os.path.join(dirpath, fname)
                fst = os.stat(local)
                if stat.S_ISREG(fst.st_mode):
                    jobs.append(_Job(local, posixpath.join(remote_dir, fname), fst.st_size,
                                     fst.st_atime, fst.st_mtime))
    return dirs, jobs


def _local_sources(texts: Sequence[str]) -> List[str]:
    """Local paths, with wildcards expanded where the shell did not."""
    out: List[str] = []
    for text in texts:
        if has_wildcard(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", text)
            out.extend(matches)
        else:
            if not os.path.exists(text):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", text)
            out.append(text)
    return out


def _remote_mkdir(tree, path: str) -> None:
    if not path:
        return
    try:
        tree.mkdir(path)
    except FileExistsError:
        if not is_remote_dir(tree, path):
            raise


def _remote_mkdirs(tree, dirs: List[str]) -> None:
    """Make the remote directories of ``put -r`` (parents first): those of
    one depth together where the tree has plans (fs.many, loaded here)."""
    if len(dirs) > 1:
        from ..fs.many import can_batch, make_dirs
        if can_batch(tree):
            make_dirs(tree, dirs)
            return
    for d in dirs:
        _remote_mkdir(tree, d)


def cmd_put(args) -> int:
    if len(args.paths) < 2:
        raise UsageError("put needs a local source and a remote destination")
    texts, url_text = args.paths[:-1], args.paths[-1]
    url = parse_url(url_text)
    into_dir = url_text.replace("\\", "/").endswith("/")      # parse_url drops the slash
    with open_tree(args, url) as tree:
        path = smb_path(url.path)
        if texts == ["-"]:
            if args.recursive or args.resume or args.verify:
                raise UsageError("put from stdin takes no -r, --continue or --verify")
            if not path or into_dir or is_remote_dir(tree, path):
                raise UsageError("put from stdin needs a remote file name")
            with new_bar(args, posixpath.basename(path), None) as bar:
                n = transfer.put_file(tree, sys.stdin.buffer, path, progress=bar.update)
            log.info("put: %d bytes from stdin to %s", n, url)
            return 0
        sources = _local_sources(texts)
        dirs, jobs = _put_jobs(args, tree, url, sources, path, len(sources) > 1 or into_dir)
        _remote_mkdirs(tree, dirs)
        label = os.path.basename(os.path.normpath(sources[0])) if len(sources) == 1 else url.share
        n = _run_jobs(args, jobs, label, lambda a, job, bar: _put_one(a, tree, url, job, bar),
                      _pipelined(args, tree, url, jobs, _put_files, remote_is_src=False))
    log.info("put: %d bytes in %d files to %s", n, len(jobs), url)
    return 0


def _put_one(args, tree, url: SmbUrl, job: _Job, bar) -> int:
    """Copy one local file to a remote file; returns the bytes moved."""
    args.current_url = str(url.with_path(job.dest))         # for error messages
    if args.resume and _remote_size(tree, job.dest) == job.size:
        log.info("put: %s is complete already", job.dest)
        bar.update(job.size)
        return 0
    with open(job.src, "rb") as local:
        return transfer.put_file(tree, local, job.dest, size=job.size, resume=args.resume,
                                 verify=args.verify, times=(job.atime, job.mtime),
                                 progress=bar.update)


def _remote_size(tree, path: str) -> Optional[int]:
    try:
        st = tree.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if isdir(st) else st.st_size
