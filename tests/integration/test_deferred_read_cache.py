"""Bytes kept under a read lease (``tree.read_cache``, fs.readcache) on
Samba 4.17 and 4.22: a kept handle reused for the same read answers it
with no round trip; a write, truncate or set-size through this process
(any client, tree or handle), a break that takes read caching away (another
process's write), a reconnect and the tree's close drop the kept bytes
before anything else."""
import os
import subprocess
import sys
import threading

import pytest

from smblayer.fs.readcache import READ_CACHE_PARKED
from smblayer.testing.waiting import eventually, requests
from _deferred_helpers import connect, new_file, samba  # noqa: F401 (samba: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def tree(samba):
    with connect(samba) as tree:
        yield (tree, *new_file(tree, "rc"))


def read(tree, name, n=4096):
    with tree.open(name, "rb") as f:
        return f.read(n)


def test_a_reused_handle_reads_the_kept_bytes_with_no_round_trip(tree):
    tree, name, data = tree
    assert read(tree, name) == data
    reads, creates = requests(tree, "READ"), requests(tree, "CREATE")
    for _ in range(5):
        assert read(tree, name) == data
        assert read(tree, name, 100) == data[:100]
    with tree.open(name, "rb") as f:            # a range within, and the end of the file
        f.seek(4000)
        assert f.read(500) == data[4000:]
        assert f.read(10) == b""
    assert requests(tree, "READ") == reads and requests(tree, "CREATE") == creates


def test_off_and_too_big_read_from_the_server(tree):
    tree, name, data = tree
    tree.read_cache = 0
    read(tree, name)
    reads = requests(tree, "READ")
    assert read(tree, name) == data and requests(tree, "READ") == reads + 1
    tree.read_cache = 1024                      # 4 KiB read: more than kept
    read(tree, name)
    assert read(tree, name) == data and requests(tree, "READ") == reads + 3
    assert tree.deferred_closes.handles()[0].data is None


@pytest.fixture(params=["this tree", "another tree"])
def writer_tree(request, tree):
    """The tree a write goes through: the reader's, or another tree of the
    same session (and client)."""
    if request.param == "this tree":
        yield tree[0]
        return
    other = tree[0].session.tree_connect("share")
    try:
        yield other
    finally:
        other.disconnect()


def test_a_write_through_another_open_file_is_seen_at_once(tree, writer_tree):
    # The writer's handle was opened before the bytes were kept: its WRITE
    # breaks the reader's lease, but the break may come after the write's
    # reply.  The next read must see the write all the same.
    tree, name, data = tree
    with writer_tree.open(name, "r+b") as w:
        for i in range(20):
            assert read(tree, name) == (data if i == 0 else bytes([i - 1]) * 4096)
            w.seek(0)
            w.write(bytes([i]) * 4096)
            w.flush()
            assert read(tree, name) == bytes([i]) * 4096


def test_a_truncate_through_another_open_file_is_seen_at_once(tree, writer_tree):
    tree, name, data = tree
    with writer_tree.open(name, "r+b") as w:
        assert read(tree, name) == data
        w.truncate(10)
        assert read(tree, name) == data[:10]
        w.truncate(4096)
        assert read(tree, name) == data[:10] + bytes(4086)


def test_a_write_through_another_tree_of_this_client_is_seen_at_once(tree):
    tree, name, data = tree
    other = tree.session.tree_connect("share")
    try:
        for i in range(10):
            assert read(tree, name) == (data if i == 0 else bytes([i - 1]) * 4096)
            other.write_bytes(name, bytes([i]) * 4096)
            assert read(tree, name) == bytes([i]) * 4096
    finally:
        other.disconnect()


def test_a_write_through_another_client_of_this_process_is_seen_at_once(tree, samba):
    # a second client (its own connection): the change mark is the process's
    tree, name, data = tree
    with connect(samba, timeout=31, deferred_close=0) as writer:
        assert writer.client is not tree.client
        with writer.open(name, "r+b", oplock=None, durable=False) as w:
            with tree.open(name, "rb") as f:            # an open file re-reading too
                for i in range(20):
                    assert read(tree, name) == (data if i == 0 else bytes([i - 1]) * 4096)
                    f.seek(0)
                    assert f.read(4096) == (data if i == 0 else bytes([i - 1]) * 4096)
                    w.seek(0)
                    w.write(bytes([i]) * 4096)
                    w.flush()
                    assert read(tree, name) == bytes([i]) * 4096
                    f.seek(0)
                    assert f.read(4096) == bytes([i]) * 4096


WRITE_IN_PLACE = """
import sys
from smblayer import fs
host, port, user, password, name = sys.argv[1:]
with fs.connect(host, "share", user, password, port=int(port), deferred_close=0) as tree:
    with tree.open(name, "r+b", oplock=None, durable=False) as f:
        f.write(b"another process")
"""


def test_another_processs_write_is_seen_after_the_break(tree, samba):
    # in place (no truncation): the break takes read caching away (and the
    # kept handle is closed if handle caching goes too)
    tree, name, data = tree
    assert read(tree, name) == data
    kept = tree.deferred_closes.handles()[0]
    assert kept.data is not None
    subprocess.run([sys.executable, "-c", WRITE_IN_PLACE, samba.host, str(samba.port),
                    samba.username, samba.password, name], check=True, timeout=30)
    eventually(lambda: kept.data is None)       # the break came
    assert read(tree, name) == b"another process" + data[15:]


def test_smbclients_write_is_seen_after_the_break(tree, samba, tmp_path):
    tree, name, data = tree
    assert read(tree, name) == data
    new = tmp_path / "new"
    new.write_bytes(b"written by smbclient")
    res = samba.smbclient(["-c", f"put {new} {name}"], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert read(tree, name) == b"written by smbclient"


def test_a_break_drops_the_bytes_before_it_is_acknowledged(tree, samba):
    tree, name, data = tree
    assert read(tree, name) == data
    handle = tree.deferred_closes.handles()[0]
    assert handle.data is not None
    seen = []
    acked = threading.Event()
    ack = tree.ops.ack_break

    def ack_break(h, level):
        seen.append(h.data)
        acked.set()
        return ack(h, level)

    tree.ops.ack_break = ack_break
    with connect(samba, timeout=31, deferred_close=0) as other:
        with other.open(name, "r+b", oplock=None, durable=False):   # breaks W: acked
            assert acked.wait(10)
    assert seen == [None]


def test_the_tree_close_drops_the_bytes(samba):
    with connect(samba) as tree:
        tree.write_bytes("rc-close.bin", b"abc")
        assert read(tree, "rc-close.bin") == b"abc"
        handle = tree.deferred_closes.handles()[0]
        assert handle.data is not None
    assert handle.data is None and handle.closed


def test_the_parked_handles_keep_a_bounded_amount(tree):
    tree, name, _data = tree
    big = os.urandom(60 * 1024)
    names = [f"{name}-{i}" for i in range(READ_CACHE_PARKED // len(big) + 3)]
    for n in names:
        tree.write_bytes(n, big)
    for n in names:
        assert read(tree, n, len(big)) == big
    kept = sum(len(h.data[3]) for h in tree.deferred_closes.handles() if h.data is not None)
    assert 0 < kept <= READ_CACHE_PARKED
    reads = requests(tree, "READ")
    for n in names:                             # the dropped ones read from the server
        assert read(tree, n, len(big)) == big
    assert requests(tree, "READ") > reads



def test_read_to_the_end_asks_nothing_once_kept(tree):
    # readall: the size (QUERY_INFO) and the data, then neither
    tree, name, data = tree
    with tree.open(name, "rb") as f:
        assert f.read() == data
    queries, reads = requests(tree, "QUERY_INFO"), requests(tree, "READ")
    for _ in range(3):
        with tree.open(name, "rb") as f:
            assert f.read() == data
        with tree.open(name, "rb") as f:
            f.seek(1000)
            assert f.read() == data[1000:]
    assert requests(tree, "QUERY_INFO") == queries and requests(tree, "READ") == reads
    with tree.open(name, "r+b") as w:           # and the next one after a write sees it
        w.write(b"new")
    assert read(tree, name) == b"new" + data[3:]
