"""Sans-I/O tests of the public extension codecs: smblayer.proto.commands,
the credit sizes of a request, and the DCE/RPC + NDR of smblayer.rpc."""
from __future__ import annotations

import struct

import pytest

from smblayer.proto import commands as c
from smblayer.proto import smb2
from smblayer.proto.credits import credit_charge, request_sizes
from smblayer.rpc import dcerpc, srvsvc
from smblayer.rpc.ndr import NdrReader, NdrWriter

FID = bytes(range(16))


def response(command: int, body: bytes, status: int = 0) -> bytes:
    header = smb2.pack_header(command, 7, flags=smb2.FLAG_SERVER_TO_REDIR, status=status)
    return bytes(header) + body


def test_ioctl_request_layout_and_offsets_from_the_header():
    body, data = c.ioctl_request(c.FSCTL_PIPE_TRANSCEIVE, FID, b"abc", max_output=1000)
    fields = struct.unpack("<HHI16sIIIIIIII", body)
    assert fields[0] == 57 and fields[2] == c.FSCTL_PIPE_TRANSCEIVE and fields[3] == FID
    assert fields[4] == smb2.HEADER_SIZE + 56 and fields[5] == 3     # InputOffset, InputCount
    assert fields[9] == 1000 and fields[10] == c.IOCTL_IS_FSCTL
    assert data == b"abc"
    with pytest.raises(ValueError):
        c.ioctl_request(1, b"short")


def test_ioctl_response_parse_and_bounds():
    out = b"x" * 12
    body = struct.pack("<HHI16sIIIIII", 49, 0, c.FSCTL_SRV_COPYCHUNK_WRITE, FID, 0, 0,
                       64 + 48, len(out), 0, 0) + out
    parsed = c.parse_ioctl_response(response(smb2.Command.IOCTL, body))
    assert parsed.output == out and parsed.file_id == FID
    bad = struct.pack("<HHI16sIIIIII", 49, 0, 0, FID, 0, 0, 64 + 48, 4000, 0, 0) + out
    with pytest.raises(c.MalformedMessage):
        c.parse_ioctl_response(response(smb2.Command.IOCTL, bad))
    with pytest.raises(c.MalformedMessage):
        c.parse_ioctl_response(response(smb2.Command.IOCTL, body[:20]))


def test_change_notify_codec():
    (body,) = c.change_notify_request(FID, output_length=1 << 20, watch_tree=True,
                                      completion_filter=c.FILE_NOTIFY_CHANGE_FILE_NAME)
    assert struct.unpack("<HHI16sII", body) == (32, c.WATCH_TREE, 1 << 20, FID, 1, 0)
    names = ["a.txt", "dir\\b"]
    entries = b""
    for i, name in enumerate(names):
        raw = name.encode("utf-16-le")
        entry = struct.pack("<III", 0, i + 1, len(raw)) + raw
        entry += bytes(-len(entry) % 4)
        if i < len(names) - 1:
            entry = struct.pack("<I", len(entry)) + entry[4:]
        entries += entry
    msg = response(smb2.Command.CHANGE_NOTIFY, struct.pack("<HHI", 9, 72, len(entries)) +
                   entries)
    got = c.parse_change_notify_response(msg)
    assert [(e.action, e.name) for e in got] == [(1, "a.txt"), (2, "dir\\b")]
    # a name running past the buffer is rejected, not read out of bounds
    evil = struct.pack("<III", 0, 1, 200) + b"a\0"
    with pytest.raises(c.MalformedMessage):
        c.parse_notify_information(evil)
    with pytest.raises(c.MalformedMessage):
        c.parse_notify_information(struct.pack("<III", 2, 1, 0) + bytes(8))   # NextEntryOffset 2


def test_other_request_codecs():
    body, name = c.create_request("dir\\f", desired_access=1, disposition=1)
    assert struct.unpack_from("<H", body)[0] == 57 and name == "dir\\f".encode("utf-16-le")
    assert struct.unpack_from("<HH", body, 44) == (64 + 56, len(name))
    (q,) = c.query_info_request(FID, c.INFO_FILESYSTEM, c.FILE_FS_FULL_SIZE_INFORMATION,
                                output_length=200000)
    assert len(q) == 40 and struct.unpack_from("<HBBI", q) == (41, 2, 7, 200000)
    s, data = c.set_info_request(FID, c.INFO_FILE, c.FILE_END_OF_FILE_INFORMATION, bytes(8))
    assert struct.unpack_from("<HBBIH", s) == (33, 1, 20, 8, 64 + 32)
    lock, elements = c.lock_request(FID, [(0, 10, c.LOCKFLAG_EXCLUSIVE_LOCK)])
    assert struct.unpack_from("<HH", lock) == (48, 1) and len(elements) == 24
    qd, pattern = c.query_directory_request(FID, "*.txt", output_length=300000)
    assert struct.unpack_from("<I", qd, 28)[0] == 300000
    (close,) = c.close_request(FID, postquery=True)
    assert struct.unpack("<HHI16s", close) == (24, 1, 0, FID)
    key = bytes(range(24))
    chunks = c.copychunk_input(key, [(0, 0, 4096), (4096, 4096, 10)])
    assert len(chunks) == 32 + 2 * 24 and chunks[:24] == key
    assert c.parse_copychunk_output(struct.pack("<III", 2, 4106, 4106)).total_bytes_written \
        == 4106


@pytest.mark.parametrize("split", [False, True])
def test_credit_sizes_do_not_depend_on_the_buffer_split(split):
    (body,) = c.change_notify_request(FID, output_length=256 * 1024)
    parts = (body[:10], body[10:]) if split else (body,)
    if not split:
        assert request_sizes(smb2.Command.CHANGE_NOTIFY, parts) == (0, 256 * 1024)
    body, data = c.ioctl_request(c.FSCTL_PIPE_TRANSCEIVE, FID, bytes(100000),
                                 max_output=70000)
    whole = body + data
    one = request_sizes(smb2.Command.IOCTL, (whole,))
    two = request_sizes(smb2.Command.IOCTL, (body, data))
    assert one == two == (100000, 70000)
    assert credit_charge(*one, True) == 2
    (q,) = c.query_info_request(FID, 1, 18, output_length=65537)
    assert credit_charge(*request_sizes(smb2.Command.QUERY_INFO, (q,)), True) == 2
    # never raises on nonsense
    assert request_sizes(smb2.Command.IOCTL, (b"\x01",)) == (0, 0)
    assert request_sizes(smb2.Command.READ, ()) == (0, 0)


def test_directory_entries_parse():
    name = "x.bin".encode("utf-16-le")
    entry = struct.pack("<IIQQQQQQII", 0, 0, 1, 2, 3, 4, 5, 6, 0x20, len(name))
    entry += bytes(104 - len(entry)) + name
    (e,) = c.parse_directory_entries(entry)
    assert (e.name, e.end_of_file, e.allocation_size, e.file_attributes) == ("x.bin", 5, 6,
                                                                                0x20)
    with pytest.raises(c.MalformedMessage):
        c.parse_directory_entries(entry[:-2])


# --- DCE/RPC -------------------------------------------------------------------------

def test_request_fragmentation_and_reassembly():
    stub = bytes(range(256)) * 40                      # 10240 bytes
    frags = dcerpc.request_fragments(5, 15, stub, 4280)
    assert len(frags) == 3
    got = b""
    for i, frag in enumerate(frags):
        pdu, used = dcerpc.parse_pdu(frag)
        assert used == len(frag) <= 4280
        assert pdu.ptype == dcerpc.PTYPE_REQUEST and pdu.call_id == 5
        assert bool(pdu.flags & dcerpc.PFC_FIRST_FRAG) == (i == 0)
        assert bool(pdu.flags & dcerpc.PFC_LAST_FRAG) == (i == 2)
        got += pdu.body[8:]
    assert got == stub
    with pytest.raises(dcerpc.RpcError):
        dcerpc.parse_pdu(frags[0][:100])


def test_bind_ack_rejection_is_an_error():
    ack = struct.pack("<HHIH", 4280, 4280, 1, 0) + bytes(2) + struct.pack("<B3x", 1) + \
        struct.pack("<HH16sI", 2, 1, bytes(16), 0)
    with pytest.raises(dcerpc.RpcError):
        dcerpc.parse_bind_ack(ack)


def share_enum_stub(entries, werror=0):
    w = NdrWriter()
    w.u32(1)
    w.u32(1)
    w.pointer(True)
    w.u32(len(entries))
    w.pointer(True)
    w.u32(len(entries))
    for _name, stype, _remark in entries:
        w.pointer(True)
        w.u32(stype)
        w.pointer(True)
    for name, _stype, remark in entries:
        w.wstring(name)
        w.wstring(remark)
    w.u32(len(entries))
    w.pointer(True)
    w.u32(0)
    w.u32(werror)
    return w.getvalue()


def test_share_enum_ndr_round_trip_and_hostile_counts():
    entries = [("share", 0, "a comment"), ("IPC$", 0x80000003, "IPC Service")]
    shares, total, more = srvsvc.parse_share_enum_response(share_enum_stub(entries))
    assert [(s.name, s.type, s.comment) for s in shares] == entries
    assert shares[1].kind == "IPC" and shares[1].special and total == 2 and more is None
    with pytest.raises(dcerpc.RpcError):
        srvsvc.parse_share_enum_response(share_enum_stub(entries, werror=5))
    evil = bytearray(share_enum_stub(entries))
    struct.pack_into("<I", evil, 20, 0x7FFFFFFF)        # array conformance
    with pytest.raises(dcerpc.RpcError):
        srvsvc.parse_share_enum_response(bytes(evil))
    req = srvsvc.share_enum_request("\\\\host")
    r = NdrReader(req)
    assert r.pointer() and r.wstring() == "\\\\host" and r.u32() == 1
