"""Directory leases and the metadata cache (fs.dircache) against Samba 4.22,
which grants directory leases; Samba 4.17, which does not, behaves as
without the cache.  Every answer is checked against the share on disk."""
import os
import time

import pytest

from smblayer import ReconnectPolicy, TimeoutPolicy, fs
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.waiting import eventually, requests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROUND_TRIPS = ("CREATE", "QUERY_DIRECTORY", "QUERY_INFO", "CLOSE")


def connect(server, port=None, **kw):
    return fs.connect(server.host, "share", server.username, server.password,
                      port=port or server.port, **kw)


def round_trips(tree) -> int:
    return requests(tree, *ROUND_TRIPS)


@pytest.fixture
def cached(samba_422):
    with connect(samba_422) as tree:
        base = f"dl-{os.urandom(4).hex()}"
        tree.makedirs(f"{base}/sub")
        for i in range(5):
            tree.write_bytes(f"{base}/f{i}", b"x" * i)
        disk = samba_422.share_path() / base
        assert sorted(tree.listdir(base)) == sorted(os.listdir(disk))
        assert len(tree.dir_cache) == 1
        yield tree, base, disk


def test_answers_come_from_the_cache_and_match_the_disk(cached):
    tree, base, disk = cached
    tree.volume_serial                                # st_dev: asked once per tree
    before, hits = round_trips(tree), tree.dir_cache.hits
    assert sorted(tree.listdir(base)) == sorted(os.listdir(disk))
    for name in os.listdir(disk):
        st, local = tree.stat(f"{base}/{name}"), os.stat(disk / name)
        assert st.st_ino == local.st_ino and st.st_mtime_ns // 10**7 == local.st_mtime_ns // 10**7
        assert tree.isdir(f"{base}/{name}") == (disk / name).is_dir()
        assert tree.isfile(f"{base}/{name}") == (disk / name).is_file()
        if (disk / name).is_file():
            assert st.st_size == local.st_size
    assert tree.exists(f"{base}/F1")                  # case-insensitive like the server
    assert not tree.exists(f"{base}/nothing")
    with pytest.raises(FileNotFoundError):
        tree.stat(f"{base}/nothing")
    assert round_trips(tree) == before                # all of it from the cache
    assert tree.dir_cache.hits > hits + 10
    walked = [(d, sorted(ds), sorted(fs_)) for d, ds, fs_ in tree.walk(base)]
    local = [(os.path.relpath(d, disk.parent), sorted(ds), sorted(fs_))
             for d, ds, fs_ in os.walk(disk)]
    assert walked == local
    before = round_trips(tree)
    assert [(d, sorted(ds), sorted(fs_)) for d, ds, fs_ in tree.walk(base)] == local
    assert round_trips(tree) == before                # both directories cached now


@pytest.mark.parametrize("change", ["create", "remove", "rename", "grow"])
def test_another_clients_change_is_seen_after_the_break(cached, samba_422, tmp_path, change):
    tree, base, disk = cached
    tree.volume_serial
    sizes = {name: tree.stat(f"{base}/{name}").st_size for name in os.listdir(disk)}
    assert tree.stat(f"{base}/f3") is tree.stat(f"{base}/f3")      # made once per entry
    src = tmp_path / "data"
    src.write_bytes(b"y" * 1000)
    command = {"create": f"put {src} {base}/new", "remove": f"del {base}/f1",
               "rename": f"rename {base}/f2 {base}/renamed",
               "grow": f"put {src} {base}/f3"}[change]
    res = samba_422.smbclient(["-c", command], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    eventually(lambda: len(tree.dir_cache) == 0)           # the break dropped it
    assert sorted(tree.listdir(base)) == sorted(os.listdir(disk))
    for name in os.listdir(disk):
        if (disk / name).is_file():
            assert tree.stat(f"{base}/{name}").st_size == os.stat(disk / name).st_size
    assert tree.exists(f"{base}/new") == (change == "create")
    if change == "grow":
        assert tree.stat(f"{base}/f3").st_size == 1000 != sizes["f3"]
    assert tree.exists(f"{base}/f1") == (change != "remove")


def test_own_changes_are_seen_at_once(cached):
    tree, base, disk = cached
    tree.write_bytes(f"{base}/mine", b"12345")
    assert tree.stat(f"{base}/mine").st_size == 5
    tree.listdir(base)
    with tree.open(f"{base}/mine", "ab") as f:
        f.write(b"678")
    assert tree.stat(f"{base}/mine").st_size == 8 == os.stat(disk / "mine").st_size
    tree.listdir(base)
    tree.rename(f"{base}/mine", f"{base}/yours")
    assert not tree.exists(f"{base}/mine") and tree.exists(f"{base}/yours")
    tree.listdir(base)
    tree.remove(f"{base}/yours")
    tree.mkdir(f"{base}/newdir")
    assert sorted(tree.listdir(base)) == sorted(os.listdir(disk))


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_a_reconnect_invalidates(samba_422, mode):
    """A change the server cannot tell us about (made on its disk directly)
    shows the cache is in use; after a reconnect it is not served."""
    timeouts = TimeoutPolicy(mode=mode, timeout=10.0, echo_interval=1.0, soft_timeout=5.0,
                             connect_timeout=5.0)
    with FaultProxy(samba_422.host, samba_422.port) as proxy, \
            connect(samba_422, proxy.port, timeouts=timeouts,
                    reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.5)) as tree:
        base = f"rc-{os.urandom(4).hex()}"
        tree.mkdir(base)
        tree.listdir(base)
        (samba_422.share_path() / base / "behind").write_bytes(b"z")
        assert not tree.exists(f"{base}/behind")          # served from the cache
        generation = tree.client.generation
        proxy.reset()
        eventually(lambda: tree.client.generation != generation or
              tree.client.state.value != "active")
        assert tree.exists(f"{base}/behind")              # asked the server again
        assert tree.client.generation != generation


def test_bounded_by_size_and_time_and_switchable_off(samba_422):
    with connect(samba_422, dir_cache=2, dir_cache_ttl=0.3) as tree:
        base = f"bd-{os.urandom(4).hex()}"
        for d in "abc":
            tree.makedirs(f"{base}/{d}")
            tree.listdir(f"{base}/{d}")
        assert len(tree.dir_cache) == 2
        tree.listdir(f"{base}/c")
        before = round_trips(tree)
        tree.exists(f"{base}/c/x")
        assert round_trips(tree) == before                # fresh: from the cache
        time.sleep(0.4)
        tree.exists(f"{base}/c/x")
        assert round_trips(tree) > before                 # too old: asked the server
    with connect(samba_422, dir_cache=0) as tree:
        tree.listdir("")
        assert len(tree.dir_cache) == 0


def test_the_cache_never_outlives_its_tree(samba_422):
    tree = connect(samba_422)
    tree.listdir("")
    assert len(tree.dir_cache) == 1
    client = tree.client
    closes = client.stats().get("CLOSE", {}).get("ops", 0)
    tree.close()
    assert len(tree.dir_cache) == 0
    assert client.stats().get("CLOSE", {}).get("ops", 0) == closes + 1


def test_no_directory_leases_on_4_17_means_as_before(samba):
    with connect(samba) as tree:
        tree.listdir("")
        assert len(tree.dir_cache) == 0
        before = round_trips(tree)
        tree.exists("anything")
        assert round_trips(tree) > before


def test_fsspec_exists_info_open_is_one_round_trip(samba_422):
    pytest.importorskip("fsspec")
    from smblayer.fsspec import SMBFileSystem
    fsys = SMBFileSystem(host=samba_422.host, port=samba_422.port,
                         username=samba_422.username, password=samba_422.password,
                         skip_instance_cache=True)
    try:
        _exists_info_open(fsys)
    finally:
        fsys.close()


def _exists_info_open(fsys):
    base = f"share/fx-{os.urandom(3).hex()}"
    fsys.mkdir(base)
    fsys.pipe(f"{base}/a.csv", b"a,b\n1,2\n")
    assert fsys.ls(base, detail=False)
    client = fsys._tree("share").client
    count = lambda: sum(client.stats().get(c, {}).get("ops", 0) for c in ("CREATE",))  # noqa: E731
    before = count()
    assert fsys.exists(f"{base}/a.csv")
    assert fsys.info(f"{base}/a.csv")["size"] == 8
    with fsys.open(f"{base}/a.csv", "rb") as f:
        assert f.read() == b"a,b\n1,2\n"
    assert count() - before == 1
