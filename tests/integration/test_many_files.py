"""Many small files from one thread, several whole-file compounds in flight
(smblayer.fs.many / fs.batch): put -r, copytree and the engine's API give
exact bytes, names and mtimes; a failure leaves only whole files, names the
file and leaves no temporary file; stopping early (Ctrl-C) cleans up."""
from __future__ import annotations

import os
import uuid

import pytest

from smblayer import fs
from smblayer.fs import batch, many

from _cli_helpers import ok, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MTIME = 1_500_000_000.0


@pytest.fixture
def folder(samba):
    name = f"many-{uuid.uuid4().hex[:8]}"
    path = samba.share_path("share") / name
    path.mkdir()
    return name, path


@pytest.fixture
def tree(samba):
    with fs.connect(samba.host, "share", samba.username, samba.password,
                    port=samba.port) as t:
        yield t


def _local_tree(root, count: int):
    files = {f"d{i % 7}/f{i:04d}.bin": os.urandom(i * 53 % 9000) for i in range(count)}
    for i, (rel, data) in enumerate(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (MTIME + i, MTIME + i))
    return files


def _leftovers(root):
    return [p for p in root.rglob(".*smblayer*")]


def test_put_r_of_many_small_files_is_exact(samba, folder, tmp_path):
    name, path = folder
    files = _local_tree(tmp_path / "src", 240)
    ok(run(["put", "-r", str(tmp_path / "src"), f"//{samba.host}:{samba.port}/share/{name}"],
           samba))
    for i, (rel, data) in enumerate(files.items()):
        target = path / "src" / rel
        assert target.read_bytes() == data, rel
        assert abs(os.stat(target).st_mtime - (MTIME + i)) < 1e-3, rel
    assert not _leftovers(path)


def test_put_r_failure_names_the_file_and_leaves_whole_files(samba, folder, tmp_path):
    """A directory on the share stands where one file must go: the rename
    over it fails; the command exits 1 naming that file, every other file on
    the share is whole, and no temporary file is left."""
    name, path = folder
    files = _local_tree(tmp_path / "src", 60)
    blocker = path / "src" / "d3" / "f0010.bin"
    (blocker / "inside").mkdir(parents=True)
    proc = run(["put", "-r", str(tmp_path / "src"),
                f"//{samba.host}:{samba.port}/share/{name}"], samba)
    assert proc.returncode == 1, proc.stderr
    assert b"f0010.bin" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for rel, data in files.items():
        target = path / "src" / rel
        if target.is_file():
            assert target.read_bytes() == data, rel
    assert blocker.is_dir() and not _leftovers(path)


def test_engine_reports_each_failure_by_its_key(tree, folder, tmp_path):
    name, path = folder
    local = tmp_path / "x.bin"
    local.write_bytes(b"payload")
    (path / "taken").mkdir()
    (path / "taken" / "inside").write_bytes(b"")
    items = [(str(local), f"{name}/ok-{i}.bin", None) for i in range(5)]
    items.insert(2, (str(local), f"{name}/taken", None))
    results = {key: (n, error) for key, n, error in many.put_files(tree, items, window=3)}
    assert set(results) == {dest for _src, dest, _t in items}
    n, error = results[f"{name}/taken"]
    assert error is not None and n == 0
    for i in range(5):
        assert results[f"{name}/ok-{i}.bin"] == (7, None)
        assert (path / f"ok-{i}.bin").read_bytes() == b"payload"
    assert not _leftovers(path)


def test_stopping_early_cleans_up(tree, folder, tmp_path):
    """The consumer stops after a few results (as Ctrl-C does): the plans in
    flight are cancelled, no temporary file stays, every destination there
    is whole."""
    name, path = folder
    data = os.urandom(50_000)
    local = tmp_path / "x.bin"
    local.write_bytes(data)
    results = many.put_files(tree, ((str(local), f"{name}/f{i:03d}", None) for i in range(200)),
                             window=16)
    for _ in range(5):
        next(results)
    results.close()
    tree.listdir(name)                      # the client is still fine
    assert not _leftovers(path)
    for p in path.iterdir():
        assert p.read_bytes() == data, p


def test_get_files_and_copytree_are_exact(tree, folder, tmp_path):
    name, path = folder
    files = _local_tree(path / "src", 150)
    out = tmp_path / "out"
    out.mkdir()
    items = [(f"{name}/src/{rel}", str(out / rel.replace("/", "_")), (MTIME + i, MTIME + i))
             for i, rel in enumerate(files)]
    got = {key: (n, error) for key, n, error in many.get_files(tree, items)}
    assert all(error is None for _n, error in got.values())
    for i, rel in enumerate(files):
        local = out / rel.replace("/", "_")
        assert local.read_bytes() == files[rel]
        assert abs(os.stat(local).st_mtime - (MTIME + i)) < 1e-6
    tree.copytree(f"{name}/src", f"{name}/copy")
    for i, (rel, data) in enumerate(files.items()):
        copy = path / "copy" / rel
        assert copy.read_bytes() == data, rel
        assert os.stat(copy).st_mtime_ns == os.stat(path / "src" / rel).st_mtime_ns, rel
    assert not _leftovers(path)


def test_batch_rejects_a_bad_window(tree):
    with pytest.raises(ValueError):
        list(batch.run(tree.client, [], window=0))


def test_fsspec_cat_of_many_files(samba, folder):
    """fsspec's cat given a list: every file's bytes under its path, a
    missing one handled as on_error says."""
    fsspec = pytest.importorskip("fsspec")
    name, path = folder
    files = {f"f{i:03d}": os.urandom(i * 97 % 3000) for i in range(120)}
    for n, data in files.items():
        (path / n).write_bytes(data)
    (path / "big").write_bytes(os.urandom(3 << 20))          # beyond one READ
    fs_ = fsspec.filesystem("smblayer", host=samba.host, port=samba.port,
                            username=samba.username, password=samba.password,
                            skip_instance_cache=True)
    try:
        paths = [f"share/{name}/{n}" for n in files] + [f"share/{name}/big"]
        got = fs_.cat(paths)
        assert got == {**{f"share/{name}/{n}": d for n, d in files.items()},
                       f"share/{name}/big": (path / "big").read_bytes()}
        missing = f"share/{name}/nope"
        with pytest.raises(FileNotFoundError):
            fs_.cat(paths[:3] + [missing])
        out = fs_.cat(paths[:3] + [missing], on_error="return")
        assert isinstance(out[missing], FileNotFoundError) and len(out) == 4
        assert set(fs_.cat(paths[:3] + [missing], on_error="omit")) == set(paths[:3])
    finally:
        fs_.close()


def test_fsspec_get_and_put_of_a_tree(samba, folder, tmp_path):
    """fsspec's get/put of a tree (its own path expansion) go through the
    pipelined path: same files, same bytes, directories made on both sides."""
    fsspec = pytest.importorskip("fsspec")
    name, path = folder
    files = _local_tree(tmp_path / "src", 90)
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(3 << 20))
    files["big.bin"] = (tmp_path / "src" / "big.bin").read_bytes()
    fs_ = fsspec.filesystem("smblayer", host=samba.host, port=samba.port,
                            username=samba.username, password=samba.password,
                            skip_instance_cache=True)
    try:
        fs_.put(str(tmp_path / "src"), f"share/{name}/up", recursive=True)
        for rel, data in files.items():
            assert (path / "up" / rel).read_bytes() == data, rel
        fs_.get(f"share/{name}/up", str(tmp_path / "down"), recursive=True)
        for rel, data in files.items():
            assert (tmp_path / "down" / rel).read_bytes() == data, rel
        assert not _leftovers(path) and not _leftovers(tmp_path / "down")
    finally:
        fs_.close()


def test_a_file_that_grew_is_read_the_one_file_way_amid_the_batch(tree, folder):
    """A job whose file does not fit one READ reads it with blocking calls
    while the other jobs' plans are queued: the batch sends its plans only
    after stepping the jobs (never holding the sends across a job's step),
    so nothing waits for a request that was not sent."""
    name, path = folder
    small = {f"{name}/s{i:02d}": os.urandom(100 + i) for i in range(40)}
    big = os.urandom(tree.io_read_size + 12345)
    for rel, data in small.items():
        (path / rel.split("/")[1]).write_bytes(data)
    (path / "big").write_bytes(big)
    paths = [*list(small)[:20], f"{name}/big", *list(small)[20:]]
    got = {key: (data, error) for key, data, error in many.read_files(tree, paths, window=8)}
    assert got[f"{name}/big"] == (big, None)
    for rel, data in small.items():
        assert got[rel] == (data, None)
