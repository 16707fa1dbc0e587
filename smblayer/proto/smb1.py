"""SMB1 (CIFS, "NT LM 0.12") codecs ([MS-CIFS] 2.2): the 32-byte header,
the multi-protocol NEGOTIATE (negprot) and ECHO.

An SMB1 message is header + WordCount (1 byte) + words + ByteCount (2) +
bytes.  ``pack_message`` builds the three parts as separate buffers.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Sequence, Tuple

from ..namedint import NamedInt, named_ints
from ..records import Record
from .smb2 import MalformedMessage

PROTOCOL_ID = b"\xffSMB"
HEADER_SIZE = 32

# Protocol, Command, Status, Flags, Flags2, PIDHigh, SecurityFeatures(8),
# Reserved, TID, PIDLow, UID, MID
HEADER = struct.Struct("<4sBIBHH8sHHHHH")
_ROUTE = struct.Struct("<4xBIBH")          # command, status, flags, flags2
_MID = struct.Struct("<H")
_UID = struct.Struct("<H")


@named_ints
class Command(NamedInt):
    CREATE_DIRECTORY = 0x00
    DELETE_DIRECTORY = 0x01
    CLOSE = 0x04
    FLUSH = 0x05
    DELETE = 0x06
    RENAME = 0x07
    QUERY_INFORMATION = 0x08
    ECHO = 0x2B
    LOCKING_ANDX = 0x24
    TRANSACTION = 0x25
    READ_ANDX = 0x2E
    WRITE_ANDX = 0x2F
    TRANSACTION2 = 0x32
    FIND_CLOSE2 = 0x34
    TREE_DISCONNECT = 0x71
    NEGOTIATE = 0x72
    SESSION_SETUP_ANDX = 0x73
    LOGOFF_ANDX = 0x74
    TREE_CONNECT_ANDX = 0x75
    NT_TRANSACT = 0xA0
    NT_CREATE_ANDX = 0xA2
    NT_CANCEL = 0xA4
    NO_ANDX_COMMAND = 0xFF


class Flags:
    """The header's Flags bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    CASE_INSENSITIVE = 0x08
    CANONICALIZED_PATHS = 0x10
    REPLY = 0x80


class Flags2:
    """The header's Flags2 bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    LONG_NAMES = 0x0001
    EAS = 0x0002
    SMB_SECURITY_SIGNATURE = 0x0004
    IS_LONG_NAME = 0x0040
    EXTENDED_SECURITY = 0x0800
    DFS = 0x1000
    NT_STATUS = 0x4000
    UNICODE = 0x8000


class Capabilities:
    """NEGOTIATE Capabilities bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    RAW_MODE = 0x00000001
    MPX_MODE = 0x00000002
    UNICODE = 0x00000004
    LARGE_FILES = 0x00000008
    NT_SMBS = 0x00000010
    RPC_REMOTE_APIS = 0x00000020
    STATUS32 = 0x00000040
    LEVEL_II_OPLOCKS = 0x00000080
    LOCK_AND_READ = 0x00000100
    NT_FIND = 0x00000200
    DFS = 0x00001000
    INFOLEVEL_PASSTHRU = 0x00002000
    LARGE_READX = 0x00004000
    LARGE_WRITEX = 0x00008000
    UNIX = 0x00800000
    EXTENDED_SECURITY = 0x80000000


DEFAULT_FLAGS2 = (Flags2.LONG_NAMES | Flags2.NT_STATUS | Flags2.UNICODE
                  | Flags2.EXTENDED_SECURITY | Flags2.IS_LONG_NAME)
CLIENT_CAPABILITIES = (Capabilities.UNICODE | Capabilities.LARGE_FILES | Capabilities.NT_SMBS
                       | Capabilities.STATUS32 | Capabilities.LEVEL_II_OPLOCKS
                       | Capabilities.NT_FIND | Capabilities.LARGE_READX
                       | Capabilities.LARGE_WRITEX | Capabilities.EXTENDED_SECURITY)

NT_LM_DIALECT = "NT LM 0.12"
SMB2_002_DIALECT = "SMB 2.002"
SMB2_WILDCARD_DIALECT = "SMB 2.???"


#: the PID pack_header puts in every request (LOCKING_ANDX ranges name it)
DEFAULT_PID = 0xFEFF


def pack_header(command: int, mid: int, *, tid: int = 0, uid: int = 0, pid: int = DEFAULT_PID,
                flags: int = Flags.CASE_INSENSITIVE | Flags.CANONICALIZED_PATHS,
                flags2: int = DEFAULT_FLAGS2, status: int = 0) -> bytearray:
    return bytearray(HEADER.pack(PROTOCOL_ID, command, status, flags, flags2,
                                 (pid >> 16) & 0xFFFF, bytes(8), 0, tid, pid & 0xFFFF,
                                 uid, mid))


def set_uid(header: bytearray, uid: int) -> None:
    """The UID field of a packed header (a session's id, set at send time)."""
    _UID.pack_into(header, 28, uid)


def pack_params(words: bytes, data: bytes = b"") -> Tuple[bytes, bytes]:
    """WordCount+words and ByteCount+data, the two halves after the header."""
    if len(words) % 2:
        raise ValueError("SMB1 parameter words must be an even number of bytes")
    return bytes([len(words) // 2]) + words, struct.pack("<H", len(data)) + data


class Header(Record):
    """The fields of an SMB1 header."""

    __slots__ = ("command", "status", "flags", "flags2", "tid", "pid", "uid", "mid", "signature")

    def __init__(self, command: int, status: int, flags: int, flags2: int, tid: int, pid: int,
                 uid: int, mid: int, signature: bytes = b"") -> None:
        self.command = command
        self.status = status
        self.flags = flags
        self.flags2 = flags2
        self.tid = tid
        self.pid = pid
        self.uid = uid
        self.mid = mid
        self.signature = signature

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flags.REPLY)


def parse_header(message) -> Header:
    if len(message) < HEADER_SIZE:
        raise MalformedMessage(f"SMB1 header truncated ({len(message)} bytes)")
    (proto, cmd, status, flags, flags2, pid_high, sig, _r, tid, pid_low, uid,
     mid) = HEADER.unpack_from(message)
    if proto != PROTOCOL_ID:
        raise MalformedMessage(f"not an SMB1 header: {bytes(proto)!r}")
    return Header(cmd, status, flags, flags2, tid, (pid_high << 16) | pid_low, uid, mid,
                  bytes(sig))


def route(message) -> Tuple[int, int, int, int, int]:
    """(command, status, flags, flags2, mid) for the demultiplexer."""
    if len(message) < HEADER_SIZE or message[:4] != PROTOCOL_ID:
        raise MalformedMessage("not an SMB1 message")
    cmd, status, flags, flags2 = _ROUTE.unpack_from(message)
    return cmd, status, flags, flags2, _MID.unpack_from(message, 30)[0]


def parse_params(message, offset: int = HEADER_SIZE) -> Tuple[memoryview, memoryview]:
    """(words, data) of the SMB1 message body at ``offset``; bounds checked."""
    view = memoryview(message)
    if len(view) < offset + 3:
        raise MalformedMessage("SMB1 parameter block truncated")
    wc = view[offset]
    words_end = offset + 1 + 2 * wc
    if len(view) < words_end + 2:
        raise MalformedMessage("SMB1 words truncated")
    (bc,) = struct.unpack_from("<H", view, words_end)
    data = view[words_end + 2:words_end + 2 + bc]
    if len(data) != bc:
        # Some servers send a ByteCount larger than the data for large reads.
        data = view[words_end + 2:]
    return view[offset + 1:words_end], data


# --- NEGOTIATE ([MS-CIFS] 2.2.4.52) ----------------------------------------

def pack_negotiate(dialects: List[str]) -> Tuple[bytes, bytes]:
    data = b"".join(b"\x02" + d.encode("ascii") + b"\x00" for d in dialects)
    return pack_params(b"", data)


NT_NEGOTIATE_WORDS = struct.Struct("<HBHHIIIIQhB")


class NegotiateResponse(Record):
    """The fields of an SMB1 NEGOTIATE response."""

    __slots__ = ("dialect_index", "security_mode", "max_mpx_count", "max_number_vcs",
                 "max_buffer_size", "max_raw_size", "session_key", "capabilities", "system_time",
                 "server_time_zone", "challenge", "server_guid", "security_blob")

    def __init__(self, dialect_index: int, security_mode: int = 0, max_mpx_count: int = 0,
                 max_number_vcs: int = 0, max_buffer_size: int = 0, max_raw_size: int = 0,
                 session_key: int = 0, capabilities: int = 0, system_time: int = 0,
                 server_time_zone: int = 0, challenge: bytes = b"", server_guid: bytes = b"",
                 security_blob: bytes = b"") -> None:
        self.dialect_index = dialect_index
        self.security_mode = security_mode
        self.max_mpx_count = max_mpx_count
        self.max_number_vcs = max_number_vcs
        self.max_buffer_size = max_buffer_size
        self.max_raw_size = max_raw_size
        self.session_key = session_key
        self.capabilities = capabilities
        self.system_time = system_time
        self.server_time_zone = server_time_zone
        self.challenge = challenge
        self.server_guid = server_guid
        self.security_blob = security_blob


def parse_negotiate_response(message) -> NegotiateResponse:
    words, data = parse_params(message)
    if len(words) < 2:
        raise MalformedMessage("SMB1 NEGOTIATE response without a dialect index")
    (index,) = struct.unpack_from("<H", words)
    if len(words) != NT_NEGOTIATE_WORDS.size:
        return NegotiateResponse(index)
    (index, sec_mode, mpx, vcs, max_buf, max_raw, skey, caps, systime, tz,
     chal_len) = NT_NEGOTIATE_WORDS.unpack_from(words)
    resp = NegotiateResponse(index, sec_mode, mpx, vcs, max_buf, max_raw, skey, caps,
                             systime, tz)
    if caps & Capabilities.EXTENDED_SECURITY:
        if len(data) < 16:
            raise MalformedMessage("SMB1 NEGOTIATE response without a server GUID")
        resp.server_guid = bytes(data[:16])
        resp.security_blob = bytes(data[16:])
    else:
        resp.challenge = bytes(data[:chal_len])
    return resp


# --- ECHO ([MS-CIFS] 2.2.4.39) ----------------------------------------------

def pack_echo(data: bytes = b"", count: int = 1) -> Tuple[bytes, bytes]:
    return pack_params(struct.pack("<H", count), data)


def pack_nt_cancel() -> Tuple[bytes, bytes]:
    return pack_params(b"")


# --- TREE_CONNECT_ANDX / TREE_DISCONNECT ([MS-CIFS] 2.2.4.55, 2.2.4.51; [MS-SMB] 2.2.4.7) --
_TREE_CONNECT_ANDX = struct.Struct("<BBHHH")      # AndX, Reserved, Offset, Flags, PasswordLength
_TREE_CONNECT_ANDX_RESPONSE = struct.Struct("<BBHH")   # AndX, Reserved, Offset, OptionalSupport
TREE_CONNECT_ANDX_EXTENDED_RESPONSE = 0x0008
SMB_SHARE_IS_IN_DFS = 0x0002


def pack_tree_connect_andx(server: str, share: str) -> Tuple[bytes, bytes]:
    """TREE_CONNECT_ANDX of ``\\\\SERVER\\SHARE`` (any service, no password:
    the session authenticates)."""
    path = f"\\\\{server}\\{share.upper()}\0".encode("utf-16-le")
    words = _TREE_CONNECT_ANDX.pack(0xFF, 0, 0, TREE_CONNECT_ANDX_EXTENDED_RESPONSE, 1)
    # Password (one NUL), then the Unicode path (2-byte aligned), then the service.
    return pack_params(words, b"\0" + path + b"?????\0")


def parse_tree_connect_andx(message) -> int:
    """OptionalSupport of a TREE_CONNECT_ANDX response (0 when the server
    sent none)."""
    try:
        words, _data = parse_params(message)
    except ValueError:
        return 0
    if len(words) < _TREE_CONNECT_ANDX_RESPONSE.size:
        return 0
    return _TREE_CONNECT_ANDX_RESPONSE.unpack_from(words)[3]


def pack_tree_disconnect() -> Tuple[bytes, bytes]:
    return pack_params(b"")


# --- TRANSACTION / TRANSACTION2 ([MS-CIFS] 2.2.4.33, 2.2.4.46) ---------------
# Both share one layout: 14 words and SetupCount setup words; the data area
# holds a name (TRANSACTION: the pipe or mailslot, "\PIPE\"; TRANSACTION2:
# empty), then the parameters and the data, each 4-byte aligned.

_TRANSACTION = struct.Struct("<HHHHBBHIHHHHHBB")
_TRANSACTION_RESPONSE = struct.Struct("<HHHHHHHHHBB")
TRANS_TRANSACT_NMPIPE = 0x0026           # [MS-CIFS] 2.2.5.6
PIPE_NAME = "\\PIPE\\"


def pack_transaction(setup: Sequence[int], params: bytes = b"", data: bytes = b"", *,
                     name: str = "", max_params: int = 0,
                     max_data: int = 0) -> Tuple[bytes, bytes]:
    """WordCount+words and ByteCount+bytes of a one-part TRANSACTION or
    TRANSACTION2 request (Unicode ``name``; the caller picks the command)."""
    words_size = _TRANSACTION.size + 2 * len(setup)
    pos = HEADER_SIZE + 1 + words_size + 2
    area = bytearray(pos % 2)                     # the Unicode name at an even offset
    area += (name + "\0").encode("utf-16-le")
    area += bytes(-(pos + len(area)) % 4)
    param_offset = pos + len(area)
    area += params
    area += bytes(-(pos + len(area)) % 4) if data else b""
    data_offset = pos + len(area) if data else 0
    area += data
    words = _TRANSACTION.pack(len(params), len(data), max_params, max_data, 0, 0, 0, 0, 0,
                              len(params), param_offset, len(data), data_offset,
                              len(setup), 0) + struct.pack(f"<{len(setup)}H", *setup)
    return pack_params(words, bytes(area))


def parse_transaction_response(message) -> Tuple[memoryview, memoryview]:
    """(parameters, data) of a one-part TRANSACTION/TRANSACTION2 response;
    MalformedMessage if truncated, out of bounds or in several parts."""
    words, _data = parse_params(message)
    if len(words) < _TRANSACTION_RESPONSE.size:
        raise MalformedMessage(f"TRANSACTION response words truncated ({len(words)} bytes)")
    (total_params, total_data, _r1, n_params, p_offset, p_disp, n_data, d_offset,
     d_disp, _setup, _r2) = _TRANSACTION_RESPONSE.unpack_from(words)
    if total_params != n_params or total_data != n_data or p_disp or d_disp:
        raise MalformedMessage("TRANSACTION response in several parts (not supported)")
    view = memoryview(message)
    for offset, count in ((p_offset, n_params), (d_offset, n_data)):
        if count and (offset < HEADER_SIZE or offset + count > len(view)):
            raise MalformedMessage(f"TRANSACTION block out of bounds "
                                   f"({offset}+{count} in {len(view)} bytes)")
    return (view[p_offset:p_offset + n_params] if n_params else view[0:0],
            view[d_offset:d_offset + n_data] if n_data else view[0:0])


# --- NT_TRANSACT ([MS-CIFS] 2.2.4.62) ---------------------------------------------
# 19 words (MaxSetupCount, counts and offsets as 32-bit values, Function)
# and SetupCount setup words; parameters and data 4-byte aligned.

_NT_TRANSACT = struct.Struct("<BHIIIIIIIIBH")
_NT_TRANSACT_RESPONSE = struct.Struct("<3sIIIIIIIIB")
NT_TRANSACT_SET_SECURITY_DESC = 0x0003
NT_TRANSACT_QUERY_SECURITY_DESC = 0x0006


def pack_nt_transact(function: int, params: bytes = b"", data: bytes = b"", *,
                     max_params: int = 0, max_data: int = 0) -> Tuple[bytes, bytes]:
    """WordCount+words and ByteCount+bytes of a one-part NT_TRANSACT request."""
    pos = HEADER_SIZE + 1 + _NT_TRANSACT.size + 2
    area = bytearray(-pos % 4)
    param_offset = pos + len(area)
    area += params
    area += bytes(-(pos + len(area)) % 4) if data else b""
    data_offset = pos + len(area) if data else 0
    area += data
    words = _NT_TRANSACT.pack(0, 0, len(params), len(data), max_params, max_data,
                              len(params), param_offset, len(data), data_offset, 0, function)
    return pack_params(words, bytes(area))


def parse_nt_transact_response(message) -> Tuple[memoryview, memoryview]:
    """(parameters, data) of a one-part NT_TRANSACT response; MalformedMessage
    if truncated, out of bounds or in several parts."""
    words, _data = parse_params(message)
    if len(words) < _NT_TRANSACT_RESPONSE.size:
        raise MalformedMessage(f"NT_TRANSACT response words truncated ({len(words)} bytes)")
    (_r, total_params, total_data, n_params, p_offset, p_disp, n_data, d_offset, d_disp,
     _setup) = _NT_TRANSACT_RESPONSE.unpack_from(words)
    if total_params != n_params or total_data != n_data or p_disp or d_disp:
        raise MalformedMessage("NT_TRANSACT response in several parts (not supported)")
    view = memoryview(message)
    for offset, count in ((p_offset, n_params), (d_offset, n_data)):
        if count and (offset < HEADER_SIZE or offset + count > len(view)):
            raise MalformedMessage(f"NT_TRANSACT block out of bounds "
                                   f"({offset}+{count} in {len(view)} bytes)")
    return (view[p_offset:p_offset + n_params] if n_params else view[0:0],
            view[d_offset:d_offset + n_data] if n_data else view[0:0])
