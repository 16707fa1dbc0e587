"""Files as administrators see them, against a private Samba configured for
each feature (``samba_admin``: acl_xattr, streams_xattr, shadow_copy2):
security descriptors checked with Samba's own smbcacls, share modes and
byte-range locks against a second client on another connection, streams
checked with smbclient's allinfo, previous versions from snapshot
directories the test makes, file ids against the server's disk."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import stat
import threading
import time
import uuid

import pytest

from smblayer import Dialect, DialectRange, SmbClient, SmbStatusError, SmbTimeoutError, fs
from smblayer.proto import security as S
from smblayer.proto.status import NtStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Dialect
ALL = [D.SMB1, D.SMB2_0_2, D.SMB2_1, D.SMB3_1_1]
SMB2 = [D.SMB2_0_2, D.SMB3_1_1]


class OtherClient(SmbClient):
    """A client class of its own: fs.connect then makes a second connection
    instead of sharing the first one's."""


def connect(admin, dialect: Dialect, *, own_connection: bool = False) -> fs.Tree:
    srv = admin.server
    extra = {"client_class": OtherClient} if own_connection else {}
    return fs.connect(srv.host, admin.share, srv.username, srv.password, port=srv.port,
                      dialects=DialectRange(dialect, dialect), **extra)


@pytest.fixture
def name():
    return f"adm-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=SMB2, ids=str)
def tree2(request, samba_admin):
    with connect(samba_admin, request.param) as tree:
        yield tree


@pytest.fixture(params=ALL, ids=str)
def trees(request, samba_admin):
    """Two trees on one dialect, each with its own connection."""
    with connect(samba_admin, request.param) as a, \
            connect(samba_admin, request.param, own_connection=True) as b:
        assert a.client is not b.client
        yield a, b


def _acl_lines(text: str):
    return [line for line in text.splitlines() if line.startswith(("ACL:", "OWNER:",
                                                                   "GROUP:", "CONTROL:"))]


# -- security descriptors ---------------------------------------------------------------


def test_get_security_matches_smbcacls(samba_admin, tree2, name):
    tree2.write_bytes(name, b"data")
    sd = tree2.get_security(name)
    assert isinstance(sd.owner, S.Sid) and str(sd.owner).startswith("S-1-")
    assert sd.dacl is not None and len(sd.dacl) >= 1
    for numeric in (False, True):
        args = ["--numeric"] if numeric else []
        theirs = samba_admin.smbcacls(name, args)
        assert theirs.returncode == 0, theirs.stderr
        assert _acl_lines(S.to_smbcacls(sd, numeric)) == _acl_lines(theirs.stdout)
    sddl = samba_admin.smbcacls(name, ["--sddl", "--numeric"])
    assert S.SecurityDescriptor.from_sddl(sddl.stdout.split()[-1]).to_bytes() == \
        S.SecurityDescriptor.from_sddl(sd.to_sddl()).to_bytes()


def test_set_security_seen_by_smbcacls(samba_admin, tree2, name):
    tree2.mkdir(name)
    sd = tree2.get_security(name)
    sd.dacl.append(S.Ace(S.ACCESS_DENIED, S.OBJECT_INHERIT_ACE | S.CONTAINER_INHERIT_ACE,
                         S.DELETE | S.WRITE_DAC, "S-1-5-21-1-2-3-4242"))
    tree2.set_security(name, sd, info=("dacl",))
    theirs = samba_admin.smbcacls(name)
    assert "ACL:S-1-5-21-1-2-3-4242:DENIED/OI|CI/DP" in theirs.stdout.splitlines()
    again = tree2.get_security(name)
    assert [str(a.sid) for a in again.dacl][-1] == "S-1-5-21-1-2-3-4242" or \
        "S-1-5-21-1-2-3-4242" in [str(a.sid) for a in again.dacl]
    # smbcacls changes it; we read smbcacls' change
    add = samba_admin.smbcacls(name, ["-a", "ACL:S-1-5-21-1-2-3-4343:ALLOWED/0x0/READ"])
    assert add.returncode == 0, add.stderr
    assert any(str(a.sid) == "S-1-5-21-1-2-3-4343" and a.mask == 0x1200A9
               for a in tree2.get_security(name, info=("dacl",)).dacl)
    # SDDL in
    tree2.set_security(name, "D:(A;;FA;;;S-1-5-21-1-2-3-4444)(A;;FA;;;SY)")
    assert "S-1-5-21-1-2-3-4444" in samba_admin.smbcacls(name, ["--sddl"]).stdout


def test_security_on_smb1(samba_admin, name):
    """NT_TRANSACT_QUERY/SET_SECURITY_DESC: the same descriptor as SMB2 sees."""
    with connect(samba_admin, D.SMB1) as tree, connect(samba_admin, D.SMB3_1_1) as tree2:
        tree.write_bytes(name, b"x")
        sd = tree.get_security(name)
        assert sd.to_bytes() == tree2.get_security(name).to_bytes()
        sd.dacl.append(S.Ace(S.ACCESS_ALLOWED, 0, S.FILE_GENERIC_READ, "S-1-5-21-5-5-5-555"))
        tree.set_security(name, sd)
        assert "ACL:S-1-5-21-5-5-5-555:ALLOWED/0x0/R" in samba_admin.smbcacls(name).stdout
        with pytest.raises(io.UnsupportedOperation, match="SMB 2.0.2 or later"):
            tree.snapshots(name)


# -- share modes -------------------------------------------------------------------------


def test_share_modes(trees, name):
    a, b = trees
    a.write_bytes(name, b"0123456789")
    with a.open(name, "rb", share="r"):
        with b.open(name, "rb") as f:                  # reading is shared
            assert f.read() == b"0123456789"
        with pytest.raises(SmbStatusError) as info:
            b.open(name, "r+b")
        assert info.value.errno == errno.EBUSY and info.value.filename == name
        assert info.value.status == NtStatus.SHARING_VIOLATION
    with a.open(name, "rb", share=""):
        with pytest.raises(OSError) as info:
            b.open(name, "rb")
        assert info.value.errno == errno.EBUSY
    with a.open(name, "rb"):                           # default "rwd": nothing refused
        with b.open(name, "r+b") as g:
            g.write(b"x")
        b.rename(name, name + ".moved")
    assert b.exists(name + ".moved")


# -- byte-range locks ---------------------------------------------------------------------


def test_locks_against_another_connection(trees, name):
    a, b = trees
    a.write_bytes(name, bytes(100))
    with a.open(name, "r+b") as f, b.open(name, "r+b") as g:
        with f.lock(0, 10) as held:
            assert f.locks == [held]
            with pytest.raises(SmbStatusError) as info:
                g.lock(5, 2)
            assert info.value.status in (NtStatus.LOCK_NOT_GRANTED, NtStatus.FILE_LOCK_CONFLICT)
            assert info.value.filename == name
            g.lock(10, 5).release()                   # next to it: free
            start = time.monotonic()
            with pytest.raises(SmbTimeoutError):
                g.lock(5, 2, wait=0.3)
            assert 0.25 < time.monotonic() - start < 5
            timer = threading.Timer(0.3, held.release)
            timer.start()
            start = time.monotonic()
            with g.lock(5, 2, wait=True):
                waited = time.monotonic() - start
            timer.join()
        assert f.locks == [] and g.locks == []
        assert 0.2 < waited < 10
        with f.lock(0, 4, exclusive=False), g.lock(0, 4, exclusive=False):
            with pytest.raises(SmbStatusError):
                g.lock(0, 4)                           # exclusive over a shared one
        with pytest.raises(SmbStatusError):
            f.unlock(50, 1)                            # nothing locked there


def test_lock_wait_is_killable(samba_admin, trees, name):
    """A waiting lock ends when its client is closed from another thread."""
    a, _b = trees
    a.write_bytes(name, bytes(10))
    waiter = connect(samba_admin, a.client.dialect, own_connection=True)
    with a.open(name, "r+b") as f, f.lock(0, 10):
        g = waiter.open(name, "r+b")
        errors = []

        def wait() -> None:
            try:
                g.lock(0, 10, wait=True)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
        waiter.client.close()
        thread.join(10)
        assert not thread.is_alive() and errors
    with contextlib.suppress(Exception):
        waiter.close()


def test_lock_wait_interrupted_by_ctrl_c_holds_nothing(samba_admin, trees, name):
    """Ctrl-C in a lock(wait=True): KeyboardInterrupt, the LOCK cancelled,
    and the range is not held afterwards (a third connection can take it
    once the first holder lets go)."""
    a, b = trees
    a.write_bytes(name, bytes(10))
    with a.open(name, "r+b") as f, b.open(name, "r+b") as g:
        held = f.lock(0, 10)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            g.lock(0, 10, wait=True)
        timer.join()
        assert g.locks == []
        held.release()
        with connect(samba_admin, a.client.dialect, own_connection=True) as c, \
                c.open(name, "r+b") as h:
            # Nothing left behind by g's cancelled LOCK.  Its CANCEL (on b's
            # connection) and a's unlock race at the server: a grant that
            # crossed the cancel is released by the client when it arrives,
            # so the range comes free within a bounded wait, never held.
            h.lock(0, 10, wait=10).release()


# -- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ALL, ids=str)
def test_streams(samba_admin, dialect, name):
    with connect(samba_admin, dialect) as tree:
        tree.write_bytes(name, b"main")
        with tree.open(f"{name}:extra", "wb") as f:
            f.write(b"stream data")
        with tree.open(f"{name}:extra", "rb") as f:
            assert f.read() == b"stream data"
        assert tree.read_bytes(name) == b"main"
        streams = {s.name: s.size for s in tree.list_streams(name)}
    assert streams == {"::$DATA": 4, ":extra:$DATA": 11}
    allinfo = samba_admin.server.smbclient(["-c", f"allinfo {name}"], share="admin")
    assert "stream: [:extra:$DATA], 11 bytes" in allinfo.stdout
    assert "stream: [::$DATA], 4 bytes" in allinfo.stdout


# -- file ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ALL, ids=str)
def test_file_ids(samba_admin, dialect, name):
    with connect(samba_admin, dialect) as tree:
        tree.write_bytes(name, b"x")
        tree.write_bytes(name + ".2", b"y")
        st, other = tree.stat(name), tree.stat(name + ".2")
        assert st.st_ino == os.stat(samba_admin.local(name)).st_ino
        assert st.st_dev != 0 and st.st_dev == other.st_dev
        assert os.path.samestat(st, tree.stat(name)) and not os.path.samestat(st, other)
        with tree.open(name, "rb") as f:
            assert f.raw.stat().st_ino == st.st_ino


# -- previous versions ---------------------------------------------------------------------


def test_snapshots(samba_admin, tree2, name):
    tree2.write_bytes(name, b"version 1")
    token = samba_admin.snapshot(time.time() - 3600 * 24 * 365)
    tree2.write_bytes(name, b"version 2")
    tokens = tree2.snapshots(name)
    assert token in tokens and token in tree2.snapshots("")
    with tree2.open(name, "rb", snapshot=token) as f:
        assert f.read() == b"version 1"
    assert tree2.read_bytes(name) == b"version 2"
    with pytest.raises(ValueError):
        tree2.open(name, "wb", snapshot=token)
    with pytest.raises(ValueError):
        tree2.open(name, "rb", snapshot="yesterday")


# -- symbolic links ------------------------------------------------------------------------


def test_symlink_refused_clearly_by_samba_417(samba_admin, tree2, name):
    with pytest.raises((io.UnsupportedOperation, SmbStatusError)):
        tree2.symlink("target", name)
    assert not tree2.exists(name)                      # no half-made link left
    tree2.write_bytes(name, b"x")
    with pytest.raises(OSError) as info:
        tree2.readlink(name)
    assert info.value.errno == errno.EINVAL


# -- command line ----------------------------------------------------------------------------


def test_cli_acl_and_get_snapshot(samba_admin, name, tmp_path):
    from _cli_helpers import ok, run
    srv = samba_admin.server
    url = f"//{srv.host}:{srv.port}/{samba_admin.share}/{name}"
    with connect(samba_admin, D.SMB3_1_1) as tree:
        tree.write_bytes(name, b"old")
    token = samba_admin.snapshot(time.time() - 7200)
    with connect(samba_admin, D.SMB3_1_1) as tree:
        tree.write_bytes(name, b"new")
    ours = ok(run(["acl", url], srv)).decode()
    theirs = samba_admin.smbcacls(name)
    assert ours == theirs.stdout
    ours = ok(run(["acl", "--numeric", url], srv)).decode()
    assert ours == samba_admin.smbcacls(name, ["--numeric"]).stdout
    ok(run(["acl", url, "-a", "ACL:S-1-5-21-7-7-7-777:DENIED/0x0/D"], srv))
    assert "ACL:S-1-5-21-7-7-7-777:DENIED/0x0/D" in samba_admin.smbcacls(name).stdout
    ok(run(["acl", url, "-D", "ACL:S-1-5-21-7-7-7-777:DENIED/0x0/D"], srv))
    assert "S-1-5-21-7-7-7-777" not in samba_admin.smbcacls(name).stdout
    bad = run(["acl", url, "-a", "ACL:S-1-1-0:MAYBE/0x0/D"], srv)
    assert bad.returncode != 0 and b"MAYBE" in bad.stderr
    assert token in ok(run(["acl", "--snapshots", url], srv)).decode().split()
    ok(run(["get", "--snapshot", token, url, str(tmp_path / "old.txt")], srv))
    assert (tmp_path / "old.txt").read_bytes() == b"old"
    assert ok(run(["get", "--snapshot", token, url, "-"], srv)) == b"old"


def test_symlinks_on_samba_422(samba_422, name):
    """Samba 4.22 shows links over SMB2: readlink and lstat see them, stat
    and reads follow them, and symlink() makes one (kept as a reparse point)."""
    srv = samba_422
    disk = srv.share_path("share")
    (disk / f"{name}.txt").write_bytes(b"T")
    (disk / f"{name}.d").mkdir()
    os.symlink(f"{name}.txt", disk / f"{name}.lnk")
    os.symlink(f"../{name}.txt", disk / f"{name}.d" / "up")
    with fs.connect(srv.host, "share", srv.username, srv.password, port=srv.port,
                    dialects=DialectRange(D.SMB3_1_1, D.SMB3_1_1)) as tree:
        for link, target in ((f"{name}.lnk", f"{name}.txt"), (f"{name}.d/up", f"../{name}.txt")):
            assert tree.readlink(link) == target
            assert stat.S_ISLNK(tree.lstat(link).st_mode) and tree.islink(link)
            assert stat.S_ISREG(tree.stat(link).st_mode)
            assert tree.stat(link).st_ino == tree.stat(f"{name}.txt").st_ino
            assert tree.read_bytes(link) == b"T"
        assert not tree.islink(f"{name}.txt")
        with pytest.raises(OSError) as info:
            tree.readlink(f"{name}.txt")
        assert info.value.errno == errno.EINVAL
        tree.symlink(f"{name}.txt", f"{name}.made")
        assert tree.readlink(f"{name}.made") == f"{name}.txt"
        assert tree.islink(f"{name}.made")


def test_open_follows_links_the_server_stops_on(samba_422, name):
    """On a POSIX tree Samba 4.22 does not follow links: a CREATE answers
    STOPPED_ON_SYMLINK with the link's target.  open() follows a relative
    one within the share (through a directory link too) and refuses an
    absolute one, naming it (errno ELOOP)."""
    srv = samba_422
    disk = srv.share_path("posix") / name
    (disk / "sub").mkdir(parents=True)
    (disk / "t.txt").write_bytes(b"T")
    os.symlink("t.txt", disk / "ln")
    os.symlink("../t.txt", disk / "sub" / "up")
    os.symlink("sub", disk / "dirlink")
    os.symlink("/etc/passwd", disk / "abs")
    with fs.connect(srv.host, "posix", srv.username, srv.password, port=srv.port,
                    posix=True) as tree:
        assert tree.posix
        for link in ("ln", "sub/up", "dirlink/up"):
            with tree.open(f"{name}/{link}", "rb") as f:
                assert f.read() == b"T"
            assert tree.read_bytes(f"{name}/{link}") == b"T"     # compound first, then open()
        tree.write_bytes(f"{name}/ln", b"via the link")
        assert (disk / "t.txt").read_bytes() == b"via the link" and (disk / "ln").is_symlink()
        with pytest.raises(SmbStatusError) as info:
            tree.open(f"{name}/abs", "rb")
        assert info.value.status == NtStatus.STOPPED_ON_SYMLINK
        assert info.value.errno == errno.ELOOP and "/etc/passwd" in str(info.value)
        assert tree.readlink(f"{name}/abs") == "/etc/passwd"
        assert stat.S_ISLNK(tree.lstat(f"{name}/ln").st_mode)
