"""The os-level pieces that need no server: SmbStatusError as an OSError,
FileInfo.to_stat() as an os.stat_result, dialect names, fsspec paths."""
from __future__ import annotations

import errno
import os
import pathlib
import pickle
import stat

import pytest

from smblayer import Dialect, DialectRange, SmbError, SmbStatusError
from smblayer.errors import status_error
from smblayer.fs.ops import FileInfo, normpath, unix_to_filetime
from smblayer.fs.tree import outpath
from smblayer.proto.status import NtStatus


@pytest.mark.parametrize("status, builtin, code", [
    (NtStatus.OBJECT_NAME_NOT_FOUND, FileNotFoundError, errno.ENOENT),
    (NtStatus.OBJECT_PATH_NOT_FOUND, FileNotFoundError, errno.ENOENT),
    (NtStatus.OBJECT_NAME_COLLISION, FileExistsError, errno.EEXIST),
    (NtStatus.ACCESS_DENIED, PermissionError, errno.EACCES),
    (NtStatus.DELETE_PENDING, PermissionError, errno.EACCES),
    (NtStatus.NOT_A_DIRECTORY, NotADirectoryError, errno.ENOTDIR),
    (NtStatus.FILE_IS_A_DIRECTORY, IsADirectoryError, errno.EISDIR),
    (NtStatus.DIRECTORY_NOT_EMPTY, OSError, errno.ENOTEMPTY),
    (NtStatus.OBJECT_NAME_INVALID, OSError, errno.EINVAL),
    (NtStatus.DISK_FULL, OSError, errno.ENOSPC),
    (0xC0DE0001, OSError, None),                          # unknown: no errno
])
def test_status_errors_are_oserrors(status, builtin, code):
    err = status_error(status, "CREATE", "dir\\a.txt")
    assert isinstance(err, builtin) and isinstance(err, OSError)
    assert isinstance(err, SmbStatusError) and isinstance(err, SmbError)
    assert err.errno == code and err.status == status
    assert err.filename == err.path == "dir/a.txt"
    assert "dir/a.txt" in str(err) and "CREATE" in str(err)
    try:
        raise err
    except OSError as caught:
        assert caught is err
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err) and copy.errno == code and copy.filename == "dir/a.txt"


def test_status_error_path_set_later_is_normalised():
    err = status_error(NtStatus.OBJECT_NAME_NOT_FOUND, "CREATE")
    assert err.path is None and err.filename is None
    err.path = "a\\b"                      # as the client annotates errors
    assert err.path == err.filename == "a/b"


def test_file_info_to_stat():
    t = 1_700_000_000.125
    info = FileInfo("f", size=1234, allocation_size=4096, attributes=0x20,
                    creation_time=unix_to_filetime(t - 10), last_access_time=unix_to_filetime(t),
                    last_write_time=unix_to_filetime(t + 1), change_time=unix_to_filetime(t + 2),
                    file_index=987654321, nlink=3)
    st = info.to_stat()
    assert isinstance(st, os.stat_result)
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o644
    assert (st.st_ino, st.st_nlink, st.st_size, st.st_blocks) == (987654321, 3, 1234, 8)
    assert st.st_mtime == t + 1 and st.st_mtime_ns == 1_700_000_001_125_000_000
    assert st[stat.ST_MTIME] == 1_700_000_001 and st.st_ctime == t + 2
    ro_dir = FileInfo("d", attributes=0x10 | 0x01).to_stat()
    assert stat.S_ISDIR(ro_dir.st_mode) and ro_dir.st_mode & 0o777 == 0o555
    assert ro_dir.st_mtime == 0 and ro_dir.st_mtime_ns == 0      # "not set" stays 0


def test_to_stat_by_sequence_is_to_stat_by_names(monkeypatch):
    """to_stat gives os.stat_result its whole sequence (the fields after the
    tenth in this platform's order); by names it is the same result."""
    from smblayer.fs import ops
    assert ops._STAT_TAIL is not None                   # CPython: its members say the order
    t = unix_to_filetime(1_700_000_000.125)
    infos = [FileInfo("f", 1234, 4096, 0x21, t - 7, t, t + 1, t + 2, 99, 3),
             FileInfo("d", attributes=0x10, creation_time=t), FileInfo("l", link=True)]
    fast = [info.to_stat(dev=5) for info in infos]
    monkeypatch.setattr(ops, "_STAT_TAIL", None)
    monkeypatch.setattr(ops, "_BIRTHTIME", True)    # as where there is one (not Linux)
    slow = [info.to_stat(dev=5) for info in infos]
    names = [n for n in dir(os.stat_result) if n.startswith("st_")]
    for a, b in zip(fast, slow):
        assert a == b and [getattr(a, n) for n in names] == [getattr(b, n) for n in names]
    assert fast[0].st_blocks == 8 and fast[0].st_blksize == 4096 and fast[0].st_rdev == 0
    assert fast[0].st_atime_ns == 1_700_000_000_125_000_000 and fast[0].st_dev == 5


def test_dialect_names():
    assert Dialect.parse("3.1.1") is Dialect("3.11") is Dialect.SMB3_1_1
    assert DialectRange("NT1", "2.1") == DialectRange(Dialect.SMB1, Dialect.SMB2_1)
    with pytest.raises(ValueError):
        Dialect.parse("4.0")


def test_normpath_is_the_joined_components():
    """Its shortcuts (one name; nothing to drop) give what joining the
    non-empty, non-"." components gives, for every short path of these parts."""
    import itertools

    def joined(path):
        return "\\".join(p for p in path.replace("/", "\\").split("\\") if p and p != ".")

    for k in range(5):
        for parts in itertools.product(["a", ".", "..", "/", "\\", "b.c", ""], repeat=k):
            path = "".join(parts)
            assert normpath(path) == normpath(path.encode()) == joined(path), path
    assert normpath(pathlib.PurePosixPath("a/./b")) == "a\\b"
    assert type(normpath(type("S", (str,), {})("a"))) is str


def test_paths_out():
    assert outpath("\\a\\\\b/./c/") == "a/b/c"
    assert outpath("") == outpath("/") == ""


def test_fsspec_paths():
    fsspec = pytest.importorskip("fsspec")
    from smblayer.fsspec import SMBFileSystem
    assert fsspec.__name__ == "fsspec"
    strip = SMBFileSystem._strip_protocol
    assert strip("smblayer://u:p@host:4450/share/a/b.csv") == "share/a/b.csv"
    assert strip("/share/a/") == strip("share\\a") == "share/a"
    assert strip(["smblayer://h/s/x", "s/y"]) == ["s/x", "s/y"]
    assert SMBFileSystem._get_kwargs_from_urls("smblayer://u:p@host:4450/share/x") == {
        "host": "host", "port": 4450, "username": "u", "password": "p"}
    fs = SMBFileSystem(host="192.0.2.1", skip_instance_cache=True)   # connects lazily
    assert fs.unstrip_protocol("share/x") == "smblayer://192.0.2.1:445/share/x"
    with pytest.raises(ValueError):
        fs.info("")


def test_stat_plan_offline():
    """stat's compound (CREATE, QUERY_INFO FileAllInformation, CLOSE on the
    related handle) and its finish on a crafted reply; a short reply is an
    SmbProtocolError."""
    import struct
    import types

    from smblayer.errors import SmbProtocolError
    from smblayer.fs.smb2ops import Smb2FileOps
    from smblayer.proto import commands, smb2
    from smblayer.task import Reply

    ops = object.__new__(Smb2FileOps)
    ops.tree, ops.session, ops.client = types.SimpleNamespace(posix=False), object(), None
    tasks, finish = ops.stat_plan("d\\f.txt")
    assert [t.command for t in tasks] == [smb2.Command.CREATE, smb2.Command.QUERY_INFO,
                                          smb2.Command.CLOSE]
    assert tasks[1].body == commands.query_info_request(commands.RELATED_FILE_ID,
                                                        commands.INFO_FILE,
                                                        commands.FILE_ALL_INFORMATION)
    assert tasks[2].body == commands.close_request(commands.RELATED_FILE_ID)
    assert NtStatus.OBJECT_NAME_NOT_FOUND in tasks[2].ok_statuses
    assert NtStatus.OBJECT_NAME_NOT_FOUND not in tasks[0].ok_statuses
    assert all(t.security is ops.session and t.tree is ops.tree and t.path == "d\\f.txt"
               for t in tasks)
    t = unix_to_filetime(1_700_000_000.5)
    all_info = struct.pack("<QQQQI4xQQIBB2xQ", t, t + 1, t + 2, t + 3, 0x20, 4096, 100, 2, 0,
                           0, 42) + bytes(28)
    reply = bytes(64) + struct.pack("<HHI", 9, 72, len(all_info)) + all_info
    got = finish([None, Reply(None, reply, 64, 0), None])
    assert (got.name, got.size, got.allocation_size, got.attributes, got.nlink,
            got.file_index) == ("f.txt", 100, 4096, 0x20, 2, 42)
    assert (got.creation_time, got.last_access_time, got.last_write_time,
            got.change_time) == (t, t + 1, t + 2, t + 3)
    with pytest.raises(SmbProtocolError):
        finish([None, Reply(None, reply[:64 + 8 + 71], 64, 0), None])
