"""DFS against a real Samba namespace (the ``samba_dfs`` fixture): links to
a share on the same server (same port reused), to a second server, failover
past a dead target, a dead link and a referral loop as clear errors, the
referral cache and its TTL, and the CLI through a link."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

from smblayer import Dialect, DialectRange, SmbConnectionError, SmbError, fs
from smblayer.fs.dfs import DfsTree, ReferralCache, get_referral, parse_referral_response
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# Interop: every test of this module runs on Samba 4.17 and on Samba 4.22.
@pytest.fixture(scope="module", params=SERVERS)
def samba_dfs(request, samba_dfs):
    return on_both(request, samba_dfs, "samba_422_dfs")


ALL_DIALECTS = [Dialect.SMB1, Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0,
                Dialect.SMB3_0_2, Dialect.SMB3_1_1]


def connect(ns, dialect=Dialect.SMB3_1_1, **kwargs):
    root = ns.root
    return fs.connect(root.host, "dfs", root.username, root.password, port=root.port,
                      dfs_ports=ns.ports, dialects=DialectRange(dialect, dialect), **kwargs)


@pytest.fixture(scope="module")
def files(samba_dfs):
    (samba_dfs.root.share_path("share") / "dfs-local.txt").write_text("on the root server")
    (samba_dfs.second.share_path("share") / "dfs-remote.txt").write_text("on the second")
    return samba_dfs


@pytest.mark.parametrize("dialect", ALL_DIALECTS, ids=lambda d: d.name)
def test_link_to_a_share_on_the_same_server(files, dialect):
    with connect(files, dialect) as tree:
        assert isinstance(tree, DfsTree) and tree.dfs
        assert set(tree.listdir("")) >= {"local", "remote", "failover"}
        assert tree.read_bytes("local/dfs-local.txt") == b"on the root server"
        tree.write_bytes(f"local/new-{dialect.name}.txt", b"through the link")
        assert (files.root.share_path("share") / f"new-{dialect.name}.txt").read_bytes() == \
            b"through the link"
        with tree.open("local/dfs-local.txt", "rb") as f:
            assert f.read() == b"on the root server"
        assert tree.stat("local/dfs-local.txt").st_size == len(b"on the root server")
        # the referral named 127.0.0.1 without a port: our port was reused
        target = tree._targets[("127.0.0.1", files.root.port, "share")]
        assert target.client.port == files.root.port


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_link_to_a_second_server(files, dialect):
    with connect(files, dialect) as tree:
        assert tree.read_bytes("remote/dfs-remote.txt") == b"on the second"
        assert "dfs-remote.txt" in tree.listdir("remote")
        tree.mkdir("remote/made-here")
        assert (files.second.share_path("share") / "made-here").is_dir()
        tree.rename("remote/made-here", "remote/renamed")
        assert (files.second.share_path("share") / "renamed").is_dir()
        tree.rmdir("remote/renamed")


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_failover_to_the_next_target(files, dialect):
    with connect(files, dialect) as tree:
        t0 = time.monotonic()
        assert "hello.txt" in tree.listdir("failover")        # \\127.0.0.1\readonly
        assert time.monotonic() - t0 < 10
        referral, _ = tree.referrals.lookup(f"\\127.0.0.1\\dfs\\failover\\x")
        assert [str(t) for t in referral.targets] == ["\\\\127.0.0.2\\share",
                                                      "\\\\127.0.0.1\\readonly"]
        assert referral.preferred == 1      # the dead one is not tried first again
        assert tree.read_bytes("failover/hello.txt").startswith(b"hello")


def test_dead_link_is_a_clear_error(files):
    with connect(files) as tree:
        t0 = time.monotonic()
        with pytest.raises(SmbConnectionError) as info:
            tree.listdir("dead")
        assert time.monotonic() - t0 < 10
        assert "dead" in str(info.value) and "127.0.0.2" in str(info.value)


def test_referral_loop_is_a_clear_error(files):
    with connect(files) as tree:
        t0 = time.monotonic()
        with pytest.raises(SmbError) as info:
            tree.listdir("loop/x")
        assert time.monotonic() - t0 < 10
        assert "loop" in str(info.value).lower()


def test_referral_cache_and_ttl(files):
    with connect(files) as tree:
        tree.listdir("local")
        hit = tree.referrals.lookup("\\127.0.0.1\\DFS\\Local\\a\\b")   # case-insensitive
        assert hit is not None and hit[1] == "a\\b"
        assert hit[0].ttl > 0
        # A cached route needs no new referral: drop the IPC$ trees and go on.
        tree._ipc.clear()
        assert tree.read_bytes("local/dfs-local.txt") == b"on the root server"
        assert tree._ipc == {}
    now = [100.0]
    cache = ReferralCache(clock=lambda: now[0])
    referral = parse_referral_response(_v4_response(ttl=30), "\\srv\\dfs\\link\\f")
    cache.put(referral)
    assert cache.lookup("\\srv\\dfs\\link\\f")[1] == "f"
    assert cache.lookup("\\srv\\dfs\\linkx") is None          # component boundary
    now[0] += 31
    assert cache.lookup("\\srv\\dfs\\link\\f") is None        # expired


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_get_referral_directly(files, dialect):
    with fs.connect(files.root.host, "dfs", files.root.username, files.root.password,
                    port=files.root.port, dfs=False,
                    dialects=DialectRange(dialect, dialect)) as tree:
        assert tree.dfs and not isinstance(tree, DfsTree)
        ipc = tree.session.tree_connect("IPC$")
        referral = get_referral(tree.session, "\\127.0.0.1\\dfs\\remote\\x", ipc)
        assert referral.prefix.lower() == "\\127.0.0.1\\dfs\\remote"
        assert [str(t) for t in referral.targets] == ["\\\\localhost\\share"]
        assert referral.version in (3, 4)
        ipc.disconnect()


def test_cli_through_a_link(files, tmp_path):
    env = dict(os.environ, SMB_USER=files.root.username, SMB_PASSWORD=files.root.password)
    # the link on the same server: our port is reused, no --dfs-port needed
    url = f"//127.0.0.1:{files.root.port}/dfs/local/dfs-local.txt"
    res = subprocess.run([sys.executable, "-m", "smblayer", "cat", url], env=env,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"on the root server"


# -- Tree helpers through links (walk, glob, copytree, rmtree...) ------------------------

def _second_tree(ns, name):
    """A small directory tree on the second server, seen as remote/NAME."""
    top = ns.second.share_path("share") / name
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "a.txt").write_bytes(b"a" * 10)
    (top / "sub" / "b.txt").write_bytes(b"b" * 20)
    (top / "sub" / "deeper" / "c.dat").write_bytes(b"c" * 30)
    os.utime(top / "a.txt", (1_200_000_000, 1_200_000_000))
    return top


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_walk_and_glob_follow_links(files, dialect):
    name = f"walk-{dialect.name}"
    _second_tree(files, name)
    with connect(files, dialect) as tree:
        # walk of the namespace root descends into the links' targets
        errors = []
        seen = {dirpath: (sorted(dirs), sorted(names))
                for dirpath, dirs, names in tree.walk("", onerror=errors.append)}
        assert "dfs-local.txt" in seen["local"][1]
        assert "hello.txt" in seen["failover"][1]
        assert seen[f"remote/{name}"] == (["sub"], ["a.txt"])
        assert seen[f"remote/{name}/sub/deeper"] == ([], ["c.dat"])
        # the dead link and the loop are skipped, reported to onerror
        assert "dead" not in seen and "loop" not in seen
        assert sorted(type(e).__name__ for e in errors) == ["DfsLinkError", "DfsLinkError"]
        assert {e.link.lower().rsplit("\\", 1)[-1] for e in errors} >= {"dead"}
        walked = [(d, sorted(n)) for d, _, n in tree.walk(f"remote/{name}", topdown=False)]
        assert walked[-1] == (f"remote/{name}", ["a.txt"])
        entries = {e.path: e for e in tree.scandir(f"remote/{name}/sub")}
        assert set(entries) == {f"remote/{name}/sub/b.txt", f"remote/{name}/sub/deeper"}
        assert entries[f"remote/{name}/sub/b.txt"].stat().st_size == 20
        assert sorted(tree.listdir(f"remote/{name}")) == ["a.txt", "sub"]
        # glob: paths as seen through the namespace, across links, dead links skipped
        assert tree.glob(f"remote/{name}/**/*.txt", recursive=True) == [
            f"remote/{name}/a.txt", f"remote/{name}/sub/b.txt"]
        assert tree.glob("*/dfs-remote.txt") == ["remote/dfs-remote.txt"]
        assert tree.glob("*/dfs-*.txt") == ["local/dfs-local.txt", "remote/dfs-remote.txt"]
        assert tree.glob(f"remote/{name}/sub/deeper/c.dat") == [
            f"remote/{name}/sub/deeper/c.dat"]
        # exists & co.
        assert tree.exists(f"remote/{name}/a.txt") and tree.isfile(f"remote/{name}/a.txt")
        assert tree.isdir("remote") and tree.isdir(f"remote/{name}/sub")
        assert not tree.exists(f"remote/{name}/nothing") and not tree.isdir("local/nothing")
        assert not tree.exists("dead/x")             # a dead link: like a broken symlink
        assert tree.getsize(f"remote/{name}/sub/deeper/c.dat") == 30
        assert tree.file_info(f"remote/{name}/sub").is_dir
        assert tree.stat(f"remote/{name}/a.txt").st_mtime == 1_200_000_000


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_copy_and_delete_helpers_follow_links(files, dialect):
    name = f"copy-{dialect.name}"
    src = _second_tree(files, name)
    local = files.root.share_path("share")
    with connect(files, dialect) as tree:
        # copytree from the second server to the root server, through two links
        assert tree.copytree(f"remote/{name}", f"local/{name}") == f"local/{name}"
        assert (local / name / "sub" / "deeper" / "c.dat").read_bytes() == b"c" * 30
        assert os.stat(local / name / "a.txt").st_mtime == 1_200_000_000
        # copyfile and copy (server-side where it can) between servers
        tree.copyfile(f"local/{name}/a.txt", f"remote/{name}/a-copy.txt")
        assert (src / "a-copy.txt").read_bytes() == b"a" * 10
        assert tree.copy(f"remote/{name}/sub/b.txt", f"local/{name}/b-copy.txt") == 20
        assert (local / name / "b-copy.txt").read_bytes() == b"b" * 20
        assert tree.copy(f"remote/{name}/sub/b.txt", f"remote/{name}/b2.txt") == 20
        assert (src / "b2.txt").read_bytes() == b"b" * 20
        # makedirs, utime, remove, rmtree through links
        tree.makedirs(f"remote/{name}/x/y/z")
        assert (src / "x" / "y" / "z").is_dir()
        tree.utime(f"remote/{name}/b2.txt", (1_300_000_000, 1_300_000_000))
        assert os.stat(src / "b2.txt").st_mtime == 1_300_000_000
        tree.remove(f"remote/{name}/b2.txt")
        assert not (src / "b2.txt").exists()
        tree.rmtree(f"local/{name}")
        assert not (local / name).exists()
        tree.rmtree(f"remote/{name}")
        assert not src.exists()
        with pytest.raises(ValueError):
            tree.rmtree("remote")                 # the whole target share: refused
        # raw handles live on the target's tree
        handle = tree.open_handle("remote/dfs-remote.txt")
        tree.check_handle(handle)
        tree.close_handle(handle)
        assert handle.closed


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_rename_through_an_unresolved_link(files, dialect):
    """rename as the first operation: neither path's link is in the cache."""
    name = f"ren-{dialect.name}"
    (files.second.share_path("share") / name).write_bytes(b"x")
    with connect(files, dialect) as tree:
        tree.rename(f"remote/{name}", f"remote/{name}.new")
        assert (files.second.share_path("share") / f"{name}.new").read_bytes() == b"x"
    with connect(files, dialect) as tree:
        tree.replace(f"remote/{name}.new", f"remote/{name}")
        with pytest.raises(SmbError, match="different DFS targets"):
            tree.rename(f"remote/{name}", f"local/{name}")
    assert (files.second.share_path("share") / name).read_bytes() == b"x"


def test_watch_through_a_link(files):
    with connect(files) as tree:
        watch = tree.watch("remote")
        try:
            assert watch.tree.client.port == files.second.port
            # Samba registers a watch asynchronously: a change made at once
            # can go unreported, so write until the event comes (bounded).
            target = files.second.share_path("share") / "watched.txt"
            for _ in range(100):
                target.write_bytes(b"w")
                event = watch.next(0.1)
                if event is not None:
                    break
            assert event is not None, "the watch through the link reported nothing"
            assert event.path == "watched.txt"
        finally:
            watch.close()


# -- the CLI to another host on a non-default port -----------------------------------------

def _cli(files, *args):
    env = dict(os.environ, SMB_USER=files.root.username, SMB_PASSWORD=files.root.password)
    return subprocess.run([sys.executable, "-m", "smblayer", *args], env=env,
                          capture_output=True, timeout=60)


def test_cli_dfs_port_and_host(files, tmp_path):
    base = f"//127.0.0.1:{files.root.port}/dfs"
    port = f"localhost={files.second.port}"
    # without --dfs-port the second server is looked for on 445
    res = _cli(files, "cat", f"{base}/remote/dfs-remote.txt", "--timeout", "5")
    assert res.returncode != 0 and b"localhost" in res.stderr
    res = _cli(files, "--dfs-port", port, "cat", f"{base}/remote/dfs-remote.txt")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"on the second"
    # --dfs-host maps the referral's name to an address (127.0.0.2: nothing there)
    res = _cli(files, "cat", f"{base}/remote/dfs-remote.txt", "--dfs-port", port,
               "--dfs-host", "localhost=127.0.0.2", "--timeout", "5")
    assert res.returncode != 0 and b"127.0.0.2" in res.stderr
    res = _cli(files, "cat", f"{base}/remote/dfs-remote.txt", "--dfs-port", port,
               "--dfs-host", "LOCALHOST=127.0.0.1")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"on the second"
    # a directory listing and a recursive download through the link
    _second_tree(files, "cli-tree")
    res = _cli(files, "ls", f"{base}/remote/cli-tree", "--dfs-port", port)
    assert res.returncode == 0, res.stderr
    assert b"a.txt" in res.stdout and b"sub" in res.stdout
    res = _cli(files, "get", "-r", f"{base}/remote/cli-tree", str(tmp_path), "--dfs-port", port)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cli-tree" / "sub" / "deeper" / "c.dat").read_bytes() == b"c" * 30
    res = _cli(files, "cat", base + "/remote/x", "--dfs-port", "localhost=99999")
    assert res.returncode == 2 and b"HOST=PORT" in res.stderr


def _v4_response(ttl: int) -> bytes:
    path = "\\srv\\dfs\\link"
    # entry sizes cover only the fixed part; the names follow all entries
    n1 = ("\\a\\share\\sub\0").encode("utf-16-le")
    fixed = 8 + 4 + 6 + 16
    e1 = struct.pack("<HHHHIHHH16s", 4, fixed, 0, 0, ttl, 0, 0, 2 * fixed, bytes(16))
    e2 = struct.pack("<HHHHIHHH16s", 4, fixed, 0, 0, ttl, 0, 0, fixed + len(n1), bytes(16))
    names = n1 + ("\\b\\share\0").encode("utf-16-le")
    return struct.pack("<HHI", 2 * len(path), 2, 3) + e1 + e2 + names


def test_parse_referral_v4_and_v2():
    ref = parse_referral_response(_v4_response(ttl=77), "\\srv\\dfs\\link\\file")
    assert ref.prefix == "\\srv\\dfs\\link" and ref.ttl == 77 and ref.version == 4
    assert [(t.server, t.share, t.path) for t in ref.targets] == [("a", "share", "sub"),
                                                                   ("b", "share", "")]
    # version 2: Proximity, TTL, three offsets
    name = "\\c\\data\0".encode("utf-16-le")
    fixed = 8 + 4 + 4 + 6
    entry = struct.pack("<HHHHIIHHH", 2, fixed, 0, 0, 0, 12, fixed, fixed, fixed) + name
    ref2 = parse_referral_response(struct.pack("<HHI", 8, 1, 0) + entry, "\\x\\y\\z")
    assert ref2.prefix == "\\x\\y" and ref2.ttl == 12 and str(ref2.targets[0]) == "\\\\c\\data"
    with pytest.raises(SmbError):
        parse_referral_response(b"\x00", "\\x")
    with pytest.raises(SmbError):
        parse_referral_response(struct.pack("<HHI", 0, 1, 0) + struct.pack("<HHHH", 4, 200, 0, 0),
                                "\\x")


# -- domain-based namespaces and Kerberos on the AD DC ---------------------------------

def test_domain_based_namespace_with_kerberos(samba_ad_dc):
    dc = samba_ad_dc
    names = {dc.fqdn: dc.host}           # the referral names dc1.smbl.test
    with dc.environ():
        dc.kinit()
        with fs.connect_namespace(dc.realm, "sysvol", dc.host, port=dc.port,
                                  auth_protocol="kerberos", dfs_hosts=names,
                                  dfs_ports={dc.fqdn: dc.port}) as tree:
            assert tree.session.server_name.lower() == dc.fqdn
            assert tree.session.mechanism == "kerberos"     # cifs/dc1.smbl.test
            assert dc.realm.lower() in [n.lower() for n in tree.listdir("")]
            referral, _ = tree.referrals.lookup(f"\\{dc.realm}\\sysvol")
            assert referral.version in (3, 4)


def test_kerberos_through_a_dfs_link(samba_ad_dc):
    dc = samba_ad_dc
    with dc.environ():
        dc.kinit()
        with fs.connect(dc.host, "dfs", port=dc.port, auth_protocol="kerberos",
                        dfs_hosts={dc.fqdn: dc.host}, dfs_ports={dc.fqdn: dc.port}) as tree:
            assert isinstance(tree, DfsTree)
            tree.write_bytes("data/via-dfs.txt", b"kerberos through DFS")
            target = tree._targets[(dc.fqdn, dc.port, "share")]
            assert target.session.mechanism == "kerberos"
            assert target.session.server_name == dc.fqdn
        with open(os.path.join(dc.share_path("share"), "via-dfs.txt"), "rb") as f:
            assert f.read() == b"kerberos through DFS"


def test_cli_kerberos_through_a_dfs_link(samba_ad_dc):
    """The link ``data`` names dc1.smbl.test, which no resolver knows:
    --dfs-host and --dfs-port take the CLI there, with Kerberos only."""
    dc = samba_ad_dc
    with open(os.path.join(dc.share_path("share"), "cli-dfs.txt"), "wb") as f:
        f.write(b"kerberos, CLI and DFS")
    with dc.environ():
        dc.kinit()
        res = subprocess.run(
            [sys.executable, "-m", "smblayer", "-k", "-U", dc.username, "--timeout", "10",
             "--dfs-host", f"{dc.fqdn}={dc.host}", "--dfs-port", f"{dc.fqdn}={dc.port}",
             "cat", f"//{dc.host}:{dc.port}/dfs/data/cli-dfs.txt"],
            env=dict(os.environ), capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout == b"kerberos, CLI and DFS"
        res = subprocess.run(
            [sys.executable, "-m", "smblayer", "-k", "-U", dc.username, "--timeout", "5",
             "cat", f"//{dc.host}:{dc.port}/dfs/data/cli-dfs.txt"],
            env=dict(os.environ), capture_output=True, timeout=60)
        assert res.returncode != 0 and dc.fqdn.encode() in res.stderr.lower()


def test_administrators_calls_follow_links(files):
    """get_security, set_security, list_streams, lstat... of a path through
    a link run on the link's target share (issue 24)."""
    from smblayer.proto import security
    with connect(files) as tree, \
            fs.connect(files.second.host, "share", files.second.username,
                       files.second.password, port=files.second.port) as direct:
        link, there = "remote/dfs-remote.txt", "dfs-remote.txt"
        assert tree.get_security(link).to_bytes() == direct.get_security(there).to_bytes()
        sd = tree.get_security(link, info=("dacl",))
        everyone = [a for a in sd.dacl if a.sid == "S-1-1-0"][0]
        everyone.mask |= security.FILE_GENERIC_WRITE      # no acl_xattr: "other" gets w
        tree.set_security(link, sd)
        assert os.stat(files.second.share_path("share") / there).st_mode & 0o002
        assert [a.mask for a in direct.get_security(there).dacl if a.sid == "S-1-1-0"] == \
            [everyone.mask]
        assert [s.name for s in tree.list_streams(link)] == ["::$DATA"]
        assert tree.lstat(link).st_ino == direct.stat(there).st_ino
        assert not tree.islink(link)

