"""SMB3 POSIX extensions against Samba 4.22 (``fs.connect(..., posix=True)``):
every result checked against the share directory on disk."""
import io
import os
import stat
import subprocess
import sys
import warnings

import pytest

from smblayer import Dialect, DialectRange, fs
from smblayer.fs import PosixUnavailableWarning

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def connect(server, share="posix", **kw):
    return fs.connect(server.host, share, server.username, server.password, port=server.port,
                      **kw)


@pytest.fixture
def posix(samba_422):
    with connect(samba_422, posix=True) as tree:
        base = f"px-{os.urandom(4).hex()}"
        tree.mkdir(base)
        yield tree, base, samba_422.share_path("posix") / base


def _same(remote, local):
    assert remote.st_mode == local.st_mode, (oct(remote.st_mode), oct(local.st_mode))
    assert (remote.st_uid, remote.st_gid) == (local.st_uid, local.st_gid)
    assert (remote.st_nlink, remote.st_ino) == (local.st_nlink, local.st_ino)
    if not stat.S_ISDIR(local.st_mode):         # SMB gives a directory size 0
        assert remote.st_size == local.st_size


def test_negotiated_and_stat_matches_the_disk(posix):
    tree, base, disk = posix
    assert tree.posix and tree.client.negotiated.posix
    tree.write_bytes(f"{base}/f.txt", b"hello")
    tree.mkdir(f"{base}/d")
    os.link(disk / "f.txt", disk / "hard")           # st_nlink 2
    os.mkfifo(disk / "fifo", 0o640)
    for name in ("f.txt", "d", "hard", "fifo", ""):
        _same(tree.stat(f"{base}/{name}".rstrip("/")), os.stat(disk / name))
    assert stat.S_IMODE(tree.stat(f"{base}/f.txt").st_mode) == 0o644     # POSIX_FILE_MODE
    assert stat.S_IMODE(tree.stat(f"{base}/d").st_mode) == 0o755         # POSIX_DIR_MODE
    assert stat.S_ISFIFO(tree.stat(f"{base}/fifo").st_mode)
    # listing gives the same as stat
    entries = {e.name: e.stat() for e in tree.scandir(base)}
    assert sorted(entries) == sorted(os.listdir(disk))
    for name, st in entries.items():
        _same(st, os.lstat(disk / name))


def test_chmod_and_chown_land_on_disk(posix):
    tree, base, disk = posix
    tree.write_bytes(f"{base}/f", b"x")
    for mode in (0o600, 0o751, 0o777, 0o000):    # Samba keeps set-id and sticky bits off
        tree.chmod(f"{base}/f", mode)
        assert stat.S_IMODE(os.stat(disk / "f").st_mode) == mode
        assert tree.stat(f"{base}/f").st_mode == os.stat(disk / "f").st_mode
    tree.chmod(f"{base}/f", 0o644)
    tree.chown(f"{base}/f", 1234, 4321)            # ids with no account: S-1-22-1/2 SIDs
    assert (os.stat(disk / "f").st_uid, os.stat(disk / "f").st_gid) == (1234, 4321)
    _same(tree.stat(f"{base}/f"), os.stat(disk / "f"))
    tree.chown(f"{base}/f", -1, 99)                # group only
    assert (os.stat(disk / "f").st_uid, os.stat(disk / "f").st_gid) == (1234, 99)
    tree.mkdir(f"{base}/d")
    tree.chmod(f"{base}/d", 0o700)
    assert os.stat(disk / "d").st_mode == stat.S_IFDIR | 0o700 == tree.stat(f"{base}/d").st_mode


def test_names_are_case_sensitive(posix):
    tree, base, disk = posix
    tree.write_bytes(f"{base}/Name", b"upper")
    tree.write_bytes(f"{base}/name", b"lower")
    assert sorted(os.listdir(disk)) == ["Name", "name"]
    assert (tree.read_bytes(f"{base}/Name"), tree.read_bytes(f"{base}/name")) == \
        (b"upper", b"lower")
    assert not tree.exists(f"{base}/NAME")


def test_a_symbolic_link_is_described_itself(posix):
    tree, base, disk = posix
    os.symlink("target/of/link", disk / "ln")
    st = tree.stat(f"{base}/ln")
    assert stat.S_ISLNK(st.st_mode) and st.st_ino == os.lstat(disk / "ln").st_ino


def test_without_posix_nothing_changes(samba_422):
    with connect(samba_422) as tree:
        assert not tree.posix
        tree.write_bytes("plain.txt", b"x")
        assert tree.stat("plain.txt").st_mode == stat.S_IFREG | 0o644
        with pytest.raises(io.UnsupportedOperation, match="POSIX"):
            tree.chmod("plain.txt", 0o600)


@pytest.mark.parametrize("how", ["4.17", "smb3.0"])
def test_a_server_without_posix_warns_and_falls_back(samba, samba_422, how):
    server, kw = (samba, {}) if how == "4.17" else \
        (samba_422, {"dialects": DialectRange(Dialect.SMB3_0, Dialect.SMB3_0)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with connect(server, "share", posix=True, **kw) as tree:
            assert not tree.posix
            tree.write_bytes("fallback.txt", b"still works")
            assert tree.read_bytes("fallback.txt") == b"still works"
            with pytest.raises(io.UnsupportedOperation):
                tree.chown("fallback.txt", 1, 1)
    assert [w.category for w in caught] == [PosixUnavailableWarning]
    assert "POSIX" in str(caught[0].message)


def test_cli_ls_long_shows_modes_and_owners(posix, samba_422):
    tree, base, disk = posix
    tree.write_bytes(f"{base}/f", b"12345")
    tree.chmod(f"{base}/f", 0o640)
    tree.chown(f"{base}/f", 1234, 4321)
    env = dict(os.environ, SMB_USER=samba_422.username, SMB_PASSWORD=samba_422.password)
    url = f"//{samba_422.host}:{samba_422.port}/posix/{base}"
    out = subprocess.run([sys.executable, "-m", "smblayer", "ls", "-l", "--posix", url],
                         capture_output=True, env=env, timeout=60, text=True)
    assert out.returncode == 0, out.stderr
    fields = out.stdout.split()
    assert fields[:5] == ["-rw-r-----", "1", "1234", "4321", "5"], out.stdout
    plain = subprocess.run([sys.executable, "-m", "smblayer", "ls", "-l", url],
                           capture_output=True, env=env, timeout=60, text=True)
    assert plain.returncode == 0 and "1234" not in plain.stdout


def test_symlink_and_readlink_on_a_posix_tree(posix):
    """Tree.symlink/readlink (one name for both mechanisms) open the POSIX
    way on a POSIX tree.  A link made on the server's disk reads back as
    os.readlink says; a link made over SMB reads back as made (Samba 4.22,
    like its own smbclient's 'symlink', keeps it as a reparse point)."""
    tree, base, disk = posix
    os.symlink("../some/target", disk / "disk-link")
    assert tree.readlink(f"{base}/disk-link") == os.readlink(disk / "disk-link")
    assert stat.S_ISLNK(tree.stat(f"{base}/disk-link").st_mode)
    tree.symlink("rel/target", f"{base}/smb-link")
    assert tree.readlink(f"{base}/smb-link") == "rel/target"
    assert "smb-link" in os.listdir(disk)
