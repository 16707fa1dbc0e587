"""Kept handles (deferred close) across a reconnect, on Samba 4.17 and
4.22: a durable one is reclaimed by the tree's recovery and still serves
the next open with no new CREATE; one that was not durable died with the
connection and is dropped (no CLOSE on the new connection)."""
from __future__ import annotations

import os

import pytest

from smblayer import ReconnectPolicy, TimeoutPolicy, fs
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.pytest_plugin import SERVERS, on_both
from smblayer.testing.waiting import eventually, requests

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(60)]


@pytest.fixture(scope="module", params=SERVERS)
def samba_durable(request, samba_durable):
    return on_both(request, samba_durable, "samba_422_durable")


@pytest.fixture
def proxy(samba_durable):
    with FaultProxy(samba_durable.host, samba_durable.port) as p:
        yield p


def connect(server, port, **options):
    return fs.connect(server.host, "share", server.username, server.password, port=port,
                      timeouts=TimeoutPolicy(mode="soft", timeout=10.0, echo_interval=1.0,
                                             soft_timeout=5.0, connect_timeout=5.0),
                      reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.5), **options)


def reconnects(tree) -> int:
    return tree.client.stats()["_client"]["reconnects"]


def test_a_kept_durable_handle_is_reclaimed_and_reused(samba_durable, proxy):
    name = f"dr-{os.urandom(4).hex()}.bin"
    with connect(samba_durable, proxy.port) as tree:
        with tree.open(name, "w+b") as f:
            assert f.raw.durable
            f.write(b"before the blip")
        handle = tree.deferred_closes.handles()[0]
        fid = handle.fid
        proxy.reset()
        eventually(lambda: tree.listdir("") is not None and reconnects(tree) == 1)
        assert len(tree.deferred_closes) == 1 and handle.fid != fid and not handle.closed
        creates = requests(tree, "CREATE")
        with tree.open(name, "r+b") as f:
            assert f.raw.handle is handle
            assert f.read() == b"before the blip"
            f.write(b"!")
        assert requests(tree, "CREATE") == creates
    assert (samba_durable.share_path() / name).read_bytes() == b"before the blip!"


def test_a_kept_handle_that_was_not_durable_is_dropped(samba_durable, proxy):
    name = f"dn-{os.urandom(4).hex()}.bin"
    with connect(samba_durable, proxy.port, durable=False) as tree:
        with tree.open(name, "w+b", oplock="lease") as f:
            assert not f.raw.durable
            f.write(b"data")
        assert len(tree.deferred_closes) == 1
        handle = tree.deferred_closes.handles()[0]
        proxy.reset()
        eventually(lambda: tree.listdir("") is not None and reconnects(tree) == 1)
        assert len(tree.deferred_closes) == 0 and handle.closed
        closes, creates = requests(tree, "CLOSE"), requests(tree, "CREATE")
        with tree.open(name, "rb", oplock="lease") as f:      # kept in turn
            assert f.read() == b"data"
        assert requests(tree, "CREATE") == creates + 1 and requests(tree, "CLOSE") == closes



def test_a_reconnect_drops_the_kept_bytes(samba_durable, proxy):
    # the bytes kept under the read lease are not trusted across a
    # reconnect: the reclaimed handle's next read goes to the server
    name = f"dk-{os.urandom(4).hex()}.bin"
    with connect(samba_durable, proxy.port) as tree:
        tree.write_bytes(name, b"before the blip")
        with tree.open(name, "rb") as f:
            assert f.read() == b"before the blip"
        handle = tree.deferred_closes.handles()[0]
        assert handle.data is not None
        proxy.reset()
        eventually(lambda: tree.listdir("") is not None and reconnects(tree) == 1)
        assert tree.deferred_closes.handles() == [handle] and handle.data is None
        reads = requests(tree, "READ")
        with tree.open(name, "rb") as f:
            assert f.raw.handle is handle
            assert f.read(100) == b"before the blip"
        assert requests(tree, "READ") == reads + 1

