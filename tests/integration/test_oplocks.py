"""Oplock and lease breaks against a real Samba (SMB 2.0.2 .. 3.1.1).

Client A (its own connection: a distinct TimeoutPolicy makes the registry
build a separate client) holds an oplock or lease; client B opens the same
file.  Samba breaks A's oplock and holds B's CREATE until A acknowledges
(its break timeout is 35 s or more), so a prompt B proves the layer flushed
and acknowledged automatically on smbiod.
"""
from __future__ import annotations

import shutil
import threading
import time
import uuid

import pytest

from smblayer import Dialect, DialectRange, TimeoutPolicy, fs
from smblayer.fs.ops import (LEASE_READ, LEASE_WRITE, OPLOCK_LEASE, OPLOCK_LEVEL_II,
                             OPLOCK_NONE)
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


# Interop: every test of this module runs on Samba 4.17 and on Samba 4.22.
@pytest.fixture(scope="module", params=SERVERS)
def samba(request, samba):
    return on_both(request, samba, "samba_422")


D = Dialect
ALL = [D.SMB2_0_2, D.SMB2_1, D.SMB3_0, D.SMB3_0_2, D.SMB3_1_1]
LEASING = [D.SMB2_1, D.SMB3_0, D.SMB3_0_2, D.SMB3_1_1]
A_TIMEOUTS = TimeoutPolicy(timeout=29.0)        # a separate connection for client A


class Pair:
    """Trees A and B on two connections, and a fresh directory."""

    def __init__(self, samba, dialect, share, encrypt):
        self.samba, self.share = samba, share
        kwargs = dict(port=samba.port, encrypt=encrypt, dialects=DialectRange(dialect, dialect))
        self.a = fs.connect(samba.host, share, samba.username, samba.password,
                            timeouts=A_TIMEOUTS, **kwargs)
        self.b = fs.connect(samba.host, share, samba.username, samba.password, **kwargs)
        assert self.a.client is not self.b.client
        self.base = f"o-{uuid.uuid4().hex[:12]}"
        self.a.mkdir(self.base)
        self.breaks = []
        self.broken = threading.Event()

    def p(self, name: str) -> str:
        return f"{self.base}/{name}"

    def on_break(self, f, level) -> None:
        self.breaks.append((time.monotonic(), f, level, threading.current_thread().name))
        self.broken.set()

    def close(self) -> None:
        self.a.close()
        self.b.close()
        shutil.rmtree(self.samba.share_path(self.share) / self.base, ignore_errors=True)


@pytest.fixture
def pair_factory(samba):
    made = []

    def make(dialect, share="share", encrypt=False):
        made.append(Pair(samba, dialect, share, encrypt))
        return made[-1]

    yield make
    for pair in made:
        pair.close()


def _break_and_open(pair, kind, b_mode="rb"):
    """A writes (buffered) under ``kind``; B opens; returns (fa, fb, B's open time)."""
    path = pair.p("f.bin")
    pair.a.write_bytes(path, b"")
    fa = pair.a.open(path, "r+b", oplock=kind, on_break=pair.on_break)
    fa.write(b"written by A before the break")          # still in A's buffer
    assert pair.samba.share_path(pair.share).joinpath(pair.base, "f.bin").read_bytes() == b""
    start = time.monotonic()
    fb = pair.b.open(path, b_mode)
    return fa, fb, start, time.monotonic() - start


@pytest.mark.parametrize("dialect", ALL, ids=str)
def test_batch_oplock_break(pair_factory, dialect):
    pair = pair_factory(dialect)
    fa, fb, start, b_open = _break_and_open(pair, "batch")
    assert b_open < 2.0, f"B's open took {b_open:.1f}s: the break was not acknowledged"
    assert pair.broken.wait(1.0)
    when, f, level, thread = pair.breaks[0]
    assert when - start < 1.0
    assert f is fa and thread.startswith("smbiod-")
    assert level in (OPLOCK_LEVEL_II, OPLOCK_NONE)
    assert fa.raw.oplock_level == level
    assert fb.read() == b"written by A before the break"
    # A keeps working after the break.
    fa.write(b"; more")
    fa.close()
    fb.seek(0)
    assert fb.read() == b"written by A before the break; more"
    fb.close()


@pytest.mark.parametrize("dialect", LEASING, ids=str)
def test_lease_break(pair_factory, dialect):
    pair = pair_factory(dialect)
    path = pair.p("f.bin")
    pair.a.write_bytes(path, b"")
    fa = pair.a.open(path, "r+b", oplock="lease", on_break=pair.on_break)
    assert fa.raw.oplock_level == OPLOCK_LEASE
    assert fa.raw.lease_state & LEASE_WRITE and fa.raw.lease_state & LEASE_READ
    fa.write(b"leased data")
    start = time.monotonic()
    with pair.b.open(path, "rb") as fb:
        b_open = time.monotonic() - start
        assert b_open < 2.0, f"B's open took {b_open:.1f}s: the break was not acknowledged"
        assert pair.broken.wait(1.0)
        when, f, state, _thread = pair.breaks[0]
        assert when - start < 1.0 and f is fa
        assert not state & LEASE_WRITE
        assert fa.raw.lease_state == state
        assert fb.read() == b"leased data"
    fa.close()


@pytest.mark.parametrize("dialect", [D.SMB3_0, D.SMB3_1_1], ids=str)
@pytest.mark.parametrize("kind", ["batch", "lease"])
def test_break_on_encrypted_share(pair_factory, dialect, kind):
    pair = pair_factory(dialect, "encrypted", True)
    fa, fb, start, b_open = _break_and_open(pair, kind)
    assert b_open < 2.0
    assert pair.broken.wait(1.0)
    assert fb.read() == b"written by A before the break"
    fa.close()
    fb.close()


def test_lease_falls_back_to_batch_on_2_0_2(pair_factory):
    pair = pair_factory(D.SMB2_0_2)
    fa, fb, _start, b_open = _break_and_open(pair, "lease")
    assert b_open < 2.0 and pair.broken.wait(1.0)
    assert pair.breaks[0][2] in (OPLOCK_LEVEL_II, OPLOCK_NONE)
    assert fb.read() == b"written by A before the break"
    fa.close()
    fb.close()


@pytest.mark.parametrize("dialect", [D.SMB2_0_2, D.SMB2_1, D.SMB3_1_1], ids=str)
def test_level2_broken_to_none_by_a_writer(pair_factory, dialect):
    pair = pair_factory(dialect)
    path = pair.p("f.bin")
    pair.a.write_bytes(path, b"original")
    fa = pair.a.open(path, "rb", oplock="level2", on_break=pair.on_break)
    if fa.raw.oplock_level != OPLOCK_LEVEL_II:
        fa.close()
        pytest.skip(f"Samba granted oplock {fa.raw.oplock_level}, not level II")
    assert fa.read() == b"original"
    start = time.monotonic()
    with pair.b.open(path, "r+b") as fb:
        fb.write(b"CHANGED!")
    assert time.monotonic() - start < 2.0
    assert pair.broken.wait(1.0), "Samba sent no level II -> none break"
    assert pair.breaks[0][2] == OPLOCK_NONE
    assert fa.raw.oplock_level == OPLOCK_NONE
    fa.seek(0)                       # read() kept nothing in the buffer
    assert fa.read() == b"CHANGED!"
    fa.close()


@pytest.mark.parametrize("dialect", [D.SMB2_0_2, D.SMB3_1_1], ids=str)
def test_break_flushes_a_big_buffer_and_callback_may_do_io(pair_factory, dialect):
    """Many small buffered writes (flushed on smbiod, chunk by chunk) and an
    on_break callback that itself talks to the server: no deadlock."""
    pair = pair_factory(dialect)
    path = pair.p("big.bin")
    pair.a.write_bytes(path, b"")
    seen = []

    def on_break(f, level):
        seen.append(f.raw.stat().st_size)         # I/O from the callback
        pair.on_break(f, level)

    fa = pair.a.open(path, "r+b", oplock="batch", on_break=on_break,
                     buffering=4 << 20)
    piece = bytes(range(256)) * 40
    for _ in range(300):                           # ~3 MB, all buffered
        fa.write(piece)
    total = 300 * len(piece)
    start = time.monotonic()
    with pair.b.open(path, "rb") as fb:
        assert time.monotonic() - start < 2.0
        assert pair.broken.wait(2.0)
        data = fb.read()
    assert len(data) == total and data[:len(piece)] == piece
    assert seen == [total]
    fa.close()


def test_break_for_one_tree_only(pair_factory, samba):
    """Two trees sharing A's client: each ignores breaks for the other's files."""
    pair = pair_factory(D.SMB3_1_1)
    a2 = fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                    dialects=DialectRange(D.SMB3_1_1, D.SMB3_1_1), timeouts=A_TIMEOUTS)
    try:
        assert a2.client is pair.a.client
        other = []
        a2.write_bytes(pair.p("other.bin"), b"")
        with a2.open(pair.p("other.bin"), "rb", oplock="batch",
                     on_break=lambda f, lvl: other.append(lvl)):
            fa, fb, _start, b_open = _break_and_open(pair, "batch")
            assert b_open < 2.0 and pair.broken.wait(1.0)
            assert other == []
            fa.close()
            fb.close()
    finally:
        a2.close()


@pytest.mark.parametrize("kind", ["batch", "lease"])
def test_break_between_trees_of_one_client(pair_factory, samba, kind):
    """Tree A2 on A's own connection opens (asking an oplock itself) a file
    A holds: the break for A is routed past A2's pending open, promptly."""
    pair = pair_factory(D.SMB3_1_1)
    a2 = fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                    dialects=DialectRange(D.SMB3_1_1, D.SMB3_1_1), timeouts=A_TIMEOUTS)
    try:
        assert a2.client is pair.a.client
        path = pair.p("f.bin")
        pair.a.write_bytes(path, b"")
        fa = pair.a.open(path, "r+b", oplock=kind, on_break=pair.on_break)
        fa.write(b"from A")
        start = time.monotonic()
        with a2.open(path, "rb", oplock=kind) as f2:
            assert time.monotonic() - start < 2.0
            assert pair.broken.wait(1.0)
            assert f2.read() == b"from A"
        fa.close()
    finally:
        a2.close()
