"""The message layouts that moved into smblayer.proto (issue 19.2), checked
against the byte layouts of [MS-SMB2], [MS-CIFS], [MS-FSCC] and [MS-DFSC]
without a server: DFS referrals, TREE_CONNECT (both dialects), READ/WRITE/
FLUSH, breaks, CREATE contexts, CLOSE, information classes and
VALIDATE_NEGOTIATE_INFO."""
from __future__ import annotations

import ast
import pathlib
import struct

import pytest

from smblayer.config import Dialect
from smblayer.proto import commands, contexts, dfs, fileio, info, smb1, smb2
from smblayer.proto.negotiate import (NegotiateResult, parse_validate_negotiate,
                                      validate_negotiate_input)

FID = bytes(range(16))
HEADER = bytes(smb2.HEADER_SIZE)


def test_referral_request_and_bounds():
    request = dfs.referral_request("\\\\srv\\dfs\\link")
    assert request == struct.pack("<H", 4) + "\\srv\\dfs\\link\0".encode("utf-16-le")
    with pytest.raises(dfs.MalformedMessage):
        dfs.parse_referral_response(b"\x00", "\\x")
    # a v4 entry whose NetworkAddressOffset points past the message
    entry = struct.pack("<HHHHIHHH16s", 4, 34, 0, 0, 60, 0, 0, 500, bytes(16))
    with pytest.raises(dfs.MalformedMessage):
        dfs.parse_referral_response(struct.pack("<HHI", 8, 1, 0) + entry, "\\x\\y\\z")
    # a v3 entry shorter than its fixed part
    short = struct.pack("<HHHH", 3, 8, 0, 0)
    with pytest.raises(dfs.MalformedMessage):
        dfs.parse_referral_response(struct.pack("<HHI", 8, 1, 0) + short + bytes(8),
                                    "\\x\\y\\z")


def test_referral_prefix_counts_from_one_backslash():
    name = "\\c\\data\0".encode("utf-16-le")
    fixed = 8 + 4 + 4 + 6
    entry = struct.pack("<HHHHIIHHH", 2, fixed, 0, 0, 0, 12, fixed, fixed, fixed) + name
    data = struct.pack("<HHI", 8, 1, 0) + entry
    assert dfs.parse_referral_response(data, "\\\\x\\y\\z").prefix == "\\x\\y"
    assert dfs.parse_referral_response(data, "\\x\\y\\z").prefix == "\\x\\y"


def test_tree_connect_both_dialects():
    body, path = commands.tree_connect_request("srv", "share")
    assert struct.unpack("<HHHH", body) == (9, 0, 64 + 8, len(path))
    assert path == "\\\\srv\\share".encode("utf-16-le")
    resp = commands.parse_tree_connect_response(HEADER + struct.pack("<HBBIII", 16, 1, 0,
                                                                     0x8001, 0x10, 0x1F01FF))
    assert (resp.share_type, resp.share_flags, resp.capabilities,
            resp.maximal_access) == (1, 0x8001, 0x10, 0x1F01FF)
    with pytest.raises(smb2.MalformedMessage):
        commands.parse_tree_connect_response(HEADER + bytes(4))
    assert commands.tree_disconnect_request() == (b"\x04\x00\x00\x00",)
    words, data = smb1.pack_tree_connect_andx("srv", "share")
    assert words == b"\x04" + struct.pack("<BBHHH", 0xFF, 0, 0, 0x0008, 1)
    assert data[2:].startswith(b"\0" + "\\\\srv\\SHARE\0".encode("utf-16-le"))
    assert data.endswith(b"?????\0")
    reply = bytes(smb1.HEADER_SIZE) + b"\x03" + struct.pack("<BBHH", 0xFF, 0, 0, 0x0003) + \
        b"\0\0" + b"\0\0"
    assert smb1.parse_tree_connect_andx(reply) & smb1.SMB_SHARE_IS_IN_DFS
    assert smb1.parse_tree_connect_andx(bytes(smb1.HEADER_SIZE)) == 0


def test_read_write_flush_layouts():
    body = fileio.read_request(FID, 1 << 40, 65536)
    assert len(body) == 49 and struct.unpack_from("<HBBIQ16s", body) == (
        49, 0x50, 0, 65536, 1 << 40, FID)
    data = b"payload"
    message = HEADER + struct.pack("<HBBIII", 17, 80, 0, len(data), 0, 0) + data
    view = fileio.read_response_data(message)
    assert isinstance(view, memoryview) and view.obj is message and bytes(view) == data
    with pytest.raises(smb2.MalformedMessage):
        fileio.read_response_data(HEADER + struct.pack("<HBBIII", 17, 80, 0, 100, 0, 0))
    body = fileio.write_request(FID, 7, 4096)
    assert struct.unpack_from("<HHIQ16s", body) == (49, 64 + 48, 4096, 7, FID)
    assert fileio.write_response_count(HEADER + struct.pack("<HHIIHH", 17, 0, 4096, 0, 0, 0)) \
        == 4096
    assert fileio.flush_request(FID) == struct.pack("<HHI16s", 24, 0, 0, FID)


def test_break_notifications_and_acks():
    lease = struct.pack("<HHI16sIIIII", 44, 1, fileio.LEASE_BREAK_ACK_REQUIRED, b"k" * 16,
                        7, 1, 0, 0, 0)
    note = fileio.parse_break_notification(HEADER + lease)
    assert (note.kind, note.key, note.new_level) == ("lease", b"k" * 16, 1)
    oplock = struct.pack("<HBBI16s", 24, 1, 0, 0, FID)
    note = fileio.parse_break_notification(HEADER + oplock)
    assert (note.kind, note.key, note.new_level) == ("oplock", FID, 1)
    with pytest.raises(smb2.MalformedMessage):
        fileio.parse_break_notification(HEADER + bytes(10))
    assert fileio.oplock_break_ack(FID, 0) == struct.pack("<HBBI16s", 24, 0, 0, 0, FID)
    assert fileio.lease_break_ack(b"k" * 16, 1) == struct.pack("<HHI16sIQ", 36, 0, 0,
                                                               b"k" * 16, 1, 0)


def test_create_context_payloads():
    assert len(contexts.lease_context(b"k" * 16, 7, v2=True)) == 52
    assert contexts.parse_lease(contexts.lease_context(b"k" * 16, 5, v2=False)) == (b"k" * 16, 5)
    assert contexts.parse_lease(b"short") is None
    dh2q = contexts.durable_v2_request(FID, 60000, persistent=True)
    assert struct.unpack("<II8s16s", dh2q) == (60000, contexts.DH2_FLAG_PERSISTENT, bytes(8),
                                               FID)
    assert contexts.parse_durable_v2_response(dh2q[:8]) == (60000, 2)
    assert contexts.durable_v2_reconnect(FID, FID, False) == FID + FID + bytes(4)
    assert contexts.parse_on_disk_id(struct.pack("<Q", 99) + bytes(24)) == 99
    chain = contexts.pack_create_contexts([(contexts.LEASE, b"x" * 32),
                                           (contexts.QUERY_ON_DISK_ID, b"")])
    found = contexts.parse_create_contexts(chain)
    assert bytes(found[contexts.LEASE]) == b"x" * 32 and bytes(found[b"QFid"]) == b""


def test_close_response_and_directory_file_ids():
    resp = commands.parse_close_response(HEADER + struct.pack("<HHIQQQQQQI", 60, 1, 0, 1, 2, 3,
                                                              4, 5, 6, 0x20))
    assert (resp.flags, resp.creation_time, resp.end_of_file, resp.file_attributes) == (
        1, 1, 6, 0x20)
    name = "x".encode("utf-16-le")
    entry = struct.pack("<IIQQQQQQII", 0, 0, 1, 2, 3, 4, 5, 6, 0x20, len(name))
    entry += bytes(96 - len(entry)) + struct.pack("<Q", 1234) + name
    (e,) = commands.parse_directory_entries(entry)
    assert e.file_id == 1234 and e.times == (1, 2, 3, 4)
    full = struct.pack("<IIQQQQQQIIIIQ", 0, 0, 1, 2, 3, 4, 5, 6, 0x10, len(name), 0, 0, 77)
    (e,) = commands.parse_directory_entries(full + name,
                                            commands.FILE_ID_FULL_DIRECTORY_INFORMATION)
    assert e.file_id == 77 and e.name == "x"


def test_information_classes():
    assert info.basic_information(0, 5, 6) == struct.pack("<QQQQI4x", 0, 5, 6, 0, 0)
    all_info = struct.pack("<QQQQI4xQQIBB2xQ", 1, 2, 3, 4, 0x10, 8, 7, 2, 0, 1, 42)
    parsed = info.parse_all_information(all_info)
    assert (parsed.end_of_file, parsed.links, parsed.directory, parsed.file_id) == (
        7, 2, True, 42)
    assert info.parse_all_information(all_info[:64], with_file_id=False).file_id == 0
    with pytest.raises(smb2.MalformedMessage):
        info.parse_all_information(all_info[:64])
    assert info.unpack_all_information(all_info + b"more") == (1, 2, 3, 4, 0x10, 8, 7, 2, 0, 1,
                                                                42)
    with pytest.raises(smb2.MalformedMessage):
        info.unpack_all_information(all_info[:71])
    # QUERY_INFO's output as a view of the reply, bounds checked
    reply = bytes(64) + struct.pack("<HHI", 9, 72, len(all_info)) + all_info
    view = commands.query_info_output(reply)
    assert isinstance(view, memoryview) and view == all_info
    assert commands.parse_query_info_response(reply) == all_info
    with pytest.raises(smb2.MalformedMessage):
        commands.query_info_output(reply[:-1])
    name = "b".encode("utf-16-le")
    assert info.rename_information("b", True) == struct.pack("<B7xQI", 1, 0, 2) + name
    assert info.rename_information("b", False, wide=False) == struct.pack("<B3xII", 0, 0, 2) \
        + name
    assert info.parse_fs_full_size_information(struct.pack("<QQQII", 9, 8, 7, 6, 5)) == (
        9, 8, 7, 6, 5)
    assert info.parse_fs_size_information(struct.pack("<QQII", 9, 8, 7, 6)) == (9, 8, 7, 6)


def test_validate_negotiate_codec():
    result = NegotiateResult(Dialect.SMB3_0, client_guid=FID, request_capabilities=0x7F,
                             request_security_mode=1, request_dialects=[0x202, 0x300])
    data = validate_negotiate_input(result)
    assert data == struct.pack("<I16sHHHH", 0x7F, FID, 1, 2, 0x202, 0x300)
    assert parse_validate_negotiate(struct.pack("<I16sHH", 1, FID, 2, 0x300)) == (1, FID, 2,
                                                                                   0x300)
    with pytest.raises(smb2.MalformedMessage):
        parse_validate_negotiate(bytes(10))


def test_fs_modules_pack_no_smb2_layouts_and_proto_stays_sans_io():
    """The SMB2 message layouts live in proto/ only; proto/ imports no I/O."""
    root = pathlib.Path(commands.__file__).resolve().parent.parent
    for name in ("smb1ops.py", "smb2ops.py", "session.py", "dfs.py", "tree.py", "ops.py"):
        text = (root / "fs" / name).read_text()
        assert "struct.Struct(" not in text, f"fs/{name} defines a message layout"
    for path in (root / "proto").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {"socket", "threading", "time", "select"} & set(names), path.name
    assert len(open(commands.__file__).read().splitlines()) < 900


def test_fs_ops_imports_no_dialect_table():
    """fs.ops is the interface: the dialect tables import it, never the
    other way round (the ops <-> smb1ops/smb2ops circle of issue 19); the
    tree, which needs a table, picks it (fs.tree.ops_for)."""
    from smblayer.fs import ops, tree
    for module in (ops, tree):
        imported = {node.module for node in ast.walk(ast.parse(
            pathlib.Path(module.__file__).read_text())) if isinstance(node, ast.ImportFrom)}
        assert ("smb1ops" in imported) == (module is tree), module.__name__
        assert ("smb2ops" in imported) == (module is tree), module.__name__
