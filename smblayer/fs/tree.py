"""Tree: a connected share, and the file API on it (see DESIGN.md).

Everything here is dialect-neutral: the Tree normalises paths, parses open
modes and wraps ``SmbRawFile`` in the io buffering classes; the wire work
is done by the ``FileOps`` chosen for the dialect (``ops_for``).  Each file
object owns its I/O (pipelined reads with read-ahead, write-behind,
recovery after a reconnect: see ``smblayer.fs.file``).

Durable handles: ``open`` asks one where the dialect has them (v2 on 3.x,
v1 on 2.x) unless the tree's ``durable`` is False or ``open(...,
durable=False)``.  Samba grants one only with a batch oplock or a lease
with handle caching, so a plain open asks a read/handle/write lease (a
batch oplock where the dialect has no leases) itself.

Breaks: the first open with an oplock attaches the tree to its client's
``_BreakRouter``, the client's one break handler (shared by every Tree on
that client).  On smbiod it finds the open file (by FileId or LeaseKey,
waiting briefly if a CREATE is still being answered); the file's Tree then
flushes its buffered writes (when it held write caching), acknowledges the
break and calls the user's ``on_break(file, new_level)``.  A flush waits
for the buffer's lock, i.e. for an I/O call in progress on that file, which
needs a free smbiod worker to complete its Futures.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
import weakref
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import SmbAuthError, SmbConnectionError, SmbError, SmbStatusError
from ..proto.commands import (FILE_NOTIFY_CHANGE_ALL, NO_FILE_ID, ioctl_request,
                              parse_ioctl_response)
from ..proto.smb2 import Command
from ..proto.status import NtStatus
from ..task import SmbTask
from .admin import AdminMixin
from .file import MAX_IN_FLIGHT, BufferedRandom, BufferedWriter, SmbRawFile
from .deferred import DeferredCloseMixin
from .dircache import DirCacheMixin
from .locks import BufferedReader
from .posix import PosixMixin
from .ops import (FILE_APPEND_DATA, FILE_CREATE, FILE_DIRECTORY_FILE, FILE_NON_DIRECTORY_FILE,
                  FILE_OPEN, FILE_OPEN_IF, FILE_OVERWRITE_IF, FILE_READ_ATTRIBUTES,
                  FILE_READ_DATA, FILE_SHARE_ALL, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA,
                  LEASE_HANDLE, LEASE_READ, LEASE_WRITE, OPLOCK_BATCH, OPLOCK_BY_NAME,
                  OPLOCK_EXCLUSIVE, OPLOCK_LEASE, OPLOCK_NONE, SYNCHRONIZE, FileInfo, FileOps,
                  Handle, ns_to_filetime, seconds_to_ns)
from .helpers import DirEntry, TreeHelpers, join, normpath, outpath
from .recovery import TreeRecovery

SHARE_FLAGS_DFS = 0x00000003     # SMB2_SHAREFLAG_DFS | SMB2_SHAREFLAG_DFS_ROOT
SHARE_FLAG_ENCRYPT_DATA = 0x00008000

log = logging.getLogger("smblayer")

MAX_IO_CHUNK = 1 << 20          # chunk cap: more, smaller requests pipeline better
_BREAK_WAIT = 5.0               # how long a break waits for a CREATE being answered

_DISPOSITION = {"r": FILE_OPEN, "w": FILE_OVERWRITE_IF, "a": FILE_OPEN_IF, "x": FILE_CREATE}


def ops_for(tree) -> FileOps:
    """The FileOps table of the tree's negotiated dialect (each table's
    module is imported when a tree first needs it)."""
    if tree.client.dialect.is_smb1:
        from .smb1ops import Smb1FileOps
        return Smb1FileOps(tree)
    from .smb2ops import Smb2FileOps
    return Smb2FileOps(tree)


def _parse_mode(mode: str) -> Tuple[bool, bool, bool, bool, int]:
    """(readable, writable, append, binary, disposition) for an open() mode."""
    chars = set(mode)
    kinds = [c for c in mode if c in "rwax"]
    if len(chars) != len(mode) or chars - set("rwaxbt+") or len(kinds) != 1 or \
            {"b", "t"} <= chars:
        raise ValueError(f"invalid mode: {mode!r}")
    kind = kinds[0]
    plus = "+" in chars
    return (kind == "r" or plus, kind != "r" or plus, kind == "a", "b" in chars,
            _DISPOSITION[kind])


# Public spelling for the other front ends (smblayer.aio).
parse_mode = _parse_mode


def _write_caching(handle: Handle) -> bool:
    """Whether the server lets ``handle`` cache writes (so a break must
    wait for them)."""
    if handle.oplock_level == OPLOCK_LEASE:
        return bool(handle.lease_state & LEASE_WRITE)
    return handle.oplock_level in (OPLOCK_EXCLUSIVE, OPLOCK_BATCH)


def _log_disconnect(future) -> None:
    """A TREE_DISCONNECT not waited for: its failure is logged (in the
    thread that reads the reply)."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("smblayer: TREE_DISCONNECT failed: %s", future.exception())


class Tree(AdminMixin, TreeHelpers, PosixMixin, DeferredCloseMixin, DirCacheMixin):
    """A connected share.  Built by ``Session.tree_connect(share)``; the
    os/shutil-level helpers come from :class:`~smblayer.fs.helpers.TreeHelpers`,
    the administrators' calls (security descriptors, streams, snapshots,
    links) from :class:`~smblayer.fs.admin.AdminMixin`, the SMB3 POSIX
    extensions' calls from :class:`~smblayer.fs.posix.PosixMixin`, deferred
    close from :class:`~smblayer.fs.deferred.DeferredCloseMixin`, the
    directory cache from :class:`~smblayer.fs.dircache.DirCacheMixin`."""

    #: READ/WRITE requests a file object keeps on the wire
    max_in_flight = MAX_IN_FLIGHT

    def __init__(self, session, share: str, *, durable: bool = True):
        self.session = session
        self.client = session.client
        self.share = share
        self.durable = durable          # open files ask durable handles
        self.capabilities = 0           # share capabilities (TREE_CONNECT)
        self.tree_id = 0
        self.encrypt = False
        self.dfs = False
        self.maximal_access = 0
        self.connected = False
        self.ops: Optional[FileOps] = None
        self._lock = threading.Lock()
        self._owns_session = False
        self._files: Dict[int, SmbRawFile] = {}      # open files, closed with the tree
        self._breaks: Optional[_BreakRouter] = None
        self._recovery = TreeRecovery(self)

    def __repr__(self) -> str:
        return f"<Tree \\\\{self.client.host}\\{self.share} id={self.tree_id}>"

    def _connect(self) -> None:
        """TREE_CONNECT with the dialect's FileOps (which build and parse
        it); the first one registers the tree's recovery (fs.recovery)."""
        ops = ops_for(self)
        tree_id, flags, access, caps = ops.parse_tree_connect(
            self.client.run_task(ops.tree_connect_task()))
        self.tree_id = tree_id
        # Before anything else is sent on the tree: on a share that requires
        # encryption even VALIDATE_NEGOTIATE_INFO goes out encrypted
        # ([MS-SMB2] 3.2.4.1.8, 3.2.5.5).
        self.encrypt = bool(flags & SHARE_FLAG_ENCRYPT_DATA)
        if self.encrypt and self.session.cipher is None:  # fail closed: nothing in clear
            raise SmbAuthError(NtStatus.ACCESS_DENIED, "TREE_CONNECT", self.share,
                               "the share requires encryption but the session cannot "
                               "encrypt (no session key, or no cipher)",
                               cause="no_session_key")
        self.capabilities = caps            # e.g. continuous availability (persistent handles)
        self.session._validate_negotiate_once(self)
        self.dfs = bool(flags & SHARE_FLAGS_DFS)     # a DFS share (fs.dfs follows its links)
        self.maximal_access = access
        self.ops = ops
        self.connected = True
        self._recovery.attach()

    def on_reconnect(self) -> None:
        """Reconnect hook (public, overridable), run by the connect worker
        at STAGE_TREE (after every session's new SESSION_SETUP, before the
        open files are recovered and the client is ACTIVE again).  The
        default connects the tree again (new TreeId); an override calls
        ``super().on_reconnect()`` first."""
        self._connect()

    def open_files(self) -> List[SmbRawFile]:
        """The files open on this tree (what a recovery reclaims)."""
        with self._lock:
            return list(self._files.values())

    def disconnect(self, wait: bool = True) -> None:
        """Close the open files and send TREE_DISCONNECT.  ``wait=False``:
        its reply is not waited for (a failure is logged) -- a LOGOFF sent
        next then takes the same round trip."""
        if not self.connected:
            return
        self._close_all_files()
        self.deferred_closes.close_all(wait)
        self.dir_cache.clear()
        self.connected = False
        self._recovery.detach()
        self.session._forget_tree(self)
        try:
            if wait:
                self.client.run_task(self.ops.tree_disconnect_task())
            else:
                # _log_disconnect only logs: it runs where the reply is read,
                # sparing smbiod a thread (one-shot commands end here)
                self.client.run_task_async(self.ops.tree_disconnect_task()) \
                    .add_internal_callback(_log_disconnect)
        except (SmbError, RuntimeError) as exc:     # RuntimeError: the client shut down
            log.debug("smblayer: TREE_DISCONNECT failed: %s", exc)

    def close(self) -> None:
        """Close the open files and disconnect; a tree made by fs.connect()
        also logs off and releases its client."""
        self.disconnect(wait=not self._owns_session)
        breaks, self._breaks = self._breaks, None
        if breaks is not None:
            breaks.detach(self)
        if self._owns_session:
            self._owns_session = False
            try:
                self.session.logoff()
            finally:
                self.client.release()

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sizes ----------------------------------------------------------------------

    @property
    def io_read_size(self) -> int:
        """Bytes per READ request."""
        return min(self.ops.max_read, MAX_IO_CHUNK)

    @property
    def io_write_size(self) -> int:
        """Bytes per WRITE request."""
        return min(self.ops.max_write, MAX_IO_CHUNK)

    def statvfs(self) -> os.statvfs_result:
        """The share's volume like ``os.statvfs``: f_frsize * f_blocks bytes in
        all, f_bfree free, f_bavail free for this user (one QUERY_INFO for
        FileFsFullSizeInformation; no inode counts: those are 0)."""
        self._check_connected()
        size = self.ops.fs_size()
        unit = size.unit_size
        return os.statvfs_result((unit, unit, size.total_units, size.actual_available_units,
                                  size.caller_available_units, 0, 0, 0, 0, 255))

    # -- files --------------------------------------------------------------------------

    def open(self, path, mode: str = "rb", *, oplock: Optional[str] = None,
             on_break: Optional[Callable[[object, int], None]] = None, buffering: int = -1,
             encoding: Optional[str] = None, errors: Optional[str] = None,
             newline: Optional[str] = None, durable: Optional[bool] = None,
             share: Optional[str] = None, snapshot: Optional[str] = None):
        """Open ``path`` like the builtin ``open`` ("rb", "wb", "ab", "xb",
        "r+b", "w+b", "a+b", "x+b"; text modes wrap io.TextIOWrapper).

        ``oplock``: None, "level2", "exclusive", "batch" or "lease" (a lease
        with read/handle/write caching; a batch oplock where the dialect has
        no leases).  Breaks are flushed and acknowledged automatically, then
        ``on_break(file, new_level)`` runs on smbiod (new_level: the oplock
        level, or the lease state for a lease).

        ``durable`` (default: the tree's ``durable``): ask a durable handle
        so the open file survives a reconnect; with ``oplock=None`` this
        asks a lease (or batch oplock) too, which Samba requires.

        ``share`` (default "rwd") and ``snapshot``: see ``AdminMixin``.
        "path:name" opens a data stream.
        """
        readable, writable, append, binary, disposition = _parse_mode(mode)
        if binary and (encoding or errors or newline):
            raise ValueError("binary mode doesn't take an encoding, errors or newline")
        if buffering == 0 and not binary:
            raise ValueError("can't have unbuffered text I/O")
        try:
            level = OPLOCK_BY_NAME[oplock]
        except (KeyError, TypeError):
            raise ValueError(f"unknown oplock {oplock!r}") from None
        if on_break is not None and not callable(on_break):
            raise TypeError("on_break must be callable")
        extra = self._open_options(share, snapshot, writable)   # see fs.admin
        self._check_connected()
        if snapshot is not None:
            durable = False
        path = normpath(path)
        access = SYNCHRONIZE | FILE_READ_ATTRIBUTES
        if readable:
            access |= FILE_READ_DATA
        if writable:
            access |= FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_ATTRIBUTES
        durable = self.durable if durable is None else bool(durable)
        if durable and level == OPLOCK_NONE and self.ops.durable_handles:
            level = OPLOCK_LEASE
        lease_state = LEASE_READ | LEASE_HANDLE | LEASE_WRITE if level == OPLOCK_LEASE else 0
        generation = self.client.generation
        with self.opening(level):
            handle = self.deferred_closes.reuse(
                path, access, disposition if not extra.get("contexts") else -1,
                extra.get("share_access", FILE_SHARE_ALL), durable)
            if handle is None:
                handle = self.ops.open(path, access=access, disposition=disposition,
                                       create_options=FILE_NON_DIRECTORY_FILE, oplock=level,
                                       lease_state=lease_state, durable=durable, **extra)
                handle.generation = generation
            if durable and not self.ops.durable_handles:
                self._identify(handle)
            raw = SmbRawFile(self, handle, mode.replace("t", ""), readable=readable,
                             writable=writable, append=append, on_break=on_break)
            self.add_file(raw, level)
        try:
            return self._wrap(raw, buffering, readable, writable, binary, encoding, errors,
                              newline)
        except BaseException:
            raw.close()
            raise

    def opening(self, level: int):
        """The context to CREATE a file in when it asks oplock/lease ``level``:
        a break that arrives before ``add_file`` registers the handle waits
        for it (briefly) instead of finding no file."""
        if level == OPLOCK_NONE:
            return contextlib.nullcontext()
        return self._break_router().opening()

    def add_file(self, raw: SmbRawFile, level: int) -> None:
        """Register an open file object (``Tree.open``'s, or an async file's
        handle state, smblayer.aio): it is closed with the tree, recovered
        after a reconnect (STAGE_HANDLE, fs/recovery.py), and the breaks of
        its oplock/lease ``level`` are routed to it."""
        with self._lock:
            self._files[id(raw)] = raw
        if level != OPLOCK_NONE:
            self._break_router().add(self, raw.handle)

    def _identify(self, handle: Handle) -> None:
        """Learn the file id of a handle that can't be durable (SMB1): it
        proves the file's identity if it must be reopened by path."""
        try:
            info = self.ops.query_info(handle)
        except SmbError as exc:
            log.debug("smblayer: no file id for %r: %s", handle.path, exc)
            return
        known = handle.info
        known.file_index, known.size = info.file_index, info.size
        known.last_write_time = info.last_write_time

    def _wrap(self, raw: SmbRawFile, buffering: int, readable: bool, writable: bool,
              binary: bool, encoding, errors, newline):
        if buffering == 0:
            return raw
        if buffering < 0 or buffering == 1:
            size = max(self.io_read_size if readable else 0,
                       self.io_write_size if writable else 0)
        else:
            size = buffering
        if readable and writable:
            f = BufferedRandom(raw, size)
        elif writable:
            f = BufferedWriter(raw, size)
        else:
            f = BufferedReader(raw, size)
        if not binary:
            f = io.TextIOWrapper(f, encoding or "utf-8", errors, newline,
                                 line_buffering=buffering == 1)
            f.mode = raw.mode
        raw._owner = weakref.ref(f)
        return f

    def read_bytes(self, path) -> bytes:
        """The whole file: one compound round trip for a small file where the
        dialect has compounds, pipelined READs otherwise."""
        read_whole = getattr(self.ops, "read_whole", None)
        if read_whole is not None:
            self._check_connected()
            data = read_whole(normpath(path), self.io_read_size)
            if data is not None:
                return data
        with self.open(path, "rb", buffering=0) as f:
            return f.readall()

    def write_bytes(self, path, data) -> int:
        """Create or overwrite ``path`` with ``data``: one compound round trip
        when it fits one WRITE, pipelined WRITEs otherwise."""
        write_whole = getattr(self.ops, "write_whole", None)
        if write_whole is not None and len(memoryview(data).cast("B")) <= self.io_write_size:
            self._check_connected()
            written = write_whole(normpath(path), memoryview(data).cast("B"))
            if written is not None:
                return written          # else: a symbolic link, which open() follows
        with self.open(path, "wb", buffering=0) as f:
            return f.write(data)

    # -- names -------------------------------------------------------------------------

    def stat(self, path="") -> os.stat_result:
        """An ``os.stat_result`` (st_mode with the type bits, st_ino the
        server's file id, st_nlink, times as floats and ``_ns``)."""
        self._check_connected()
        path = normpath(path)
        serial = self._volume_serial
        if serial is not None:
            known = self.dir_cache.stat_result(path, serial)
            if known is not None:
                return known                    # a cached directory's entry
            return self.ops.stat(path).to_stat(dev=serial)
        later = self._volume_serial_later()      # asked alongside the first stat
        return self.ops.stat(path).to_stat(dev=later())

    def file_info(self, path="") -> FileInfo:
        """What the server tells about ``path`` (attributes, FILETIMEs, ...)."""
        self._check_connected()
        return self.ops.stat(normpath(path))

    def utime(self, path, times: Optional[Tuple[float, float]] = None, *,
              ns: Optional[Tuple[int, int]] = None) -> None:
        """Set access and modification times like ``os.utime``: ``times`` as
        (atime, mtime) seconds, or ``ns`` in nanoseconds, or now."""
        if times is not None and ns is not None:
            raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
        if ns is None:
            if times is None:
                now = time.time_ns()
                ns = (now, now)
            else:
                if len(times) != 2:
                    raise TypeError("utime: 'times' must be a tuple (atime, mtime)")
                ns = tuple(seconds_to_ns(t) for t in times)
        elif len(ns) != 2:
            raise TypeError("utime: 'ns' must be a tuple (atime_ns, mtime_ns)")
        self._check_connected()
        self.ops.set_times(normpath(path), ns_to_filetime(ns[0]), ns_to_filetime(ns[1]))

    def _set_filetimes(self, path, atime: int, mtime: int) -> None:
        """Set access and modification times as FILETIMEs (copytree)."""
        self._check_connected()
        self.ops.set_times(normpath(path), atime, mtime)

    def scandir(self, path="", pattern: str = "*") -> Iterator[DirEntry]:
        """Entries of directory ``path`` (without "." and ".."); with
        ``pattern``, only those the server matches to it (``*`` and ``?``,
        case-insensitively).  DirEntry.path uses "/"."""
        self._check_connected()
        base = outpath(path)
        return iter([DirEntry(info.name, join(base, info.name), info)
                     for info in self.ops.listdir(normpath(path), pattern)])

    def listdir(self, path="") -> List[str]:
        self._check_connected()
        return [info.name for info in self.ops.listdir(normpath(path))]

    def mkdir(self, path) -> None:
        self._check_connected()
        self.ops.mkdir(normpath(path))

    def rmdir(self, path) -> None:
        self._check_connected()
        self.ops.delete(normpath(path), directory=True)

    def remove(self, path) -> None:
        self._check_connected()
        self.ops.delete(normpath(path), directory=False)

    unlink = remove

    def rename(self, src, dst) -> None:
        """Rename ``src`` to ``dst``; FileExistsError if ``dst`` exists."""
        self._check_connected()
        self.ops.rename(normpath(src), normpath(dst), replace=False)

    def replace(self, src, dst) -> None:
        """Rename ``src`` to ``dst``, overwriting a file ``dst``."""
        self._check_connected()
        self.ops.rename(normpath(src), normpath(dst), replace=True)

    def _check_connected(self) -> None:
        if not self.connected:
            raise ValueError(f"{self!r} is not connected")

    def _placement_ok(self) -> bool:
        """READ data can be received in place unless a signature must be
        checked over the whole message first (encrypted replies are
        authenticated by their decryption, which runs before the data counts
        as received)."""
        session = self.session
        encrypted = session.cipher is not None and (session.encrypt or self.encrypt)
        return not self.client.dialect.is_smb1 and (encrypted or not session.signing)

    # -- open files and breaks ---------------------------------------------------------------

    def forget_file(self, raw: SmbRawFile) -> None:
        """The file is closed (SmbRawFile.close, AsyncFile.close): undoes
        ``add_file``."""
        with self._lock:
            self._files.pop(id(raw), None)
        if self._breaks is not None and not raw.handle.deferred:
            self._breaks.remove(raw.handle)
        if raw.mode[:1] != "r" or "+" in raw.mode:      # written: its directory changed
            self.dir_cache.invalidate(raw.handle.path)

    _forget_file = forget_file          # fs.file and fs.closing call it so

    def check_handle(self, handle: Handle) -> None:
        """Raise a clear error for a raw handle (``open_handle``) that did
        not survive a reconnect: the server closed it with the old
        connection.  (File objects reclaim their durable handles.)"""
        if handle.generation != self.client.generation:
            raise SmbConnectionError(
                f"{handle.path!r}: the open handle was lost when the connection to "
                f"{self.client.host}:{self.client.port} was re-established; reopen it")

    def _close_all_files(self) -> None:
        for raw in self.open_files():
            try:
                raw.owner.close()
            except Exception as exc:  # noqa: BLE001 - closing the rest matters more
                log.debug("smblayer: closing %r failed: %s", raw, exc)

    def _break_router(self) -> "_BreakRouter":
        with self._lock:
            if self._breaks is None:
                self._breaks = _BreakRouter.attach(self)
            return self._breaks

    def _on_break(self, kind: str, handle: Handle, new_level: int) -> None:
        """A break for one of this tree's files (smbiod): flush, acknowledge,
        notify."""
        handle.data = None              # before anything else (fs.readcache)
        raw: Optional[SmbRawFile] = handle.file
        log.debug("smblayer: %s break on %r to 0x%x", kind, handle.path, new_level)
        if self.deferred_closes.on_break(kind, handle, new_level):
            return                  # a kept file handle (fs.deferred)
        # a cached directory: out before the ack, closed after it
        cached = self.dir_cache.take(handle)
        if raw is not None and _write_caching(handle):
            raw._on_break()
        try:
            self.ops.ack_break(handle, new_level)
        except SmbError as exc:
            log.warning("smblayer: acknowledging the break on %r failed: %s",
                        handle.path, exc)
        if kind == "lease":
            handle.lease_state = new_level
        else:
            handle.oplock_level = new_level
        if cached:
            self.deferred_closes.close_taken(handle)
        callback = raw.on_break if raw is not None else None
        if callback is not None:
            try:
                callback(raw.owner, new_level)
            except Exception:  # noqa: BLE001
                log.exception("smblayer: on_break callback %r failed", callback)

    # -- extension API: raw handles, IOCTL, watch, server-side copy -------------------

    def open_handle(self, path="", *, access: Optional[int] = None,
                    disposition: int = FILE_OPEN, create_options: int = 0,
                    share_access: int = FILE_SHARE_ALL, attributes: int = 0,
                    directory: bool = False) -> Handle:
        """Open ``path`` and return its raw :class:`~smblayer.fs.ops.Handle`
        (``.fid`` is the FileId): a file, a directory (``directory=True``)
        or a named pipe on IPC$.  ``access`` defaults to listing/reading.
        Close it with :meth:`close_handle`; a reconnect invalidates it
        (``check_handle`` raises SmbConnectionError)."""
        self._check_connected()
        if directory:
            create_options = (create_options | FILE_DIRECTORY_FILE) & ~FILE_NON_DIRECTORY_FILE
        if access is None:
            access = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        return self.ops.open(normpath(path), access=access, disposition=disposition,
                             create_options=create_options, share_access=share_access,
                             attributes=attributes)

    def close_handle(self, handle: Handle) -> None:
        """CLOSE a handle from :meth:`open_handle` (nothing is sent for a
        handle a reconnect already closed)."""
        if handle.closed:
            return
        if not self.connected or handle.generation != self.client.generation:
            handle.closed = True
            return
        try:
            self.ops.close(handle)
        except SmbStatusError as exc:
            if exc.status not in (NtStatus.FILE_CLOSED, NtStatus.INVALID_HANDLE):
                raise
        except SmbConnectionError:
            handle.closed = True

    def open_pipe(self, name: str):
        """Open the named pipe ``name`` (e.g. "srvsvc") on an IPC$ tree as an
        unbuffered binary file (``read``/``write``; ``ioctl`` takes it too)."""
        pipe = self.open(name, "r+b", buffering=0)
        pipe.read_ahead = False
        return pipe

    def ioctl_task(self, target, ctl_code: int, input: bytes = b"", *,
                   max_output: int = 65536, fsctl: bool = True) -> SmbTask:
        """The IOCTL request for ``target`` (a Handle, a file from ``open``
        or ``open_pipe``, or None for FSCTLs without a handle) as an SmbTask
        (run it with ``client.run_task``).  A task bound to a handle is not
        resent after a reconnect: the handle died with the connection."""
        if self.client.dialect.is_smb1:
            raise ValueError("IOCTL needs SMB 2.0.2 or later")
        handle = handle_of(target)
        fid = handle.fid if handle is not None else NO_FILE_ID
        if handle is not None:
            self.check_handle(handle)
        body = ioctl_request(ctl_code, fid, input, max_output=max_output, fsctl=fsctl)
        client = self.client
        reissue = None if handle is None else (
            lambda task: handle.generation == client.generation and not handle.closed)
        return SmbTask(Command.IOCTL, body, security=self.session, tree=self,
                       path=handle.path if handle is not None else None,
                       on_reissue=reissue)

    def ioctl(self, target, ctl_code: int, input: bytes = b"", *, max_output: int = 65536,
              fsctl: bool = True) -> bytes:
        """Send an IOCTL/FSCTL (SMB2+) and return its output buffer."""
        self._check_connected()
        task = self.ioctl_task(target, ctl_code, input, max_output=max_output, fsctl=fsctl)
        return parse_ioctl_response(self.client.run_task(task)).output

    def watch(self, path="", recursive: bool = False, *,
              completion_filter: int = FILE_NOTIFY_CHANGE_ALL, buffer_size: int = 65536):
        """Watch directory ``path`` for changes (CHANGE_NOTIFY, SMB2+):
        returns a :class:`~smblayer.fs.watch.Watch`; iterate it for
        ``WatchEvent(action, path)``, ``close()`` it when done.  The watch
        survives reconnects and then reports a "rescan" event."""
        from .watch import Watch          # loaded on first use
        return Watch(self, path, recursive=recursive, completion_filter=completion_filter,
                     buffer_size=buffer_size)

    def copy(self, src, dst, *, dst_tree: Optional["Tree"] = None) -> int:
        """Copy file ``src`` to ``dst`` (on ``dst_tree``, default this tree)
        on the server (FSCTL_SRV_COPYCHUNK_WRITE), falling back to read +
        write through the client where the server or dialect cannot.
        Returns the bytes copied."""
        from .srvcopy import copy_file    # loaded on first use
        return copy_file(self, src, dst_tree if dst_tree is not None else self, dst)


def handle_of(target) -> Optional[Handle]:
    """The Handle behind ``target``: a Handle, an SmbRawFile, a buffered or
    text wrapper of one, or None."""
    if target is None or isinstance(target, Handle):
        return target
    for attr in ("buffer", "raw"):
        while hasattr(target, attr) and not isinstance(target, SmbRawFile):
            target = getattr(target, attr)
    if isinstance(target, SmbRawFile):
        return target.handle
    raise TypeError(f"not a handle or an SMB file: {type(target).__name__}")


class _BreakRouter:
    """The one break handler of a client: routes each oplock/lease break to
    the open file (of any Tree on that client) it is for.

    A break can overtake the opener: the CREATE response wakes the opening
    thread, the break right behind it goes to smbiod, and the handle may not
    be registered yet.  So while opens asking for an oplock are in flight,
    an unknown FileId/LeaseKey waits (at most _BREAK_WAIT) for them.
    """

    KEY = "smblayer.fs.breaks"        # the router is the client's extension for this key

    def __init__(self, client):
        self.client = client
        self.trees: List[Tree] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._handles: Dict[Tuple[str, object], Tuple[Tree, Handle]] = {}
        self._opening = 0

    @classmethod
    def _create(cls, client) -> "_BreakRouter":
        router = cls(client)
        client.add_break_handler(router)
        return router

    @classmethod
    def attach(cls, tree: Tree) -> "_BreakRouter":
        while True:
            router = tree.client.extension(cls.KEY, cls._create)
            with router._lock:
                if router.client is not None:        # not detached meanwhile
                    router.trees.append(tree)
                    return router

    def detach(self, tree: Tree) -> None:
        with self._lock:
            if tree in self.trees:
                self.trees.remove(tree)
            if self.trees or self.client is None:
                return
            client, self.client = self.client, None
        client.drop_extension(self.KEY, self)
        client.remove_break_handler(self)

    @contextlib.contextmanager
    def opening(self):
        with self._cond:
            self._opening += 1
        try:
            yield
        finally:
            with self._cond:
                self._opening -= 1
                self._cond.notify_all()

    @staticmethod
    def _keys(handle: Handle):
        yield "oplock", handle.fid
        if handle.lease_key is not None:
            yield "lease", handle.lease_key

    def add(self, tree: Tree, handle: Handle) -> None:
        with self._cond:
            for key in self._keys(handle):
                self._handles[key] = (tree, handle)
            self._cond.notify_all()

    def remove(self, handle: Handle) -> None:
        with self._cond:
            for key in self._keys(handle):
                if self._handles.get(key, (None, None))[1] is handle:
                    del self._handles[key]

    def _find(self, key) -> Optional[Tuple[Tree, Handle]]:
        deadline = time.monotonic() + _BREAK_WAIT
        with self._cond:
            while True:
                entry = self._handles.get(key)
                remaining = deadline - time.monotonic()
                if entry is not None or not self._opening or remaining <= 0:
                    return entry
                self._cond.wait(remaining)

    def __call__(self, note) -> None:
        """The client's break handler (smbiod)."""
        with self._lock:
            trees = list(self.trees)
        if not trees or trees[0].ops is None:
            return
        try:
            kind, key, new_level = trees[0].ops.parse_break(note)
        except SmbError as exc:
            log.warning("smblayer: bad break notification: %s", exc)
            return
        entry = self._find((kind, key))
        if entry is None and kind == "lease":
            # A lease of ours without an open file: typically a durable open
            # lost across a reconnect that the server still keeps for our
            # ClientGuid.  Unacknowledged, it would hold up the opener that
            # caused the break (35 s on Samba), so acknowledge it.
            log.debug("smblayer: lease break for no open file; acknowledged")
            orphan = Handle(bytes(16), "", FileInfo(), OPLOCK_LEASE, lease_key=key,
                            lease_state=LEASE_READ | LEASE_HANDLE | LEASE_WRITE)
            try:
                trees[0].ops.ack_break(orphan, new_level)
            except SmbError as exc:
                log.debug("smblayer: acknowledging an orphan lease break failed: %s", exc)
            return
        if entry is None:
            log.debug("smblayer: %s break for no open file; ignored", kind)
            return
        tree, handle = entry
        tree._on_break(kind, handle, new_level)
