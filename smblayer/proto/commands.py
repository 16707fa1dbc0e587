"""Public SMB2 request/response codecs for protocol packages ([MS-SMB2] 2.2):
TREE_CONNECT, TREE_DISCONNECT, CREATE, CLOSE, IOCTL/FSCTL, CHANGE_NOTIFY,
QUERY_INFO, SET_INFO, LOCK and QUERY_DIRECTORY, with the constants they need.
(READ/WRITE/FLUSH and breaks: ``proto.fileio``; CREATE contexts:
``proto.contexts``; information classes: ``proto.info``; SESSION_SETUP:
``proto.session``; DFS referrals: ``proto.dfs``; SMB1: ``proto.smb1commands``.)

Conventions (the same for every codec here):

* A ``*_request`` function returns the request *body* as a tuple of
  buffers -- the fixed part first, then the variable payload kept separate
  (never concatenated) -- ready for ``SmbTask(command, body, ...)``.  Offsets
  inside SMB2 bodies count from the start of the 64-byte header, so every
  payload offset is ``HEADER_SIZE + <fixed size> + padding``; the codecs
  compute them.
* The client derives a request's CreditCharge itself from max(request
  payload, expected response) (:func:`smblayer.proto.credits.request_sizes`
  reads MaxOutputResponse / OutputBufferLength from the fixed body), so the
  output buffer sizes given here are all a caller needs to choose.
* A ``parse_*`` function takes the whole response message (header first:
  ``reply.message``, or the ``Reply`` itself) and returns a dataclass.  Every
  offset and length from the server is bounds-checked; a bad one raises
  :class:`MalformedMessage` (a ``ValueError``).
* A FileId is 16 bytes.  In a related compound, :data:`RELATED_FILE_ID`
  means "the handle the first request of the compound opened".

Nothing here does I/O.
"""
from __future__ import annotations

import struct
from codecs import utf_16_le_encode
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

from ..records import Record
from .info import FileState
from .smb2 import HEADER_SIZE, Command, MalformedMessage
from .status import NtStatus

RELATED_FILE_ID = b"\xff" * 16
#: the FileId of an FSCTL that works on no handle (e.g. VALIDATE_NEGOTIATE_INFO)
NO_FILE_ID = b"\xff" * 16

# --- FSCTL / IOCTL codes ([MS-FSCC] 2.3, [MS-SMB2] 2.2.31) ---------------------
FSCTL_DFS_GET_REFERRALS = 0x00060194
FSCTL_PIPE_PEEK = 0x0011400C
FSCTL_PIPE_WAIT = 0x00110018
FSCTL_PIPE_TRANSCEIVE = 0x0011C017
FSCTL_SRV_COPYCHUNK = 0x001440F2
FSCTL_SRV_COPYCHUNK_WRITE = 0x001480F2
FSCTL_SRV_ENUMERATE_SNAPSHOTS = 0x00144064
FSCTL_SRV_REQUEST_RESUME_KEY = 0x00140078
FSCTL_SRV_READ_HASH = 0x001441BB
FSCTL_QUERY_NETWORK_INTERFACE_INFO = 0x001401FC
FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204
FSCTL_SET_SPARSE = 0x000900C4
FSCTL_GET_REPARSE_POINT = 0x000900A8
FSCTL_SET_ZERO_DATA = 0x000980C8
FSCTL_QUERY_ALLOCATED_RANGES = 0x000940CF
IOCTL_IS_FSCTL = 0x00000001

# --- CHANGE_NOTIFY ([MS-SMB2] 2.2.35, [MS-FSCC] 2.4.42) ---------------------
WATCH_TREE = 0x0001
FILE_NOTIFY_CHANGE_FILE_NAME = 0x00000001
FILE_NOTIFY_CHANGE_DIR_NAME = 0x00000002
FILE_NOTIFY_CHANGE_ATTRIBUTES = 0x00000004
FILE_NOTIFY_CHANGE_SIZE = 0x00000008
FILE_NOTIFY_CHANGE_LAST_WRITE = 0x00000010
FILE_NOTIFY_CHANGE_LAST_ACCESS = 0x00000020
FILE_NOTIFY_CHANGE_CREATION = 0x00000040
FILE_NOTIFY_CHANGE_EA = 0x00000080
FILE_NOTIFY_CHANGE_SECURITY = 0x00000100
FILE_NOTIFY_CHANGE_STREAM_NAME = 0x00000200
FILE_NOTIFY_CHANGE_STREAM_SIZE = 0x00000400
FILE_NOTIFY_CHANGE_STREAM_WRITE = 0x00000800
FILE_NOTIFY_CHANGE_ALL = 0x00000FFF
FILE_ACTION_ADDED = 1
FILE_ACTION_REMOVED = 2
FILE_ACTION_MODIFIED = 3
FILE_ACTION_RENAMED_OLD_NAME = 4
FILE_ACTION_RENAMED_NEW_NAME = 5
FILE_ACTION_ADDED_STREAM = 6
FILE_ACTION_REMOVED_STREAM = 7
FILE_ACTION_MODIFIED_STREAM = 8
#: NTSTATUS of a CHANGE_NOTIFY that completes without a list
NOTIFY_ENUM_DIR = NtStatus.NOTIFY_ENUM_DIR     # too many changes: rescan
NOTIFY_CLEANUP = NtStatus.NOTIFY_CLEANUP       # the handle was closed

# --- QUERY_INFO / SET_INFO ([MS-SMB2] 2.2.37, 2.2.39) -------------------------
INFO_FILE = 0x01
INFO_FILESYSTEM = 0x02
INFO_SECURITY = 0x03
INFO_QUOTA = 0x04
FILE_BASIC_INFORMATION = 4
FILE_STANDARD_INFORMATION = 5
FILE_INTERNAL_INFORMATION = 6
FILE_RENAME_INFORMATION = 10
FILE_DISPOSITION_INFORMATION = 13
FILE_POSITION_INFORMATION = 14
FILE_ALL_INFORMATION = 18
FILE_END_OF_FILE_INFORMATION = 20
FILE_STREAM_INFORMATION = 22
FILE_FS_SIZE_INFORMATION = 3
FILE_FS_DEVICE_INFORMATION = 4
FILE_FS_ATTRIBUTE_INFORMATION = 5
FILE_FS_FULL_SIZE_INFORMATION = 7

# --- LOCK ([MS-SMB2] 2.2.26) --------------------------------------------------------
LOCKFLAG_SHARED_LOCK = 0x01
LOCKFLAG_EXCLUSIVE_LOCK = 0x02
LOCKFLAG_UNLOCK = 0x04
LOCKFLAG_FAIL_IMMEDIATELY = 0x10

# --- QUERY_DIRECTORY ([MS-SMB2] 2.2.33) ---------------------------------------------
RESTART_SCANS = 0x01
RETURN_SINGLE_ENTRY = 0x02
INDEX_SPECIFIED = 0x04
REOPEN = 0x10
FILE_DIRECTORY_INFORMATION = 0x01
FILE_FULL_DIRECTORY_INFORMATION = 0x02
FILE_BOTH_DIRECTORY_INFORMATION = 0x03
FILE_NAMES_INFORMATION = 0x0C
FILE_ID_BOTH_DIRECTORY_INFORMATION = 0x25
FILE_ID_FULL_DIRECTORY_INFORMATION = 0x26

# --- CREATE / CLOSE ([MS-SMB2] 2.2.13, 2.2.15) ---------------------------------------
IMPERSONATION_IMPERSONATION = 2
CLOSE_FLAG_POSTQUERY_ATTRIB = 0x0001

_CREATE = struct.Struct("<HBBIQQIIIIIHHII")
_CREATE_RESP = struct.Struct("<HBBIQQQQQQII16sII")
_CLOSE = struct.Struct("<HHI16s")
_CLOSE_RESP = struct.Struct("<HHIQQQQQQI")
_IOCTL = struct.Struct("<HHI16sIIIIIIII")
_IOCTL_RESP = struct.Struct("<HHI16sIIIIII")
_NOTIFY = struct.Struct("<HHI16sII")
_NOTIFY_RESP = struct.Struct("<HHI")
_NOTIFY_ENTRY = struct.Struct("<III")
_QUERY_INFO = struct.Struct("<HBBIHHIII16s")
_QUERY_INFO_RESP = struct.Struct("<HHI")
_SET_INFO = struct.Struct("<HBBIHHI16s")
_LOCK = struct.Struct("<HHI16s")
_LOCK_ELEMENT = struct.Struct("<QQII")
_QUERY_DIR = struct.Struct("<HBBI16sHHI")
_QUERY_DIR_RESP = struct.Struct("<HHI")
_RESUME_KEY = struct.Struct("<24sI4x")
_COPYCHUNK_HEAD = struct.Struct("<24sII")
_COPYCHUNK = struct.Struct("<QQII")
_COPYCHUNK_RESP = struct.Struct("<III")

CREATE_REQUEST_SIZE = _CREATE.size          # fixed parts, for callers that count
IOCTL_REQUEST_SIZE = _IOCTL.size


def _message(message):
    """Accept a Reply (its ``message``) or the raw message buffer."""
    return getattr(message, "message", message)


def _pad8(n: int) -> int:
    return -n % 8


def _fixed(message, layout: struct.Struct, what: str) -> tuple:
    if len(message) < HEADER_SIZE + layout.size:
        raise MalformedMessage(f"{what} response truncated ({len(message)} bytes)")
    return layout.unpack_from(message, HEADER_SIZE)


def _buffer(message, offset: int, length: int, what: str) -> memoryview:
    """Bounds-checked view of a buffer at ``offset`` (from the header start)."""
    if length == 0:
        return memoryview(b"")
    if offset < HEADER_SIZE or offset + length > len(message):
        raise MalformedMessage(f"{what} out of bounds (offset {offset}, length {length}, "
                               f"message {len(message)} bytes)")
    return memoryview(message)[offset:offset + length]


def _file_id(file_id) -> bytes:
    file_id = bytes(file_id)
    if len(file_id) != 16:
        raise ValueError(f"a FileId is 16 bytes, not {len(file_id)}")
    return file_id


def _u32(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} out of range: {value}")
    return value


# --- TREE_CONNECT / TREE_DISCONNECT ([MS-SMB2] 2.2.9 - 2.2.12) ------------------------

_TREE_CONNECT = struct.Struct("<HHHH")
_TREE_CONNECT_RESP = struct.Struct("<HBBIII")
_EMPTY_REQUEST = b"\x04\x00\x00\x00"       # StructureSize 4, Reserved


def tree_connect_request(server: str, share: str) -> Tuple[bytes, bytes]:
    """TREE_CONNECT ([MS-SMB2] 2.2.9) of ``\\\\server\\share``."""
    path = f"\\\\{server}\\{share}".encode("utf-16-le")
    return _TREE_CONNECT.pack(9, 0, HEADER_SIZE + _TREE_CONNECT.size, len(path)), path


class TreeConnectResponse(Record):
    """The fields of a TREE_CONNECT response."""

    __slots__ = ("share_type", "share_flags", "capabilities", "maximal_access")

    def __init__(self, share_type: int, share_flags: int, capabilities: int,
                 maximal_access: int) -> None:
        self.share_type = share_type
        self.share_flags = share_flags
        self.capabilities = capabilities
        self.maximal_access = maximal_access


def parse_tree_connect_response(message) -> TreeConnectResponse:
    """The TREE_CONNECT response body (the TreeId is in the header)."""
    _s, share_type, _r, flags, caps, access = _fixed(_message(message), _TREE_CONNECT_RESP,
                                                     "TREE_CONNECT")
    return TreeConnectResponse(share_type, flags, caps, access)


def tree_disconnect_request() -> Tuple[bytes]:
    """TREE_DISCONNECT ([MS-SMB2] 2.2.11)."""
    return (_EMPTY_REQUEST,)


# --- CREATE / CLOSE --------------------------------------------------------------------

def create_request(path: str, *, desired_access: int, disposition: int,
                   create_options: int = 0, share_access: int = 7,
                   file_attributes: int = 0, oplock_level: int = 0,
                   contexts: bytes = b"") -> Tuple[bytes, ...]:
    """CREATE ([MS-SMB2] 2.2.13).  ``path`` is share-relative with
    backslashes ("" is the share root; a pipe name on IPC$).  ``contexts``:
    already packed create contexts (8-byte aligned chain)."""
    name = utf_16_le_encode(path)[0]      # str.encode looks the codec up by name each time
    name_off = HEADER_SIZE + _CREATE.size
    buffer = name or b"\0"
    ctx_off = 0
    if contexts:
        buffer += bytes(_pad8(len(buffer)))
        ctx_off = name_off + len(buffer)
    body = _CREATE.pack(57, 0, oplock_level, IMPERSONATION_IMPERSONATION, 0, 0,
                        desired_access, file_attributes, share_access, disposition,
                        create_options, name_off, len(name), ctx_off, len(contexts))
    return (body, buffer, contexts) if contexts else (body, buffer)


class CreateResponse(Record):
    """The fields of a CREATE response."""

    __slots__ = ("file_id", "oplock_level", "create_action", "creation_time", "last_access_time",
                 "last_write_time", "change_time", "allocation_size", "end_of_file",
                 "file_attributes", "contexts")

    def __init__(self, file_id: bytes, oplock_level: int, create_action: int, creation_time: int,
                 last_access_time: int, last_write_time: int, change_time: int,
                 allocation_size: int, end_of_file: int, file_attributes: int,
                 contexts: bytes = b"") -> None:
        self.file_id = file_id
        self.oplock_level = oplock_level
        self.create_action = create_action
        self.creation_time = creation_time
        self.last_access_time = last_access_time
        self.last_write_time = last_write_time
        self.change_time = change_time
        self.allocation_size = allocation_size
        self.end_of_file = end_of_file
        self.file_attributes = file_attributes
        self.contexts = contexts


def parse_create_response(message) -> CreateResponse:
    message = _message(message)
    (_s, level, _f, action, ctime, atime, wtime, chtime, alloc, eof, attrs, _r, fid,
     ctx_off, ctx_len) = _fixed(message, _CREATE_RESP, "CREATE")
    contexts = bytes(_buffer(message, ctx_off, ctx_len, "CREATE contexts"))
    return CreateResponse(bytes(fid), level, action, ctime, atime, wtime, chtime, alloc, eof,
                          attrs, contexts)


def close_request(file_id, *, postquery: bool = False) -> Tuple[bytes]:
    """CLOSE ([MS-SMB2] 2.2.15); ``postquery``: the response carries the
    file's final attributes."""
    return (_CLOSE.pack(24, CLOSE_FLAG_POSTQUERY_ATTRIB if postquery else 0, 0,
                        _file_id(file_id)),)


class CloseResponse(FileState):
    """With CLOSE_FLAG_POSTQUERY_ATTRIB in ``flags`` the file's final state
    (else zeros)."""

    __slots__ = ("flags",)

    def __init__(self, creation_time: int, last_access_time: int, last_write_time: int,
                 change_time: int, allocation_size: int, end_of_file: int, file_attributes: int,
                 flags: int = 0) -> None:
        super().__init__(creation_time, last_access_time, last_write_time, change_time,
              allocation_size, end_of_file, file_attributes)
        self.flags = flags


def parse_close_response(message) -> CloseResponse:
    (_s, flags, _r, ctime, atime, wtime, chtime, alloc, eof,
     attrs) = _fixed(_message(message), _CLOSE_RESP, "CLOSE")
    return CloseResponse(ctime, atime, wtime, chtime, alloc, eof, attrs, flags)


# --- IOCTL ----------------------------------------------------------------------------

def ioctl_request(ctl_code: int, file_id, input: bytes = b"", *, max_output: int = 0,
                  max_input: int = 0, fsctl: bool = True) -> Tuple[bytes, ...]:
    """IOCTL ([MS-SMB2] 2.2.31).  ``file_id``: 16 bytes (b"\\xff" * 16 for
    the FSCTLs that need no handle).  ``max_output``: the largest output the
    server may return (the client charges credits for it)."""
    _u32(max_output, "max_output")
    in_off = HEADER_SIZE + _IOCTL.size if input else 0
    body = _IOCTL.pack(57, 0, _u32(ctl_code, "ctl_code"), _file_id(file_id), in_off,
                       len(input), max_input, 0, 0, max_output,
                       IOCTL_IS_FSCTL if fsctl else 0, 0)
    return (body, input) if input else (body,)


class IoctlResponse(Record):
    """The fields of an IOCTL response."""

    __slots__ = ("ctl_code", "file_id", "input", "output")

    def __init__(self, ctl_code: int, file_id: bytes, input: bytes, output: bytes) -> None:
        self.ctl_code = ctl_code
        self.file_id = file_id
        self.input = input
        self.output = output


def parse_ioctl_response(message) -> IoctlResponse:
    """Also valid for an error response that carries an IOCTL body (e.g. the
    copy-chunk limits with STATUS_INVALID_PARAMETER); an SMB2 ERROR body
    (9 bytes) raises MalformedMessage."""
    message = _message(message)
    (size, _r, ctl, fid, in_off, in_count, out_off, out_count, _flags,
     _r2) = _fixed(message, _IOCTL_RESP, "IOCTL")
    if size != 49:
        raise MalformedMessage(f"IOCTL response StructureSize {size}")
    return IoctlResponse(ctl, bytes(fid),
                         bytes(_buffer(message, in_off, in_count, "IOCTL input")),
                         bytes(_buffer(message, out_off, out_count, "IOCTL output")))


def parse_resume_key(output: bytes) -> bytes:
    """The 24-byte ResumeKey from FSCTL_SRV_REQUEST_RESUME_KEY's output."""
    if len(output) < _RESUME_KEY.size:
        raise MalformedMessage(f"resume key output truncated ({len(output)} bytes)")
    return bytes(_RESUME_KEY.unpack_from(output)[0])


def copychunk_input(resume_key: bytes, chunks: Sequence[Tuple[int, int, int]]) -> bytes:
    """SRV_COPYCHUNK_COPY ([MS-SMB2] 2.2.31.1): ``chunks`` are
    (source offset, target offset, length)."""
    if len(resume_key) != 24:
        raise ValueError("a resume key is 24 bytes")
    return _COPYCHUNK_HEAD.pack(bytes(resume_key), len(chunks), 0) + b"".join(
        _COPYCHUNK.pack(src, dst, _u32(length, "chunk length"), 0)
        for src, dst, length in chunks)


class CopyChunkResult(Record):
    """SRV_COPYCHUNK_RESPONSE: on success, what was written; with
    STATUS_INVALID_PARAMETER, the server's limits (chunks_written = max
    chunk count, chunk_bytes_written = max chunk size, total_bytes_written =
    max total size per request)."""

    __slots__ = ("chunks_written", "chunk_bytes_written", "total_bytes_written")

    def __init__(self, chunks_written: int, chunk_bytes_written: int,
                 total_bytes_written: int) -> None:
        self.chunks_written = chunks_written
        self.chunk_bytes_written = chunk_bytes_written
        self.total_bytes_written = total_bytes_written


def parse_copychunk_output(output: bytes) -> CopyChunkResult:
    if len(output) < _COPYCHUNK_RESP.size:
        raise MalformedMessage(f"copychunk output truncated ({len(output)} bytes)")
    return CopyChunkResult(*_COPYCHUNK_RESP.unpack_from(output))


# --- CHANGE_NOTIFY ------------------------------------------------------------------

def change_notify_request(file_id, *, completion_filter: int = FILE_NOTIFY_CHANGE_ALL,
                          output_length: int = 65536,
                          watch_tree: bool = False) -> Tuple[bytes]:
    """CHANGE_NOTIFY ([MS-SMB2] 2.2.35) on a directory handle.  It completes
    when something changes (a long poll: give the task ``long_poll=True``)."""
    return (_NOTIFY.pack(32, WATCH_TREE if watch_tree else 0,
                         _u32(output_length, "output_length"), _file_id(file_id),
                         completion_filter, 0),)


class NotifyEntry(Record):
    """One entry of a CHANGE_NOTIFY response."""

    __slots__ = ("action", "name")

    def __init__(self, action: int, name: str) -> None:
        self.action = action
        self.name = name    # relative to the watched directory, with backslashes


def parse_change_notify_response(message) -> List[NotifyEntry]:
    """The FILE_NOTIFY_INFORMATION list ([MS-FSCC] 2.4.42).  An empty list
    for STATUS_NOTIFY_ENUM_DIR (changes were lost: rescan)."""
    message = _message(message)
    _s, off, length = _fixed(message, _NOTIFY_RESP, "CHANGE_NOTIFY")
    buf = _buffer(message, off, length, "CHANGE_NOTIFY output")
    return parse_notify_information(buf)


def parse_notify_information(buf) -> List[NotifyEntry]:
    entries: List[NotifyEntry] = []
    pos, end = 0, len(buf)
    while pos < end:
        if pos + _NOTIFY_ENTRY.size > end:
            raise MalformedMessage("FILE_NOTIFY_INFORMATION truncated")
        nxt, action, name_len = _NOTIFY_ENTRY.unpack_from(buf, pos)
        start = pos + _NOTIFY_ENTRY.size
        if start + name_len > end or name_len % 2:
            raise MalformedMessage("FILE_NOTIFY_INFORMATION name out of bounds")
        entries.append(NotifyEntry(action, bytes(buf[start:start + name_len])
                                   .decode("utf-16-le", "replace")))
        if not nxt:
            break
        if nxt % 4 or nxt < _NOTIFY_ENTRY.size:
            raise MalformedMessage(f"bad NextEntryOffset {nxt}")
        pos += nxt
        if len(entries) > 1 << 16:
            raise MalformedMessage("FILE_NOTIFY_INFORMATION list too long")
    return entries


# --- QUERY_INFO / SET_INFO ----------------------------------------------------------

def query_info_request(file_id, info_type: int, info_class: int, *,
                       output_length: int = 4096, additional_information: int = 0,
                       flags: int = 0, input: bytes = b"") -> Tuple[bytes, ...]:
    """QUERY_INFO ([MS-SMB2] 2.2.37)."""
    in_off = HEADER_SIZE + _QUERY_INFO.size if input else 0
    body = _QUERY_INFO.pack(41, info_type, info_class, _u32(output_length, "output_length"),
                            in_off, 0, len(input), additional_information, flags,
                            _file_id(file_id))
    return (body, input) if input else (body,)


def parse_query_info_response(message) -> bytes:
    """The OutputBuffer of a QUERY_INFO response."""
    return bytes(query_info_output(message))


def query_info_output(message) -> memoryview:
    """The OutputBuffer of a QUERY_INFO response as a view (no copy)."""
    message = _message(message)
    _s, off, length = _fixed(message, _QUERY_INFO_RESP, "QUERY_INFO")
    return _buffer(message, off, length, "QUERY_INFO output")


def set_info_request(file_id, info_type: int, info_class: int, data: bytes, *,
                     additional_information: int = 0) -> Tuple[bytes, bytes]:
    """SET_INFO ([MS-SMB2] 2.2.39)."""
    body = _SET_INFO.pack(33, info_type, info_class, len(data), HEADER_SIZE + _SET_INFO.size,
                          0, additional_information, _file_id(file_id))
    return body, bytes(data)


# --- LOCK ---------------------------------------------------------------------------------

def lock_request(file_id, locks: Sequence[Tuple[int, int, int]], *,
                 sequence: int = 0) -> Tuple[bytes, bytes]:
    """LOCK ([MS-SMB2] 2.2.26): ``locks`` are (offset, length, LOCKFLAG_*).
    A lock without LOCKFLAG_FAIL_IMMEDIATELY may wait on the server (a long
    poll)."""
    if not locks:
        raise ValueError("LOCK needs at least one range")
    elements = [_LOCK_ELEMENT.pack(off, length, flags, 0) for off, length, flags in locks]
    # The fixed part (StructureSize 48) already holds the first element.
    return (_LOCK.pack(48, len(locks), sequence & 0xFFFFFFFF, _file_id(file_id)),
            b"".join(elements))


# --- QUERY_DIRECTORY ------------------------------------------------------------------

def query_directory_request(file_id, pattern: str = "*", *,
                            info_class: int = FILE_ID_BOTH_DIRECTORY_INFORMATION,
                            flags: int = 0, file_index: int = 0,
                            output_length: int = 65536) -> Tuple[bytes, bytes]:
    """QUERY_DIRECTORY ([MS-SMB2] 2.2.33)."""
    name = pattern.encode("utf-16-le")
    body = _QUERY_DIR.pack(33, info_class, flags, file_index, _file_id(file_id),
                           HEADER_SIZE + _QUERY_DIR.size, len(name),
                           _u32(output_length, "output_length"))
    return body, name


def parse_query_directory_response(message) -> bytes:
    """The OutputBuffer (a chain of the requested FILE_*_INFORMATION)."""
    message = _message(message)
    _s, off, length = _fixed(message, _QUERY_DIR_RESP, "QUERY_DIRECTORY")
    return bytes(_buffer(message, off, length, "QUERY_DIRECTORY output"))


class DirectoryEntry(Record):
    """One entry of a QUERY_DIRECTORY response."""

    __slots__ = ("name", "file_index", "end_of_file", "allocation_size", "file_attributes",
                 "times", "file_id")

    def __init__(self, name: str, file_index: int, end_of_file: int, allocation_size: int,
                 file_attributes: int, times: Tuple[int, int, int, int] = (0, 0, 0, 0),
                 file_id: int = 0) -> None:
        self.name = name
        self.file_index = file_index
        self.end_of_file = end_of_file
        self.allocation_size = allocation_size
        self.file_attributes = file_attributes
        self.times = times    # c, a, w, change
        self.file_id = file_id    # the on-disk id, for the FILE_ID_* classes


_DIR_COMMON = struct.Struct("<IIQQQQQQII")     # the head shared by the directory classes
_NAME_AFTER = {FILE_DIRECTORY_INFORMATION: 64, FILE_FULL_DIRECTORY_INFORMATION: 68,
               FILE_BOTH_DIRECTORY_INFORMATION: 94, FILE_ID_BOTH_DIRECTORY_INFORMATION: 104,
               FILE_ID_FULL_DIRECTORY_INFORMATION: 80}
_FILE_ID_AT = {FILE_ID_BOTH_DIRECTORY_INFORMATION: 96, FILE_ID_FULL_DIRECTORY_INFORMATION: 72}
_U64 = struct.Struct("<Q")


def parse_directory_entries(buf, info_class: int = FILE_ID_BOTH_DIRECTORY_INFORMATION,
                            limit: Optional[int] = None) -> List[DirectoryEntry]:
    """Entries of a QUERY_DIRECTORY output buffer (with "." and ".."); at
    most ``limit`` of them (an SMB1 FIND reply says how many it holds)."""
    try:
        name_at = _NAME_AFTER[info_class]
    except KeyError:
        raise ValueError(f"cannot parse directory information class {info_class}") from None
    id_at = _FILE_ID_AT.get(info_class, 0)
    out: List[DirectoryEntry] = []
    pos, end = 0, len(buf)
    while end and (limit is None or len(out) < limit):
        if pos + name_at > end:
            raise MalformedMessage("directory entry truncated")
        (nxt, index, ctime, atime, wtime, chtime, eof, alloc, attrs,
         name_len) = _DIR_COMMON.unpack_from(buf, pos)
        start = pos + name_at
        if start + name_len > end:
            raise MalformedMessage("directory entry name out of bounds")
        out.append(DirectoryEntry(bytes(buf[start:start + name_len]).decode("utf-16-le",
                                                                            "replace"),
                                  index, eof, alloc, attrs, (ctime, atime, wtime, chtime),
                                  _U64.unpack_from(buf, pos + id_at)[0] if id_at else 0))
        if not nxt:
            break
        if nxt < name_at:
            raise MalformedMessage(f"bad NextEntryOffset {nxt}")
        pos += nxt
    return out


__all__ = [name for name in list(globals()) if name.isupper() and not name.startswith("_")] + [
    "Command", "MalformedMessage", "tree_connect_request", "TreeConnectResponse",
    "parse_tree_connect_response", "tree_disconnect_request", "create_request",
    "CreateResponse", "parse_create_response", "close_request", "CloseResponse",
    "parse_close_response", "ioctl_request", "IoctlResponse", "parse_ioctl_response",
    "parse_resume_key", "copychunk_input", "CopyChunkResult", "parse_copychunk_output",
    "change_notify_request", "NotifyEntry", "parse_change_notify_response",
    "parse_notify_information", "query_info_request", "parse_query_info_response",
    "set_info_request", "lock_request", "query_directory_request",
    "parse_query_directory_response", "DirectoryEntry", "parse_directory_entries",
]
