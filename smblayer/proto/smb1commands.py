"""SMB1 request/response codecs of the file commands ([MS-CIFS] 2.2.4, with
the [MS-SMB] extensions): NT_CREATE_ANDX, CLOSE, FLUSH, READ_ANDX and
WRITE_ANDX (with OffsetHigh and the large read/write lengths),
LOCKING_ANDX oplock breaks, the FIND / QUERY / SET parameter blocks of
TRANSACTION2 (the transaction itself is ``proto.smb1.pack_transaction``),
DELETE, DELETE_DIRECTORY, CREATE_DIRECTORY, RENAME and FIND_CLOSE2.

Theory of operation
-------------------
An SMB1 request after the header is ``WordCount + words`` and ``ByteCount
+ data``; a codec here returns those two buffers
(:func:`smblayer.proto.smb1.pack_params`), ready for ``SmbTask(command,
body)``.  WRITE_ANDX is the exception: its payload goes as a third buffer,
never copied into the others.  Strings are UTF-16LE (the client always sets
FLAGS2_UNICODE) and a Unicode string in the data area must start at an
even offset from the header: the data area of a request with ``n`` words
starts at 32 + 1 + 2n + 2 (always odd), so the codecs insert the one pad
byte where it is needed.

A response parser takes the whole message and raises
:class:`MalformedMessage` for a reply too short or a block out of bounds.
The information structures inside TRANSACTION2 data are [MS-FSCC]'s
(:mod:`smblayer.proto.info`, :func:`smblayer.proto.commands.parse_directory_entries`).
Which requests to send, and what an answer means, is ``fs.smb1ops``'s.
"""
from __future__ import annotations

import struct
from typing import Optional, Sequence, Tuple

from . import smb1
from .info import FileState
from .smb2 import MalformedMessage

__all__ = ["nt_create_andx_request", "NtCreateResponse", "parse_nt_create_andx_response",
           "close_request", "fid_request", "read_andx_request", "read_andx_response_data",
           "write_andx_request", "write_andx_response_count", "oplock_release_request",
           "parse_oplock_break", "locking_andx_request", "security_desc_params",
           "find_first2_params", "parse_find_first2_params", "find_next2_params",
           "parse_find_next2_params", "query_path_params", "query_file_params",
           "set_file_params", "query_fs_params", "path_request", "rename_request",
           "MalformedMessage"]

HEADER = smb1.HEADER_SIZE

_NT_CREATE = struct.Struct("<BBHBHIIIQIIIIIB")
_NT_CREATE_RESPONSE = struct.Struct("<BBHBHIQQQQIQQHHB")
_CLOSE = struct.Struct("<HI")                   # FID, LastTimeModified (0xFFFFFFFF: keep)
_FID = struct.Struct("<H")                      # FID, SearchAttributes, SID: one word
_READ = struct.Struct("<BBHHIHHIHI")
_READ_RESPONSE = struct.Struct("<BBHHHHHHH8x")
_WRITE = struct.Struct("<BBHHIIHHHHHI")
_WRITE_RESPONSE = struct.Struct("<BBHHHHH")
_WRITE_DATA_OFFSET = HEADER + 1 + _WRITE.size + 2 + 1     # + one pad byte = 64
_WRITE_BYTES = struct.Struct("<HB")             # ByteCount, the pad byte
_LOCKING = struct.Struct("<BBHHBBIHH")
_LOCK_RANGE = struct.Struct("<HHIIII")          # PID, Pad, OffsetHigh/Low, LengthHigh/Low
_SECURITY_DESC = struct.Struct("<HHI")          # FID, Reserved, SecurityInformation
LOCKING_ANDX_SHARED_LOCK = 0x01
LOCKING_ANDX_OPLOCK_RELEASE = 0x02
LOCKING_ANDX_LARGE_FILES = 0x10
SEC_IMPERSONATE = 2
# TRANSACTION2 itself: smb1.pack_transaction / smb1.parse_transaction_response.
_FIND_FIRST = struct.Struct("<HHHHI")
_FIND_FIRST_RESPONSE = struct.Struct("<HHHHH")
_FIND_NEXT = struct.Struct("<HHHIH")
_FIND_NEXT_RESPONSE = struct.Struct("<HHHH")
_QUERY_PATH = struct.Struct("<HI")              # InformationLevel, Reserved (then the path)
_QUERY_FILE = struct.Struct("<HH")              # FID, InformationLevel
_SET_FILE = struct.Struct("<HHH")               # FID, InformationLevel, Reserved
_U16 = struct.Struct("<H")
_BUFFER_FORMAT_ASCII = b"\x04"                  # the string that follows is a name


def _utf16z(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


def _pad(offset: int) -> bytes:
    """The pad byte that puts a Unicode string at an even offset."""
    return b"\0" if offset % 2 else b""


def _data_start(words: int) -> int:
    """Offset of the data area of a request with ``words`` parameter words."""
    return HEADER + 1 + 2 * words + 2


def _words(message, layout: struct.Struct, what: str) -> tuple:
    words, _data = smb1.parse_params(message)
    if len(words) < layout.size:
        raise MalformedMessage(f"{what} reply truncated ({len(words)} bytes of words)")
    return layout.unpack_from(words)


def _unpack(layout: struct.Struct, buf, what: str) -> tuple:
    if len(buf) < layout.size:
        raise MalformedMessage(f"{what} truncated ({len(buf)} bytes)")
    return layout.unpack_from(buf)


# --- handles ---------------------------------------------------------------------------

def nt_create_andx_request(path: str, *, flags: int, access: int, attributes: int,
                           share_access: int, disposition: int,
                           create_options: int) -> Tuple[bytes, bytes]:
    """NT_CREATE_ANDX ([MS-CIFS] 2.2.4.64.1); ``flags``: the oplock request bits."""
    name = _utf16z(path)
    words = _NT_CREATE.pack(0xFF, 0, 0, 0, len(name), flags, 0, access, 0, attributes,
                            share_access, disposition, create_options, SEC_IMPERSONATE, 0)
    return smb1.pack_params(words, _pad(_data_start(_NT_CREATE.size // 2)) + name)


class NtCreateResponse(FileState):
    __slots__ = ("oplock_level", "fid", "create_action", "directory")

    def __init__(self, creation_time: int, last_access_time: int, last_write_time: int,
                 change_time: int, allocation_size: int, end_of_file: int, file_attributes: int,
                 oplock_level: int = 0, fid: int = 0, create_action: int = 0,
                 directory: bool = False) -> None:
        super().__init__(creation_time, last_access_time, last_write_time, change_time,
              allocation_size, end_of_file, file_attributes)
        self.oplock_level = oplock_level    # granted: 0 none, 1 exclusive, 2 batch, 3 level II
        self.fid = fid
        self.create_action = create_action
        self.directory = directory


def parse_nt_create_andx_response(message) -> NtCreateResponse:
    (_c, _r, _o, level, fid, action, ctime, atime, mtime, chtime, attrs, alloc, eof,
     _type, _pipe, directory) = _words(message, _NT_CREATE_RESPONSE, "NT_CREATE_ANDX")
    return NtCreateResponse(ctime, atime, mtime, chtime, alloc, eof, attrs, level, fid, action,
                            bool(directory))


def close_request(fid: int) -> Tuple[bytes, bytes]:
    """CLOSE ([MS-CIFS] 2.2.4.5), leaving the last write time to the server."""
    return smb1.pack_params(_CLOSE.pack(fid, 0xFFFFFFFF))


def fid_request(value: int) -> Tuple[bytes, bytes]:
    """A request of one word and no data: FLUSH (FID), FIND_CLOSE2 (SID)."""
    return smb1.pack_params(_FID.pack(value))


# --- data ------------------------------------------------------------------------------

def read_andx_request(fid: int, offset: int, length: int) -> Tuple[bytes, bytes]:
    """READ_ANDX with OffsetHigh ([MS-SMB] 2.2.4.2.1); ``length`` may exceed
    16 bits (MaxCountHigh, CAP_LARGE_READX)."""
    words = _READ.pack(0xFF, 0, 0, fid, offset & 0xFFFFFFFF, length & 0xFFFF, length & 0xFFFF,
                       length >> 16, 0, offset >> 32)
    return smb1.pack_params(words)


def read_andx_response_data(message) -> memoryview:
    """The data of a READ_ANDX response: a view into ``message`` (no copy)."""
    (_c, _r, _o, _avail, _mode, _res, low, offset, high) = _words(message, _READ_RESPONSE,
                                                                  "READ_ANDX")
    length = low | (high << 16)
    if length == 0:
        return memoryview(message)[0:0]
    if offset < HEADER + 1 + _READ_RESPONSE.size + 2 or offset + length > len(message):
        raise MalformedMessage(f"READ_ANDX data out of bounds ({offset}+{length} in "
                               f"{len(message)} bytes)")
    return memoryview(message)[offset:offset + length]


def write_andx_request(fid: int, offset: int, length: int) -> Tuple[bytes, bytes]:
    """WRITE_ANDX with OffsetHigh ([MS-SMB] 2.2.4.3.1): the words and the
    ByteCount with its pad byte; the ``length`` bytes of data follow as the
    next buffer.  ByteCount is truncated to 16 bits for a large write (the
    server takes DataLength/DataLengthHigh)."""
    words = _WRITE.pack(0xFF, 0, 0, fid, offset & 0xFFFFFFFF, 0, 0, 0, length >> 16,
                        length & 0xFFFF, _WRITE_DATA_OFFSET, offset >> 32)
    return bytes([_WRITE.size // 2]) + words, _WRITE_BYTES.pack((length + 1) & 0xFFFF, 0)


def write_andx_response_count(message) -> int:
    _c, _r, _o, low, _avail, high, _res = _words(message, _WRITE_RESPONSE, "WRITE_ANDX")
    return low | (high << 16)


def oplock_release_request(fid: int, level: int) -> Tuple[bytes, bytes]:
    """LOCKING_ANDX acknowledging an oplock break down to ``level`` (0 none,
    1 level II); the server sends no reply."""
    return smb1.pack_params(_LOCKING.pack(0xFF, 0, 0, fid, LOCKING_ANDX_OPLOCK_RELEASE,
                                          level, 0, 0, 0))


def locking_andx_request(fid: int, ranges: Sequence[Tuple[int, int]], *, shared: bool,
                         unlock: bool, wait: bool) -> Tuple[bytes, bytes]:
    """LOCKING_ANDX for byte ``ranges`` ((offset, length), large-file form,
    [MS-CIFS] 2.2.4.32.1): all locks or all unlocks, for the PID the header
    carries; ``wait``: Timeout -1 (the server holds the request until the
    range is free), else 0."""
    data = b"".join(_LOCK_RANGE.pack(smb1.DEFAULT_PID, 0, off >> 32, off & 0xFFFFFFFF,
                                     n >> 32, n & 0xFFFFFFFF) for off, n in ranges)
    lock_type = LOCKING_ANDX_LARGE_FILES | (LOCKING_ANDX_SHARED_LOCK if shared else 0)
    words = _LOCKING.pack(0xFF, 0, 0, fid, lock_type, 0, 0xFFFFFFFF if wait else 0,
                          len(ranges) if unlock else 0, 0 if unlock else len(ranges))
    return smb1.pack_params(words, data)


def security_desc_params(fid: int, security_information: int) -> bytes:
    """NT_TRANSACT_QUERY/SET_SECURITY_DESC parameters ([MS-CIFS] 2.2.7.6.1,
    2.2.7.3.1)."""
    return _SECURITY_DESC.pack(fid, 0, security_information)


def parse_oplock_break(message) -> Tuple[int, int]:
    """(FID, new level: 0 none, 1 level II) of the LOCKING_ANDX *request* a
    server sends to break an oplock."""
    (_c, _r, _o, fid, lock_type, level, _timeout, _unlocks,
     _locks) = _words(message, _LOCKING, "LOCKING_ANDX break")
    if not lock_type & LOCKING_ANDX_OPLOCK_RELEASE:
        raise MalformedMessage(f"LOCKING_ANDX from the server is not an oplock break "
                               f"(TypeOfLock 0x{lock_type:02x})")
    return fid, level


# --- TRANSACTION2 parameter blocks -----------------------------------------------------

def find_first2_params(pattern: str, *, search_attributes: int, count: int, flags: int,
                       level: int) -> bytes:
    """TRANS2_FIND_FIRST2 parameters ([MS-CIFS] 2.2.6.2.1)."""
    return _FIND_FIRST.pack(search_attributes, count, flags, level, 0) + _utf16z(pattern)


def parse_find_first2_params(buf) -> Tuple[int, int, bool]:
    """(SID, SearchCount, EndOfSearch)."""
    sid, count, end, _ea, _last = _unpack(_FIND_FIRST_RESPONSE, buf, "FIND_FIRST2")
    return sid, count, bool(end)


def find_next2_params(sid: int, *, count: int, level: int, flags: int,
                      resume_name: str) -> bytes:
    """TRANS2_FIND_NEXT2 parameters ([MS-CIFS] 2.2.6.3.1)."""
    return _FIND_NEXT.pack(sid, count, level, 0, flags) + _utf16z(resume_name)


def parse_find_next2_params(buf) -> Tuple[int, bool]:
    """(SearchCount, EndOfSearch)."""
    count, end, _ea, _last = _unpack(_FIND_NEXT_RESPONSE, buf, "FIND_NEXT2")
    return count, bool(end)


def query_path_params(level: int, path: str) -> bytes:
    """TRANS2_QUERY/SET_PATH_INFORMATION parameters."""
    return _QUERY_PATH.pack(level, 0) + _utf16z(path)


def query_file_params(fid: int, level: int) -> bytes:
    """TRANS2_QUERY_FILE_INFORMATION parameters."""
    return _QUERY_FILE.pack(fid, level)


def set_file_params(fid: int, level: int) -> bytes:
    """TRANS2_SET_FILE_INFORMATION parameters."""
    return _SET_FILE.pack(fid, level, 0)


def query_fs_params(level: int) -> bytes:
    """TRANS2_QUERY_FS_INFORMATION parameters."""
    return _U16.pack(level)


# --- the namespace ---------------------------------------------------------------------

def path_request(path: str, search_attributes: Optional[int] = None) -> Tuple[bytes, bytes]:
    """CREATE_DIRECTORY / DELETE_DIRECTORY (no words) or DELETE (one word:
    ``search_attributes``): a buffer-format byte, then the name (even-aligned
    either way: data at 35 with no words, 37 with one)."""
    words = b"" if search_attributes is None else _FID.pack(search_attributes)
    return smb1.pack_params(words, _BUFFER_FORMAT_ASCII + _utf16z(path))


def rename_request(path: str, new_path: str, search_attributes: int) -> Tuple[bytes, bytes]:
    """RENAME ([MS-CIFS] 2.2.4.8): both names, each after a buffer-format
    byte, the second padded to an even offset."""
    old = _BUFFER_FORMAT_ASCII + _utf16z(path)               # the old name starts at 38
    start = _data_start(1) + len(old) + 1
    return smb1.pack_params(_FID.pack(search_attributes),
                            old + _BUFFER_FORMAT_ASCII + _pad(start) + _utf16z(new_path))
