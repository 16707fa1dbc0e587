"""smblayer.aio under faults: async compounds in flight when the serving smbd
child is killed are resent whole after the reconnect (run_compound_async),
async files are recovered (or fail naming the file) as blocking ones are,
and a soft-mode request to a stopped server fails in the soft bound, from a
coroutine, as it does from a thread.  Durable handles across resets:
tests/fault/test_durable_aio.py.
"""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from smblayer import ReconnectPolicy, SmbClosedError, SmbTimeoutError, TimeoutPolicy, aio
from smblayer.client import ClientState
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90),
              pytest.mark.asyncio]

SOFT = TimeoutPolicy(mode="soft", timeout=5.0, echo_interval=0.25, soft_timeout=5.0,
                     connect_timeout=2.0)
QUICK_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


@pytest.fixture
def server(samba_factory):
    return samba_factory()


def _connect(server, **options):
    return aio.connect(server.host, "share", server.username, server.password,
                       port=server.port, **options)


async def test_async_compounds_survive_a_reconnect(server):
    (server.share_path("share") / "c.txt").write_bytes(b"z" * 321)
    async with _connect(server, timeouts=SOFT, reconnect=QUICK_RECONNECT) as tree:
        client = tree.client.sync
        counts = [0]
        stop = asyncio.Event()

        async def work(i: int):
            while not stop.is_set():
                assert (await tree.stat("c.txt")).st_size == 321
                await tree.write_bytes(f"w{i}.bin", b"%d" % counts[0])
                assert await tree.read_bytes("c.txt") == b"z" * 321
                counts[0] += 1

        workers = [asyncio.ensure_future(work(i)) for i in range(8)]

        async def until(predicate, timeout):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not predicate():
                assert loop.time() < deadline, "timed out"
                await asyncio.sleep(0.01)

        try:
            await until(lambda: counts[0] > 50, 15)
            pid = await asyncio.to_thread(server.connection_child, client.local_address[1],
                                          timeout=5.0)
            os.kill(pid, signal.SIGKILL)
            await until(lambda: client.stats()["_client"]["reconnects"] >= 1, 15)
            before = counts[0]
            await until(lambda: counts[0] > before + 50, 15)
        finally:
            stop.set()
            done = await asyncio.gather(*workers, return_exceptions=True)
        assert not [d for d in done if d is not None], done


async def test_soft_timeout_from_a_coroutine(server):
    async with _connect(server, timeouts=TimeoutPolicy(
            mode="soft", timeout=0.5, echo_interval=0.25, soft_timeout=1.0,
            connect_timeout=1.0), reconnect=QUICK_RECONNECT) as tree:
        client = tree.client.sync
        pid = await asyncio.to_thread(server.connection_child, client.local_address[1],
                                      timeout=5.0)
        os.kill(pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            other = asyncio.ensure_future(asyncio.sleep(0.1))   # the loop keeps running
            with pytest.raises(SmbTimeoutError):
                await tree.stat("")
            assert other.done()
            assert loop.time() - start < 0.5 + 1.0 + 1.0 + 3.0
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_killed_child_async_reader_reopened_writer_fails(server):
    """Killing the serving smbd loses the opens (this server keeps no
    durable handles): as for the blocking file, an unchanged file we only
    read is reopened by path and reads on; a file we wrote fails naming the
    file, and closes quietly."""
    data = os.urandom(1 << 20)
    (server.share_path("share") / "f.bin").write_bytes(data)
    async with _connect(server, timeouts=SOFT, reconnect=QUICK_RECONNECT) as tree:
        client = tree.client.sync
        f = await tree.open("f.bin", "r+b")
        w = await tree.open("w.bin", "wb")
        assert await f.read(10) == data[:10]
        await w.write(b"w" * 1000)
        await w.flush()
        pid = await asyncio.to_thread(server.connection_child, client.local_address[1],
                                      timeout=5.0)
        os.kill(pid, signal.SIGKILL)
        assert await tree.client.echo() > 0             # reconnected (the echo waits)
        assert await f.read() == data[10:]               # reopened by path
        with pytest.raises(ConnectionError) as info:
            await w.write(b"x")
        assert "w.bin" in str(info.value) and info.value.path == "w.bin"
        await w.close()                                  # quietly: nothing to close
        await f.close()
        assert (await tree.stat("w.bin")).st_size == 1000
        assert tree.sync.open_files() == []


async def test_client_close_fails_a_parked_async_compound(server):
    """A compound waiting for a reconnect (only its first task is in the
    waiting list) fails whole when the client closes: no coroutine hangs."""
    with FaultProxy(server.host, server.port) as proxy:
        tree = await aio.connect(proxy.host, "share", server.username, server.password,
                                 port=proxy.port, reconnect=QUICK_RECONNECT,
                                 timeouts=TimeoutPolicy(mode="hard", timeout=5.0))
        client = tree.client.sync
        assert (await tree.stat("")).st_mode
        proxy.refuse(True)
        proxy.reset()
        await asyncio.to_thread(client.wait_for_state, ClientState.RECONNECTING, 5.0)
        stat = asyncio.ensure_future(tree.stat(""))
        await asyncio.sleep(0.2)
        assert not stat.done()                       # parked until the server is back
        await asyncio.to_thread(client.close)
        with pytest.raises(SmbClosedError):
            await asyncio.wait_for(stat, 5)
        await asyncio.to_thread(tree.sync.close)
