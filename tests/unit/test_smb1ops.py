"""Smb1FileOps codecs without a server: request layouts (alignment, offsets,
separate payload buffers) and bounds-checked reply parsing (malformed
replies raise SmbProtocolError, never IndexError or struct.error)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from smblayer.errors import SmbProtocolError
from smblayer.fs import ops as O
from smblayer.fs import smb1ops as m
from smblayer.proto import smb1
from smblayer.proto import smb1commands as codec
from smblayer.task import Reply

CAPS = (smb1.Capabilities.LARGE_READX | smb1.Capabilities.LARGE_WRITEX
        | smb1.Capabilities.INFOLEVEL_PASSTHRU | smb1.Capabilities.UNICODE)


class FakeClient:
    """Answers run_task with queued replies and records the tasks."""

    def __init__(self, caps=CAPS, max_buffer=16644):
        self.negotiated = SimpleNamespace(capabilities=caps, max_buffer_size=max_buffer)
        self.replies = []
        self.tasks = []
        self.oneway = []
        self.generation = 1          # the connection generation handles record

    def run_task(self, task):
        self.tasks.append(task)
        return self.replies.pop(0)

    def send_oneway(self, task):
        self.oneway.append(task)
        return True


def make_ops(caps=CAPS, signer=None, max_buffer=16644):
    client = FakeClient(caps, max_buffer)
    tree = SimpleNamespace(client=client, session=SimpleNamespace(signer=signer), tree_id=1)
    return m.Smb1FileOps(tree), client


def reply(command, words=b"", data=b"", status=0, request=False) -> Reply:
    flags = 0 if request else smb1.Flags.REPLY
    message = bytes(smb1.pack_header(command, 0xFFFF if request else 1, flags=flags,
                                     status=status))
    # ByteCount truncated to 16 bits, as Samba sends it for large reads.
    body = bytes([len(words) // 2]) + words + struct.pack("<H", len(data) & 0xFFFF) + data
    return Reply(smb1.parse_header, message + body, smb1.HEADER_SIZE, status)


def raw_reply(message: bytes) -> Reply:
    return Reply(smb1.parse_header, message, smb1.HEADER_SIZE, 0)


def wire(task) -> bytes:
    """The request as it would go on the wire (header + body buffers)."""
    return bytes(smb1.pack_header(task.command, 1)) + b"".join(bytes(b) for b in task.body)


def handle(fid=0x1234, path="dir\\f.bin"):
    return O.Handle(fid, path, O.FileInfo("f.bin"))


# -- sizes --------------------------------------------------------------------


def test_sizes_follow_capabilities_and_signing():
    ops, _ = make_ops()
    assert (ops.max_read, ops.max_write) == (m.LARGE_READ, m.LARGE_WRITE)
    ops, _ = make_ops(signer=object())
    assert ops.max_read == m.LARGE_READ_SIGNED < 0x1FFFF - 64
    ops, _ = make_ops(caps=smb1.Capabilities.UNICODE, max_buffer=16644)
    assert ops.max_read == ops.max_write == 16644 - 128
    assert codec._WRITE_DATA_OFFSET + m.LARGE_WRITE <= 0x1FFFF


# -- requests -----------------------------------------------------------------


def test_write_task_keeps_the_payload_separate_and_points_at_it():
    ops, _ = make_ops()
    data = memoryview(bytearray(b"z" * 100000))
    task = ops.write_task(handle(), (7 << 32) + 5, data)
    assert task.body[2] is data
    assert smb1.HEADER_SIZE + len(task.body[0]) + len(task.body[1]) == codec._WRITE_DATA_OFFSET
    words = task.body[0][1:]
    (_c, _r, _o, fid, off_low, _t, _mode, _rem, len_high, len_low, data_off,
     off_high) = codec._WRITE.unpack(words)
    assert fid == 0x1234 and data_off == 64
    assert (off_high << 32) | off_low == (7 << 32) + 5
    assert (len_high << 16) | len_low == 100000
    assert struct.unpack_from("<H", task.body[1])[0] == (100001 & 0xFFFF)
    with pytest.raises(ValueError):
        ops.write_task(handle(), 0, bytes(ops.max_write + 1))


def test_read_task_large_count_and_offset_high():
    ops, _ = make_ops()
    task = ops.read_task(handle(), (3 << 32) + 1, 300000)
    (_c, _r, _o, fid, off_low, max_low, _min, max_high, _rem,
     off_high) = codec._READ.unpack(task.body[0][1:])
    assert (max_high << 16) | max_low == 300000
    assert (off_high << 32) | off_low == (3 << 32) + 1
    with pytest.raises(ValueError):
        ops.read_task(handle(), 0, ops.max_read + 1)


def test_unicode_names_start_at_even_offsets():
    ops, client = make_ops()
    client.replies.append(reply(smb1.Command.NT_CREATE_ANDX,
                                codec._NT_CREATE_RESPONSE.pack(0xFF, 0, 0, 2, 77, 1, 1, 2, 3, 4,
                                                           0x20, 4096, 10, 0, 0, 0)))
    h = ops.open("a\\b.txt", access=O.GENERIC_READ, disposition=O.FILE_OPEN,
                 oplock=O.OPLOCK_BATCH)
    assert (h.fid, h.oplock_level, h.info.size, h.info.name) == (77, O.OPLOCK_BATCH, 10, "b.txt")
    message = wire(client.tasks[-1])
    name = "a\\b.txt\0".encode("utf-16-le")
    assert message.index(name) % 2 == 0
    flags = codec._NT_CREATE.unpack_from(message, smb1.HEADER_SIZE + 1)[5]
    assert flags == m.NT_CREATE_REQUEST_OPLOCK | m.NT_CREATE_REQUEST_OPBATCH

    client.replies.append(reply(smb1.Command.RENAME))
    ops.rename("old.txt", "new.txt")
    message = wire(client.tasks[-1])
    for text in ("old.txt\0", "new.txt\0"):
        assert message.index(text.encode("utf-16-le")) % 2 == 0
    for command, call in ((smb1.Command.DELETE, lambda: ops.delete("x.txt")),
                          (smb1.Command.DELETE_DIRECTORY, lambda: ops.delete("x.txt", True)),
                          (smb1.Command.CREATE_DIRECTORY, lambda: ops.mkdir("x.txt"))):
        client.replies.append(reply(command))
        call()
        message = wire(client.tasks[-1])
        assert message.index("x.txt\0".encode("utf-16-le")) % 2 == 0


def test_lease_and_unknown_oplocks_are_refused():
    ops, _ = make_ops()
    for level in (O.OPLOCK_LEASE, 0x42):
        with pytest.raises(ValueError):
            ops.open("x", access=O.GENERIC_READ, disposition=O.FILE_OPEN, oplock=level)


# TRANSACTION2 request words (one setup word) and response words ([MS-CIFS] 2.2.4.46)
TRANS2_WORDS = struct.Struct("<HHHHBBHIHHHHHBBH")
TRANS2_RESPONSE_WORDS = struct.Struct("<HHHHHHHHHBB")
TRANS2_PARAM_OFFSET = 68        # header, 15 words, ByteCount, pad, an empty Unicode name


def trans2_reply(params: bytes, data: bytes = b"", *, bad=None) -> Reply:
    """A one-part TRANSACTION2 reply; ``bad`` overrides response words."""
    p_off = smb1.HEADER_SIZE + 1 + TRANS2_RESPONSE_WORDS.size + 2 + 1
    d_off = p_off + len(params) + (-len(params) % 4)
    fields = dict(tp=len(params), td=len(data), np=len(params), po=p_off, nd=len(data),
                  do=d_off)
    fields.update(bad or {})
    words = TRANS2_RESPONSE_WORDS.pack(fields["tp"], fields["td"], 0, fields["np"], fields["po"],
                                    0, fields["nd"], fields["do"], 0, 0, 0)
    body = b"\0" + params + bytes(-len(params) % 4) + data
    return reply(smb1.Command.TRANSACTION2, words, body)


def all_info(size=5, links=1) -> bytes:
    # Samba's layout: after the standard information, EaSize and the FileName
    # (no IndexNumber), whatever the level.
    return struct.pack("<QQQQI4xQQIBBH", 1, 2, 3, 4, 0x20, 4096, size, links, 0, 0, 0) + \
        struct.pack("<II", 0, 8) + "f.txt".encode("utf-16-le")


def test_trans2_request_layout_and_stat():
    ops, client = make_ops()
    client.replies.append(trans2_reply(b"\0\0", all_info(links=2)))
    client.replies.append(trans2_reply(b"\0\0", struct.pack("<Q", 99)))  # FileInternalInformation
    info = ops.stat("d\\f")
    assert (info.name, info.size, info.file_index, info.last_write_time) == ("f", 5, 99, 3)
    assert info.nlink == 2
    internal = wire(client.tasks[-1])
    assert b"\xee\x03" in internal                  # level 1006: the file id
    message = wire(client.tasks[-2])
    words = TRANS2_WORDS.unpack_from(message, smb1.HEADER_SIZE + 1)
    param_count, param_offset, setup = words[9], words[10], words[15]
    assert setup == m.TRANS2_QUERY_PATH_INFORMATION
    assert param_offset % 4 == 0 and param_offset == TRANS2_PARAM_OFFSET
    params = message[param_offset:param_offset + param_count]
    assert struct.unpack_from("<H", params)[0] == m.FILE_ALL_INFORMATION
    assert params[6:] == "d\\f\0".encode("utf-16-le")


def test_trans2_malformed_replies():
    ops, client = make_ops()
    cases = [
        trans2_reply(b"\0\0", all_info(), bad={"do": 10_000}),          # data out of bounds
        trans2_reply(b"\0\0", all_info(), bad={"po": 3}),               # inside the header
        trans2_reply(b"\0\0", all_info(), bad={"td": 5000}),            # multi-part
        trans2_reply(b"\0\0", all_info()[:20]),                         # info truncated
        reply(smb1.Command.TRANSACTION2, b"\0" * 6),                     # words truncated
        raw_reply(bytes(smb1.pack_header(smb1.Command.TRANSACTION2, 1))),   # no params
    ]
    for bad in cases:
        client.replies.append(bad)
        with pytest.raises(SmbProtocolError):
            ops.stat("f")


def dir_entry(name: str, next_offset: int, index=0) -> bytes:
    raw = name.encode("utf-16-le")
    return struct.pack("<IIQQQQQQIIIIQ", next_offset, 0, 1, 2, 3, 4, 10, 4096, 0x20, len(raw), 0, 0,
                                  index) + raw


def entries(*names: str) -> bytes:
    out = b""
    for i, name in enumerate(names):
        e = dir_entry(name, 0)
        if i < len(names) - 1:
            size = len(e) + (-len(e) % 8)
            e = dir_entry(name, size).ljust(size, b"\0")
        out += e
    return out


def test_listdir_find_first_and_next():
    ops, client = make_ops()
    client.replies.append(trans2_reply(codec._FIND_FIRST_RESPONSE.pack(7, 3, 0, 0, 0),
                                       entries(".", "..", "a")))
    client.replies.append(trans2_reply(codec._FIND_NEXT_RESPONSE.pack(2, 1, 0, 0),
                                       entries("b", "日本")))
    assert [i.name for i in ops.listdir("d")] == ["a", "b", "日本"]
    first, nxt = (wire(t) for t in client.tasks)
    assert "d\\*\0".encode("utf-16-le") in first
    assert "a\0".encode("utf-16-le") in nxt          # the resume name
    assert len(client.tasks) == 2                      # closed at end of search


def test_listdir_abandoned_sends_find_close2():
    ops, client = make_ops()
    client.replies.append(trans2_reply(codec._FIND_FIRST_RESPONSE.pack(7, 1, 0, 0, 0),
                                       entries("a")))
    it = ops.listdir("")
    assert next(it).name == "a"
    client.replies.append(reply(smb1.Command.FIND_CLOSE2))
    it.close()
    assert client.tasks[-1].command == smb1.Command.FIND_CLOSE2


def test_listdir_without_progress_is_a_protocol_error():
    ops, client = make_ops()
    client.replies.append(trans2_reply(codec._FIND_FIRST_RESPONSE.pack(7, 1, 0, 0, 0),
                                       entries("a")))
    client.replies.append(trans2_reply(codec._FIND_NEXT_RESPONSE.pack(1, 0, 0, 0), entries("a")))
    client.replies.append(reply(smb1.Command.FIND_CLOSE2))
    with pytest.raises(SmbProtocolError):
        list(ops.listdir(""))


@pytest.mark.parametrize("data", [
    dir_entry("abc", 0)[:-2],                                  # name cut short
    dir_entry("abc", 0)[:40],                                  # fixed part cut short
    dir_entry("abc", 8) + dir_entry("d", 0),                   # NextEntryOffset too small
    dir_entry("abc", 200),                                     # next entry missing
])
def test_directory_info_malformed(data):
    with pytest.raises(SmbProtocolError):
        m._parse_directory_info(memoryview(data), 2)


# -- data replies -------------------------------------------------------------


def read_reply(payload: bytes, offset=None, length=None, high=0) -> Reply:
    start = smb1.HEADER_SIZE + 1 + codec._READ_RESPONSE.size + 2 + 1
    words = codec._READ_RESPONSE.pack(0xFF, 0, 0, 0, 0, 0,
                                  len(payload) & 0xFFFF if length is None else length,
                                  start if offset is None else offset, high)
    return reply(smb1.Command.READ_ANDX, words, b"\0" + payload)


def test_parse_read_is_zero_copy_and_bounds_checked():
    ops, _ = make_ops()
    r = read_reply(b"hello")
    data = ops.parse_read(r)
    assert bytes(data) == b"hello"
    assert data.obj is r.message                         # a view, not a copy
    big = bytes(range(256)) * 300                        # 76800 bytes: DataLengthHigh
    r = read_reply(big, length=len(big) & 0xFFFF, high=len(big) >> 16)
    assert bytes(ops.parse_read(r)) == big
    assert len(ops.parse_read(read_reply(b""))) == 0
    for bad in (read_reply(b"hello", offset=10_000), read_reply(b"hello", offset=5),
                read_reply(b"hello", length=6), read_reply(b"x", high=1),
                reply(smb1.Command.READ_ANDX, b"\0" * 4), raw_reply(b"\xffSMB" + bytes(28))):
        with pytest.raises(SmbProtocolError):
            ops.parse_read(bad)


def test_parse_write():
    ops, _ = make_ops()
    r = reply(smb1.Command.WRITE_ANDX, codec._WRITE_RESPONSE.pack(0xFF, 0, 0, 0xF000, 0, 1, 0))
    assert ops.parse_write(r) == 0x1F000
    with pytest.raises(SmbProtocolError):
        ops.parse_write(reply(smb1.Command.WRITE_ANDX, b"\0" * 4))


# -- oplock breaks ------------------------------------------------------------


def test_parse_break_and_ack():
    ops, client = make_ops()
    note = SimpleNamespace(reply=reply(
        smb1.Command.LOCKING_ANDX,
        codec._LOCKING.pack(0xFF, 0, 0, 0x4321, m.LOCKING_ANDX_OPLOCK_RELEASE, 1, 0, 0, 0),
        request=True))
    assert ops.parse_break(note) == ("oplock", 0x4321, O.OPLOCK_LEVEL_II)
    note.reply = reply(smb1.Command.LOCKING_ANDX,
                       codec._LOCKING.pack(0xFF, 0, 0, 9, m.LOCKING_ANDX_OPLOCK_RELEASE, 0, 0, 0,
                                       0), request=True)
    assert ops.parse_break(note) == ("oplock", 9, O.OPLOCK_NONE)
    for words in (codec._LOCKING.pack(0xFF, 0, 0, 9, 0x01, 0, 0, 0, 0), b"\0" * 6):
        note.reply = reply(smb1.Command.LOCKING_ANDX, words, request=True)
        with pytest.raises(SmbProtocolError):
            ops.parse_break(note)

    h = handle(fid=0x4321)
    h.oplock_level = O.OPLOCK_BATCH
    ops.ack_break(h, O.OPLOCK_LEVEL_II)
    (task,) = client.oneway
    assert task.command == smb1.Command.LOCKING_ANDX and not client.tasks
    (_c, _r, _o, fid, lock_type, level, _t, unlocks, locks) = codec._LOCKING.unpack(
        task.body[0][1:])
    assert (fid, lock_type, level, unlocks, locks) == \
        (0x4321, m.LOCKING_ANDX_OPLOCK_RELEASE, 1, 0, 0)
    assert h.oplock_level == O.OPLOCK_LEVEL_II
    h.closed = True
    ops.ack_break(h, O.OPLOCK_NONE)                     # nothing for a closed handle
    assert len(client.oneway) == 1


def test_truncated_replies_never_raise_anything_else():
    """Every prefix of valid replies: SmbProtocolError or a result, nothing else."""
    ops, client = make_ops()
    create = reply(smb1.Command.NT_CREATE_ANDX, codec._NT_CREATE_RESPONSE.pack(
        0xFF, 0, 0, 2, 77, 1, 1, 2, 3, 4, 0x20, 4096, 10, 0, 0, 0)).message
    read = read_reply(b"hello world").message
    write = reply(smb1.Command.WRITE_ANDX, codec._WRITE_RESPONSE.pack(0xFF, 0, 0, 5, 0, 0,
                                                                  0)).message
    trans = trans2_reply(codec._FIND_FIRST_RESPONSE.pack(7, 2, 1, 0, 0),
                         entries("a", "bb")).message
    for n in range(len(create) + 1):
        client.replies.append(raw_reply(create[:n]))
        try:
            ops.open("x", access=O.GENERIC_READ, disposition=O.FILE_OPEN)
        except SmbProtocolError:
            pass
    for n in range(len(read) + 1):
        try:
            ops.parse_read(raw_reply(read[:n]))
        except SmbProtocolError:
            pass
    for n in range(len(write) + 1):
        try:
            ops.parse_write(raw_reply(write[:n]))
        except SmbProtocolError:
            pass
    for n in range(len(trans) + 1):
        client.replies.append(raw_reply(trans[:n]))
        try:
            list(ops.listdir(""))
        except SmbProtocolError:
            pass
