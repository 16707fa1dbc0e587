"""Byte-range locks across a reconnect (issue 24): a reclaimed durable
handle keeps its locks (another client still cannot take the range), and a
file that cannot keep them says so at its next call, naming the range.

Against a Samba that grants durable handles (``samba_durable``), through a
FaultProxy whose ``reset()`` is a network blip; the second client connects
directly (its own connection)."""
from __future__ import annotations

import time

import pytest

from smblayer import (Dialect, DialectRange, ReconnectPolicy, SmbClient,
                      SmbConnectionError, SmbStatusError, TimeoutPolicy, fs)
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]

TIMEOUTS = TimeoutPolicy(mode="soft", timeout=10.0, echo_interval=1.0, soft_timeout=5.0,
                         connect_timeout=5.0)
QUICK = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


class Other(SmbClient):
    """Its own client class: its own connection."""


def _connect(server, port, dialect, **options):
    return fs.connect(server.host, "share", server.username, server.password, port=port,
                      dialects=DialectRange(dialect, dialect), timeouts=TIMEOUTS,
                      reconnect=QUICK, **options)


@pytest.fixture
def proxy(samba_durable):
    with FaultProxy(samba_durable.host, samba_durable.port) as p:
        yield p


@pytest.mark.parametrize("dialect", [Dialect.SMB2_1, Dialect.SMB3_1_1], ids=str)
def test_locks_survive_a_durable_reclaim(samba_durable, proxy, dialect):
    name = f"lk-{dialect.name}.bin"
    (samba_durable.share_path() / name).write_bytes(bytes(100))
    with _connect(samba_durable, proxy.port, dialect) as tree, \
            _connect(samba_durable, samba_durable.port, dialect, client_class=Other) as other:
        with tree.open(name, "r+b") as f:
            assert f.raw.durable
            held = f.lock(0, 10)
            proxy.reset()
            f.seek(50)
            f.write(b"after")                          # recovered: the handle works
            f.flush()
            assert tree.client.stats()["_client"]["reconnects"] == 1
            assert f.locks == [held]
            with other.open(name, "r+b") as g:
                with pytest.raises(SmbStatusError):
                    g.lock(0, 10)                      # still ours on the server
                held.release()
                g.lock(0, 10).release()


def test_lost_lock_is_named_at_the_next_call(samba_durable, proxy):
    """SMB1 has no durable handles: the file is reopened by path and its
    lock asked again; another client took the range during the outage, so
    the next call raises naming it (and the call after works)."""
    name = "lk-smb1.bin"
    (samba_durable.share_path() / name).write_bytes(bytes(100))
    with _connect(samba_durable, proxy.port, Dialect.SMB1) as tree, \
            _connect(samba_durable, samba_durable.port, Dialect.SMB1,
                     client_class=Other) as other:
        f = tree.open(name, "rb")
        f.lock(0, 10)
        proxy.refuse(True)                    # no reconnect until the range is taken
        proxy.reset()
        with other.open(name, "r+b") as g:
            deadline = time.monotonic() + 10
            while True:                       # until the server dropped our lock
                try:
                    stolen = g.lock(0, 10)
                    break
                except SmbStatusError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            proxy.refuse(False)
            with pytest.raises(SmbConnectionError, match=r"\[0, \+10\)"):
                f.read(5)
            assert f.locks == []
            stolen.release()
            assert f.read(5) == bytes(5)
        f.close()


@pytest.mark.parametrize("dialect", [Dialect.SMB2_1, Dialect.SMB3_0, Dialect.SMB3_1_1],
                         ids=str)
def test_a_replayed_lock_is_recognised(samba_durable, dialect):
    """LockSequence (index in the upper 28 bits, number in the lowest 4):
    the server takes a LOCK sent again with the same sequence as the replay
    it is (success, not applied twice); a new LOCK of the range conflicts."""
    name = f"lk-replay-{dialect.name}.bin"
    (samba_durable.share_path() / name).write_bytes(bytes(10))
    with _connect(samba_durable, samba_durable.port, dialect) as tree:
        with tree.open(name, "r+b") as f:
            raw = f.raw
            assert raw.durable
            sequence = raw._next_sequence()
            exclusive = [(0, 5, 0x12)]        # EXCLUSIVE | FAIL_IMMEDIATELY
            tree.client.run_task(tree.ops.lock_task(raw.handle, exclusive, sequence=sequence))
            tree.client.run_task(tree.ops.lock_task(raw.handle, exclusive, sequence=sequence))
            with pytest.raises(SmbStatusError):
                tree.client.run_task(tree.ops.lock_task(raw.handle, exclusive,
                                                        sequence=raw._next_sequence()))
            f.unlock(0, 5)
            f.lock(0, 5).release()            # one unlock undid the (one) lock
