"""Deferred close of files opened for writing, on Samba 4.17 and 4.22: the
data is on the server when close() returns, the write time is set then (a
stat from any client sees the new size and time), the kept handle serves
the next open of the path ("r", "a", "w") with no CREATE, and it is closed
for real by a conflicting open, a break without handle caching, a
delete/rename above it, or the process's end (which loses nothing)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from smblayer import Dialect, DialectRange, fs
from smblayer.fs.ops import LEASE_HANDLE, LEASE_READ
from smblayer.testing.waiting import eventually, requests
from _deferred_helpers import connect, samba  # noqa: F401 (samba: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def tree(samba):
    with connect(samba) as tree:
        yield tree


def fresh(prefix="dw"):
    return f"{prefix}-{os.urandom(4).hex()}.bin"


def on_disk(samba, name):
    return (samba.share_path() / name).read_bytes()


def test_write_close_reopen_reuses_the_handle(tree, samba):
    """"w" five times, then "a": one CREATE, no CLOSE; after each close()
    the share holds exactly what was written.  A reader asks access the
    writer's handle lacks: that handle is closed for real first."""
    name = fresh()
    creates, closes = requests(tree, "CREATE"), requests(tree, "CLOSE")
    for i in range(5):
        data = os.urandom(4096 - i * 100)      # shrinking: "w" must truncate
        with tree.open(name, "wb") as f:
            f.write(data)
        assert on_disk(samba, name) == data
    with tree.open(name, "ab") as f:
        f.write(b"tail")
    assert on_disk(samba, name) == data + b"tail"
    assert requests(tree, "CREATE") == creates + 1
    assert requests(tree, "CLOSE") == closes
    assert tree.deferred_closes.reused == 5 and len(tree.deferred_closes) == 1
    with tree.open(name, "rb") as f:
        assert f.read() == data + b"tail"
    assert requests(tree, "CREATE") == creates + 2 and requests(tree, "CLOSE") == closes + 1


def test_a_read_write_handle_serves_readers_and_writers(tree, samba):
    name = fresh()
    with tree.open(name, "w+b") as f:
        f.write(b"first")
    creates = requests(tree, "CREATE")
    with tree.open(name, "rb") as f:
        assert f.read() == b"first"
    with tree.open(name, "r+b") as f:
        f.write(b"F")
    with tree.open(name, "rb") as f:
        assert f.read() == b"First"
    assert requests(tree, "CREATE") == creates
    assert on_disk(samba, name) == b"First"


@pytest.mark.parametrize("dialect,share", [
    ("SMB2_1", "share"), ("SMB3_0_2", "share"), ("SMB3_1_1", "share"),
    ("SMB3_0_2", "encrypted"), ("SMB3_1_1", "encrypted")])
def test_one_round_trip_per_small_write(samba, dialect, share):
    """open (kept), write 4 KiB, close: the WRITE and the write time go as
    one compound; a larger file is flushed, then its time is set.  Leases
    v1 (2.1, durable v1) and v2, signed and encrypted."""
    d = getattr(Dialect, dialect)
    with fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                    dialects=DialectRange(d, d)) as tree:
        round_trips(tree, samba, share)


def round_trips(tree, samba, share):
    name = fresh()
    tree.open(name, "w+b").close()
    sent = tree.client.stats
    for data in (os.urandom(4096), os.urandom(3 << 20)):
        before = {c: sent().get(c, {}).get("ops", 0) for c in ("CREATE", "CLOSE", "SET_INFO")}
        with tree.open(name, "r+b") as f:
            f.write(data)
        after = {c: sent().get(c, {}).get("ops", 0) for c in before}
        assert after == {"CREATE": before["CREATE"], "CLOSE": before["CLOSE"],
                         "SET_INFO": before["SET_INFO"] + 1}
        assert (samba.share_path(share) / name).read_bytes()[:len(data)] == data


def test_size_and_write_time_are_visible_at_close(tree, samba):
    """As with a real CLOSE: after close() a stat here, a stat from another
    client and the share's directory show the new size and a write time of
    the close, while the handle is still kept."""
    name = fresh()
    with tree.open(name, "wb") as f:
        f.write(b"old")
    os.utime(samba.share_path() / name, (1_000_000_000, 1_000_000_000))
    tree.deferred_closes.close_all()
    before = time.time()
    with tree.open(name, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"x" * 5000)
    after = time.time()
    assert len(tree.deferred_closes) == 1
    with connect(samba, deferred_close=0) as other:
        for st in (tree.stat(name), other.stat(name), os.stat(samba.share_path() / name)):
            assert st.st_size == 5003
            assert before - 1 <= st.st_mtime <= after + 1, (st.st_mtime, before, after)


def test_utime_after_close_is_not_overwritten_by_the_kept_handle(tree, samba):
    """Samba stamps a written handle's write time 2 s after the first
    write or at its CLOSE: a time set after close() (put -r, copy2) must
    survive both, however late the kept handle is closed."""
    name = fresh()
    with tree.open(name, "wb") as f:
        f.write(b"data")
    tree.utime(name, (1_000_000_000, 1_000_000_000))
    time.sleep(2.3)
    assert len(tree.deferred_closes) == 1
    tree.deferred_closes.close_all()
    assert tree.stat(name).st_mtime == 1_000_000_000
    assert os.stat(samba.share_path() / name).st_mtime == 1_000_000_000


def test_another_client_reading_sees_exact_bytes(tree, samba, tmp_path):
    """smbclient reads a file whose written handle is kept: it gets the
    bytes written (the server had them at close).  The break takes write
    caching only (RWH to RH): it is acknowledged and the handle stays
    kept, serving the next open with no CREATE."""
    name = fresh()
    data = os.urandom(70_000)
    with tree.open(name, "w+b") as f:
        f.write(data)
    handle = tree.deferred_closes.handles()[0]
    acks = requests(tree, "OPLOCK_BREAK")
    out = tmp_path / "got"
    res = samba.smbclient(["-c", f"get {name} {out}"], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.read_bytes() == data
    eventually(lambda: requests(tree, "OPLOCK_BREAK") == acks + 1)
    assert handle.lease_state == LEASE_READ | LEASE_HANDLE
    assert tree.deferred_closes.handles() == [handle]
    creates = requests(tree, "CREATE")
    with tree.open(name, "rb") as f:
        assert f.read() == data
    assert requests(tree, "CREATE") == creates


def test_another_clients_overwrite_closes_it_unacknowledged(tree, samba, tmp_path):
    """smbclient overwrites: the break takes handle caching away, the kept
    handle is closed for real and no acknowledgement is sent for it."""
    name = fresh()
    with tree.open(name, "wb") as f:
        f.write(b"ours")
    acks, closes = requests(tree, "OPLOCK_BREAK"), requests(tree, "CLOSE")
    new = tmp_path / "new"
    new.write_bytes(b"theirs")
    res = samba.smbclient(["-c", f"put {new} {name}"], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    eventually(lambda: len(tree.deferred_closes) == 0)
    assert requests(tree, "CLOSE") == closes + 1 and requests(tree, "OPLOCK_BREAK") == acks
    with tree.open(name, "rb") as f:
        assert f.read() == b"theirs"


def test_a_conflicting_share_mode_from_another_client_gets_in(tree, samba):
    """Another client opens denying writers (share "r"): the server breaks
    the kept writer's handle caching, it is closed, and the open succeeds
    (a kept handle must never cause a sharing violation)."""
    name = fresh()
    with tree.open(name, "wb") as f:
        f.write(b"kept writer")
    assert len(tree.deferred_closes) == 1
    with connect(samba, deferred_close=0) as other:
        with other.open(name, "rb", share="r") as f:
            assert f.read() == b"kept writer"
    assert len(tree.deferred_closes) == 0


def test_another_create_that_changes_the_file_closes_it_first(tree, samba):
    """write_bytes (CREATE + WRITE + CLOSE) overwrites a kept path: the
    kept handle goes first, so the next "a" does not append at the size it
    knew (the break our own CREATE causes could come after that reuse)."""
    name = fresh()
    with tree.open(name, "ab") as f:
        f.write(b"0123456789ABCDEF")
    assert len(tree.deferred_closes) == 1
    tree.write_bytes(name, b"0123")
    assert len(tree.deferred_closes) == 0
    with tree.open(name, "ab") as f:
        f.write(b"45")
    assert on_disk(samba, name) == b"012345"
    tree.read_bytes(name)                          # a reader's CREATE: the handle stays
    assert len(tree.deferred_closes) == 1


def test_exclusive_create_is_not_served_by_the_kept_handle(tree):
    name = fresh()
    with tree.open(name, "wb") as f:
        f.write(b"x")
    with pytest.raises(FileExistsError):
        tree.open(name, "xb")
    assert len(tree.deferred_closes) == 0


def test_a_file_holding_a_lock_is_closed_for_real(tree):
    name = fresh()
    closes = requests(tree, "CLOSE")
    with tree.open(name, "w+b") as f:
        f.write(b"locked")
        f.flush()
        f.raw.lock(0, 6)
    assert len(tree.deferred_closes) == 0 and requests(tree, "CLOSE") == closes + 1


def test_rename_and_delete_above_a_kept_writer(tree, samba):
    base = f"dwdir-{os.urandom(3).hex()}"
    tree.makedirs(f"{base}/sub")
    with tree.open(f"{base}/sub/f", "wb") as f:
        f.write(b"kept")
    assert len(tree.deferred_closes) == 1
    tree.rename(base, base + "-moved")           # a kept handle below would refuse it
    assert len(tree.deferred_closes) == 0
    assert tree.read_bytes(f"{base}-moved/sub/f") == b"kept"
    with tree.open(f"{base}-moved/sub/f", "ab") as f:
        f.write(b"!")
    tree.rmtree(base + "-moved")
    assert not (samba.share_path() / (base + "-moved")).exists()


def test_process_killed_during_the_deferral_loses_nothing(samba):
    """A child writes, closes (the handle is kept) and is killed at once
    (no exit handler runs): every byte is on the share."""
    name = fresh("kill")
    code = textwrap.dedent(f"""
        import os, signal
        from smblayer import fs
        tree = fs.connect("127.0.0.1", "share", {samba.username!r}, {samba.password!r},
                          port={samba.port})
        with tree.open({name!r}, "wb") as f:
            f.write(b"k" * 300_000)
        assert len(tree.deferred_closes) == 1
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert on_disk(samba, name) == b"k" * 300_000


def test_process_exit_closes_a_kept_writer(samba):
    name = fresh("exit")
    code = textwrap.dedent(f"""
        from smblayer import fs
        tree = fs.connect("127.0.0.1", "share", {samba.username!r}, {samba.password!r},
                          port={samba.port})
        with tree.open({name!r}, "wb") as f:
            f.write(b"e" * 1000)
        assert len(tree.deferred_closes) == 1
        client = tree.client
        before = client.stats()["CLOSE"]["ops"] if "CLOSE" in client.stats() else 0
        client.add_exit_handler(lambda c: print("closes", c.stats()["CLOSE"]["ops"] - before))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "closes 1" in out.stdout, out.stdout + out.stderr
    assert on_disk(samba, name) == b"e" * 1000
