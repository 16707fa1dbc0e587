"""SMB2 CREATE contexts ([MS-SMB2] 2.2.13.2, 2.2.14.2): the chain, leases,
durable handles and the on-disk file id.

Theory of operation
-------------------
A CREATE request carries a chain of (name, data) contexts, each 8-byte
aligned (:func:`pack_create_contexts`; pass the result as ``contexts`` to
:func:`smblayer.proto.commands.create_request`); the response answers
with a chain of its own (:func:`parse_create_contexts` on
``CreateResponse.contexts``).  The payload codecs here build and read the
contexts this package uses:

* ``RqLs`` -- a lease: key and state (v1 on 2.1, v2 with a parent key and
  epoch on 3.x);
* ``DH2Q``/``DH2C`` -- durable handle v2 request and reconnect (3.x, by
  CreateGuid), ``DHnQ``/``DHnC`` -- v1 (2.x, by FileId);
* ``QFid`` -- the server's on-disk file id (the first 8 bytes: st_ino).

Parsing is lenient by design: a context whose name or data lies outside
the chain is skipped, not an error (the open itself succeeded).
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Optional, Sequence, Tuple

__all__ = ["LEASE", "DURABLE_V1_REQUEST", "DURABLE_V1_RECONNECT", "DURABLE_V2_REQUEST",
           "DURABLE_V2_RECONNECT", "QUERY_ON_DISK_ID", "DH2_FLAG_PERSISTENT",
           "pack_create_contexts", "parse_create_contexts", "lease_context", "parse_lease",
           "durable_v2_request", "durable_v2_reconnect", "parse_durable_v2_response",
           "parse_on_disk_id"]

LEASE = b"RqLs"
DURABLE_V1_REQUEST = b"DHnQ"
DURABLE_V1_RECONNECT = b"DHnC"
DURABLE_V2_REQUEST = b"DH2Q"
DURABLE_V2_RECONNECT = b"DH2C"
QUERY_ON_DISK_ID = b"QFid"
DH2_FLAG_PERSISTENT = 0x02

# Next, NameOffset, NameLength, Reserved, DataOffset, DataLength
_CONTEXT = struct.Struct("<IHHHHI")
_LEASE_V1 = struct.Struct("<16sIIQ")       # LeaseKey, LeaseState, LeaseFlags, LeaseDuration
_LEASE_V2 = struct.Struct("<16sIIQ16sHH")  # ... ParentLeaseKey, Epoch, Reserved
_DH2Q = struct.Struct("<II8s16s")          # Timeout, Flags, Reserved, CreateGuid
_DH2Q_RESP = struct.Struct("<II")          # Timeout, Flags
_DH2C = struct.Struct("<16s16sI")          # FileId, CreateGuid, Flags
_U64 = struct.Struct("<Q")


def _pad8(n: int) -> int:
    return -n % 8


def pack_create_contexts(contexts: Sequence[Tuple[bytes, bytes]]) -> bytes:
    """The chain of (name, data) pairs, each on an 8-byte boundary."""
    out = []
    for i, (name, data) in enumerate(contexts):
        data_off = _CONTEXT.size + len(name) + _pad8(_CONTEXT.size + len(name))
        size = data_off + len(data)
        last = i == len(contexts) - 1
        nxt = 0 if last else size + _pad8(size)
        out.append(_CONTEXT.pack(nxt, _CONTEXT.size, len(name), 0,
                                 data_off if data else 0, len(data)))
        out.append(name + bytes(data_off - _CONTEXT.size - len(name)))
        out.append(data)
        if not last:
            out.append(bytes(_pad8(size)))
    return b"".join(out)


def parse_create_contexts(buf, offset: int = 0,
                          length: Optional[int] = None) -> Dict[bytes, memoryview]:
    """{name: data} of the chain at ``buf[offset:offset + length]`` (all of
    ``buf`` by default); a chain that overruns ``buf`` is ignored, and so is
    a context whose name or data lies outside the chain."""
    found: Dict[bytes, memoryview] = {}
    if length is None:
        length = len(buf) - offset
    end = offset + length
    if not length or end > len(buf):
        return found
    view = memoryview(buf)
    pos = offset
    while pos + _CONTEXT.size <= end:
        nxt, name_off, name_len, _r, data_off, data_len = _CONTEXT.unpack_from(buf, pos)
        if pos + name_off + name_len <= end and pos + data_off + data_len <= end:
            name = bytes(view[pos + name_off:pos + name_off + name_len])
            found[name] = view[pos + data_off:pos + data_off + data_len]
        if not nxt:
            break
        pos += nxt
    return found


def lease_context(key: bytes, state: int, v2: bool) -> bytes:
    """The ``RqLs`` data asking lease ``state`` for ``key``."""
    if v2:
        return _LEASE_V2.pack(key, state, 0, 0, bytes(16), 0, 0)
    return _LEASE_V1.pack(key, state, 0, 0)


def parse_lease(data) -> Optional[Tuple[bytes, int]]:
    """(lease key, granted state) of a response's ``RqLs``, None if short."""
    if data is None or len(data) < _LEASE_V1.size:
        return None
    key, state, _flags, _duration = _LEASE_V1.unpack_from(data)
    return bytes(key), state


def durable_v2_request(create_guid: bytes, timeout_ms: int, persistent: bool) -> bytes:
    """The ``DH2Q`` data."""
    return _DH2Q.pack(timeout_ms, DH2_FLAG_PERSISTENT if persistent else 0, bytes(8),
                      create_guid)


def durable_v2_reconnect(file_id: bytes, create_guid: bytes, persistent: bool) -> bytes:
    """The ``DH2C`` data."""
    return _DH2C.pack(file_id, create_guid, DH2_FLAG_PERSISTENT if persistent else 0)


def parse_durable_v2_response(data) -> Optional[Tuple[int, int]]:
    """(timeout ms, flags) of a response's ``DH2Q``, None if short."""
    if data is None or len(data) < _DH2Q_RESP.size:
        return None
    return _DH2Q_RESP.unpack_from(data)


def parse_on_disk_id(data) -> Optional[int]:
    """The file id (first 8 bytes) of a response's ``QFid``, None if short."""
    if data is None or len(data) < _U64.size:
        return None
    return _U64.unpack_from(data)[0]
