"""SMB2/3 message codecs ([MS-SMB2] 2.2): the 64-byte header (sync and
async forms), NEGOTIATE with 3.1.1 negotiate contexts, ECHO and CANCEL.

Requests are built as (header, body) pairs of separate buffers so a payload
is never concatenated; responses are parsed from one buffer with
``memoryview`` slices.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

from ..namedint import NamedInt, named_ints
from ..records import Record
from .status import NtStatus

PROTOCOL_ID = b"\xfeSMB"
TRANSFORM_PROTOCOL_ID = b"\xfdSMB"
COMPRESSION_PROTOCOL_ID = b"\xfcSMB"
HEADER_SIZE = 64
UNSOLICITED_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF


@named_ints
class Command(NamedInt):
    NEGOTIATE = 0x00
    SESSION_SETUP = 0x01
    LOGOFF = 0x02
    TREE_CONNECT = 0x03
    TREE_DISCONNECT = 0x04
    CREATE = 0x05
    CLOSE = 0x06
    FLUSH = 0x07
    READ = 0x08
    WRITE = 0x09
    LOCK = 0x0A
    IOCTL = 0x0B
    CANCEL = 0x0C
    ECHO = 0x0D
    QUERY_DIRECTORY = 0x0E
    CHANGE_NOTIFY = 0x0F
    QUERY_INFO = 0x10
    SET_INFO = 0x11
    OPLOCK_BREAK = 0x12


class Flags:
    """The header's Flags bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    SERVER_TO_REDIR = 0x00000001
    ASYNC_COMMAND = 0x00000002
    RELATED_OPERATIONS = 0x00000004
    SIGNED = 0x00000008
    PRIORITY_MASK = 0x00000070
    DFS_OPERATIONS = 0x10000000
    REPLAY_OPERATION = 0x20000000


# Plain ints for the hot path (IntFlag arithmetic is slow).
FLAG_SERVER_TO_REDIR = 0x00000001
FLAG_ASYNC_COMMAND = 0x00000002
FLAG_RELATED_OPERATIONS = 0x00000004
FLAG_SIGNED = 0x00000008
FLAG_REPLAY_OPERATION = 0x20000000


class Capabilities:
    """NEGOTIATE Capabilities bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    DFS = 0x01
    LEASING = 0x02
    LARGE_MTU = 0x04
    MULTI_CHANNEL = 0x08
    PERSISTENT_HANDLES = 0x10
    DIRECTORY_LEASING = 0x20
    ENCRYPTION = 0x40


class SecurityMode:
    """NEGOTIATE SecurityMode bits, as plain ints (an IntFlag class costs every start ~1 M
    instructions to build; nothing needs the flags' names)."""

    SIGNING_ENABLED = 0x1
    SIGNING_REQUIRED = 0x2


# ProtocolId, StructureSize, CreditCharge, Status|ChannelSequence, Command,
# Credits, Flags, NextCommand, MessageId, (Reserved, TreeId)|AsyncId,
# SessionId, Signature
SYNC_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")
ASYNC_HEADER = struct.Struct("<4sHHIHHIIQQQ16s")
# Fast-path view of the fields the demultiplexer needs first.
_ROUTE = struct.Struct("<4x2xHIHHIIQ")          # charge, status, cmd, credits, flags, next, mid
_ASYNC_ID = struct.Struct("<Q")
_SESSION_ID = struct.Struct("<Q")
_TREE_ID = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def pack_header(command: int, message_id: int, *, credit_charge: int = 1,
                credit_request: int = 1, flags: int = 0, next_command: int = 0,
                tree_id: int = 0, session_id: int = 0, channel_sequence: int = 0,
                async_id: Optional[int] = None, status: int = 0) -> bytearray:
    """A request (or, with ``flags`` SERVER_TO_REDIR, a response) header."""
    first = status if flags & FLAG_SERVER_TO_REDIR else channel_sequence
    if async_id is not None:
        return bytearray(ASYNC_HEADER.pack(
            PROTOCOL_ID, HEADER_SIZE, credit_charge, first, command, credit_request,
            flags | FLAG_ASYNC_COMMAND, next_command, message_id, async_id,
            session_id, bytes(16)))
    return bytearray(SYNC_HEADER.pack(
        PROTOCOL_ID, HEADER_SIZE, credit_charge, first, command, credit_request,
        flags, next_command, message_id, 0, tree_id, session_id, bytes(16)))


def set_next_command(header: bytearray, offset: int) -> None:
    """NextCommand: where the next element of a compound starts."""
    _U32.pack_into(header, 20, offset)


def add_flags(header: bytearray, flags: int) -> None:
    (current,) = _U32.unpack_from(header, 16)
    _U32.pack_into(header, 16, current | flags)


def clear_flags(header: bytearray, flags: int) -> None:
    (current,) = _U32.unpack_from(header, 16)
    if current & flags:
        _U32.pack_into(header, 16, current & ~flags)


def set_session_id(header: bytearray, session_id: int) -> None:
    _SESSION_ID.pack_into(header, 40, session_id)


class Header(Record):
    """A parsed SMB2 header (response or request)."""

    __slots__ = ("command", "status", "flags", "message_id", "credit_charge", "credits",
                 "next_command", "tree_id", "async_id", "session_id", "signature")

    def __init__(self, command: int, status: int, flags: int, message_id: int,
                 credit_charge: int = 0, credits: int = 0, next_command: int = 0, tree_id: int = 0,
                 async_id: Optional[int] = None, session_id: int = 0,
                 signature: bytes = b"") -> None:
        self.command = command
        self.status = status
        self.flags = flags
        self.message_id = message_id
        self.credit_charge = credit_charge
        self.credits = credits
        self.next_command = next_command
        self.tree_id = tree_id
        self.async_id = async_id
        self.session_id = session_id
        self.signature = signature

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_SERVER_TO_REDIR)

    @property
    def is_async(self) -> bool:
        return bool(self.flags & FLAG_ASYNC_COMMAND)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)


class MalformedMessage(ValueError):
    """An SMB message that cannot be parsed."""


def parse_header(message, offset: int = 0) -> Header:
    """Parse the header of the SMB2 message at ``offset``."""
    if len(message) - offset < HEADER_SIZE:
        raise MalformedMessage(f"SMB2 header truncated ({len(message) - offset} bytes)")
    (proto, size, charge, status, command, credits, flags, nxt, mid,
     word1, word2, session, sig) = SYNC_HEADER.unpack_from(message, offset)
    if proto != PROTOCOL_ID or size != HEADER_SIZE:
        raise MalformedMessage(f"not an SMB2 header: {bytes(proto)!r} size {size}")
    h = Header(command, status, flags, mid, charge, credits, nxt, 0, None, session, sig)
    if flags & FLAG_ASYNC_COMMAND:
        h.async_id = word1 | (word2 << 32)
    else:
        h.tree_id = word2
    return h


def route(message, offset: int = 0) -> Tuple[int, int, int, int, int, int, int]:
    """The demultiplexer's fast path: (credit_charge, status, command,
    credits, flags, next_command, message_id) without building an object."""
    if len(message) - offset < HEADER_SIZE or message[offset:offset + 4] != PROTOCOL_ID:
        raise MalformedMessage("not an SMB2 message")
    return _ROUTE.unpack_from(message, offset)


_FLAGS = struct.Struct("<I")


def flags_of(message, offset: int = 0) -> int:
    """The Flags field of the SMB2 header at ``offset`` (no header object)."""
    return _FLAGS.unpack_from(message, offset + 16)[0]


def async_id(message, offset: int = 0) -> int:
    return _ASYNC_ID.unpack_from(message, offset + 32)[0]


def session_id(message, offset: int = 0) -> int:
    return _SESSION_ID.unpack_from(message, offset + 40)[0]


def split_compound(message) -> List[Tuple[int, int]]:
    """(offset, length) of each message of a (possibly compound) response.
    Each element keeps its trailing padding, as signing requires."""
    parts = []
    offset, total = 0, len(message)
    while True:
        if total - offset < HEADER_SIZE:
            raise MalformedMessage("compound element shorter than a header")
        (nxt,) = _U32.unpack_from(message, offset + 20)
        if nxt == 0:
            parts.append((offset, total - offset))
            return parts
        if nxt < HEADER_SIZE or nxt % 8 or offset + nxt > total:
            raise MalformedMessage(f"bad NextCommand {nxt} at offset {offset}")
        parts.append((offset, nxt))
        offset += nxt
        if len(parts) > 64:
            raise MalformedMessage("compound chain too long")


# --- NEGOTIATE ([MS-SMB2] 2.2.3, 2.2.4) -------------------------------------

@named_ints
class ContextType(NamedInt):
    PREAUTH_INTEGRITY_CAPABILITIES = 0x0001
    ENCRYPTION_CAPABILITIES = 0x0002
    COMPRESSION_CAPABILITIES = 0x0003
    NETNAME_NEGOTIATE_CONTEXT_ID = 0x0005
    TRANSPORT_CAPABILITIES = 0x0006
    RDMA_TRANSFORM_CAPABILITIES = 0x0007
    SIGNING_CAPABILITIES = 0x0008
    POSIX_EXTENSIONS = 0x0100          # SMB3 POSIX extensions (Samba, ksmbd)


HASH_SHA512 = 0x0001
CIPHERS_PREFERRED = (0x0004, 0x0002, 0x0003, 0x0001)   # AES-256-GCM, 128-GCM, 256-CCM, 128-CCM
SIGNING_PREFERRED = (0x0002, 0x0001)                   # AES-GMAC, AES-CMAC

NEGOTIATE_REQUEST = struct.Struct("<HHHHI16sIHH")
NEGOTIATE_RESPONSE = struct.Struct("<HHHH16sIIIIQQHHI")
_CONTEXT_HEADER = struct.Struct("<HHI")


class NegotiateContext(Record):
    """One negotiate context of a 3.1.1 NEGOTIATE (type and raw data)."""

    __slots__ = ("type", "data")

    def __init__(self, type: int, data: bytes) -> None:
        self.type = type
        self.data = data


def _pad8(n: int) -> int:
    return (8 - n % 8) % 8


def pack_negotiate_request(dialects: List[int], *, client_guid: bytes,
                           security_mode: int = SecurityMode.SIGNING_ENABLED,
                           capabilities: int = 0,
                           contexts: Optional[List[NegotiateContext]] = None) -> bytes:
    """The NEGOTIATE request body.  ``contexts`` only when 3.1.1 is offered."""
    if not dialects:
        raise ValueError("no dialects to offer")
    dialect_bytes = struct.pack(f"<{len(dialects)}H", *dialects)
    contexts = contexts or []
    fixed = NEGOTIATE_REQUEST.size
    body = bytearray()
    ctx_offset = 0
    if contexts:
        # Offsets count from the start of the SMB2 header.
        after = HEADER_SIZE + fixed + len(dialect_bytes)
        ctx_offset = after + _pad8(after)
        body += bytes(ctx_offset - after)
        for i, ctx in enumerate(contexts):
            body += _CONTEXT_HEADER.pack(ctx.type, len(ctx.data), 0) + ctx.data
            if i != len(contexts) - 1:
                body += bytes(_pad8(len(ctx.data)))
    return NEGOTIATE_REQUEST.pack(
        36, len(dialects), security_mode, 0, capabilities, client_guid,
        ctx_offset, len(contexts), 0) + dialect_bytes + bytes(body)


def preauth_context(salt: bytes) -> NegotiateContext:
    return NegotiateContext(ContextType.PREAUTH_INTEGRITY_CAPABILITIES,
                            struct.pack("<HHH", 1, len(salt), HASH_SHA512) + salt)


def encryption_context(ciphers=CIPHERS_PREFERRED) -> NegotiateContext:
    return NegotiateContext(ContextType.ENCRYPTION_CAPABILITIES,
                            struct.pack(f"<H{len(ciphers)}H", len(ciphers), *ciphers))


def signing_context(algorithms=SIGNING_PREFERRED) -> NegotiateContext:
    return NegotiateContext(ContextType.SIGNING_CAPABILITIES,
                            struct.pack(f"<H{len(algorithms)}H", len(algorithms), *algorithms))


# The SMB3 POSIX extensions' negotiate context data and CREATE context name.
POSIX_EXTENSIONS_GUID = bytes.fromhex("93AD25509CB411E7B42383DE968BCD7C")


def posix_context() -> NegotiateContext:
    return NegotiateContext(ContextType.POSIX_EXTENSIONS, POSIX_EXTENSIONS_GUID)


class NegotiateResponse(Record):
    """The fields of a NEGOTIATE response."""

    __slots__ = ("security_mode", "dialect_revision", "server_guid", "capabilities",
                 "max_transact_size", "max_read_size", "max_write_size", "system_time",
                 "server_start_time", "security_buffer", "contexts")

    def __init__(self, security_mode: int, dialect_revision: int, server_guid: bytes,
                 capabilities: int, max_transact_size: int, max_read_size: int,
                 max_write_size: int, system_time: int, server_start_time: int,
                 security_buffer: bytes,
                 contexts: Optional[List[NegotiateContext]] = None) -> None:
        self.security_mode = security_mode
        self.dialect_revision = dialect_revision
        self.server_guid = server_guid
        self.capabilities = capabilities
        self.max_transact_size = max_transact_size
        self.max_read_size = max_read_size
        self.max_write_size = max_write_size
        self.system_time = system_time
        self.server_start_time = server_start_time
        self.security_buffer = security_buffer
        self.contexts = [] if contexts is None else contexts


def parse_negotiate_response(message, offset: int = 0) -> NegotiateResponse:
    """Parse the NEGOTIATE response body of the message at ``offset``."""
    body = offset + HEADER_SIZE
    if len(message) < body + NEGOTIATE_RESPONSE.size:
        raise MalformedMessage("NEGOTIATE response truncated")
    (size, sec_mode, dialect, ctx_count, guid, caps, max_trans, max_read,
     max_write, systime, starttime, sb_off, sb_len, ctx_off) = \
        NEGOTIATE_RESPONSE.unpack_from(message, body)
    if size != 65:
        raise MalformedMessage(f"NEGOTIATE response StructureSize {size}")
    security_buffer = _slice(message, offset, sb_off, sb_len, "security buffer")
    contexts = []
    if dialect == 0x0311 and ctx_count:
        pos = offset + ctx_off
        for _ in range(ctx_count):
            if pos + 8 > len(message):
                raise MalformedMessage("negotiate context truncated")
            ctype, dlen, _r = _CONTEXT_HEADER.unpack_from(message, pos)
            data = bytes(message[pos + 8:pos + 8 + dlen])
            if len(data) != dlen:
                raise MalformedMessage("negotiate context data truncated")
            contexts.append(NegotiateContext(ctype, data))
            pos += 8 + dlen + _pad8(dlen)
    return NegotiateResponse(sec_mode, dialect, bytes(guid), caps, max_trans, max_read,
                             max_write, systime, starttime, security_buffer, contexts)


def _slice(message, base: int, off: int, length: int, what: str) -> bytes:
    if length == 0:
        return b""
    start = base + off
    if off < HEADER_SIZE or start + length > len(message):
        raise MalformedMessage(f"{what} out of bounds (offset {off}, length {length})")
    return bytes(message[start:start + length])


def context_values(ctx: NegotiateContext) -> List[int]:
    """The algorithm ids of an encryption, signing or preauth context."""
    data = ctx.data
    if ctx.type == ContextType.PREAUTH_INTEGRITY_CAPABILITIES:
        if len(data) < 4:
            raise MalformedMessage("preauth context truncated")
        count, _salt_len = struct.unpack_from("<HH", data)
        start = 4
    else:
        if len(data) < 2:
            raise MalformedMessage("negotiate context truncated")
        (count,) = struct.unpack_from("<H", data)
        start = 2
    if len(data) < start + 2 * count:
        raise MalformedMessage("negotiate context list truncated")
    return list(struct.unpack_from(f"<{count}H", data, start))


# --- ECHO and CANCEL ([MS-SMB2] 2.2.28, 2.2.30) -----------------------------

ECHO_BODY = b"\x04\x00\x00\x00"
CANCEL_BODY = b"\x04\x00\x00\x00"


def is_pending_interim(status: int, flags: int) -> bool:
    """STATUS_PENDING with the async flag: an interim response."""
    return status == NtStatus.PENDING and bool(flags & FLAG_ASYNC_COMMAND)
