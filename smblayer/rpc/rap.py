"""RAP NetShareEnum ([MS-RAP] 3.2.5.1): the SMB1 share list of servers
that do not serve srvsvc, what ``smbclient -L`` falls back to.

Theory of operation
-------------------
One TRANSACTION to ``\\PIPE\\LANMAN`` on IPC$ (no pipe is opened).  The
parameters name the call (opcode 0), its parameter and data descriptors
("WrLeh" / "B13BWz": level 1 share entries) and the buffer size; the reply's
parameters carry a Win32 status, a converter and the entry count, its data
the fixed 20-byte entries (13-byte OEM name, a pad byte, the type, a 32-bit
"pointer" to the remark) followed by the remarks.  A pointer's low 16 bits
minus the converter is the remark's offset in the data.  Strings are OEM
(Samba's "dos charset", CP850 by default).  Built on the public extension
API only (``smblayer.proto.smb1`` codecs, an SmbTask on the tree's client).
"""
from __future__ import annotations

import struct
from typing import List

from ..errors import SmbProtocolError
from ..proto import smb1
from ..proto.smb2 import MalformedMessage
from ..task import SmbTask
from .dcerpc import RpcError
from .srvsvc import ShareInfo

RAP_NET_SHARE_ENUM = 0
_PARAMS = struct.Struct("<H6s7sHH")
_REPLY = struct.Struct("<HHHH")
_ENTRY = struct.Struct("<13sxHI")
_BUFFER = 0xFFE0
_OEM = "cp850"
ERROR_MORE_DATA = 234


def net_share_enum_request() -> bytes:
    """The parameters of NetShareEnum at level 1."""
    return _PARAMS.pack(RAP_NET_SHARE_ENUM, b"WrLeh\0", b"B13BWz\0", 1, _BUFFER)


def parse_net_share_enum(params, data) -> List[ShareInfo]:
    """The shares of a NetShareEnum reply; RpcError for a failure status."""
    if len(params) < _REPLY.size:
        raise SmbProtocolError(f"RAP NetShareEnum reply truncated ({len(params)} bytes)")
    status, converter, count, _available = _REPLY.unpack_from(params)
    if status not in (0, ERROR_MORE_DATA):
        raise RpcError(f"RAP NetShareEnum failed: error {status}", status)
    if count * _ENTRY.size > len(data):
        raise SmbProtocolError(f"RAP NetShareEnum: {count} entries in {len(data)} bytes")
    shares = []
    for i in range(count):
        raw_name, stype, pointer = _ENTRY.unpack_from(data, i * _ENTRY.size)
        name = raw_name.split(b"\0", 1)[0].decode(_OEM, "replace")
        offset = (pointer & 0xFFFF) - converter
        comment = ""
        if 0 <= offset < len(data):
            comment = bytes(data[offset:]).split(b"\0", 1)[0].decode(_OEM, "replace")
        shares.append(ShareInfo(name, stype, comment))
    return shares


def rap_share_enum(ipc_tree) -> List[ShareInfo]:
    """Every share, by RAP NetShareEnum on an SMB1 IPC$ tree."""
    body = smb1.pack_transaction((), net_share_enum_request(), name="\\PIPE\\LANMAN",
                                 max_params=_REPLY.size, max_data=_BUFFER)
    task = SmbTask(smb1.Command.TRANSACTION, body, tree=ipc_tree,
                   security=ipc_tree.session, path="\\PIPE\\LANMAN")
    reply = ipc_tree.client.run_task(task)
    try:
        params, data = smb1.parse_transaction_response(reply.message)
    except MalformedMessage as exc:
        raise SmbProtocolError(f"RAP NetShareEnum: {exc}") from None
    return parse_net_share_enum(params, data)
