"""smblayer.fsspec from a Dask distributed LocalCluster with two worker
processes: 100 files on the real Samba read in parallel through
``dask.bag.read_text("smblayer://...", storage_options=...)`` and through
fsspec OpenFiles of one SMBFileSystem instance handed to the workers (the filesystem travels
pickled as its arguments; each worker process connects on its own).
"""
from __future__ import annotations

import os
import shutil
import uuid

import dask.bag as dask_bag
import distributed
import fsspec
import pytest

from smblayer.fsspec import SMBFileSystem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N_FILES = 100


def _register() -> None:
    try:
        fsspec.get_filesystem_class("smblayer")
    except ValueError:       # a checkout on PYTHONPATH, not installed with its entry point
        fsspec.register_implementation("smblayer", "smblayer.fsspec.SMBFileSystem")


def _read(open_file) -> tuple:
    """On a worker: the file's size, its first line and the worker's pid."""
    with open_file as f:
        data = f.read()
    return len(data), data.split(b"\n", 1)[0].decode(), os.getpid()


@pytest.fixture(autouse=True, scope="module")
def close_instances():
    """Disconnect the instances fsspec keeps cached before Samba stops."""
    yield
    for instance in list(SMBFileSystem._cache.values()):
        instance.close()
    SMBFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def files(samba):
    name = f"dask-{uuid.uuid4().hex[:10]}"
    local = samba.share_path("share") / name
    local.mkdir()
    for i in range(N_FILES):
        (local / f"part{i:03d}.txt").write_bytes(f"file {i}\n".encode() + b"x" * (1000 + i))
    try:
        yield name
    finally:
        shutil.rmtree(local, ignore_errors=True)


def test_dask_bag_read_text_over_two_worker_processes(samba, cluster, files):
    _register()
    options = {"username": samba.username, "password": samba.password}
    url = f"smblayer://{samba.host}:{samba.port}/share/{files}/part*.txt"
    bag = dask_bag.read_text(url, storage_options=options)
    assert bag.npartitions == N_FILES
    firsts = bag.filter(lambda line: line.startswith("file ")).map(str.strip).compute()
    assert sorted(firsts) == sorted(f"file {i}" for i in range(N_FILES))


def test_open_files_read_by_two_worker_processes(samba, cluster, files):
    _register()
    fs = SMBFileSystem(host=samba.host, port=samba.port, username=samba.username,
                       password=samba.password)
    try:
        open_files = [fsspec.core.OpenFile(fs, path, "rb")
                      for path in fs.glob(f"share/{files}/part*.txt")]
        assert len(open_files) == N_FILES
        results = cluster.gather(cluster.map(_read, open_files, pure=False))
    finally:
        fs.close()
    sizes = {first: size for size, first, _pid in results}
    assert sizes == {f"file {i}": len(f"file {i}\n") + 1000 + i for i in range(N_FILES)}
    pids = {pid for _size, _first, pid in results}
    assert len(pids) == 2 and os.getpid() not in pids       # both workers read
