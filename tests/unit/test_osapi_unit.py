"""The os-level pieces that need no server: SmbStatusError as an OSError,
FileInfo.to_stat() as an os.stat_result, dialect names, fsspec paths."""
from __future__ import annotations

import errno
import os
import pickle
import stat

import pytest

from smblayer import Dialect, DialectRange, SmbError, SmbStatusError
from smblayer.errors import status_error
from smblayer.fs.ops import FileInfo, unix_to_filetime
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


def test_dialect_names():
    assert Dialect.parse("3.1.1") is Dialect("3.11") is Dialect.SMB3_1_1
    assert DialectRange("NT1", "2.1") == DialectRange(Dialect.SMB1, Dialect.SMB2_1)
    with pytest.raises(ValueError):
        Dialect.parse("4.0")


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
