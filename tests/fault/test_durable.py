"""Open files survive reconnects (issue 11): durable handles reclaimed during
recovery, write-behind with no lost errors, a full disk.

Against a real Samba that grants durable handles (``samba_durable``), through
a FaultProxy whose ``reset()`` is a network blip: both sides get an RST, the
smbd process survives and keeps the durable open for our reclaim.  Killing
the serving smbd (or restarting the server) is a different fault: the open
dies with the process, and a writer must get a clear error."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from smblayer import (Dialect, DialectRange, ReconnectPolicy, SmbConnectionError,
                      SmbStatusError, TimeoutPolicy, fs)
from smblayer.proto.status import NtStatus
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.samba import DURABLE_OPTIONS
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]


# Interop: every test of this module runs on Samba 4.17 and on Samba 4.22.
@pytest.fixture(scope="module", params=SERVERS)
def samba_durable(request, samba_durable):
    return on_both(request, samba_durable, "samba_422_durable")


TIMEOUTS = TimeoutPolicy(mode="soft", timeout=10.0, echo_interval=1.0, soft_timeout=5.0,
                         connect_timeout=5.0)
QUICK = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)
MiB = 1 << 20
DATA = os.urandom(32 * MiB)

# (dialect, share): every dialect with durable handles, plain and encrypted.
CASES = [
    ("SMB2_0_2", "share"), ("SMB2_1", "share"), ("SMB3_0", "share"),
    ("SMB3_0_2", "share"), ("SMB3_1_1", "share"),
    ("SMB3_0", "encrypted"), ("SMB3_1_1", "encrypted"),
]
IDS = [f"{d}-{s}" for d, s in CASES]
OPLOCK_CASES = [("SMB2_1", "share"), ("SMB3_1_1", "share"), ("SMB3_1_1", "encrypted")]


def _connect(server, port, dialect="SMB3_1_1", share="share", **options):
    d = getattr(Dialect, dialect)
    return fs.connect(server.host, share, server.username, server.password, port=port,
                      dialects=DialectRange(d, d), timeouts=TIMEOUTS, reconnect=QUICK,
                      **options)


@pytest.fixture
def proxy(samba_durable):
    with FaultProxy(samba_durable.host, samba_durable.port) as p:
        yield p


def _reconnects(tree) -> int:
    return tree.client.stats()["_client"]["reconnects"]


def _on_disk(server, share, name) -> bytes:
    return (server.share_path(share) / name).read_bytes()


@pytest.mark.parametrize("dialect,share", CASES, ids=IDS)
def test_write_across_reset_is_exact(samba_durable, proxy, dialect, share):
    name = f"w-{dialect}-{share}.bin"
    with _connect(samba_durable, proxy.port, dialect, share) as tree:
        with tree.open(name, "wb") as f:
            assert f.raw.durable
            handle = f.raw.handle
            f.write(DATA[:8 * MiB])          # write-behind: still in flight
            proxy.reset()
            f.write(DATA[8 * MiB:16 * MiB])
            assert f.raw.handle is handle    # the same handle object, reclaimed
        assert _reconnects(tree) == 1
    assert _on_disk(samba_durable, share, name) == DATA[:16 * MiB]


@pytest.mark.parametrize("dialect,share", CASES, ids=IDS)
def test_read_across_reset_is_exact(samba_durable, proxy, dialect, share):
    name = f"r-{dialect}-{share}.bin"
    (samba_durable.share_path(share) / name).write_bytes(DATA)
    with _connect(samba_durable, proxy.port, dialect, share) as tree:
        with tree.open(name, "rb") as f:
            first = f.read(5 * MiB)
            proxy.reset()
            rest = f.read()
        assert _reconnects(tree) == 1
    assert first + rest == DATA


@pytest.mark.parametrize("oplock", ["batch", "lease"])
@pytest.mark.parametrize("dialect,share", OPLOCK_CASES,
                         ids=[f"{d}-{s}" for d, s in OPLOCK_CASES])
def test_oplock_or_lease_held_across_reset(samba_durable, proxy, dialect, share, oplock):
    name = f"o-{oplock}-{dialect}-{share}.bin"
    with _connect(samba_durable, proxy.port, dialect, share) as tree:
        with tree.open(name, "w+b", oplock=oplock) as f:
            assert f.raw.durable and f.raw.oplock_level
            f.write(DATA[:8 * MiB])
            proxy.reset()
            f.write(DATA[8 * MiB:16 * MiB])
            f.seek(0)
            first = f.read(3 * MiB)
            proxy.reset()
            rest = f.read()
            assert f.raw.oplock_level          # as granted on the reclaim
        assert _reconnects(tree) == 2
    assert first + rest == DATA[:16 * MiB]
    assert _on_disk(samba_durable, share, name) == DATA[:16 * MiB]


def test_eight_threads_across_reset(samba_durable, proxy):
    names = [f"t{i}.bin" for i in range(8)]
    chunk = 2 * MiB
    halfway = threading.Barrier(9)
    resumed = threading.Event()
    errors = []
    with _connect(samba_durable, proxy.port) as tree:
        def worker(i: int) -> None:
            data = DATA[i * MiB:i * MiB + 2 * chunk]
            try:
                with tree.open(names[i], "wb") as f:
                    f.write(data[:chunk])
                    halfway.wait(30)
                    resumed.wait(30)
                    f.write(data[chunk:])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                halfway.abort()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        halfway.wait(30)
        proxy.reset()
        resumed.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert _reconnects(tree) == 1
    for i, name in enumerate(names):
        assert _on_disk(samba_durable, "share", name) == DATA[i * MiB:i * MiB + 2 * chunk]


def test_server_restart_fails_the_open_writer_clearly(samba_factory):
    server = samba_factory(extra_global=DURABLE_OPTIONS)
    with _connect(server, server.port) as tree:
        f = tree.open("restart.bin", "wb")
        f.write(DATA[:2 * MiB])
        f.flush()
        server.restart()                      # the durable open dies with smbd
        with pytest.raises(SmbConnectionError) as info:
            f.write(DATA[2 * MiB:4 * MiB])
            f.flush()
        assert "restart.bin" in str(info.value)
        assert info.value.path == "restart.bin"
        f.close()                             # quiet: the server has no open
        tree.write_bytes("after.bin", b"new opens work")
        assert tree.read_bytes("after.bin") == b"new opens work"
        with tree.open("after2.bin", "wb") as g:
            g.write(b"x" * 100)
        assert tree.stat("after2.bin").st_size == 100


def test_killed_child_refuses_reclaim_reader_reopened_writer_fails(samba_factory):
    """Killing the serving smbd loses the durable opens: the reclaim is
    refused; an unchanged file we only read is reopened by path, a file we
    wrote fails clearly (its identity can't be proven)."""
    server = samba_factory(extra_global=DURABLE_OPTIONS)
    (server.share_path() / "ro.bin").write_bytes(DATA[:4 * MiB])
    with _connect(server, server.port) as tree:
        reader = tree.open("ro.bin", "rb")
        writer = tree.open("wr.bin", "wb")
        head = reader.read(MiB)
        writer.write(DATA[:MiB])
        writer.flush()
        pid = server.connection_child(tree.client.local_address[1], timeout=5)
        assert pid
        os.kill(pid, signal.SIGKILL)
        assert head + reader.read() == DATA[:4 * MiB]
        with pytest.raises(SmbConnectionError, match="wr.bin"):
            writer.write(DATA[:MiB])
            writer.close()
        writer.close()
        reader.close()
        assert tree.read_bytes("ro.bin") == DATA[:4 * MiB]


def test_no_durable_handle_granted_writer_fails_reader_survives(samba_factory):
    server = samba_factory(extra_global={"durable handles": "no"})
    (server.share_path() / "ro.bin").write_bytes(DATA[:3 * MiB])
    with FaultProxy(server.host, server.port) as px, _connect(server, px.port) as tree:
        writer = tree.open("nd.bin", "wb")
        reader = tree.open("ro.bin", "rb")
        assert not writer.raw.durable
        writer.write(DATA[:4 * MiB])
        head = reader.read(MiB)
        px.reset()
        with pytest.raises(SmbConnectionError, match="nd.bin"):
            writer.write(DATA[:MiB])
            writer.flush()
        writer.close()
        assert head + reader.read() == DATA[:3 * MiB]     # reopened: provably the same
        reader.close()


def test_durable_off_and_changed_file_is_not_reopened(samba_durable, proxy):
    """durable=False: a reader is reopened only if the file is unchanged;
    here someone else changed it meanwhile, so the next read fails."""
    path = samba_durable.share_path() / "changed.bin"
    path.write_bytes(DATA[:2 * MiB])
    with _connect(samba_durable, proxy.port, durable=False) as tree:
        f = tree.open("changed.bin", "rb")
        assert not f.raw.durable
        f.read(MiB)
        with open(path, "ab") as local:
            local.write(b"someone else")
        proxy.reset()
        with pytest.raises(SmbConnectionError, match="changed.bin"):
            f.read()
        f.close()


def test_smb1_reader_reopened_writer_fails(samba_durable, proxy):
    (samba_durable.share_path() / "one.bin").write_bytes(DATA[:3 * MiB])
    with _connect(samba_durable, proxy.port, "SMB1") as tree:
        reader = tree.open("one.bin", "rb")
        writer = tree.open("one-w.bin", "wb")
        head = reader.read(MiB)
        writer.write(DATA[:MiB])
        proxy.reset()
        assert head + reader.read() == DATA[:3 * MiB]
        with pytest.raises(SmbConnectionError, match="one-w.bin"):
            writer.write(DATA[:MiB])
            writer.close()
        writer.close()
        reader.close()


@pytest.fixture(params=SERVERS)
def small_share(request, samba_factory):
    """A Samba share on a 16 MiB tmpfs (on Samba 4.22 the tmpfs, mounted
    under /tmp before smbd starts, is seen inside its root)."""
    root = request.getfixturevalue("samba_root") if request.param == "4.22" else None
    mount = shutil.which("mount")
    path = tempfile.mkdtemp(prefix="smbl-tmpfs-")
    ok = mount is not None and subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=16m", "tmpfs", path],
        capture_output=True).returncode == 0
    if not ok:
        os.rmdir(path)
        if os.environ.get("CI") == "true":
            pytest.fail("cannot mount a tmpfs (needs root) and CI=true")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    os.chmod(path, 0o777)
    try:
        yield samba_factory(extra_shares={"small": {"path": path, "read only": "no"}},
                            root=root)
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)
        os.rmdir(path)


@pytest.mark.parametrize("dialect", ["SMB2_1", "SMB3_1_1", "SMB1"])
def test_full_disk_raises_at_write_flush_or_close(small_share, dialect):
    with _connect(small_share, small_share.port, dialect, "small") as tree:
        f = tree.open("big.bin", "wb")
        with pytest.raises(SmbStatusError) as info:
            try:
                for i in range(40):
                    f.write(DATA[i % 32 * MiB:(i % 32 + 1) * MiB])
                f.flush()
            finally:
                f.close()
        assert info.value.status == NtStatus.DISK_FULL
        assert "big.bin" in str(info.value)
        assert f.closed
        with pytest.raises(SmbStatusError) as info:      # a small file: WRITE + CLOSE
            with tree.open("small.bin", "wb") as g:       # as one compound at close
                g.write(DATA[:64 * 1024])
        assert info.value.status == NtStatus.DISK_FULL and "small.bin" in str(info.value)
        assert g.closed
        tree.remove("big.bin")              # the client is usable afterwards
        tree.write_bytes("ok.bin", b"fine")
        assert tree.read_bytes("ok.bin") == b"fine"


def test_full_disk_through_the_cli(small_share, tmp_path):
    """`smblayer put` of 40 MiB to a 16 MiB share: a clear error and a
    non-zero exit, never a silent success."""
    src = tmp_path / "big.bin"
    src.write_bytes(DATA + DATA[:8 * MiB])
    env = dict(os.environ, SMB_USER=small_share.username, SMB_PASSWORD=small_share.password)
    proc = subprocess.run(
        [sys.executable, "-m", "smblayer", "put", str(src),
         f"//{small_share.host}:{small_share.port}/small/big.bin"],
        capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=90)
    assert proc.returncode != 0
    assert b"DISK_FULL" in proc.stderr, proc.stderr
    assert b"big.bin" in proc.stderr


def test_another_clients_open_during_the_outage_wins(samba_durable, proxy):
    """While we are cut off, another client opens the file for writing:
    Samba drops our disconnected durable open for it, the reclaim is
    refused, and our writer fails clearly (never reopened onto the file the
    other client changed)."""
    with _connect(samba_durable, proxy.port) as tree:
        f = tree.open("raced.bin", "wb")
        f.write(DATA[:MiB])
        f.flush()
        proxy.refuse(True)
        proxy.reset()
        with _connect(samba_durable, samba_durable.port) as other:
            with other.open("raced.bin", "r+b") as g:
                g.write(b"theirs")
        proxy.refuse(False)
        with pytest.raises(SmbConnectionError, match="raced.bin"):
            f.write(DATA[:MiB])
            f.flush()
        f.close()
    assert _on_disk(samba_durable, "share", "raced.bin")[:6] == b"theirs"
