"""The async fsspec filesystem against a real, private Samba:
``fsspec.filesystem("smblayer", asynchronous=True)`` inside a running loop,
fsspec's batching (``_cat``, ``_cat_ranges``, ``_get``, ``_put``, ``_rm``
of many paths) on one connection, zarr v3 (an fsspec-async user) writing and
reading an array through it, and an aiohttp handler streaming a file from
the share to aiohttp's test client over real sockets.
"""
from __future__ import annotations

import asyncio
import os
import uuid

import fsspec
import pytest
from fsspec.asyn import AsyncFileSystem

from smblayer import aio
from smblayer.fsspec import SMBFileSystem
from smblayer.fsspec_async import AsyncSMBFileSystem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.asyncio]

try:
    fsspec.get_filesystem_class("smblayer")
except ValueError:
    fsspec.register_implementation("smblayer", "smblayer.fsspec.SMBFileSystem")


@pytest.fixture
def base(samba):
    name = f"afs-{uuid.uuid4().hex[:10]}"
    (samba.share_path("share") / name).mkdir()
    yield name
    AsyncSMBFileSystem.clear_instance_cache()


def _fs(samba, **kwargs):
    return fsspec.filesystem("smblayer", host=samba.host, port=samba.port,
                             username=samba.username, password=samba.password,
                             asynchronous=True, skip_instance_cache=True, **kwargs)


async def test_batching_on_one_connection(samba, base, tmp_path):
    disk = samba.share_path("share") / base
    fs = _fs(samba)
    assert isinstance(fs, AsyncFileSystem) and isinstance(fs, AsyncSMBFileSystem)
    assert not isinstance(SMBFileSystem(host=samba.host, port=samba.port), AsyncFileSystem)
    try:
        paths = [f"share/{base}/f{i:03}" for i in range(100)]
        await fs._pipe({p: f"data {i}".encode() * (i + 1) for i, p in enumerate(paths)})
        assert (disk / "f007").read_bytes() == b"data 7" * 8
        got = await fs._cat(paths)
        assert got == {p: f"data {i}".encode() * (i + 1) for i, p in enumerate(paths)}
        ranges = await fs._cat_ranges(paths[:10], [1] * 10, [5] * 10)
        assert ranges == [(f"data {i}".encode() * (i + 1))[1:5] for i in range(10)]
        assert await fs._cat_file(paths[9], start=-3) == (b"data 9" * 10)[-3:]
        big = os.urandom(3 * 1024 * 1024 + 5)
        (disk / "big").write_bytes(big)
        assert await fs._cat_file(f"share/{base}/big", start=1000, end=2_000_000) == \
            big[1000:2_000_000]
        assert await fs._cat_file(f"share/{base}/big") == big

        info = await fs._info(paths[3])
        assert info["type"] == "file" and info["size"] == 24
        assert len(await fs._ls(f"share/{base}", detail=False)) == 101
        assert await fs._exists(paths[0]) and not await fs._exists(f"share/{base}/nope")

        local = tmp_path / "down"
        await fs._get(f"share/{base}/", str(local), recursive=True)
        assert (local / "f042").read_bytes() == b"data 42" * 43
        assert (local / "big").read_bytes() == big
        up = tmp_path / "up"
        up.mkdir()
        for i in range(20):
            (up / f"u{i}").write_bytes(b"u" * i)
        (up / "large").write_bytes(big)
        await fs._put(str(up) + "/", f"share/{base}/up", recursive=True)
        assert (disk / "up" / "u7").read_bytes() == b"u" * 7
        assert (disk / "up" / "large").read_bytes() == big

        await fs._rm(paths[:50])
        assert sorted(os.listdir(disk))[:2] == ["big", "f050"]
        await fs._rm(f"share/{base}/up", recursive=True)
        assert not (disk / "up").exists()

        f = await fs.open_async(f"share/{base}/via-open", "wb")
        await f.write(b"opened")
        await f.close()
        assert (disk / "via-open").read_bytes() == b"opened"
    finally:
        await fs.close()


async def test_zarr_v3_through_the_async_filesystem(samba, base):
    zarr = pytest.importorskip("zarr")
    np = pytest.importorskip("numpy")
    from zarr.storage import FsspecStore
    fs = _fs(samba, auto_mkdir=True)      # as zarr expects of a filesystem
    try:
        store = FsspecStore(fs, path=f"share/{base}/array.zarr")
        data = np.arange(10_000, dtype="int32").reshape(100, 100)
        array = await zarr.api.asynchronous.create_array(store=store, shape=data.shape,
                                                          chunks=(25, 25), dtype="int32")
        await array.setitem(slice(None), data)
        again = await zarr.api.asynchronous.open_array(store=store)
        assert (await again.getitem(slice(None)) == data).all()
        assert (samba.share_path("share") / base / "array.zarr" / "zarr.json").exists()
        assert (await again.getitem((slice(30, 40), slice(60, 70))) ==
                data[30:40, 60:70]).all()
    finally:
        await fs.close()


async def test_aiohttp_handler_streams_a_file(samba, base):
    web = pytest.importorskip("aiohttp.web")
    from aiohttp.test_utils import TestClient, TestServer
    payload = os.urandom(4 * 1024 * 1024 + 17)
    (samba.share_path("share") / base / "video.bin").write_bytes(payload)
    async with aio.connect(samba.host, "share", samba.username, samba.password,
                           port=samba.port) as tree:
        async def handler(request):
            response = web.StreamResponse()
            path = f"{base}/{request.match_info['name']}"
            response.content_length = (await tree.stat(path)).st_size
            await response.prepare(request)
            async with tree.open(path, "rb") as f:
                async for chunk in f:
                    await response.write(chunk)
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get("/files/{name}", handler)
        async with TestClient(TestServer(app)) as client:
            responses = await asyncio.gather(*(client.get("/files/video.bin")
                                               for _ in range(3)))
            for response in responses:
                assert response.status == 200
                assert await response.read() == payload
            missing = await client.get("/files/none.bin")
            assert missing.status == 500


async def test_collected_instance_releases_its_session(samba, base):
    """An async filesystem nobody closed gives back its trees (session,
    reference on the shared client) when it is collected, as the blocking
    one does."""
    import gc
    from smblayer.testing.waiting import eventually
    keeper = _fs(samba)
    client = (await keeper._tree("share")).sync.client
    refs = client.refcount
    for i in range(5):
        fs = _fs(samba)
        await fs._pipe_file(f"share/{base}/collected-{i}", b"x" * i)
        del fs
    gc.collect()
    eventually(lambda: client.refcount <= refs)          # closed on a thread of their own
    assert client.refcount == refs, f"refcount {client.refcount}, was {refs}"
    assert await keeper._cat_file(f"share/{base}/collected-4") == b"xxxx"
    await keeper.close()
