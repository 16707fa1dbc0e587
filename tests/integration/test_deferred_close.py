"""Deferred close (cifs.ko's closetimeo) on Samba 4.17 and 4.22: a file
closed under a handle-caching lease keeps its handle; the next open of the
same path reuses it with no round trip; a break, a conflicting open, the
tree's close or the process's exit close it for real.  Written files are
in tests/integration/test_deferred_write.py."""
import os
import subprocess
import sys
import textwrap

import pytest

from smblayer.testing.waiting import eventually, requests
from _deferred_helpers import connect, new_file, samba  # noqa: F401 (samba: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def tree(samba):
    with connect(samba) as tree:
        yield (tree, *new_file(tree, "dc"))


def test_reopen_reuses_the_handle_with_no_round_trip(tree):
    tree, name, data = tree
    creates, closes = requests(tree, "CREATE"), requests(tree, "CLOSE")
    for _ in range(5):
        with tree.open(name, "rb") as f:
            assert f.read() == data
    assert requests(tree, "CREATE") == creates + 1 and requests(tree, "CLOSE") == closes
    assert tree.deferred_closes.reused == 4 and len(tree.deferred_closes) == 1


def test_the_handle_is_closed_when_its_time_is_up(tree):
    tree, name, data = tree
    tree.deferred_close = 0.3
    closes = requests(tree, "CLOSE")
    with tree.open(name, "rb") as f:
        f.read()
    assert len(tree.deferred_closes) == 1
    eventually(lambda: requests(tree, "CLOSE") == closes + 1)
    assert len(tree.deferred_closes) == 0


def test_off_means_closed_at_once(tree):
    tree, name, data = tree
    tree.deferred_close = 0
    closes = requests(tree, "CLOSE")
    with tree.open(name, "rb") as f:
        f.read()
    assert requests(tree, "CLOSE") == closes + 1 and len(tree.deferred_closes) == 0


def test_another_clients_write_breaks_and_closes_it(tree, samba, tmp_path):
    tree, name, data = tree
    with tree.open(name, "rb") as f:
        assert f.read() == data
    assert len(tree.deferred_closes) == 1
    new = tmp_path / "new"
    new.write_bytes(b"written by smbclient")
    res = samba.smbclient(["-c", f"put {new} {name}"], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    eventually(lambda: len(tree.deferred_closes) == 0)
    with tree.open(name, "rb") as f:
        assert f.read() == b"written by smbclient"


def test_a_conflicting_open_on_the_tree_closes_it_first(tree, samba):
    """A reader's kept handle cannot serve a writer: it is closed for real,
    the writer opens its own (and is kept in turn)."""
    tree, name, data = tree
    with tree.open(name, "rb") as f:
        f.read()
    closes, creates = requests(tree, "CLOSE"), requests(tree, "CREATE")
    with tree.open(name, "w+b") as f:
        f.write(b"rewritten")
    assert requests(tree, "CLOSE") == closes + 1          # the reader's kept handle
    assert requests(tree, "CREATE") == creates + 1
    assert (samba.share_path() / name).read_bytes() == b"rewritten"
    with tree.open(name, "rb") as f:                      # the writer's handle serves it
        assert f.read() == b"rewritten"
    assert requests(tree, "CREATE") == creates + 1


def test_tree_close_closes_it_for_real(samba):
    tree = connect(samba)
    name = f"dc-{os.urandom(4).hex()}.bin"
    tree.write_bytes(name, b"x" * 100)
    with tree.open(name, "rb") as f:
        f.read()
    assert len(tree.deferred_closes) == 1
    closes = requests(tree, "CLOSE")
    client = tree.client
    stats_before = client.stats().get("CLOSE", {}).get("ops", 0)
    tree.close()
    assert len(tree.deferred_closes) == 0
    assert stats_before == closes and client.stats().get("CLOSE", {}).get("ops", 0) == closes + 1


def test_process_exit_closes_it_for_real(samba):
    """A child opens, reads, closes and exits at once: its exit handler
    sends the deferred CLOSE (seen in the child's own statistics)."""
    code = textwrap.dedent(f"""
        import os
        from smblayer import fs
        tree = fs.connect("127.0.0.1", "share", {samba.username!r}, {samba.password!r},
                          port={samba.port})
        tree.write_bytes("exit.bin", b"abc")
        with tree.open("exit.bin", "rb") as f:
            f.read()
        assert len(tree.deferred_closes) == 1
        client = tree.client
        before = client.stats()["CLOSE"]["ops"]
        # exit handlers run in order: the session's (which closes the tree) first
        client.add_exit_handler(lambda c: print("closes", c.stats()["CLOSE"]["ops"] - before))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "closes 1" in out.stdout, out.stdout + out.stderr


def test_remove_rename_and_rmdir_close_it_first(tree, samba):
    tree, name, data = tree
    base = f"dcdir-{os.urandom(3).hex()}"
    tree.makedirs(f"{base}/sub")
    for leaf in ("a", "b"):
        tree.write_bytes(f"{base}/sub/{leaf}", data)
        with tree.open(f"{base}/sub/{leaf}", "rb") as f:
            f.read()
    assert len(tree.deferred_closes) == 2
    tree.rename(f"{base}/sub/a", f"{base}/sub/c")      # a kept handle would hold the name
    tree.remove(f"{base}/sub/b")
    tree.remove(f"{base}/sub/c")
    tree.rmdir(f"{base}/sub")                          # not "directory not empty"
    tree.rmdir(base)
    assert not (samba.share_path() / base).exists()
