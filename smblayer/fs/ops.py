"""The per-dialect file operations table (cifs's smb_version_operations).

``Tree`` holds one ``FileOps`` chosen by the negotiated dialect when it
connects (``smblayer.fs.tree.ops_for``): ``Smb2FileOps`` for 2.0.2..3.1.1,
``Smb1FileOps`` for NT LM 0.12.  This module is the interface the two
implement; it imports neither (no import circle).  Tree and SmbFile
implement everything generic (paths, modes, buffering, pipelining, error
mapping) on top of these primitives and never branch on the dialect.

Contract for implementations:
* paths arrive relative to the share, with backslashes, no leading slash
  ("" is the share root);
* every method raises the SmbStatusError subclass from
  ``smblayer.errors.status_error`` (FileNotFoundError etc.) on an error
  status, with the path attached;
* ``read_task``/``write_task`` build tasks only; the Tree runs many of them
  at once with ``client.run_task_async`` and parses replies with
  ``parse_read``/``parse_write`` (zero-copy: parse_read returns a
  memoryview into the reply);
* tasks carry ``security=tree.session`` and ``tree=tree``.
"""
from __future__ import annotations

import math
import os
import stat as stat_module
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Iterator, Optional, Tuple

from ..records import FrozenRecord, Record


class _AnyStatus:
    """ok_statuses that accept everything: e.g. the CLOSE of a compound stat
    fails whenever its CREATE did, and the CREATE's status is what counts."""

    def __contains__(self, status: object) -> bool:
        return True


ANY_STATUS = _AnyStatus()

# Windows FILETIME: 100 ns ticks since 1601-01-01.
_EPOCH_DELTA = 116444736000000000

FILE_ATTRIBUTE_READONLY = 0x01
FILE_ATTRIBUTE_HIDDEN = 0x02
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20
FILE_ATTRIBUTE_NORMAL = 0x80

# CreateDisposition
FILE_SUPERSEDE = 0
FILE_OPEN = 1
FILE_CREATE = 2
FILE_OPEN_IF = 3
FILE_OVERWRITE = 4
FILE_OVERWRITE_IF = 5

# CreateOptions
FILE_DIRECTORY_FILE = 0x00000001
FILE_WRITE_THROUGH = 0x00000002
FILE_NON_DIRECTORY_FILE = 0x00000040
FILE_DELETE_ON_CLOSE = 0x00001000
FILE_OPEN_REPARSE_POINT = 0x00200000

# Access masks
FILE_READ_DATA = 0x00000001
FILE_WRITE_DATA = 0x00000002
FILE_APPEND_DATA = 0x00000004
FILE_READ_ATTRIBUTES = 0x00000080
FILE_WRITE_ATTRIBUTES = 0x00000100
DELETE = 0x00010000
READ_CONTROL = 0x00020000
SYNCHRONIZE = 0x00100000
GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
MAXIMUM_ALLOWED = 0x02000000
FILE_LIST_DIRECTORY = 0x00000001

# ShareAccess
FILE_SHARE_READ = 1
FILE_SHARE_WRITE = 2
FILE_SHARE_DELETE = 4
FILE_SHARE_ALL = 7

# Oplock levels (SMB2 values; SMB1 implementations translate)
OPLOCK_NONE = 0x00
OPLOCK_LEVEL_II = 0x01
OPLOCK_EXCLUSIVE = 0x08
OPLOCK_BATCH = 0x09
OPLOCK_LEASE = 0xFF
OPLOCK_BY_NAME = {None: OPLOCK_NONE, "none": OPLOCK_NONE, "level2": OPLOCK_LEVEL_II,
                  "exclusive": OPLOCK_EXCLUSIVE, "batch": OPLOCK_BATCH, "lease": OPLOCK_LEASE}

# Lease states
LEASE_READ = 0x01
LEASE_HANDLE = 0x02
LEASE_WRITE = 0x04


def filetime_to_unix(ft: int) -> float:
    return (ft - _EPOCH_DELTA) / 1e7 if ft else 0.0


def unix_to_filetime(t: float) -> int:
    return int(t * 1e7) + _EPOCH_DELTA


def filetime_to_ns(ft: int) -> int:
    """FILETIME -> nanoseconds since the Unix epoch (0 stays 0: "not set")."""
    return (ft - _EPOCH_DELTA) * 100 if ft else 0


def normpath(path) -> str:
    """Share-relative SMB path: backslashes, no leading/trailing or doubled
    separators, no "." components ("" is the share root)."""
    if path.__class__ is not str:
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = path.decode("utf-8")
    path = path.replace("/", "\\")
    if "\\" not in path:
        return "" if path == "." else path          # one name: the common case
    parts = path.split("\\")
    if "" in parts or "." in parts:
        return "\\".join(p for p in parts if p and p != ".")
    return path


def outpath(path) -> str:
    """A share-relative path as smblayer hands it out: "/" separators, no
    leading or trailing one ("" is the share root)."""
    return normpath(path).replace("\\", "/")


def seconds_to_ns(t: float) -> int:
    """Seconds -> ns without the float's rounding error on the whole value
    (1200000000.25 s is 1200000000250000000 ns exactly, as os.utime takes it)."""
    whole = math.floor(t)
    return whole * 10**9 + round((t - whole) * 1e9)


def ns_to_filetime(ns: int) -> int:
    return ns // 100 + _EPOCH_DELTA


_LINK_MODE = stat_module.S_IFLNK | 0o777
_DIR_MODE = stat_module.S_IFDIR | 0o755
_FILE_MODE = stat_module.S_IFREG | 0o644

# Tree.stat() returns a plain os.stat_result (kept as a name for old callers).
StatResult = os.stat_result


class FileInfo(Record):
    """What SMB tells about a file; ``to_stat()`` gives the os.stat_result."""

    __slots__ = ("name", "size", "allocation_size", "attributes", "creation_time",
                 "last_access_time", "last_write_time", "change_time", "file_index", "nlink",
                 "link", "posix")

    def __init__(self, name: str = "", size: int = 0, allocation_size: int = 0,
                 attributes: int = 0, creation_time: int = 0, last_access_time: int = 0,
                 last_write_time: int = 0, change_time: int = 0, file_index: int = 0,
                 nlink: int = 1, link: bool = False, posix: Any = None) -> None:
        self.name = name
        self.size = size
        self.allocation_size = allocation_size
        self.attributes = attributes
        self.creation_time = creation_time    # FILETIME
        self.last_access_time = last_access_time
        self.last_write_time = last_write_time
        self.change_time = change_time
        self.file_index = file_index    # the server's file id (st_ino)
        self.nlink = nlink
        self.link = link    # a symbolic link itself (lstat): S_IFLNK
        self.posix = posix    # PosixInfo (proto.posix) on a POSIX-extensions open

    def update(self, state: Any) -> "FileInfo":
        """Take the times, sizes and attributes a reply reports
        (``proto.info.FileState``, or a CREATE response: the same names)."""
        self.creation_time, self.last_access_time = state.creation_time, state.last_access_time
        self.last_write_time, self.change_time = state.last_write_time, state.change_time
        self.allocation_size, self.size = state.allocation_size, state.end_of_file
        self.attributes = state.file_attributes
        return self

    @property
    def is_dir(self) -> bool:
        return bool(self.attributes & FILE_ATTRIBUTE_DIRECTORY)

    @property
    def mode(self) -> int:
        """st_mode: the type bits, 0o755/0o644, write bits off when read-only
        (with the POSIX extensions: the server's mode)."""
        if self.posix is not None:
            return self.posix.mode
        if self.link:
            return _LINK_MODE
        attributes = self.attributes
        mode = _DIR_MODE if attributes & FILE_ATTRIBUTE_DIRECTORY else _FILE_MODE
        if attributes & FILE_ATTRIBUTE_READONLY:
            mode &= ~0o222
        return mode

    def to_stat(self, dev: int = 0) -> os.stat_result:
        """An ``os.stat_result``: st_ino is the server's file id (``dev``: the
        volume serial, st_dev), times come
        as int seconds (by index), floats (by name) and ``_ns``; st_ctime
        is the change time; where the platform has them, st_birthtime and
        st_file_attributes too."""
        # filetime_to_ns written out; the float seconds as os.stat makes st_mtime from
        # st_mtime_ns (seconds + fraction: 1200000000.25 s stays exactly that)
        ft = self.last_access_time
        atime = (ft - _EPOCH_DELTA) * 100 if ft else 0
        ft = self.last_write_time
        mtime = (ft - _EPOCH_DELTA) * 100 if ft else 0
        ft = self.change_time or ft
        ctime = (ft - _EPOCH_DELTA) * 100 if ft else 0
        a_s, a_ns = divmod(atime, 1000000000)
        m_s, m_ns = divmod(mtime, 1000000000)
        c_s, c_ns = divmod(ctime, 1000000000)
        posix = self.posix
        uid, gid = (0, 0) if posix is None else _owner_ids(posix)
        head = (self.mode, self.file_index, dev, self.nlink, uid, gid, self.size, a_s, m_s, c_s,
                a_s + a_ns * 1e-9, m_s + m_ns * 1e-9, c_s + c_ns * 1e-9, atime, mtime, ctime)
        tail = {"st_blksize": 4096, "st_blocks": (self.allocation_size + 511) // 512,
                "st_rdev": 0, "st_file_attributes": self.attributes}
        if _BIRTHTIME:                      # not on Linux
            ft = self.creation_time
            b_s, b_ns = divmod((ft - _EPOCH_DELTA) * 100 if ft else 0, 1000000000)
            tail["st_birthtime"] = b_s + b_ns * 1e-9
        if _STAT_TAIL is None:
            return os.stat_result(head[:10], dict(zip(_STAT_NAMED, head[10:]), **tail))
        # the whole sequence: a dict costs os.stat_result a string per field it looks up
        return os.stat_result(head + tuple(map(tail.get, _STAT_TAIL)))


#: os.stat_result's named fields that follow the ten of its tuple: the six
#: times every platform has, then those of this platform (_STAT_TAIL).
_STAT_NAMED = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


def _stat_tail() -> Optional[Tuple[str, ...]]:
    """The names of os.stat_result's fields after st_ctime_ns, in order (as
    CPython lists its members), checked on a made-up result; None where
    that cannot be known."""
    n = os.stat_result.n_fields
    members = [name for name, value in vars(os.stat_result).items()
               if type(value).__name__ == "member_descriptor"]
    probe = os.stat_result(range(n))
    if members[7:13] != list(_STAT_NAMED) or \
            [getattr(probe, name) for name in members[7:]] != list(range(10, n)):
        return None
    return tuple(members[13:])


_STAT_TAIL = _stat_tail()
_BIRTHTIME = _STAT_TAIL is None or "st_birthtime" in _STAT_TAIL


def _owner_ids(posix) -> Tuple[int, int]:
    """st_uid, st_gid: 0 without the POSIX extensions; with them the Unix ids
    the server's SIDs name, or (as cifs.ko without an idmap helper) ours
    for an account SID that names none."""
    if posix is None:
        return 0, 0
    uid = posix.uid if posix.uid is not None else os.getuid()
    gid = posix.gid if posix.gid is not None else os.getgid()
    return uid, gid


class FsSize(FrozenRecord):
    """A volume's size in allocation units ([MS-FSCC] 2.5.4
    FileFsFullSizeInformation)."""

    __slots__ = ("total_units", "caller_available_units", "actual_available_units",
                 "sectors_per_unit", "bytes_per_sector")

    def __init__(self, total_units: int, caller_available_units: int, actual_available_units: int,
                 sectors_per_unit: int, bytes_per_sector: int) -> None:
        self._init(total_units, caller_available_units, actual_available_units, sectors_per_unit,
                   bytes_per_sector)

    @property
    def unit_size(self) -> int:
        return self.sectors_per_unit * self.bytes_per_sector


class Handle(Record):
    """An open file: ``fid`` is opaque to the Tree (16 bytes on SMB2, an int
    on SMB1).

    Durable handles: ``durable`` when the server granted one (then
    ``create_guid`` on 3.x), ``persistent`` on a continuously available
    share.  ``access``/``share_access``/``create_options`` and the oplock and
    lease state asked for are what a reclaim or a reopen sends again."""

    __slots__ = ("fid", "path", "info", "oplock_level", "lease_key", "lease_state",
                 "granted_access", "closed", "file", "generation", "durable", "persistent",
                 "create_guid", "access", "share_access", "create_options", "requested_oplock",
                 "requested_lease", "deferred", "data")
    _hidden = ("file", "data")

    def __init__(self, fid: Any, path: str, info: FileInfo, oplock_level: int = OPLOCK_NONE,
                 lease_key: Optional[bytes] = None, lease_state: int = 0, granted_access: int = 0,
                 closed: bool = False, file: Any = None, generation: int = 0,
                 durable: bool = False, persistent: bool = False,
                 create_guid: Optional[bytes] = None, access: int = 0,
                 share_access: int = FILE_SHARE_ALL, create_options: int = 0,
                 requested_oplock: int = OPLOCK_NONE, requested_lease: int = 0,
                 deferred: bool = False) -> None:
        self.fid = fid
        self.path = path
        self.info = info
        self.oplock_level = oplock_level
        self.lease_key = lease_key
        self.lease_state = lease_state
        self.granted_access = granted_access
        self.closed = closed
        self.file = file    # the SmbRawFile using it, for breaks
        self.generation = generation    # the client connection generation it is valid on
        self.durable = durable
        self.persistent = persistent
        self.create_guid = create_guid
        self.access = access
        self.share_access = share_access
        self.create_options = create_options
        self.requested_oplock = requested_oplock
        self.requested_lease = requested_lease
        self.deferred = deferred    # closed by its file, kept open (fs.deferred)
        self.data = None            # bytes read under a read lease (fs.readcache)


class FileOps:
    """Abstract base: see the module docstring."""

    def __init__(self, tree):
        self.tree = tree
        self.client = tree.client
        self.session = tree.session

    # sizes
    @property
    def max_read(self) -> int:
        raise NotImplementedError

    @property
    def max_write(self) -> int:
        raise NotImplementedError

    # the tree
    def tree_connect_task(self):
        """The TREE_CONNECT request for ``tree.share`` (the tree runs it)."""
        raise NotImplementedError

    def parse_tree_connect(self, reply) -> Tuple[int, int, int, int]:
        """(tree id, SMB2 ShareFlags, maximal access, share capabilities)."""
        raise NotImplementedError

    def tree_disconnect_task(self):
        raise NotImplementedError

    # handles
    def open(self, path: str, *, access: int, disposition: int, create_options: int = 0,
             share_access: int = FILE_SHARE_ALL, oplock: int = OPLOCK_NONE,
             lease_key: Optional[bytes] = None, lease_state: int = 0,
             attributes: int = 0, durable: bool = False) -> Handle:
        """``durable``: ask a durable handle where the dialect has them."""
        raise NotImplementedError

    def close(self, handle: Handle) -> None:
        raise NotImplementedError

    # Whether a CLOSE may follow WRITEs still in flight on the same handle
    # (the server finishes the writes first).
    close_behind_writes = False
    # Whether close() may send a last small WRITE and the CLOSE as one
    # compound (write_task(..., any_status=True), run_compound).
    compound_close = False

    def close_task(self, handle: Handle):
        """The CLOSE request (to send behind the file's last writes)."""
        raise NotImplementedError

    def close_done(self, handle: Handle, reply) -> None:
        """Its reply arrived: the handle is closed."""
        raise NotImplementedError

    def set_write_time_task(self, handle: Handle, mtime: int):
        """SET_INFO of the handle's write time (a FILETIME), for a
        deferred close of a written file (fs.closing)."""
        raise NotImplementedError

    @property
    def durable_handles(self) -> bool:
        """Whether this dialect has durable handles (``reclaim`` works)."""
        return False

    def reclaim(self, handle: Handle) -> Handle:
        """After a reconnect: the durable ``handle`` reconnected, as a new
        Handle (new fid) for the same open."""
        raise NotImplementedError

    # data
    def read_task(self, handle: Handle, offset: int, length: int):
        raise NotImplementedError

    def parse_read(self, reply) -> memoryview:
        raise NotImplementedError

    def write_task(self, handle: Handle, offset: int, data):
        raise NotImplementedError

    def parse_write(self, reply) -> int:
        raise NotImplementedError

    def flush(self, handle: Handle) -> None:
        raise NotImplementedError

    # metadata
    def query_info(self, handle: Handle) -> FileInfo:
        raise NotImplementedError

    def stat(self, path: str) -> FileInfo:
        raise NotImplementedError

    def listdir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """FileInfo (with .name) of each entry matching ``pattern`` (the
        server's wildcards ``*`` and ``?``), without "." and ".."."""
        raise NotImplementedError

    def set_times(self, path: str, atime: int, mtime: int) -> None:
        """Set the access and write times (FILETIME; 0 leaves one unchanged)."""
        raise NotImplementedError

    def set_end_of_file(self, handle: Handle, size: int) -> None:
        raise NotImplementedError

    def rename(self, path: str, new_path: str, replace: bool = False) -> None:
        raise NotImplementedError

    def delete(self, path: str, directory: bool = False) -> None:
        raise NotImplementedError

    def mkdir(self, path: str) -> None:
        raise NotImplementedError

    def fs_size(self) -> "FsSize":
        """The share's volume size and free space (FileFsFullSizeInformation)."""
        raise NotImplementedError

    # oplocks and leases
    def parse_break(self, notification) -> Tuple[str, Any, int]:
        """("oplock", fid, new_level) or ("lease", lease_key, new_state)."""
        raise NotImplementedError

    def ack_break(self, handle: Handle, new_level: int) -> None:
        raise NotImplementedError


def ops_for(tree) -> FileOps:
    """A new FileOps for a connected ``tree``, of the dialect its
    connection uses (the tree chose it when it connected:
    ``smblayer.fs.tree.ops_for``)."""
    if tree.ops is None:
        raise ValueError(f"{tree!r} is not connected")
    return type(tree.ops)(tree)
