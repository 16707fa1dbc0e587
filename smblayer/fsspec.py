"""An fsspec filesystem on smblayer: ``fsspec.filesystem("smblayer", ...)``.

    import fsspec
    fs = fsspec.filesystem("smblayer", host="127.0.0.1", port=445,
                           username="user", password="pw")
    fs.ls("share/dir")                       # paths are "share/dir/file"
    with fs.open("share/dir/a.csv", "rb") as f: ...
    pd.read_csv("smblayer://user:pw@127.0.0.1:445/share/dir/a.csv")

Registered through the ``fsspec.specs`` entry point as protocol "smblayer"
(install the ``smblayer[fsspec]`` extra).

Connections: every instance gets its client from ``smblayer.get_client``,
so all instances for one server (and options) share one connection; an
instance connects a tree per share on first use.  Instances pickle as their
arguments (fsspec's way), so a spawned worker process builds its own; after
a ``fork()`` an inherited instance drops its parent's trees (without
touching the parent's socket) and connects afresh.

Listings are one directory query each (sizes, times and types come with the
entries, no stat per entry); small files are read and written with one
compound round trip; larger ones through pipelined reads and writes.
"""
from __future__ import annotations

import datetime
import logging
import os
import posixpath
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem
from fsspec.utils import infer_storage_options, isfilelike, stringify_path

from . import fs as smbfs
from .errors import SmbStatusError
from .fs import transfer
from .fs.many import can_batch, get_files, put_files, read_files
from .fs.ops import FileInfo, filetime_to_unix

__all__ = ["SMBFileSystem", "SMBPathsMixin"]

log = logging.getLogger("smblayer")


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


class _Dispatch(type(AbstractFileSystem)):
    """``SMBFileSystem(..., asynchronous=True)`` (what
    ``fsspec.filesystem("smblayer", asynchronous=True)`` calls) is the async
    twin, ``smblayer.fsspec_async.AsyncSMBFileSystem``, cached as itself."""

    def __call__(cls, *args, **kwargs):
        if kwargs.get("asynchronous") and cls is SMBFileSystem:
            from .fsspec_async import AsyncSMBFileSystem
            return AsyncSMBFileSystem(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class SMBPathsMixin:
    """What the blocking and the async filesystem share: options, paths,
    URLs and the info dictionaries."""

    protocol = ("smblayer",)
    root_marker = ""

    @staticmethod
    def _local_target(lpath, outfile, is_dir: bool) -> bool:
        """Before a download to ``lpath`` (or into ``outfile``): a directory
        makes the local directory (False: nothing to copy); a file makes its
        local parent directory (True: copy it)."""
        if is_dir:
            if outfile is None:
                os.makedirs(lpath, exist_ok=True)
            return False
        if outfile is None:
            os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
        return True

    def _set_options(self, host: str, port, username, password, domain, encrypt, timeout,
                     auto_mkdir: bool, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        """Keep the connection options; return what is left for fsspec."""
        self._client_options = {k: kwargs.pop(k) for k in ("dialects", "timeouts", "reconnect")
                                if k in kwargs}
        self.host = host
        self.port = int(port) if port is not None else 445
        self.username = username
        self.password = password
        self.domain = domain
        self.encrypt = encrypt
        self.timeout = timeout
        self.auto_mkdir = auto_mkdir
        return kwargs

    def _connect_options(self) -> Dict[str, Any]:
        return dict(port=self.port, domain=self.domain, encrypt=self.encrypt,
                    timeout=self.timeout, **self._client_options)

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        if path.startswith("smblayer://"):
            path = infer_storage_options(path)["path"]
        elif path.startswith("smblayer::"):
            path = path[len("smblayer::"):]
        return path.replace("\\", "/").strip("/")

    @staticmethod
    def _get_kwargs_from_urls(path):
        """smblayer://[user[:password]@]host[:port]/share/path"""
        options = infer_storage_options(path)
        options.pop("path", None)
        options.pop("protocol", None)
        if "url_query" in options:
            options.pop("url_query")
        return options

    def unstrip_protocol(self, name: str) -> str:
        return f"smblayer://{self.host}:{self.port}/{name}"

    def _share_path(self, path) -> Tuple[str, str]:
        """(share, path in the share) for an fsspec path."""
        share, _sep, rel = self._strip_protocol(path).partition("/")
        if not share:
            raise ValueError("smblayer paths start with a share name: 'share/dir/file'")
        return share, rel

    @staticmethod
    def _entry(name: str, info: FileInfo) -> Dict[str, Any]:
        st = info.to_stat()
        return {
            "name": name, "size": 0 if info.is_dir else info.size,
            "type": "directory" if info.is_dir else "file",
            "mtime": st.st_mtime, "created": filetime_to_unix(info.creation_time),
            "ino": st.st_ino, "nlink": st.st_nlink, "mode": st.st_mode, "islink": False,
            "attributes": info.attributes,
        }


def _close_quietly(trees: List[Any]) -> None:
    for tree in trees:
        try:
            getattr(tree, "sync", tree).close()     # an aio AsyncTree: its blocking Tree
        except Exception as exc:  # noqa: BLE001 - nobody to tell: the owner is gone
            log.debug("smblayer: closing a collected filesystem's tree: %s", exc)


def release_when_collected(owner: Any, trees: Dict[str, Any]) -> None:
    """When ``owner`` (a filesystem) is garbage collected, close the trees
    left in ``trees`` (a dict it keeps filling).  fsspec users rarely close
    a filesystem; each tree holds a session and a reference on the shared
    client, and a session nobody uses would be set up again at every
    reconnect.  Not at interpreter exit: the client's own exit handling is
    enough then."""
    weakref.finalize(owner, _release_trees, trees, os.getpid()).atexit = False


def _release_trees(trees: Dict[str, Any], pid: int) -> None:
    """An SMBFileSystem was collected: close its trees on a thread of their
    own (collection may happen on any thread, even one holding a layer
    lock, and closing sends requests).  Never in a forked child: the trees
    are the parent's."""
    if os.getpid() != pid or not trees:
        return
    owned = list(trees.values())
    trees.clear()
    threading.Thread(target=_close_quietly, args=(owned,), daemon=True,
                     name="smblayer-fsspec-release").start()


class SMBFileSystem(SMBPathsMixin, AbstractFileSystem, metaclass=_Dispatch):
    """fsspec filesystem for SMB shares through smblayer.

    ``host``, ``port``, ``username``, ``password``, ``domain``, ``encrypt``
    as for ``smblayer.fs.connect``; ``timeout`` is the request timeout
    (``TimeoutPolicy(timeout=...)``); further keyword arguments that
    ``smblayer.get_client`` takes (``dialects``, ``timeouts``,
    ``reconnect``) go to the client.  ``auto_mkdir`` creates a file's
    parent directories when it is opened for writing.  With
    ``asynchronous=True`` the instance is the async twin
    (``smblayer.fsspec_async.AsyncSMBFileSystem``, an fsspec
    AsyncFileSystem).
    """

    def __init__(self, host: str, port: int = 445, username: Optional[str] = None,
                 password: Optional[str] = None, *, domain: Optional[str] = None,
                 encrypt: bool = False, timeout: Optional[float] = None,
                 auto_mkdir: bool = False, **kwargs: Any):
        super().__init__(**self._set_options(host, port, username, password, domain, encrypt,
                                             timeout, auto_mkdir, kwargs))
        self._lock = threading.Lock()            # guards _trees
        self._connect_lock = threading.Lock()    # one connect at a time
        self._trees: Dict[str, smbfs.Tree] = {}
        self._pid = os.getpid()
        self._batching = threading.local()      # get/put collecting their pairs
        release_when_collected(self, self._trees)

    # -- connections -----------------------------------------------------------------

    def _tree(self, share: str) -> smbfs.Tree:
        """The connected tree for ``share``, connected on first use (one
        connect at a time per instance: threads asking for the same share
        wait for the one session set-up instead of racing their own)."""
        key = share.lower()
        if self._pid != os.getpid():
            # A forked child: the trees belong to the parent's connection
            # (and a lock may have been held by a parent thread at fork).
            self._lock, self._connect_lock = threading.Lock(), threading.Lock()
            self._trees, self._pid = {}, os.getpid()
            release_when_collected(self, self._trees)
        with self._lock:
            tree = self._trees.get(key)
        if tree is not None and tree.connected:
            return tree
        with self._connect_lock:
            with self._lock:
                tree = self._trees.get(key)
            if tree is None or not tree.connected:
                old, tree = tree, smbfs.connect(self.host, share, self.username,
                                                self.password, **self._connect_options())
                with self._lock:
                    self._trees[key] = tree
                if old is not None:
                    _close_quietly([old])       # its session and client reference
        return tree

    def close(self) -> None:
        """Disconnect this instance's trees (the shared client stays while
        others use it)."""
        with self._lock:
            trees = list(self._trees.values())
            self._trees.clear()
            mine = self._pid == os.getpid()
        if mine:
            for tree in trees:
                tree.close()

    # -- paths ---------------------------------------------------------------------

    def _split(self, path) -> Tuple[str, str, smbfs.Tree]:
        """(share, path in the share, tree) for an fsspec path."""
        share, rel = self._share_path(path)
        return share, rel, self._tree(share)

    @staticmethod
    def _ensure_parent(tree: smbfs.Tree, rel: str) -> None:
        """Create the parent directories of ``rel`` (one stat when they exist)."""
        parent = posixpath.dirname(rel)
        if parent and not tree.isdir(parent):
            tree.makedirs(parent, exist_ok=True)

    # -- metadata ---------------------------------------------------------------------

    def info(self, path, **kwargs) -> Dict[str, Any]:
        share, rel, tree = self._split(path)
        if not rel:
            return {"name": share, "size": 0, "type": "directory"}
        return self._entry(f"{share}/{rel}", tree.file_info(rel))

    def ls(self, path, detail: bool = True, **kwargs):
        """The entries of a directory, from one directory query (a file
        lists as itself)."""
        share, rel, tree = self._split(path)
        try:
            entries = [self._entry(f"{share}/{e.path}", e.info) for e in tree.scandir(rel)]
        except SmbStatusError:
            if not rel:
                raise
            info = self.info(path)           # not there: FileNotFoundError
            if info["type"] == "directory":
                raise
            entries = [info]                 # a file lists as itself
        if detail:
            return entries
        return [e["name"] for e in entries]

    def exists(self, path, **kwargs) -> bool:
        try:
            share, rel, tree = self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return not rel or tree.exists(rel)

    def isdir(self, path) -> bool:
        try:
            share, rel, tree = self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return not rel or tree.isdir(rel)

    def isfile(self, path) -> bool:
        try:
            share, rel, tree = self._split(path)
        except (ValueError, FileNotFoundError):
            return False
        return bool(rel) and tree.isfile(rel)

    def size(self, path) -> int:
        return self.info(path)["size"]

    def modified(self, path) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.info(path)["mtime"],
                                               tz=datetime.timezone.utc)

    def created(self, path) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.info(path)["created"],
                                               tz=datetime.timezone.utc)

    # -- directories ---------------------------------------------------------------------

    def mkdir(self, path, create_parents: bool = True, **kwargs) -> None:
        share, rel, tree = self._split(path)
        if not rel or tree.exists(rel):
            raise FileExistsError(self._strip_protocol(path))
        if create_parents:
            tree.makedirs(rel, exist_ok=True)
        else:
            tree.mkdir(rel)

    def makedirs(self, path, exist_ok: bool = False) -> None:
        share, rel, tree = self._split(path)
        if not rel:
            if not exist_ok:
                raise FileExistsError(share)
            return
        try:
            tree.makedirs(rel, exist_ok=exist_ok)
        except FileExistsError:
            if not exist_ok or not tree.isdir(rel):
                raise

    def rmdir(self, path) -> None:
        share, rel, tree = self._split(path)
        tree.rmdir(rel)

    # -- deleting, moving, copying -----------------------------------------------------------

    def rm_file(self, path) -> None:
        share, rel, tree = self._split(path)
        tree.remove(rel)

    def _rm(self, path) -> None:
        share, rel, tree = self._split(path)
        if tree.isdir(rel):
            tree.rmdir(rel)
        else:
            tree.remove(rel)

    def rm(self, path, recursive: bool = False, maxdepth: Optional[int] = None) -> None:
        """Delete files, or directories with ``recursive`` (Tree.rmtree: a
        listing per directory, files deleted a few at a time in parallel)."""
        if isinstance(path, str) and maxdepth is None and not _has_magic(path):
            share, rel, tree = self._split(path)
            info = tree.file_info(rel)
            if not info.is_dir:
                tree.remove(rel)
            elif recursive:
                tree.rmtree(rel)
            else:
                tree.rmdir(rel)
            return
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in reversed(paths):
            self._rm(p)

    def cp_file(self, path1, path2, **kwargs) -> None:
        """Copy a file; on one share the tree copies it (Tree.copyfile)."""
        share1, rel1, tree1 = self._split(path1)
        share2, rel2, tree2 = self._split(path2)
        if self.auto_mkdir:
            self._ensure_parent(tree2, rel2)
        if tree1.isdir(rel1):
            self.makedirs(path2, exist_ok=True)
            return
        if tree1 is tree2:
            tree1.copyfile(rel1, rel2)
            return
        transfer.copy_remote(tree1, rel1, tree2, rel2)

    def mv(self, path1, path2, recursive: bool = False, maxdepth: Optional[int] = None,
           **kwargs) -> None:
        """Move: a rename on the server for one path on one share (into
        ``path2`` when that is a directory), copy and delete otherwise."""
        if isinstance(path1, str) and isinstance(path2, str) and maxdepth is None and \
                not _has_magic(path1):
            share1, rel1, tree1 = self._split(path1)
            share2, rel2, tree2 = self._split(path2)
            if tree1 is tree2 and rel1 and rel2:
                if rel1 == rel2:
                    return
                if tree2.isdir(rel2):
                    rel2 = f"{rel2}/{posixpath.basename(rel1)}"
                tree1.replace(rel1, rel2)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    # -- data ------------------------------------------------------------------------

    def _open(self, path, mode: str = "rb", block_size=None, autocommit: bool = True,
              cache_options=None, **kwargs):
        if not autocommit:
            raise NotImplementedError("smblayer: transactions (autocommit=False) are not "
                                      "supported")
        share, rel, tree = self._split(path)
        if self.auto_mkdir and "r" not in mode:
            self._ensure_parent(tree, rel)
        buffering = block_size if isinstance(block_size, int) and block_size > 1 else -1
        f = tree.open(rel, mode, buffering=buffering)
        f.fs = self             # an open file keeps its filesystem (and trees) alive
        return f

    def get(self, rpath, lpath, recursive: bool = False, callback=DEFAULT_CALLBACK,
            maxdepth: Optional[int] = None, **kwargs) -> None:
        """fsspec's ``get`` (its expansion of paths and destinations); the
        files are then fetched with several whole-file compounds in flight
        per share (:mod:`smblayer.fs.many`), larger ones one at a time."""
        for share, group in self._collect(super().get, rpath, lpath, callback, remote=0,
                                          recursive=recursive, maxdepth=maxdepth, **kwargs):
            tree = self._tree(share)
            rest = group
            if can_batch(tree) and len(group) > 1:
                for _rel, _n, error in get_files(tree, ((rel, lp, None) for lp, rel in group),
                                                 dirs=True):
                    if error is not None:
                        raise error
                    callback.relative_update(1)
                rest = []
            for lp, rel in rest:
                self.get_file(f"{share}/{rel}", lp, **kwargs)
                callback.relative_update(1)

    def put(self, lpath, rpath, recursive: bool = False, callback=DEFAULT_CALLBACK,
            maxdepth: Optional[int] = None, **kwargs) -> None:
        """fsspec's ``put`` (its expansion of paths and destinations); small
        files then go with several whole-file compounds in flight per share
        (temporary name, then a rename over the destination), the others one
        at a time."""
        for share, group in self._collect(super().put, lpath, rpath, callback, remote=1,
                                          recursive=recursive, maxdepth=maxdepth, **kwargs):
            tree = self._tree(share)
            fits = {lp: os.path.getsize(lp) <= tree.io_write_size for lp, _rel in group}
            small = [(lp, rel) for lp, rel in group if fits[lp]] \
                if can_batch(tree) and len(group) > 1 else []
            for parent in sorted({posixpath.dirname(rel) for _lp, rel in group}):
                if parent:
                    tree.makedirs(parent, exist_ok=True)
            for _rel, _n, error in put_files(tree, ((lp, rel, None) for lp, rel in small)):
                if error is not None:
                    raise error
                callback.relative_update(1)
            for lp, rel in group:
                if not small or not fits[lp]:
                    self.put_file(lp, f"{share}/{rel}")
                    callback.relative_update(1)

    def _collect(self, method, src, dst, callback, remote: int,
                 **kwargs) -> List[Tuple[str, List[Tuple[str, str]]]]:
        """The files fsspec's ``get``/``put`` would copy one by one
        (``get_file``/``put_file`` only note them), as (share, [(local
        path, path in the share)]); ``remote``: which of each pair fsspec
        hands over is the share's (0 for get, 1 for put)."""
        pairs: List[Tuple[str, str]] = []
        self._batching.pairs = pairs
        try:
            method(src, dst, **kwargs)
        finally:
            self._batching.pairs = None
        callback.set_size(len(pairs))
        by_share: Dict[str, List[Tuple[str, str]]] = {}
        for pair in pairs:
            share, rel = self._share_path(pair[remote])
            by_share.setdefault(share, []).append((pair[1 - remote], rel))
        return list(by_share.items())

    def cat(self, path, recursive: bool = False, on_error: str = "raise", **kwargs):
        """fsspec's ``cat``; given many files, their whole contents are read
        with several CREATE+READ+CLOSE compounds in flight per share from
        this thread (:mod:`smblayer.fs.many`), a dict path -> bytes as
        fsspec returns it (``on_error``: "raise", "omit" or "return")."""
        paths = self.expand_path(path, recursive=recursive)
        if not (len(paths) > 1 or isinstance(path, list) or
                paths[0] != self._strip_protocol(path)) or kwargs.get("start") is not None \
                or kwargs.get("end") is not None:
            return super().cat(path, recursive=recursive, on_error=on_error, **kwargs)
        by_share: Dict[str, List[Tuple[str, str]]] = {}
        for p in paths:
            share, rel = self._share_path(p)
            by_share.setdefault(share, []).append((p, rel))
        out: Dict[str, Any] = {}
        for share, group in by_share.items():
            tree = self._tree(share)
            names = {rel: p for p, rel in group}
            if not can_batch(tree):
                names = {}
            for rel, data, error in read_files(tree, list(names)):
                if error is None:
                    out[names[rel]] = data
                elif on_error == "raise":
                    raise error
                elif on_error == "return":
                    out[names[rel]] = error
            for p, rel in group:
                if rel not in names:           # no plans here (SMB1, DFS): one at a time
                    try:
                        out[p] = self.cat_file(p)
                    except Exception as exc:  # noqa: BLE001 - as fsspec's cat does
                        if on_error == "raise":
                            raise
                        if on_error == "return":
                            out[p] = exc
        return {p: out[p] for p in paths if p in out}

    def cat_file(self, path, start: Optional[int] = None, end: Optional[int] = None,
                 **kwargs) -> bytes:
        share, rel, tree = self._split(path)
        if start is None and end is None:
            return tree.read_bytes(rel)
        with tree.open(rel, "rb", buffering=0) as f:
            size = None
            if (start or 0) < 0 or (end is not None and end < 0):
                size = f.seek(0, os.SEEK_END)
            start = start or 0
            if start < 0:
                start = max(size + start, 0)
            if end is None:
                end = f.seek(0, os.SEEK_END) if size is None else size
            elif end < 0:
                end = size + end
            if end <= start:
                return b""
            f.seek(start)
            return f.read(end - start)

    def touch(self, path, truncate: bool = True, **kwargs) -> None:
        """Create an empty file, or (``truncate=False``) set the times of an
        existing one to now."""
        share, rel, tree = self._split(path)
        if not truncate and tree.exists(rel):
            tree.utime(rel)
            return
        self.pipe_file(path, b"")

    def pipe_file(self, path, value, mode: str = "overwrite", **kwargs) -> None:
        share, rel, tree = self._split(path)
        if self.auto_mkdir:
            self._ensure_parent(tree, rel)
        if mode == "create":
            with tree.open(rel, "xb", buffering=0) as f:
                f.write(value)
            return
        tree.write_bytes(rel, value)

    def put_file(self, lpath, rpath, callback=DEFAULT_CALLBACK, mode: str = "overwrite",
                 **kwargs) -> None:
        """Upload one local file: one compound round trip when it fits one
        WRITE, pipelined WRITEs otherwise."""
        pairs = getattr(self._batching, "pairs", None)
        if pairs is not None and mode == "overwrite" and not os.path.isdir(lpath):
            pairs.append((lpath, rpath))            # put() sends them together
            return
        share, rel, tree = self._split(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        if mode == "create" and tree.exists(rel):
            raise FileExistsError(self._strip_protocol(rpath))
        with open(lpath, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            callback.set_size(size)
            self._ensure_parent(tree, rel)
            if size <= tree.io_write_size:
                tree.write_bytes(rel, src.read())      # one compound round trip
                callback.relative_update(size)
                return
            transfer.upload(tree, src, rel, progress=callback.relative_update)

    def get_file(self, rpath, lpath, callback=DEFAULT_CALLBACK, outfile=None,
                 **kwargs) -> None:
        """Download one file (pipelined READs); a directory makes the local
        directory."""
        if isfilelike(lpath):
            outfile = lpath
        pairs = getattr(self._batching, "pairs", None)
        if pairs is not None and outfile is None:
            pairs.append((rpath, lpath))            # get() fetches them together
            return
        share, rel, tree = self._split(rpath)
        try:
            src = tree.open(rel, "rb", buffering=0) if rel else None
        except IsADirectoryError:
            src = None
        if not self._local_target(lpath, outfile, src is None):
            return
        with src:
            callback.set_size(src.handle.info.size)
            # w+b: a regular file is received straight into a mapping of it
            out = outfile if outfile is not None else open(lpath, "w+b")
            try:
                transfer.receive(tree, src, out, progress=callback.relative_update)
            finally:
                if outfile is None:
                    out.close()

