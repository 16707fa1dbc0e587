"""Sans-I/O codecs of the administrators' calls: security descriptors (binary,
SDDL, smbcacls text), stream lists, snapshot arrays, symbolic-link reparse
data and error responses, volume information -- and each parser fuzzed with
random and mutated buffers: a valid result or SmbProtocolError, nothing else."""
from __future__ import annotations

import random
import struct
import uuid

import pytest

from smblayer.errors import SmbProtocolError
from smblayer.fs.admin import share_access, snapshot_contexts
from smblayer.proto import fscc
from smblayer.proto import security as S

pytestmark = pytest.mark.timeout(120)

SAMPLE_SDDL = ("O:S-1-5-21-1-2-3-1000G:S-1-22-2-0D:PAI(A;OICI;FA;;;SY)"
               "(D;;0x1200a9;;;S-1-5-21-1-2-3-1001)(A;ID;FR;;;WD)")


def sample_sd() -> S.SecurityDescriptor:
    sd = S.SecurityDescriptor.from_sddl(SAMPLE_SDDL)
    sd.sacl = S.Acl([S.Ace(S.SYSTEM_AUDIT, S.FAILED_ACCESS_ACE_FLAG, S.DELETE, "WD")])
    sd.dacl.append(S.Ace(S.ACCESS_ALLOWED_OBJECT, 0, 0x100, "AU",
                         object_type=uuid.UUID(int=7)))
    sd.dacl.append(S.Ace(0x42, 3, 0, None, raw=b"\x01\x02\x03\x04"))
    return sd


def test_sid_text_and_wire():
    sid = S.Sid.parse("S-1-5-32-544")
    assert str(sid) == "S-1-5-32-544" and sid.name == "BUILTIN\\Administrators"
    assert bytes(sid) == bytes.fromhex("01020000000000052000000020020000")
    assert S.Sid.unpack_from(bytes(sid)) == (sid, 16)
    assert S.Sid.parse("BA") == sid == "S-1-5-32-544"
    assert S.Sid.parse("WD").name == "Everyone" and sid.rid == 544
    for bad in ("S-2-5", "X-1-5", "S-1-5-99999999999", "S-1-" + "-1" * 16):
        with pytest.raises(ValueError):
            S.Sid.parse(bad)


def test_descriptor_round_trip_binary_and_sddl():
    sd = sample_sd()
    blob = sd.to_bytes()
    back = S.SecurityDescriptor.from_bytes(blob)
    assert back.to_bytes() == blob
    assert str(back.owner) == "S-1-5-21-1-2-3-1000" and str(back.group) == "S-1-22-2-0"
    assert [(a.type, a.flags, a.mask, str(a.sid) if a.sid else None) for a in back.dacl] == [
        (S.ACCESS_ALLOWED, S.OBJECT_INHERIT_ACE | S.CONTAINER_INHERIT_ACE, S.FILE_ALL_ACCESS,
         "S-1-5-18"),
        (S.ACCESS_DENIED, 0, 0x1200A9, "S-1-5-21-1-2-3-1001"),
        (S.ACCESS_ALLOWED, S.INHERITED_ACE, S.FILE_GENERIC_READ, "S-1-1-0"),
        (S.ACCESS_ALLOWED_OBJECT, 0, 0x100, "S-1-5-11"),
        (0x42, 3, 0, None)]
    assert back.dacl[3].object_type == uuid.UUID(int=7)
    assert back.dacl[4].raw == b"\x01\x02\x03\x04"
    assert back.control & S.SE_DACL_PROTECTED and back.control & S.SE_SACL_PRESENT
    assert S.SecurityDescriptor.from_sddl(SAMPLE_SDDL).to_sddl() == \
        "O:S-1-5-21-1-2-3-1000G:S-1-22-2-0D:PAI(A;OICI;FA;;;SY)" \
        "(D;;0x1200a9;;;S-1-5-21-1-2-3-1001)(A;ID;FR;;;WD)"


def test_null_and_absent_dacl():
    sd = S.SecurityDescriptor.from_sddl("O:BAD:NO_ACCESS_CONTROL")
    back = S.SecurityDescriptor.from_bytes(sd.to_bytes())
    assert back.null_dacl and back.dacl is None and back.control & S.SE_DACL_PRESENT
    assert back.to_sddl() == "O:BAD:NO_ACCESS_CONTROL"
    bare = S.SecurityDescriptor.from_bytes(S.SecurityDescriptor(owner="SY").to_bytes())
    assert bare.dacl is None and not bare.null_dacl and bare.to_sddl() == "O:SY"


def test_smbcacls_format():
    sd = S.SecurityDescriptor.from_sddl(
        "O:S-1-5-21-9-1000G:S-1-22-2-0D:(A;;0x1f019f;;;S-1-5-21-9-1000)"
        "(A;;0x120089;;;WD)(D;OICI;FA;;;S-1-22-2-0)(A;ID;0x1301bf;;;SY)")
    assert S.to_smbcacls(sd) == (
        "REVISION:1\nCONTROL:SR|DP\nOWNER:S-1-5-21-9-1000\nGROUP:S-1-22-2-0\n"
        "ACL:S-1-5-21-9-1000:ALLOWED/0x0/RWDPO\nACL:S-1-1-0:ALLOWED/0x0/R\n"
        "ACL:S-1-22-2-0:DENIED/OI|CI/FULL\nACL:S-1-5-18:ALLOWED/I/CHANGE\n")
    assert S.to_smbcacls(sd, numeric=True).splitlines()[1:5:3] == [
        "CONTROL:0x8004", "ACL:S-1-5-21-9-1000:0/0x0/0x001f019f"]
    for line in S.to_smbcacls(sd).splitlines()[4:] + \
            S.to_smbcacls(sd, numeric=True).splitlines()[4:]:
        ace = S.ace_from_smbcacls(line)
        assert ace in list(sd.dacl)
    assert S.ace_from_smbcacls("ACL:WD:ALLOWED/OI|CI/READ").mask == 0x1200A9
    assert S.ace_from_smbcacls("ACL:Everyone:DENIED/0x0/D").sid == "S-1-1-0"
    assert S.ace_from_smbcacls("builtin\\administrators:ALLOWED/0x0/FULL").sid == "BA"
    for bad in ("WD:ALLOWED/0/", "WD:ALLOWED/XX/R", "WD:ALLOWED/0/RQ", "nothing"):
        with pytest.raises(ValueError):
            S.ace_from_smbcacls(bad)


def test_security_information_and_share_modes():
    assert S.security_information(("owner", "group", "dacl")) == 7
    assert S.security_information("sacl") == 8
    with pytest.raises(ValueError):
        S.security_information(("owner", "acl"))
    assert share_access(None) == 7 and share_access("") == 0 and share_access("rd") == 5
    for bad in ("x", "rr", 8, 1.5):
        with pytest.raises((ValueError, TypeError)):
            share_access(bad)


def test_stream_information():
    def entry(name: str, size: int, last: bool) -> bytes:
        raw = name.encode("utf-16-le")
        body = struct.pack("<IIQQ", 0, len(raw), size, 4096) + raw
        body += bytes(-len(body) % 8)
        return struct.pack("<I", 0 if last else len(body)) + body[4:]

    buf = entry("::$DATA", 5, False) + entry(":alt:$DATA", 11, True)
    streams = fscc.parse_stream_information(buf)
    assert [(s.name, s.stream, s.size) for s in streams] == [
        ("::$DATA", "", 5), (":alt:$DATA", "alt", 11)]
    assert fscc.parse_stream_information(b"") == []


def test_snapshot_array_and_token():
    names = ["@GMT-2024.01.02-03.04.05", "@GMT-2023.12.31-23.59.59"]
    data = "\0".join(names).encode("utf-16-le") + b"\0\0\0\0"
    assert fscc.parse_snapshots(struct.pack("<III", 2, 2, len(data)) + data) == \
        (2, names, len(data))
    assert fscc.parse_snapshots(struct.pack("<III", 2, 0, 100)) == (2, [], 100)
    assert fscc.snapshot_filetime("@GMT-1970.01.01-00.00.01") == 116444736000000000 + 10**7
    assert snapshot_contexts("@GMT-1970.01.01-00.00.00") == \
        ((b"TWrp", struct.pack("<Q", 116444736000000000)),)
    with pytest.raises(ValueError):
        fscc.snapshot_filetime("2024-01-01")


def test_symlink_reparse_data_and_error_context():
    data = fscc.symlink_reparse_data("dir\\target", relative=True)
    assert fscc.parse_reparse_data(data) == fscc.SymlinkTarget("dir\\target", "dir\\target",
                                                               True)
    body = data[8:]
    response = struct.pack("<IIIHH", len(body) + 12, fscc.SYMLINK_ERROR_TAG,
                           fscc.IO_REPARSE_TAG_SYMLINK, len(body), 6) + body
    found = fscc.parse_symlink_error(response, dialect_311=False)
    assert (found.substitute, found.relative, found.unparsed) == ("dir\\target", True, 6)
    wrapped = struct.pack("<II", len(response), 0) + response
    assert fscc.parse_symlink_error(wrapped, dialect_311=True) == found
    with pytest.raises(SmbProtocolError):
        fscc.parse_reparse_data(struct.pack("<IHH", 0x80000017, 0, 0))


def test_follow_symlink_as_windows_does():
    def link(target: str, rest: str = "", relative: bool = True) -> fscc.SymlinkTarget:
        return fscc.SymlinkTarget(target, target, relative, len(rest.encode("utf-16-le")))

    assert fscc.follow_symlink("a\\lnk", link("t.txt")) == "a\\t.txt"
    assert fscc.follow_symlink("a\\lnk\\x\\y", link("..\\b", "\\x\\y")) == "b\\x\\y"
    assert fscc.follow_symlink("lnk", link("./d/e")) == "d\\e"
    for bad in (link("\\??\\C:\\etc", relative=False), link("..\\..\\up")):
        with pytest.raises(fscc.SymlinkOutsideShare):
            fscc.follow_symlink("a\\lnk", bad)
    with pytest.raises(SmbProtocolError):
        fscc.follow_symlink("lnk", fscc.SymlinkTarget("t", "t", True, 100))
    body = struct.pack("<HBBI", 9, 0, 0, 3) + b"abc"
    assert fscc.parse_error_data(body) == b"abc"
    with pytest.raises(SmbProtocolError):
        fscc.parse_error_data(struct.pack("<HBBI", 9, 0, 0, 4) + b"abc")


def test_volume_serial():
    buf = struct.pack("<QIIBx", 1, 0xDEADBEEF, 0, 0)
    assert fscc.parse_volume_serial(buf) == 0xDEADBEEF


# -- fuzzing ----------------------------------------------------------------------------


def _valid_samples():
    names = ["@GMT-2024.01.02-03.04.05"]
    snap = "\0".join(names).encode("utf-16-le") + b"\0\0\0\0"
    link = fscc.symlink_reparse_data("a\\b", relative=True)
    err = struct.pack("<IIIHH", len(link), fscc.SYMLINK_ERROR_TAG,
                      fscc.IO_REPARSE_TAG_SYMLINK, len(link) - 8, 0) + link[8:]
    stream = struct.pack("<IIQQ", 0, 14, 5, 8) + "::$DATA".encode("utf-16-le")
    return {
        "sd": (S.SecurityDescriptor.from_bytes, sample_sd().to_bytes()),
        "streams": (fscc.parse_stream_information, stream),
        "snapshots": (fscc.parse_snapshots, struct.pack("<III", 1, 1, len(snap)) + snap),
        "reparse": (fscc.parse_reparse_data, link),
        "symlink_error": (lambda b: fscc.parse_symlink_error(b, False), err),
        "symlink_error_311": (lambda b: fscc.parse_symlink_error(b, True),
                              struct.pack("<II", len(err), 0) + err),
        "volume": (fscc.parse_volume_serial, struct.pack("<QIIBx", 1, 2, 0, 0)),
        "error_data": (fscc.parse_error_data, struct.pack("<HBBI", 9, 0, 0, 2) + b"ab"),
        "follow": (lambda b: fscc.follow_symlink(
            "d\\lnk\\rest", fscc.parse_symlink_error(b, False)), err),
    }


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        action = rng.random()
        if action < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif action < 0.7 and buf:
            del buf[rng.randrange(len(buf)):]
        elif action < 0.85:
            buf[rng.randrange(len(buf) + 1):0] = bytes(rng.randrange(256)
                                                       for _ in range(rng.randint(1, 8)))
        elif len(buf) >= 4:
            pos = rng.randrange(len(buf) - 3)
            buf[pos:pos + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF,
                                                             len(buf), len(buf) + 1]))
    return bytes(buf)


@pytest.mark.parametrize("name", list(_valid_samples()))
def test_fuzz_parsers(name):
    """Random and mutated buffers: a result or SmbProtocolError, nothing else."""
    parse, valid = _valid_samples()[name]
    parse(valid)                                         # the seed itself is valid
    rng = random.Random(f"admin-{name}")
    for i in range(3000):
        if i % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
        else:
            data = _mutate(rng, valid)
        try:
            parse(data)
        except (SmbProtocolError, fscc.SymlinkOutsideShare):
            pass


def test_fuzzed_descriptor_that_parses_round_trips():
    """A mutated descriptor that parses is written back so that it parses
    the same (nothing read is lost or invented)."""
    rng = random.Random("admin-sd-roundtrip")
    valid = sample_sd().to_bytes()
    checked = 0
    for _ in range(3000):
        try:
            sd = S.SecurityDescriptor.from_bytes(_mutate(rng, valid))
        except SmbProtocolError:
            continue
        again = S.SecurityDescriptor.from_bytes(sd.to_bytes())
        assert again.to_bytes() == sd.to_bytes()
        checked += 1
    assert checked > 50


def test_lock_sequence_cycles_index_and_number():
    """LockSequenceIndex 1..64, LockSequenceNumber (4 bits) new for each reuse
    of an index ([MS-SMB2] 2.2.26), so a replayed LOCK is recognised."""
    from smblayer.fs.locks import LockingFile

    f = LockingFile()
    seq = [f._next_sequence() for _ in range(64 * 17)]
    assert [s >> 4 for s in seq[:66]] == list(range(1, 65)) + [1, 2]
    assert [s & 0xF for s in seq[::64]] == [(i + 1) % 16 for i in range(17)]
    assert len(set(seq[:64 * 15])) == 64 * 15


def test_nt_transact_codec():
    from smblayer.proto import smb1
    words, data = smb1.pack_nt_transact(smb1.NT_TRANSACT_QUERY_SECURITY_DESC,
                                        b"\x01\x00\x00\x00\x07\x00\x00\x00", max_data=100)
    assert words[0] == 19 and len(words) == 1 + 38
    assert int.from_bytes(words[-2:], "little") == smb1.NT_TRANSACT_QUERY_SECURITY_DESC


class _ScriptedClient:
    """Answers each CREATE from a script; records the paths asked."""

    def __init__(self, dialect, answers):
        from types import SimpleNamespace
        self.dialect = dialect
        self.generation = 0
        self.negotiated = SimpleNamespace(multi_credit=True, capabilities=0, dialect=dialect,
                                          max_read_size=65536, max_write_size=65536,
                                          max_transact_size=65536)
        self.answers = list(answers)
        self.paths = []

    def run_task(self, task):
        from smblayer.proto import smb2
        from smblayer.transport.task import Reply
        self.paths.append(bytes(task.body[1]).decode("utf-16-le").rstrip("\0"))
        status, body = self.answers.pop(0)
        header = smb2.SYNC_HEADER.pack(b"\xfeSMB", 64, 0, status, smb2.Command.CREATE, 1,
                                       1, 0, 1, 0, 1, 1, bytes(16))
        return Reply(smb2.parse_header, header + body, 64, status)


def _stopped(target: str, rest: str, relative: bool = True, dialect_311: bool = True):
    link = fscc.symlink_reparse_data(target, relative)[8:]
    response = struct.pack("<IIIHH", len(link) + 12, fscc.SYMLINK_ERROR_TAG,
                           fscc.IO_REPARSE_TAG_SYMLINK, len(link),
                           len(rest.encode("utf-16-le"))) + link
    data = struct.pack("<II", len(response), 0) + response if dialect_311 else response
    return (0x8000002D, struct.pack("<HBBI", 9, 1 if dialect_311 else 0, 0, len(data)) + data)


_CREATED = (0, struct.pack("<HBBIQQQQQQII16sII", 89, 0, 0, 1, 0, 0, 0, 0, 0, 5, 0x80, 0,
                           b"F" * 16, 0, 0))


@pytest.mark.parametrize("dialect", ["SMB2_1", "SMB3_1_1"])
def test_open_follows_a_relative_symlink_and_refuses_an_absolute_one(dialect):
    import errno

    from smblayer import Dialect, SmbStatusError
    from smblayer.fs.smb2ops import Smb2FileOps
    from types import SimpleNamespace

    d = getattr(Dialect, dialect)
    v311 = d >= Dialect.SMB3_1_1

    def ops(answers):
        client = _ScriptedClient(d, answers)
        return Smb2FileOps(SimpleNamespace(client=client, session=None)), client

    o, client = ops([_stopped("..\\real", "\\f.txt", dialect_311=v311),
                     _stopped("g.txt", "", dialect_311=v311), _CREATED])
    handle = o.open("dir\\lnk\\f.txt", access=1, disposition=1)
    assert client.paths == ["dir\\lnk\\f.txt", "real\\f.txt", "real\\g.txt"]
    assert handle.path == "real\\g.txt" and handle.fid == b"F" * 16
    o, client = ops([_stopped("\\??\\C:\\Windows", "", relative=False, dialect_311=v311)])
    with pytest.raises(SmbStatusError) as info:
        o.open("lnk", access=1, disposition=1)
    assert info.value.errno == errno.ELOOP and "absolute" in str(info.value)
    assert info.value.filename == "lnk"
    o, client = ops([_stopped("lnk", "", dialect_311=v311)] * 40)
    with pytest.raises(SmbStatusError, match="more than 32 symbolic links"):
        o.open("lnk", access=1, disposition=1)
