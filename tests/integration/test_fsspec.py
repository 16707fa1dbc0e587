"""smblayer.fsspec.SMBFileSystem against a real, private Samba: fsspec's own
abstract test suite (copy, get, put, open, pipe), the methods one by one
(checked on the server's disk), one shared client per server, forked and
spawned worker processes, pandas (read_csv with storage_options).  The Dask
test is in test_fsspec_dask.py.
"""
from __future__ import annotations

import configparser
import multiprocessing
import os
import pathlib
import shutil
import threading
import uuid

import fsspec
import fsspec.tests.abstract as abstract
import pytest

from smblayer.fsspec import SMBFileSystem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ensure_registered() -> None:
    """The entry point registers "smblayer" once smblayer is installed with
    it; a checkout on PYTHONPATH registers it by hand (same target)."""
    try:
        fsspec.get_filesystem_class("smblayer")
    except ValueError:
        fsspec.register_implementation("smblayer", "smblayer.fsspec.SMBFileSystem")


ensure_registered()


@pytest.fixture(autouse=True, scope="module")
def close_instances():
    """Disconnect the instances fsspec keeps cached before Samba stops."""
    yield
    for instance in list(SMBFileSystem._cache.values()):
        instance.close()
    SMBFileSystem.clear_instance_cache()


def make_fs(samba, **kwargs) -> SMBFileSystem:
    return SMBFileSystem(host=samba.host, port=samba.port, username=samba.username,
                         password=samba.password, **kwargs)


# ---------------------------------------------------------------------------
# fsspec's abstract suite


@pytest.fixture(scope="class")
def class_fs(samba):
    # as fsspec's local filesystem in these tests: parents made on write
    # (a module-level fixture: class-scoped fixtures defined as methods are
    # deprecated in pytest 9 and gone in 10)
    return make_fs(samba, auto_mkdir=True)


class SmbFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, class_fs):
        return class_fs

    @pytest.fixture
    def fs_join(self):
        return lambda *args: "/".join(args)

    @pytest.fixture
    def fs_path(self, fs, samba):
        base = f"share/fsspec-{uuid.uuid4().hex[:10]}"
        fs.mkdir(base)
        yield base
        shutil.rmtree(samba.share_path("share") / base.split("/", 1)[1], ignore_errors=True)


class TestSmbCopy(abstract.AbstractCopyTests, SmbFixtures):
    pass


class TestSmbGet(abstract.AbstractGetTests, SmbFixtures):
    pass


class TestSmbPut(abstract.AbstractPutTests, SmbFixtures):
    pass


class TestSmbOpen(abstract.AbstractOpenTests, SmbFixtures):
    pass


class TestSmbPipe(abstract.AbstractPipeTests, SmbFixtures):
    pass


# ---------------------------------------------------------------------------
# the methods


@pytest.fixture
def work(samba):
    fs = make_fs(samba)
    name = f"fss-{uuid.uuid4().hex[:10]}"
    local = samba.share_path("share") / name
    local.mkdir()
    try:
        yield fs, f"share/{name}", local
    finally:
        shutil.rmtree(local, ignore_errors=True)


def test_registered_protocol_and_entry_point(samba):
    assert fsspec.get_filesystem_class("smblayer") is SMBFileSystem
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    specs = cfg["options.entry_points"]["fsspec.specs"]
    assert "smblayer = smblayer.fsspec:SMBFileSystem" in specs
    assert "fsspec" in cfg["options.extras_require"]
    fs = fsspec.filesystem("smblayer", host=samba.host, port=samba.port,
                           username=samba.username, password=samba.password)
    assert isinstance(fs, SMBFileSystem)
    url = f"smblayer://{samba.username}:{samba.password}@{samba.host}:{samba.port}/share/x"
    assert SMBFileSystem._strip_protocol(url) == "share/x"
    assert SMBFileSystem._get_kwargs_from_urls(url) == {
        "host": samba.host, "port": samba.port, "username": samba.username,
        "password": samba.password}
    assert SMBFileSystem._strip_protocol("/share/dir/") == "share/dir"


def test_ls_info_from_one_directory_query(work, samba):
    fs, base, local = work
    for i in range(50):
        (local / f"f{i:02d}.bin").write_bytes(b"x" * i)
    (local / "sub").mkdir()
    client = fs._tree("share").client
    before = client.stats()
    entries = fs.ls(base, detail=True)
    after = client.stats()
    creates = after["CREATE"]["ops"] - before.get("CREATE", {}).get("ops", 0)
    assert creates == 1                       # the directory's open, no stat per entry
    by_name = {e["name"]: e for e in entries}
    assert len(by_name) == 51
    e = by_name[f"{base}/f07.bin"]
    assert (e["type"], e["size"]) == ("file", 7)
    assert e["ino"] == os.stat(local / "f07.bin").st_ino
    assert abs(e["mtime"] - os.stat(local / "f07.bin").st_mtime) < 1e-6
    assert by_name[f"{base}/sub"]["type"] == "directory"
    assert sorted(fs.ls(base, detail=False)) == sorted(by_name)
    assert fs.ls(f"{base}/f07.bin") == [fs.info(f"{base}/f07.bin")]
    info = fs.info(f"{base}/f07.bin")
    assert (info["name"], info["size"], info["type"]) == (f"{base}/f07.bin", 7, "file")
    assert fs.info(base)["type"] == "directory" and fs.info("share")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info(f"{base}/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{base}/missing")
    assert fs.exists(f"{base}/f07.bin") and not fs.exists(f"{base}/nope")
    assert fs.isdir(f"{base}/sub") and fs.isfile(f"{base}/f01.bin")
    assert not fs.isdir(f"{base}/f01.bin") and not fs.isfile(f"{base}/nope")
    assert fs.size(f"{base}/f09.bin") == 9
    assert fs.modified(f"{base}/f09.bin").timestamp() == pytest.approx(
        os.stat(local / "f09.bin").st_mtime, abs=1e-6)
    assert sorted(fs.glob(f"{base}/f0?.bin")) == [f"{base}/f0{i}.bin" for i in range(10)]


def test_open_cat_pipe(work):
    fs, base, local = work
    data = os.urandom(3 * 1024 * 1024 + 5)
    with fs.open(f"{base}/big", "wb") as f:
        f.write(data[:1000])
        f.write(data[1000:])
    assert (local / "big").read_bytes() == data
    with fs.open(f"{base}/big", "rb") as f:
        f.seek(100)
        assert f.read(10) == data[100:110]
        assert f.read() == data[110:]
    with fs.open(f"{base}/t.txt", "w") as f:
        f.write("héllo\nworld\n")
    with fs.open(f"{base}/t.txt", "r") as f:
        assert f.readlines() == ["héllo\n", "world\n"]
    with fs.open(f"{base}/t.txt", "ab") as f:
        f.write(b"more")
    assert (local / "t.txt").read_bytes() == "héllo\nworld\nmore".encode()
    assert fs.cat_file(f"{base}/big") == data
    assert fs.cat_file(f"{base}/big", start=5, end=20) == data[5:20]
    assert fs.cat_file(f"{base}/big", start=-10) == data[-10:]
    assert fs.cat_file(f"{base}/big", start=10, end=-5) == data[10:-5]
    assert fs.cat_file(f"{base}/big", start=len(data) + 5) == b""
    assert fs.cat(f"{base}/t.txt") == "héllo\nworld\nmore".encode()
    fs.pipe_file(f"{base}/p", b"piped")
    assert (local / "p").read_bytes() == b"piped"
    fs.pipe({f"{base}/q1": b"1", f"{base}/q2": b"22"})
    assert (local / "q2").read_bytes() == b"22"
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{base}/p", b"x", mode="create")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{base}/missing")
    assert fs.cat_ranges([f"{base}/big", f"{base}/p"], [0, 1], [4, 3]) == [data[:4], b"ip"]


def test_put_get_rm_mkdir_mv_cp(work, tmp_path):
    fs, base, local = work
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (src / "d" / "b.txt").write_bytes(b"b")
    (src / "d" / "e" / "c.txt").write_bytes(b"c")
    fs.put(str(src), f"{base}/up", recursive=True)
    for rel in ("a.bin", "d/b.txt", "d/e/c.txt"):
        assert (local / "up" / rel).read_bytes() == (src / rel).read_bytes()
    fs.get(f"{base}/up", str(tmp_path / "down"), recursive=True)
    for rel in ("a.bin", "d/b.txt", "d/e/c.txt"):
        assert (tmp_path / "down" / rel).read_bytes() == (src / rel).read_bytes()
    client = fs._tree("share").client
    reads = client.stats()["READ"]["ops"]
    fs.get_file(f"{base}/up/d/b.txt", str(tmp_path / "one"))
    assert (tmp_path / "one").read_bytes() == b"b"
    assert client.stats()["READ"]["ops"] - reads == 1      # no READs past the end

    fs.mkdir(f"{base}/m1/m2")                      # create_parents by default
    assert (local / "m1" / "m2").is_dir()
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{base}/m1")
    fs.makedirs(f"{base}/m1/m2/m3", exist_ok=True)
    fs.makedirs(f"{base}/m1/m2", exist_ok=True)
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{base}/m1/m2")
    fs.rmdir(f"{base}/m1/m2/m3")
    assert not (local / "m1" / "m2" / "m3").exists()

    fs.cp_file(f"{base}/up/a.bin", f"{base}/copy.bin")
    assert (local / "copy.bin").read_bytes() == (src / "a.bin").read_bytes()
    fs.copy(f"{base}/up/d", f"{base}/dcopy", recursive=True)
    assert (local / "dcopy" / "e" / "c.txt").read_bytes() == b"c"

    fs.mv(f"{base}/copy.bin", f"{base}/moved.bin")
    assert not (local / "copy.bin").exists() and (local / "moved.bin").exists()
    fs.mv(f"{base}/moved.bin", f"{base}/m1")         # into a directory
    assert (local / "m1" / "moved.bin").exists()
    fs.mv(f"{base}/dcopy", f"{base}/drenamed")       # a directory: one rename
    assert (local / "drenamed" / "e" / "c.txt").exists() and not (local / "dcopy").exists()

    fs.rm(f"{base}/m1/moved.bin")
    assert not (local / "m1" / "moved.bin").exists()
    with pytest.raises(OSError):
        fs.rm(f"{base}/up")                          # a non-empty directory
    fs.rm(f"{base}/up", recursive=True)
    assert not (local / "up").exists()
    fs.rm(f"{base}/drenamed/e/*.txt")                # a glob
    assert not (local / "drenamed" / "e" / "c.txt").exists()
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{base}/missing")


def test_one_client_per_server_across_instances(samba):
    a = make_fs(samba, skip_instance_cache=True)
    b = make_fs(samba, skip_instance_cache=True)
    assert a is not b
    assert a._tree("share").client is b._tree("share").client
    a.close()
    assert b.exists("share")
    assert b.ls("share", detail=False) is not None
    b.close()


def test_collected_instance_releases_its_session(samba):
    """An instance nobody closed (skip_instance_cache=True, fsspec users
    rarely call close()) gives back its session and its reference on the
    shared client when it is collected: before, each one left a session
    that every reconnect set up again (the soak's fsspec calls then timed
    out waiting for recovery) -- while a file it opened stays usable."""
    import gc
    import smblayer
    from smblayer.testing.waiting import eventually
    keeper = make_fs(samba, skip_instance_cache=True)
    client = keeper._tree("share").client
    base = client.refcount
    for i in range(5):
        fsys = make_fs(samba, skip_instance_cache=True)
        fsys.pipe_file(f"share/collected-{i}.bin", b"x" * i)
        del fsys
    f = make_fs(samba, skip_instance_cache=True).open("share/collected-4.bin", "rb")
    gc.collect()
    eventually(lambda: client.refcount <= base + 1)      # closed on a thread of their own
    assert client.refcount == base + 1, f"refcount {client.refcount}, base {base} + the open file's"
    assert f.read() == b"xxxx"                  # its filesystem lives while it is open
    f.close()
    del f
    gc.collect()
    eventually(lambda: client.refcount <= base)
    assert client.refcount == base
    assert client.state is smblayer.ClientState.ACTIVE
    keeper.rm([f"share/collected-{i}.bin" for i in range(5)])
    keeper.close()


def test_threads_share_one_session_set_up(work, samba):
    """Eight threads using a fresh instance at once: one session is set up
    (the others wait for it) and every call succeeds."""
    _fs, base, local = work
    (local / "f").write_bytes(b"x")

    def session_setups(fs):
        return fs._tree("share").client.stats().get("SESSION_SETUP", {}).get("ops", 0)

    probe = make_fs(samba, skip_instance_cache=True)
    before = session_setups(probe)            # the shared client's count so far
    one = make_fs(samba, skip_instance_cache=True)
    one.ls(base)
    per_session = session_setups(probe) - before
    assert per_session >= 1
    fs = make_fs(samba, skip_instance_cache=True)
    start = session_setups(probe)
    barrier = threading.Barrier(8)
    results, errors = [], []

    def use():
        barrier.wait()
        try:
            results.append(fs.ls(base, detail=False))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [[f"{base}/f"]] * 8
    assert session_setups(probe) - start == per_session
    for instance in (probe, one, fs):
        instance.close()


def _child_listing(fs, path, queue):
    try:
        queue.put(sorted(fs.ls(path, detail=False)))
    except BaseException as exc:  # noqa: BLE001 - report it to the parent
        queue.put(repr(exc))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes(work, method):
    """An instance used in the parent, then in a forked child (it drops the
    parent's trees and connects afresh) and a spawned one (pickled as its
    arguments); the parent's connection keeps working."""
    fs, base, local = work
    (local / "one").write_bytes(b"1")
    (local / "two").write_bytes(b"2")
    expected = [f"{base}/one", f"{base}/two"]
    assert sorted(fs.ls(base, detail=False)) == expected
    parent_client = fs._tree("share").client
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_listing, args=(fs, base, queue))
    proc.start()
    try:
        assert queue.get(timeout=60) == expected
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    assert fs._tree("share").client is parent_client
    assert sorted(fs.ls(base, detail=False)) == expected


def test_pandas_read_csv_with_storage_options(work, samba):
    pd = pytest.importorskip("pandas")
    fs, base, local = work
    (local / "t.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    options = {"username": samba.username, "password": samba.password}
    server = f"{samba.host}:{samba.port}"
    df = pd.read_csv(f"smblayer://{server}/{base}/t.csv", storage_options=options)
    assert list(df["a"]) == [1, 2, 3] and list(df["b"]) == ["x", "y", "z"]
    url = f"smblayer://{samba.username}:{samba.password}@{server}/{base}/t.csv"
    assert pd.read_csv(url)["a"].sum() == 6
    df.assign(c=df["a"] * 2).to_csv(f"smblayer://{server}/{base}/out.csv", index=False,
                                    storage_options=options)
    assert (local / "out.csv").read_text().splitlines()[1] == "1,x,2"
