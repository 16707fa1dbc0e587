"""SMB2 data-path codecs: READ, WRITE, FLUSH ([MS-SMB2] 2.2.17 - 2.2.22) and
the oplock/lease break notifications and acknowledgements (2.2.23 - 2.2.25).

Theory of operation
-------------------
These run for every block of every file, so they stay as small as a codec
can be: one precompiled struct each, the FileId passed through as the 16
bytes the CREATE response gave (not re-validated), and
:func:`read_response_data` returning a *view* of the reply -- the data is
never copied here.  The conventions are those of
:mod:`smblayer.proto.commands`: a request codec returns the fixed body (a
payload goes separately into the task), a response parser takes the whole
message (header first) and raises :class:`MalformedMessage` on a bad
length or offset.
"""
from __future__ import annotations

import struct

from ..records import Record
from .smb2 import HEADER_SIZE, MalformedMessage

__all__ = ["read_request", "read_response_data", "write_request", "write_response_count",
           "flush_request", "Break", "parse_break_notification", "oplock_break_ack",
           "lease_break_ack", "READ_UNBUFFERED_PADDING", "LEASE_BREAK_ACK_REQUIRED"]

_READ = struct.Struct("<HBBIQ16sIIIHHx")
_READ_RESP = struct.Struct("<HBBIII")
_WRITE = struct.Struct("<HHIQ16sIIHHI")
_WRITE_RESP = struct.Struct("<HHIIHH")
_FLUSH = struct.Struct("<HHI16s")
_OPLOCK_BREAK = struct.Struct("<HBBI16s")           # notification and acknowledgement
_LEASE_BREAK = struct.Struct("<HHI16sIIIII")
_LEASE_ACK = struct.Struct("<HHI16sIQ")

#: READ's Padding: where the data starts in the response (header + 16), so a
#: server can place it aligned
READ_UNBUFFERED_PADDING = 0x50
LEASE_BREAK_ACK_REQUIRED = 0x01
WRITE_DATA_OFFSET = HEADER_SIZE + _WRITE.size


def read_request(file_id: bytes, offset: int, length: int) -> bytes:
    """READ ([MS-SMB2] 2.2.19) of ``length`` bytes at ``offset``."""
    return _READ.pack(49, READ_UNBUFFERED_PADDING, 0, length, offset, file_id, 0, 0, 0, 0, 0)


def read_response_data(message) -> memoryview:
    """The data of a READ response: a view into ``message`` (no copy)."""
    message = getattr(message, "message", message)
    if len(message) < HEADER_SIZE + _READ_RESP.size:
        raise MalformedMessage(f"READ response truncated ({len(message)} bytes)")
    _s, data_off, _r, length, _rem, _r2 = _READ_RESP.unpack_from(message, HEADER_SIZE)
    if length == 0:
        return memoryview(b"")
    if data_off < HEADER_SIZE or data_off + length > len(message):
        raise MalformedMessage(f"READ data out of bounds ({data_off}+{length})")
    return memoryview(message)[data_off:data_off + length]


def write_request(file_id: bytes, offset: int, length: int) -> bytes:
    """WRITE ([MS-SMB2] 2.2.21) of ``length`` bytes at ``offset``: the fixed
    body; the data follows it as the task's next buffer."""
    return _WRITE.pack(49, WRITE_DATA_OFFSET, length, offset, file_id, 0, 0, 0, 0, 0)


def write_response_count(message) -> int:
    """The byte count a WRITE response reports written."""
    message = getattr(message, "message", message)
    if len(message) < HEADER_SIZE + _WRITE_RESP.size:
        raise MalformedMessage(f"WRITE response truncated ({len(message)} bytes)")
    return _WRITE_RESP.unpack_from(message, HEADER_SIZE)[2]


def flush_request(file_id: bytes) -> bytes:
    """FLUSH ([MS-SMB2] 2.2.17)."""
    return _FLUSH.pack(24, 0, 0, file_id)


class Break(Record):
    """A break notification: ``kind`` "oplock" (``key`` the FileId,
    ``new_level`` the oplock level) or "lease" (``key`` the LeaseKey,
    ``new_level`` the new lease state)."""

    __slots__ = ("kind", "key", "new_level", "flags")

    def __init__(self, kind: str, key: bytes, new_level: int, flags: int = 0) -> None:
        self.kind = kind
        self.key = key
        self.new_level = new_level
        self.flags = flags


def parse_break_notification(message) -> Break:
    """An OPLOCK_BREAK notification ([MS-SMB2] 2.2.23.1 oplock, 2.2.23.2 lease)."""
    message = getattr(message, "message", message)
    body = memoryview(message)[HEADER_SIZE:]
    if len(body) >= _LEASE_BREAK.size and body[0] == 44:
        (_s, _epoch, flags, key, _current, new_state, _reason, _am,
         _sm) = _LEASE_BREAK.unpack_from(body)
        return Break("lease", bytes(key), new_state, flags)
    if len(body) >= _OPLOCK_BREAK.size and body[0] == 24:
        _s, level, _r, _r2, fid = _OPLOCK_BREAK.unpack_from(body)
        return Break("oplock", bytes(fid), level)
    raise MalformedMessage(f"unknown OPLOCK_BREAK notification ({len(body)} bytes)")


def oplock_break_ack(file_id: bytes, new_level: int) -> bytes:
    """Oplock break acknowledgement ([MS-SMB2] 2.2.24.1)."""
    return _OPLOCK_BREAK.pack(24, new_level, 0, 0, file_id)


def lease_break_ack(lease_key: bytes, new_state: int) -> bytes:
    """Lease break acknowledgement ([MS-SMB2] 2.2.24.2)."""
    return _LEASE_ACK.pack(36, 0, 0, lease_key, new_state, 0)

