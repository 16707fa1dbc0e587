"""SMB3 POSIX extensions codecs (smblayer.proto.posix)."""
import stat
import struct

import pytest

from smblayer.proto import posix

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("mode", [stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777,
                                  stat.S_IFIFO | 0o600, stat.S_IFSOCK | 0o700,
                                  stat.S_IFCHR | 0o620, stat.S_IFBLK | 0o660,
                                  stat.S_IFREG | 0o4755])
def test_wire_mode_round_trip(mode):
    wire = posix.unix_to_wire(mode)
    assert wire & 0o7777 == mode & 0o7777 and wire < 0x10000
    assert posix.wire_to_unix(wire) == mode


def test_wire_types_are_small_numbers():
    assert posix.unix_to_wire(stat.S_IFREG | 0o640) == 0o640            # type 0: a file
    assert posix.unix_to_wire(stat.S_IFDIR | 0o700) == 0x1000 | 0o700   # type 1: a directory


def _response(owner, group, mode=0o640, nlink=3):
    return struct.pack("<III", nlink, 0, mode) + owner + group


def test_create_response_with_unix_and_account_sids():
    owner = posix.sid_bytes(5, 21, 1, 2, 3, 1000)
    group = posix.sid_bytes(22, 2, 4321)
    info, end = posix.parse_create_response(_response(owner, group) + b"tail")
    assert (info.nlink, info.mode, info.owner_sid, info.group_sid) == \
        (3, stat.S_IFREG | 0o640, "S-1-5-21-1-2-3-1000", "S-1-22-2-4321")
    assert (info.uid, info.gid, end) == (None, 4321, len(_response(owner, group)))
    info, _ = posix.parse_create_response(_response(posix.sid_bytes(22, 1, 7), group))
    assert info.uid == 7


@pytest.mark.parametrize("cut", [0, 5, 12, 20, 30])
def test_truncated_response_is_an_error(cut):
    data = _response(posix.sid_bytes(22, 1, 7), posix.sid_bytes(22, 2, 8))
    with pytest.raises(ValueError):
        posix.parse_create_response(data[:cut])


def test_descriptors():
    sd = posix.mode_descriptor(0o751)
    rev, _z, control, owner, group, sacl, dacl = struct.unpack_from("<BBHIIII", sd)
    assert (rev, control & 0x8004, owner, group, sacl, dacl) == (1, 0x8004, 0, 0, 0, 20)
    sid, parts, end = posix.parse_sid(sd, 20 + 8 + 8)     # ACL header, ACE header
    assert sid == "S-1-5-88-3-%d" % 0o751 and end == len(sd)
    sd = posix.owner_descriptor(1234, None)
    _r, _z, control, owner, group, _s, dacl = struct.unpack_from("<BBHIIII", sd)
    assert (owner, group, dacl) == (20, 0, 0)
    assert posix.parse_sid(sd, owner)[0] == "S-1-22-1-1234"
