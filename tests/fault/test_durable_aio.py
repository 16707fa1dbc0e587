"""Async files survive reconnects as blocking ones do (issue 25): the durable
handle of an ``smblayer.aio`` file is reclaimed by the tree's recovery and
the requests in flight are resent with the new FileId, so a read or a
write-behind across a network reset gives the exact bytes.

Against a Samba that grants durable handles, through a FaultProxy whose
``reset()`` is a network blip (the smbd survives and keeps the durable open
for our reclaim), on Samba 4.17 and 4.22 -- as tests/fault/test_durable.py
does for the blocking file.  A killed smbd (the open dies with it) is in
tests/fault/test_aio_faults.py.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from smblayer import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy, aio, fs
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120),
              pytest.mark.asyncio]


@pytest.fixture(scope="module", params=SERVERS)
def samba_durable(request, samba_durable):
    return on_both(request, samba_durable, "samba_422_durable")


TIMEOUTS = TimeoutPolicy(mode="soft", timeout=10.0, echo_interval=1.0, soft_timeout=5.0,
                         connect_timeout=5.0)
QUICK = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)
MiB = 1 << 20
DATA = os.urandom(16 * MiB)
CASES = [("SMB2_1", "share"), ("SMB3_1_1", "share"), ("SMB3_1_1", "encrypted")]
IDS = [f"{d}-{s}" for d, s in CASES]


@pytest.fixture
def proxy(samba_durable):
    with FaultProxy(samba_durable.host, samba_durable.port) as p:
        yield p


def _connect(server, port, dialect="SMB3_1_1", share="share"):
    d = getattr(Dialect, dialect)
    return aio.connect(server.host, share, server.username, server.password, port=port,
                       dialects=DialectRange(d, d), timeouts=TIMEOUTS, reconnect=QUICK)


def _reconnects(tree) -> int:
    return tree.client.sync.stats()["_client"]["reconnects"]


@pytest.mark.parametrize("dialect,share", CASES, ids=IDS)
async def test_async_write_across_reset_is_exact(samba_durable, proxy, dialect, share):
    name = f"aw-{dialect}-{share}.bin"
    async with _connect(samba_durable, proxy.port, dialect, share) as tree:
        async with tree.open(name, "wb") as f:
            assert f.durable
            handle = f.handle
            await f.write(DATA[:6 * MiB])      # write-behind: up to 8 WRITEs still in flight
            proxy.reset()
            await f.write(DATA[6 * MiB:12 * MiB])
            assert f.handle is handle          # the same handle object, reclaimed
        assert _reconnects(tree) == 1
        assert tree.sync.open_files() == []
    assert (samba_durable.share_path(share) / name).read_bytes() == DATA[:12 * MiB]


@pytest.mark.parametrize("dialect,share", CASES, ids=IDS)
async def test_async_read_across_reset_is_exact(samba_durable, proxy, dialect, share):
    name = f"ar-{dialect}-{share}.bin"
    (samba_durable.share_path(share) / name).write_bytes(DATA)
    async with _connect(samba_durable, proxy.port, dialect, share) as tree:
        async with tree.open(name, "rb") as f:
            assert f.durable
            first = await f.read(3 * MiB)
            first += await f.read(2 * MiB)      # sequential: read-ahead now in flight
            proxy.reset()
            rest = await f.read()
        assert _reconnects(tree) == 1
    assert first + rest == DATA


async def test_reset_while_a_read_is_awaited(samba_durable, proxy):
    """The reset lands while a coroutine awaits READs on the wire: they are
    resent on the reclaimed handle, and the awaiting read completes."""
    name = "aw-mid.bin"
    (samba_durable.share_path("share") / name).write_bytes(DATA)
    async with _connect(samba_durable, proxy.port) as tree:
        async with tree.open(name, "rb") as f:
            reading = asyncio.ensure_future(f.read())
            client = tree.client.sync
            for _ in range(5000):               # some READs answered: mid-transfer
                if client.stats().get("READ", {}).get("ops", 0) >= 2:
                    break
                await asyncio.sleep(0.001)
            proxy.reset()
            data = await asyncio.wait_for(reading, 60)
        assert _reconnects(tree) == 1
    assert data == DATA


async def test_lease_break_waits_for_async_writes_in_flight(samba_durable, proxy):
    """Another client's open breaks the async writer's lease while its
    write-behind is in flight (not flushed): that opener reads every byte
    the coroutine had written.  (The ack waits for the WRITEs in flight, as
    the blocking file's does; Samba 4.17/4.22 on loopback also answer those
    WRITEs before they take the ack, so this holds without that wait too.)"""
    server = samba_durable
    other = await asyncio.to_thread(fs.connect, server.host, "share", server.username,
                                    server.password, port=server.port)
    try:
        async with _connect(server, proxy.port) as tree:   # not the other's connection
            for i in range(3):
                async with tree.open(f"brk{i}.bin", "wb") as f:
                    assert f.handle.lease_state
                    await f.write(DATA[:8 * MiB])     # returns with WRITEs in flight
                    seen = await asyncio.to_thread(other.read_bytes, f"brk{i}.bin")
                assert seen == DATA[:8 * MiB]
    finally:
        await asyncio.to_thread(other.close)
