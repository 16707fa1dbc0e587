"""File and volume information payloads ([MS-FSCC] 2.4, 2.5), for either
dialect.

Theory of operation
-------------------
QUERY_INFO / SET_INFO on SMB2 and the TRANSACTION2 QUERY/SET_*_INFORMATION
levels on SMB1 (the pass-through levels are the [MS-FSCC] classes + 1000)
carry the same structures; only the envelope differs.  So the structures
live here once and both dialects' FileOps use them:

* FileBasicInformation (times and attributes) -- built to set times;
* FileAllInformation -- its first 64 bytes (basic + standard information,
  also the layout of SMB1's native SMB_QUERY_FILE_ALL_INFO) and, on SMB2,
  the internal information (the file id) after them;
* FileRenameInformation -- the 64-bit RootDirectory form of SMB2 and the
  32-bit one of SMB1's pass-through level;
* FileEndOfFileInformation, FileInternalInformation (one 64-bit value);
* FileFsSizeInformation / FileFsFullSizeInformation.

Every parser checks the length first and raises :class:`MalformedMessage`.
The structures of the administrators' calls (stream lists, snapshots,
reparse data, symbolic-link errors) are in :mod:`smblayer.proto.fscc`.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Tuple

from ..records import Record
from .smb2 import MalformedMessage

__all__ = ["basic_information", "FileState", "AllInformation", "parse_all_information",
           "unpack_all_information",
           "rename_information", "end_of_file_information", "parse_u64",
           "parse_fs_size_information", "parse_fs_full_size_information",
           "FS_FULL_SIZE_INFORMATION_SIZE", "DELETE_PENDING"]

_BASIC = struct.Struct("<QQQQI4x")                  # times, attributes (2.4.7)
_BASIC_STANDARD = struct.Struct("<QQQQI4xQQIBB2x")  # + allocation, EOF, links, flags (2.4.41)
_BASIC_STANDARD_ID = struct.Struct("<QQQQI4xQQIBB2xQ")    # + the file id (2.4.20)
_U64 = struct.Struct("<Q")
_RENAME64 = struct.Struct("<B7xQI")                 # ReplaceIfExists, RootDirectory, NameLength
_RENAME32 = struct.Struct("<B3xII")
_FS_SIZE = struct.Struct("<QQII")                   # 2.5.8
_FS_FULL_SIZE = struct.Struct("<QQQII")             # 2.5.4
FS_FULL_SIZE_INFORMATION_SIZE = _FS_FULL_SIZE.size
#: FileDispositionInformation that deletes on close
DELETE_PENDING = b"\x01"


def _check(buf, size: int, what: str) -> None:
    if len(buf) < size:
        raise MalformedMessage(f"{what} truncated ({len(buf)} of {size} bytes)")


def basic_information(creation: int = 0, last_access: int = 0, last_write: int = 0,
                      change: int = 0, attributes: int = 0) -> bytes:
    """FileBasicInformation (FILETIMEs; 0 leaves a value unchanged)."""
    return _BASIC.pack(creation, last_access, last_write, change, attributes)


class FileState(Record):
    """What an open, a close or a query reports about a file: its times
    (FILETIME), sizes and attributes.  (``commands.CreateResponse`` carries
    the same fields under the same names.)"""

    __slots__ = ("creation_time", "last_access_time", "last_write_time", "change_time",
                 "allocation_size", "end_of_file", "file_attributes")

    def __init__(self, creation_time: int, last_access_time: int, last_write_time: int,
                 change_time: int, allocation_size: int, end_of_file: int,
                 file_attributes: int) -> None:
        self.creation_time = creation_time
        self.last_access_time = last_access_time
        self.last_write_time = last_write_time
        self.change_time = change_time
        self.allocation_size = allocation_size
        self.end_of_file = end_of_file
        self.file_attributes = file_attributes


class AllInformation(FileState):
    """FileAllInformation: the file state plus its link count and more."""

    __slots__ = ("links", "delete_pending", "directory", "file_id")

    def __init__(self, creation_time: int, last_access_time: int, last_write_time: int,
                 change_time: int, allocation_size: int, end_of_file: int, file_attributes: int,
                 links: int = 1, delete_pending: bool = False, directory: bool = False,
                 file_id: int = 0) -> None:
        super().__init__(creation_time, last_access_time, last_write_time, change_time,
              allocation_size, end_of_file, file_attributes)
        self.links = links
        self.delete_pending = delete_pending
        self.directory = directory
        self.file_id = file_id


def parse_all_information(buf, with_file_id: bool = True) -> AllInformation:
    """FileAllInformation (or SMB1's SMB_QUERY_FILE_ALL_INFO with
    ``with_file_id=False``: its bytes after the first 64 are no file id)."""
    if with_file_id:
        (ctime, atime, wtime, chtime, attrs, alloc, eof, links, delete, directory,
         file_id) = unpack_all_information(buf)
    else:
        _check(buf, _BASIC_STANDARD.size, "FileAllInformation")
        (ctime, atime, wtime, chtime, attrs, alloc, eof, links, delete,
         directory) = _BASIC_STANDARD.unpack_from(buf)
        file_id = 0
    return AllInformation(ctime, atime, wtime, chtime, alloc, eof, attrs, links, bool(delete),
                          bool(directory), file_id)


def unpack_all_information(buf) -> Tuple[int, ...]:
    """The fields of FileAllInformation that say what a file is, unpacked in
    one go (no record): (creation, last access, last write, change time,
    attributes, allocation size, end of file, links, delete pending,
    directory, file id)."""
    if len(buf) < _BASIC_STANDARD_ID.size:
        raise MalformedMessage(f"FileAllInformation truncated ({len(buf)} of "
                               f"{_BASIC_STANDARD_ID.size} bytes)")
    return _BASIC_STANDARD_ID.unpack_from(buf)


def rename_information(new_name: str, replace: bool, wide: bool = True) -> bytes:
    """FileRenameInformation to ``new_name``: ``wide`` the SMB2 form
    (64-bit RootDirectory), else SMB1's pass-through one."""
    name = new_name.encode("utf-16-le")
    layout = _RENAME64 if wide else _RENAME32
    return layout.pack(1 if replace else 0, 0, len(name)) + name


def end_of_file_information(size: int) -> bytes:
    """FileEndOfFileInformation."""
    return _U64.pack(size)


def parse_u64(buf, what: str = "FileInternalInformation") -> int:
    """A single 64-bit value (FileInternalInformation's file id...)."""
    _check(buf, _U64.size, what)
    return _U64.unpack_from(buf)[0]


def parse_fs_size_information(buf) -> Tuple[int, int, int, int]:
    """FileFsSizeInformation: (total units, available units, sectors per
    unit, bytes per sector)."""
    _check(buf, _FS_SIZE.size, "FileFsSizeInformation")
    return _FS_SIZE.unpack_from(buf)


def parse_fs_full_size_information(buf) -> Tuple[int, int, int, int, int]:
    """FileFsFullSizeInformation: (total units, caller available units,
    actual available units, sectors per unit, bytes per sector)."""
    _check(buf, _FS_FULL_SIZE.size, "FileFsFullSizeInformation")
    return _FS_FULL_SIZE.unpack_from(buf)
