"""SMB1 TRANSACTION codecs (proto.smb1) and the RAP NetShareEnum parser:
layout of the request, bounds of the reply."""
from __future__ import annotations

import struct

import pytest

from smblayer.errors import SmbProtocolError
from smblayer.proto import smb1
from smblayer.proto.smb2 import MalformedMessage
from smblayer.rpc.dcerpc import RpcError
from smblayer.rpc.rap import net_share_enum_request, parse_net_share_enum

pytestmark = pytest.mark.timeout(10)


def test_transact_nmpipe_request_layout():
    words, data = smb1.pack_transaction((smb1.TRANS_TRANSACT_NMPIPE, 0x4001), data=b"PDU",
                                        name=smb1.PIPE_NAME, max_data=4280)
    assert words[0] == 16                                   # 14 words + 2 setup words
    fields = struct.unpack_from("<HHHHBBHIHHHHHBB", words, 1)
    (_tp, total_data, _mp, max_data, *_rest) = fields
    param_count, param_offset, data_count, data_offset, setup_count = fields[9:14]
    assert (total_data, max_data, param_count, data_count, setup_count) == (3, 4280, 0, 3, 2)
    assert struct.unpack_from("<2H", words, 29) == (0x0026, 0x4001)
    message = bytes(smb1.HEADER_SIZE) + words + data
    assert data_offset % 4 == 0 and message[data_offset:data_offset + 3] == b"PDU"
    name_at = smb1.HEADER_SIZE + len(words) + 2
    name_at += name_at % 2
    assert message[name_at:name_at + 14] == "\\PIPE\\\0".encode("utf-16-le")
    assert param_offset <= data_offset


def _response(params: bytes, data: bytes, *, total_data=None, disp=0) -> bytes:
    offset = smb1.HEADER_SIZE + 1 + 20 + 2 + 1
    words = struct.pack("<HHHHHHHHHBB", len(params),
                        len(data) if total_data is None else total_data, 0, len(params),
                        offset, 0, len(data), offset + len(params), disp, 0, 0)
    return bytes(smb1.HEADER_SIZE) + bytes([10]) + words + struct.pack(
        "<H", 1 + len(params) + len(data)) + b"\0" + params + data


def test_transaction_response_parsed_and_bounded():
    params, data = smb1.parse_transaction_response(_response(b"PP", b"DATA"))
    assert bytes(params) == b"PP" and bytes(data) == b"DATA"
    with pytest.raises(MalformedMessage):
        smb1.parse_transaction_response(_response(b"", b"DATA", total_data=9))
    with pytest.raises(MalformedMessage):
        smb1.parse_transaction_response(_response(b"", b"DATA")[:-2])


def test_rap_share_enum():
    assert net_share_enum_request() == (b"\0\0WrLeh\0B13BWz\0" + struct.pack("<HH", 1, 0xFFE0))
    converter = 0x1000
    entries = (struct.pack("<13sxHI", b"share", 0, converter + 40)
               + struct.pack("<13sxHI", b"IPC$", 3, 0))
    data = entries + "café\0".encode("cp850")
    shares = parse_net_share_enum(struct.pack("<HHHH", 0, converter, 2, 2), data)
    assert [(s.name, s.kind, s.comment) for s in shares] == [("share", "Disk", "café"),
                                                            ("IPC$", "IPC", "")]
    with pytest.raises(RpcError):
        parse_net_share_enum(struct.pack("<HHHH", 5, 0, 0, 0), b"")
    with pytest.raises(SmbProtocolError):
        parse_net_share_enum(struct.pack("<HHHH", 0, 0, 3, 3), entries)
