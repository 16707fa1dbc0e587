"""SMB3 POSIX extensions codecs (Samba >= 4.20 with ``smb3 unix
extensions = yes``, ksmbd): sans-I/O.

Theory of operation
-------------------
A client offers the POSIX negotiate context (``smb2.posix_context``) on
3.1.1; a server that agrees answers with it.  Every open then carries a
CREATE context named :data:`POSIX_GUID` whose data is the wire mode for a
new file (:func:`create_context`); the server answers with the file's link
count, reparse tag, wire mode and owner and group SIDs
(:func:`parse_create_response`), and a handle opened so may be queried for
FILE_POSIX_INFORMATION (:data:`FILE_POSIX_INFORMATION`, the same plus
times, sizes, attributes, inode and device: :func:`parse_file_info`) and
listed with the directory class of the same number
(:func:`parse_dir_entries`).

Wire modes keep the permission bits (0o7777) as they are and put the file
type as a small number (0 file, 1 directory, 2 symlink, 3 char device, 4
block device, 5 FIFO, 6 socket) in bits 12..15.

Owners and groups are SIDs.  Samba gives ``S-1-22-1-<uid>`` /
``S-1-22-2-<gid>`` ("Unix user/group") for ids without an account, and an
account's SID otherwise: :func:`unix_id` reads the former; the latter have
no Unix id on the wire.  Changing the mode, owner or group is a SET_INFO
of a security descriptor: :func:`mode_descriptor` (a DACL holding one
``S-1-5-88-3-<mode>`` ACE, the NFS "mode" SID, which Samba applies as the
file's mode) and :func:`owner_descriptor`.
"""
from __future__ import annotations

import stat as stat_module
import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Iterator, Optional, Tuple

from ..records import Record
from .smb2 import POSIX_EXTENSIONS_GUID

__all__ = ["POSIX_GUID", "FILE_POSIX_INFORMATION", "PosixInfo", "create_context",
           "parse_create_response", "parse_file_info", "parse_dir_entries", "unix_to_wire",
           "wire_to_unix", "parse_sid", "sid_bytes", "unix_id", "mode_descriptor",
           "owner_descriptor", "UNIX_USER", "UNIX_GROUP"]

#: CREATE context name of the POSIX extensions
POSIX_GUID = POSIX_EXTENSIONS_GUID
#: QUERY_INFO file class and QUERY_DIRECTORY class
FILE_POSIX_INFORMATION = 100

UNIX_USER = (22, 1)         # S-1-22-1-<uid>
UNIX_GROUP = (22, 2)        # S-1-22-2-<gid>
_NFS_MODE = (5, 88, 3)      # S-1-5-88-3-<mode>

_TYPES = (stat_module.S_IFREG, stat_module.S_IFDIR, stat_module.S_IFLNK, stat_module.S_IFCHR,
          stat_module.S_IFBLK, stat_module.S_IFIFO, stat_module.S_IFSOCK)
_TYPE_SHIFT = 12
_U32 = struct.Struct("<I")
_CC = struct.Struct("<III")                       # nlinks, reparse tag, wire mode
_INFO = struct.Struct("<QQQQQQIQII")              # times, eof, alloc, attrs, inode, dev, reserved
_DIR_HEAD = struct.Struct("<II")                  # NextEntryOffset, FileIndex
_SID_HEAD = struct.Struct("<BB6s")                # revision, sub-authority count, authority
_SD = struct.Struct("<BBHIIII")                   # self-relative security descriptor header
_ACL = struct.Struct("<BBHHH")
_ACE = struct.Struct("<BBHI")
SE_SELF_RELATIVE = 0x8000
SE_DACL_PRESENT = 0x0004


def unix_to_wire(mode: int) -> int:
    """An st_mode as the POSIX extensions' wire mode."""
    kind = stat_module.S_IFMT(mode)
    wire_type = _TYPES.index(kind) if kind in _TYPES else 0
    return (mode & 0o7777) | (wire_type << _TYPE_SHIFT)


def wire_to_unix(wire: int) -> int:
    """The wire mode as an st_mode (type bits and permissions)."""
    wire_type = (wire >> _TYPE_SHIFT) & 0xF
    kind = _TYPES[wire_type] if wire_type < len(_TYPES) else 0
    return kind | (wire & 0o7777)


def sid_bytes(authority: int, *subs: int) -> bytes:
    """A binary SID S-1-<authority>-<subs...>."""
    return _SID_HEAD.pack(1, len(subs), authority.to_bytes(6, "big")) + \
        b"".join(_U32.pack(s) for s in subs)


def parse_sid(buf, pos: int) -> Tuple[str, Tuple[int, ...], int]:
    """(``"S-1-..."``, (authority, subs...), position after it)."""
    if pos + _SID_HEAD.size > len(buf):
        raise ValueError("SID truncated")
    _rev, count, auth = _SID_HEAD.unpack_from(buf, pos)
    end = pos + _SID_HEAD.size + 4 * count
    if end > len(buf):
        raise ValueError("SID sub-authorities truncated")
    subs = struct.unpack_from(f"<{count}I", buf, pos + _SID_HEAD.size)
    parts = (int.from_bytes(auth, "big"),) + subs
    return "S-1-" + "-".join(map(str, parts)), parts, end


def unix_id(parts: Tuple[int, ...], kind: Tuple[int, int]) -> Optional[int]:
    """The uid (``kind=UNIX_USER``) or gid (``UNIX_GROUP``) a SID names, or None."""
    if len(parts) == 3 and parts[:2] == kind:
        return parts[2]
    return None


class PosixInfo(Record):
    """What the POSIX extensions tell about a file beyond FileInfo."""

    __slots__ = ("nlink", "reparse_tag", "mode", "owner_sid", "group_sid", "uid", "gid")

    def __init__(self, nlink: int, reparse_tag: int, mode: int, owner_sid: str, group_sid: str,
                 uid: Optional[int], gid: Optional[int]) -> None:
        self.nlink = nlink
        self.reparse_tag = reparse_tag
        self.mode = mode    # st_mode: type and permission bits
        self.owner_sid = owner_sid
        self.group_sid = group_sid
        self.uid = uid    # from an S-1-22-1 owner, else None
        self.gid = gid    # from an S-1-22-2 group, else None


def parse_create_response(data, pos: int = 0) -> Tuple[PosixInfo, int]:
    """The POSIX CREATE context response (also the tail of the file and
    directory information): (PosixInfo, position after it)."""
    if pos + _CC.size > len(data):
        raise ValueError("POSIX create context response truncated")
    nlink, tag, wire = _CC.unpack_from(data, pos)
    owner, owner_parts, pos = parse_sid(data, pos + _CC.size)
    group, group_parts, pos = parse_sid(data, pos)
    return PosixInfo(nlink, tag, wire_to_unix(wire), owner, group,
                     unix_id(owner_parts, UNIX_USER), unix_id(group_parts, UNIX_GROUP)), pos


def create_context(mode: int) -> Tuple[bytes, bytes]:
    """The POSIX CREATE context (name, data): ``mode`` for a new file."""
    return POSIX_GUID, _U32.pack(unix_to_wire(mode))


class PosixFileInfo(Record):
    """FILE_POSIX_INFORMATION: FileInfo's fields plus PosixInfo."""

    __slots__ = ("creation_time", "last_access_time", "last_write_time", "change_time", "size",
                 "allocation_size", "attributes", "inode", "device", "posix")

    def __init__(self, creation_time: int, last_access_time: int, last_write_time: int,
                 change_time: int, size: int, allocation_size: int, attributes: int, inode: int,
                 device: int, posix: PosixInfo) -> None:
        self.creation_time = creation_time
        self.last_access_time = last_access_time
        self.last_write_time = last_write_time
        self.change_time = change_time
        self.size = size
        self.allocation_size = allocation_size
        self.attributes = attributes
        self.inode = inode
        self.device = device
        self.posix = posix


def parse_file_info(data, pos: int = 0) -> Tuple[PosixFileInfo, int]:
    """FILE_POSIX_INFORMATION at ``pos``: (PosixFileInfo, position after it)."""
    if pos + _INFO.size > len(data):
        raise ValueError("FILE_POSIX_INFORMATION truncated")
    (ctime, atime, wtime, chtime, eof, alloc, attrs, inode, dev,
     _r) = _INFO.unpack_from(data, pos)
    posix, pos = parse_create_response(data, pos + _INFO.size)
    return PosixFileInfo(ctime, atime, wtime, chtime, eof, alloc, attrs, inode, dev,
                         posix), pos


def parse_dir_entries(buf, pos: int, end: int) -> Iterator[Tuple[str, PosixFileInfo]]:
    """(name, PosixFileInfo) of each entry of a POSIX QUERY_DIRECTORY
    buffer, "." and ".." left out."""
    while True:
        if pos + _DIR_HEAD.size > end:
            raise ValueError("POSIX directory entry truncated")
        nxt, _index = _DIR_HEAD.unpack_from(buf, pos)
        info, after = parse_file_info(buf, pos + _DIR_HEAD.size)
        if after + 4 > end:
            raise ValueError("POSIX directory entry name truncated")
        length = _U32.unpack_from(buf, after)[0]
        start = after + 4
        if start + length > end:
            raise ValueError("POSIX directory entry name out of bounds")
        name = bytes(buf[start:start + length]).decode("utf-16-le", "replace")
        if name not in (".", ".."):
            yield name, info
        if not nxt:
            return
        pos += nxt


def _descriptor(owner: bytes = b"", group: bytes = b"", dacl: bytes = b"") -> bytes:
    control = SE_SELF_RELATIVE | (SE_DACL_PRESENT if dacl else 0)
    offset = _SD.size
    offsets = []
    for part in (owner, group, dacl):
        offsets.append(offset if part else 0)
        offset += len(part)
    return _SD.pack(1, 0, control, offsets[0], offsets[1], 0, offsets[2]) + owner + group + dacl


def mode_descriptor(mode: int) -> bytes:
    """A security descriptor whose DACL sets the file's mode (permission
    bits of ``mode``) on a POSIX open."""
    sid = sid_bytes(_NFS_MODE[0], _NFS_MODE[1], _NFS_MODE[2], mode & 0o7777)
    ace = _ACE.pack(0, 0, _ACE.size + len(sid), 0x001F01FF) + sid
    return _descriptor(dacl=_ACL.pack(2, 0, _ACL.size + len(ace), 1, 0) + ace)


def owner_descriptor(uid: Optional[int], gid: Optional[int]) -> bytes:
    """A security descriptor naming Unix owner ``uid`` and/or group ``gid``."""
    owner = sid_bytes(UNIX_USER[0], UNIX_USER[1], uid) if uid is not None else b""
    group = sid_bytes(UNIX_GROUP[0], UNIX_GROUP[1], gid) if gid is not None else b""
    return _descriptor(owner, group)
