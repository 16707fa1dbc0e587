"""DFS: referrals ([MS-DFSC] over FSCTL_DFS_GET_REFERRALS; the codec is
``smblayer.proto.dfs``), a referral cache with TTL, and a Tree that follows
DFS links transparently.

Theory of operation
-------------------
A share that is a DFS namespace root answers STATUS_PATH_NOT_COVERED for a
path that crosses a DFS link.  :class:`DfsTree` then asks the server for a
referral (an IOCTL on the session's IPC$ tree, referral levels 3/4, 2 and 1
parsed), which names the consumed prefix (``\\\\host\\dfs\\link``), the
targets (``\\\\server\\share[\\path]``, in the server's order) and a time to
live.  The referral goes into a :class:`ReferralCache`; later paths under the
same prefix go straight to the target.  A target is connected with the same
credentials and client options as the root; a target that cannot be
connected (down, refused, no such share) is skipped for the next one
(failover), and the one that worked is tried first afterwards.  A referral
names ``\\\\host\\share`` without a port: a target on the host we are
connected to reuses our port (as smbprotocol does), other hosts use
``ports[host]`` or 445.  A chain of referrals longer than ``MAX_HOPS`` or
back to a path already visited is a referral loop; it and a link with no
reachable target are a :class:`DfsLinkError`.

Every path method of a DfsTree runs on the tree its path resolves to (the
root or a target share; :meth:`DfsTree.resolve`), and Tree's helpers
(``walk``, ``glob``, ``copytree``, ``rmtree``, ``exists``...) run on the
DfsTree itself, so they cross links too and hand out paths as seen through
the namespace; ``walk`` and ``glob`` skip a dead link as they skip a
directory that cannot be listed.

On SMB1 the referral is TRANS2_GET_DFS_REFERRAL and a DFS share is known
by SMB_SHARE_IS_IN_DFS in the TREE_CONNECT_ANDX response.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

from ..config import Dialect
from ..errors import (SmbConnectionError, SmbError, SmbProtocolError, SmbStatusError,
                      SmbTimeoutError)
from ..proto import dfs as codec
from ..proto.commands import NO_FILE_ID, ioctl_request, parse_ioctl_response
from ..proto.dfs import (FSCTL_DFS_GET_REFERRALS, TRANS2_GET_DFS_REFERRAL, MalformedMessage,
                         Referral, ReferralTarget)
from ..proto.smb2 import Command
from ..proto.status import NtStatus
from ..task import SmbTask
from .helpers import DirEntry, TreeHelpers, outpath
from .tree import Tree, handle_of

log = logging.getLogger("smblayer")
T = TypeVar("T")

__all__ = ["FSCTL_DFS_GET_REFERRALS", "Referral", "ReferralTarget", "ReferralCache",
           "DfsTree", "DfsLinkError", "parse_referral_response", "get_referral", "MAX_HOPS"]

MAX_HOPS = 8
DEFAULT_PORT = 445
_MAX_REFERRAL_RESPONSE = 64 * 1024

# Errors that mean "this target is not reachable, try the next one".
_TARGET_DOWN = (SmbConnectionError, SmbTimeoutError, OSError)
_TARGET_GONE = frozenset({NtStatus.BAD_NETWORK_NAME, NtStatus.BAD_NETWORK_PATH,
                          NtStatus.NETWORK_NAME_DELETED, NtStatus.ACCESS_DENIED})


def parse_referral_response(data: bytes, request_path: str) -> Referral:
    """:func:`smblayer.proto.dfs.parse_referral_response`, a malformed
    answer raised as SmbProtocolError."""
    try:
        return codec.parse_referral_response(data, request_path)
    except MalformedMessage as exc:
        raise SmbProtocolError(str(exc)) from None


def get_referral(session, path: str, ipc_tree=None) -> Referral:
    """Ask the server of ``session`` for the referral of DFS ``path``
    (``\\\\host\\share\\...``) with FSCTL_DFS_GET_REFERRALS on IPC$
    (TRANS2_GET_DFS_REFERRAL on SMB1)."""
    request = codec.referral_request(path)
    if session.client.negotiated.dialect is Dialect.SMB1:
        _params, out = ipc_tree.ops.trans2(TRANS2_GET_DFS_REFERRAL, request, path=path)
        return parse_referral_response(out, path)
    task = SmbTask(Command.IOCTL, ioctl_request(FSCTL_DFS_GET_REFERRALS, NO_FILE_ID, request,
                                                max_output=_MAX_REFERRAL_RESPONSE),
                   tree=ipc_tree, security=session, expected_response=_MAX_REFERRAL_RESPONSE,
                   path=path)
    try:
        reply = session.client.run_task(task)
    except SmbStatusError as exc:
        if exc.status in (NtStatus.NOT_FOUND, NtStatus.OBJECT_PATH_NOT_FOUND,
                          NtStatus.NO_SUCH_DEVICE, NtStatus.FS_DRIVER_REQUIRED):
            raise SmbStatusError(NtStatus.DFS_UNAVAILABLE, "IOCTL", path,
                                 message="no DFS referral for this path") from None
        raise
    try:
        out = parse_ioctl_response(reply).output
    except MalformedMessage as exc:
        raise SmbProtocolError(str(exc)) from None
    return parse_referral_response(out, path)


class ReferralCache:
    """Referrals by DFS path prefix (case-insensitive), each kept for its
    TTL; a lookup finds the longest cached prefix of a path."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._entries: Dict[str, Referral] = {}
        self._clock = clock

    def put(self, referral: Referral) -> None:
        referral.expires = self._clock() + max(0, referral.ttl)
        with self._lock:
            self._entries[referral.prefix.lower()] = referral

    def lookup(self, path: str) -> Optional[Tuple[Referral, str]]:
        """(referral, the rest of ``path`` after its prefix) or None."""
        key = path.lower()
        now = self._clock()
        with self._lock:
            for prefix in sorted(self._entries, key=len, reverse=True):
                if key == prefix or key.startswith(prefix + "\\"):
                    referral = self._entries[prefix]
                    if referral.expires <= now:
                        del self._entries[prefix]
                        continue
                    return referral, path[len(prefix):].lstrip("\\")
        return None

    def forget(self, prefix: str) -> None:
        with self._lock:
            self._entries.pop(prefix.lower(), None)

    def __len__(self) -> int:
        return len(self._entries)


class DfsLinkError(SmbConnectionError):
    """A DFS link that cannot be followed: none of its targets is reachable,
    or its referrals loop.  ``link`` is the DFS path (``\\\\host\\share\\link``
    or the path asked for)."""

    def __init__(self, message: str, link: str):
        super().__init__(message)
        self.link = link


class DfsTree(TreeHelpers):
    """A Tree on a DFS namespace root that follows links: path operations
    that meet STATUS_PATH_NOT_COVERED are resolved through referrals (cached
    for their TTL) and run on the target share, with failover between
    targets.  Paths in and out (``scandir``, ``walk``, ``glob``...) are as
    seen through the namespace.  Everything else is the root Tree's
    (``tree.session``, ``tree.client``...).  Tree's helpers (``walk``,
    ``glob``, ``copytree``...) come from :class:`~smblayer.fs.helpers.TreeHelpers`,
    written over the path methods below, so they follow links too.  Built
    by :func:`smblayer.fs.connect`."""

    # A dead link is skipped by walk() (to onerror) like a directory that
    # cannot be listed.
    _WALK_ERRORS = (SmbStatusError, DfsLinkError)

    def __init__(self, root, connect: Callable[[str, int, str, str], object],
                 ports: Optional[Mapping[str, int]] = None,
                 hosts: Optional[Mapping[str, str]] = None,
                 cache: Optional[ReferralCache] = None, default_port: int = DEFAULT_PORT):
        self._root = root
        self._connect = connect            # (address, port, share, server name) -> Tree
        self._ports = {k.lower(): v for k, v in (ports or {}).items()}
        self._hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self._default_port = default_port
        self.referrals = cache if cache is not None else ReferralCache()
        self._targets: Dict[Tuple[str, int, str], object] = {}
        self._ipc: Dict[int, object] = {}
        self._handles: Dict[int, object] = {}     # id(Handle from open_handle) -> its tree
        self._lock = threading.RLock()

    @classmethod
    def from_referral(cls, referral: Referral, connect, **kwargs) -> "DfsTree":
        """A DfsTree on the first reachable target of a root referral."""
        self = cls(None, connect, **kwargs)
        self.referrals.put(referral)
        try:
            self._root, sub = self._follow(None, referral, "")
        except BaseException:
            self.close()
            raise
        if sub:
            raise SmbError(f"DFS root target {referral.targets} names a path ({sub!r}); "
                           "only share roots are supported")
        return self

    def __getattr__(self, name):
        root = self.__dict__.get("_root")
        if root is None:
            raise AttributeError(name)
        return getattr(root, name)

    @property
    def root(self) -> Tree:
        """The namespace root's own Tree (a link's target is another)."""
        return self._root

    def __repr__(self) -> str:
        return f"<DfsTree {self._root!r} {len(self.referrals)} referrals>"

    # -- path methods: each runs on the tree the path resolves to -------------------

    def resolve(self, path) -> Tuple[Tree, str]:
        """(tree, path in it) for the namespace path ``path``: the root tree
        or a link's target share (asking for referrals as needed; ``path``
        need not exist).  DfsLinkError for a dead link or a loop."""
        def probe(tree, sub):
            try:
                tree.file_info(sub)
            except SmbStatusError as exc:
                if exc.status == NtStatus.PATH_NOT_COVERED:
                    raise
                # any other answer: this server owns the path
            return tree, sub
        return self._run(path, probe)

    def open(self, path, mode: str = "rb", **kwargs) -> Any:
        return self._call("open", path, (mode,), kwargs)

    def read_bytes(self, path) -> bytes:
        return self._call("read_bytes", path)

    def write_bytes(self, path, data) -> int:
        return self._call("write_bytes", path, (data,))

    def stat(self, path="") -> os.stat_result:
        return self._call("stat", path)

    def file_info(self, path="") -> Any:
        return self._call("file_info", path)

    def utime(self, path, times=None, *, ns=None) -> None:
        self._call("utime", path, (times,), {"ns": ns})

    def _set_filetimes(self, path, atime: int, mtime: int) -> None:
        self._call("_set_filetimes", path, (atime, mtime))

    def scandir(self, path="", pattern: str = "*") -> Iterator[DirEntry]:
        base = outpath(path)
        entries = self._run(path, lambda tree, sub: list(tree.scandir(sub, pattern)))
        return iter([DirEntry(e.name, f"{base}/{e.name}" if base else e.name, e.info)
                     for e in entries])

    def listdir(self, path="") -> List[str]:
        return self._call("listdir", path)

    def mkdir(self, path) -> None:
        self._call("mkdir", path)

    def rmdir(self, path) -> None:
        self._call("rmdir", path)

    def remove(self, path) -> None:
        self._call("remove", path)

    unlink = remove

    def rename(self, src, dst) -> None:
        self._call2("rename", src, dst)

    def replace(self, src, dst) -> None:
        self._call2("replace", src, dst)

    def rmtree(self, path, ignore_errors: bool = False, onerror=None) -> None:
        """Tree.rmtree through links; a path that is a link to a whole share
        is refused (ValueError), as the share root is."""
        tree, sub = self.resolve(path)
        if not sub:
            raise ValueError(f"rmtree: {outpath(path)!r} is the root of share "
                             f"{tree.share!r} (a DFS link); refusing to delete it")
        super().rmtree(path, ignore_errors, onerror)

    # administrators' calls (fs.admin) on the tree the path resolves to
    def get_security(self, path="", info=("owner", "group", "dacl")) -> Any:
        return self._call("get_security", path, (info,))

    def set_security(self, path, sd, info=("dacl",)) -> None:
        self._call("set_security", path, (sd, info))

    def list_streams(self, path) -> Any:
        return self._call("list_streams", path)

    def snapshots(self, path="") -> Any:
        return self._call("snapshots", path)

    def readlink(self, path) -> str:
        return self._call("readlink", path)

    def lstat(self, path="") -> os.stat_result:
        return self._call("lstat", path)

    def islink(self, path) -> bool:
        return self._call("islink", path)

    def symlink(self, target, path) -> None:
        self._run(path, lambda tree, sub: tree.symlink(target, sub))

    def watch(self, path="", recursive: bool = False, **kwargs) -> Any:
        return self._call("watch", path, (recursive,), kwargs)

    def copy(self, src, dst, *, dst_tree=None) -> int:
        """Tree.copy (server-side where it can) between namespace paths;
        ``dst_tree``: another tree (a DfsTree resolves ``dst`` too)."""
        def run(tree, sub):
            if dst_tree is None or isinstance(dst_tree, DfsTree):
                dtree, dsub = (dst_tree or self).resolve(dst)
            else:
                dtree, dsub = dst_tree, dst
            return tree.copy(sub, dsub, dst_tree=dtree)
        return self._run(src, run)

    def open_handle(self, path="", **kwargs) -> Any:
        def run(tree, sub):
            handle = tree.open_handle(sub, **kwargs)
            with self._lock:
                self._handles[id(handle)] = tree
            return handle
        return self._run(path, run)

    def close_handle(self, handle) -> None:
        tree = self._tree_of(handle)
        with self._lock:
            self._handles.pop(id(handle), None)
        tree.close_handle(handle)

    def check_handle(self, handle) -> None:
        self._tree_of(handle).check_handle(handle)

    def ioctl_task(self, target, ctl_code: int, input: bytes = b"", **kwargs) -> Any:
        return self._tree_of(target).ioctl_task(target, ctl_code, input, **kwargs)

    def ioctl(self, target, ctl_code: int, input: bytes = b"", **kwargs) -> bytes:
        return self._tree_of(target).ioctl(target, ctl_code, input, **kwargs)

    def _tree_of(self, target):
        """The tree a handle or file (from open_handle/open) lives on."""
        handle = handle_of(target)
        if handle is None:
            return self._root
        if handle.file is not None:
            return handle.file.tree
        with self._lock:
            return self._handles.get(id(handle), self._root)

    def _info_or_none(self, path):
        """Tree._info_or_none; a dead link is nothing there (a broken symlink
        for os.path.exists)."""
        try:
            return super()._info_or_none(path)
        except DfsLinkError:
            return None

    def _glob_dir(self, base: str, part: str, include_hidden: bool):
        try:
            return super()._glob_dir(base, part, include_hidden)
        except DfsLinkError:
            return []

    # -- routing ----------------------------------------------------------------------

    def _unc(self, tree, path: str) -> str:
        sub = path.replace("/", "\\").strip("\\")
        base = f"\\{tree.client.host}\\{tree.share}"
        return f"{base}\\{sub}" if sub else base

    @staticmethod
    def _api_path(path: str) -> str:
        return path.replace("\\", "/").strip("/")

    def _route(self, path: str):
        """(tree, path in it) for ``path`` from the cached referrals."""
        tree, sub = self._root, path
        seen = set()
        for _ in range(MAX_HOPS):
            hit = self.referrals.lookup(self._unc(tree, sub))
            if hit is None:
                return tree, sub
            referral, rest = hit
            if referral.prefix.lower() in seen:
                break
            seen.add(referral.prefix.lower())
            tree, sub = self._follow(tree, referral, rest)
        raise DfsLinkError(f"DFS referral loop at {path!r}", path)

    def _follow(self, tree, referral: Referral, rest: str):
        """Connect the first reachable target of ``referral`` (failover)."""
        errors = []
        for target in referral.ordered():
            port = self._port_for(tree, target.server)
            try:
                target_tree = self._target_tree(target.server, port, target.share)
            except _TARGET_DOWN as exc:
                errors.append(f"{target} (port {port}): {exc}")
                continue
            except SmbStatusError as exc:
                if exc.status not in _TARGET_GONE:
                    raise
                errors.append(f"{target} (port {port}): {exc}")
                continue
            referral.preferred = referral.targets.index(target)
            sub = "\\".join(p for p in (target.path, rest) if p)
            return target_tree, self._api_path(sub)
        self.referrals.forget(referral.prefix)
        raise DfsLinkError(f"DFS link {referral.prefix}: no target reachable: "
                           + "; ".join(errors), referral.prefix)
    def _port_for(self, tree, host: str) -> int:
        name = host.lower()
        if name in self._ports:
            return self._ports[name]
        if tree is not None and name in (tree.client.host.lower(),
                                         tree.session.server_name.lower()):
            return tree.client.port        # the host we are on: same port
        return self._default_port

    def _target_tree(self, host: str, port: int, share: str):
        key = (host.lower(), port, share.lower())
        with self._lock:
            tree = self._targets.get(key)
            if tree is None:
                address = self._hosts.get(host.lower(), host)
                tree = self._targets[key] = self._connect(address, port, share, host)
            return tree

    def _ipc_tree(self, tree):
        session = tree.session
        with self._lock:
            ipc = self._ipc.get(id(session))
            if ipc is None:
                ipc = self._ipc[id(session)] = session.tree_connect("IPC$")
            return ipc

    def _resolve(self, tree, path: str, seen: set):
        unc = self._unc(tree, path)
        referral = get_referral(tree.session, unc, self._ipc_tree(tree))
        key = referral.prefix.lower()
        if key in seen or not unc.lower().startswith(key):
            raise DfsLinkError(f"DFS referral loop at {unc!r} (via {referral.prefix})",
                               referral.prefix)
        seen.add(key)
        self.referrals.put(referral)
        log.debug("smblayer: DFS %s -> %s (ttl %ss)", referral.prefix,
                  ", ".join(map(str, referral.targets)), referral.ttl)
        rest = unc[len(referral.prefix):].lstrip("\\")
        return self._follow(tree, referral, rest)

    def _run(self, path, work: Callable[[Tree, str], T]) -> T:
        """``work(tree, path in it)`` on the tree ``path`` resolves to: from
        the referral cache, then again through a new referral whenever the
        server answers STATUS_PATH_NOT_COVERED."""
        tree, sub = self._route(self._api_path(outpath(path)))
        seen: set = set()
        for _ in range(MAX_HOPS):
            try:
                return work(tree, sub)
            except SmbStatusError as exc:
                if exc.status != NtStatus.PATH_NOT_COVERED:
                    raise
            tree, sub = self._resolve(tree, sub, seen)
        raise DfsLinkError(f"DFS referral loop at {path!r}: more than {MAX_HOPS} referrals",
                           str(path))

    def _call(self, name: str, path, args=(), kwargs=None):
        return self._run(path, lambda tree, sub: getattr(tree, name)(sub, *args,
                                                                    **(kwargs or {})))

    def _call2(self, name: str, src, dst):
        """rename/replace: both paths must resolve to the same share."""
        tree, sub = self.resolve(src)
        dtree, dsub = self.resolve(dst)
        if dtree is not tree:
            raise SmbError(f"{name}: {src!r} and {dst!r} are on different DFS targets")
        return getattr(tree, name)(sub, dsub)

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            targets, self._targets = list(self._targets.values()), {}
            ipcs, self._ipc = list(self._ipc.values()), {}
            self._handles.clear()
        for ipc in ipcs:
            try:
                ipc.disconnect()
            except SmbError as exc:
                log.debug("smblayer: IPC$ disconnect failed: %s", exc)
        for tree in targets:
            if tree is self._root:
                continue
            try:
                tree.close()
            except SmbError as exc:
                log.debug("smblayer: DFS target close failed: %s", exc)
        if self._root is not None:
            self._root.close()

    disconnect = close

    def __enter__(self) -> "DfsTree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
