"""READ data received in place (into the caller's buffer) against a real
Samba: once ``readinto``/``read`` returns, nothing of the layer holds the
caller's buffer (so ``del buf[n:]`` works, a reused buffer is never written
late), even when the receive thread is held back right after it completed
the READs (what a loaded machine does to it at random).
"""
from __future__ import annotations

import shutil
import threading
import time
import uuid

import pytest

from smblayer import fs
from smblayer.proto.smb2 import Command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SIZE = 300 * 1024 + 7          # one large, odd-sized READ: received in place


@pytest.fixture(params=[("share", False), ("encrypted", True)], ids=["clear", "enc"])
def tree(request, samba):
    share, encrypt = request.param
    tree = fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                      encrypt=encrypt)
    base = f"t-{uuid.uuid4().hex[:12]}"
    tree.mkdir(base)
    try:
        yield tree, base
    finally:
        tree.close()
        shutil.rmtree(samba.share_path(share) / base, ignore_errors=True)


class Stall:
    """Hold the thread that completes a READ right after it woke the caller
    (as a preempted receive thread would be), until the caller is done with
    its buffer (``done``) or ``hold`` seconds."""

    def __init__(self, client, hold: float = 5.0):
        self.hold = hold
        self.demux = client.connection.demux
        self.wake = self.demux._wake
        self.event = threading.Event()
        self.demux._wake = self._stalled

    def _stalled(self, task) -> None:
        event = self.event
        self.wake(task)
        if task.command == Command.READ and threading.current_thread() is not threading.main_thread():
            event.wait(self.hold)

    def done(self) -> None:
        event, self.event = self.event, threading.Event()
        event.set()

    def stop(self) -> None:
        self.demux._wake = self.wake
        self.event.set()


@pytest.mark.parametrize("how", ["read", "readinto", "pread"])
def test_buffer_is_free_when_the_read_returns(tree, how):
    tree, base = tree
    path = f"{base}/odd.bin"
    data = bytes(range(251)) * (SIZE // 251) + b"x" * (SIZE % 251)
    with tree.open(path, "wb") as f:
        f.write(data)
    with tree.open(path, "rb", buffering=0) as f:
        assert tree._placement_ok()
        stall = Stall(tree.client)
        try:
            for _ in range(3):
                if how == "read":
                    got = f.read(1 << 20)            # EOF inside the request: a short READ
                elif how == "readinto":
                    buf = bytearray(1 << 20)
                    n = f.readinto(buf)
                    del buf[n:]                      # resizing needs no export left
                    got = bytes(buf)
                else:
                    f.seek(5)
                    buf = bytearray(SIZE)
                    n = f.readinto(buf)
                    buf.extend(b"!")                 # resizing needs no export left
                    got = data[:5] + bytes(buf[:n])
                stall.done()
                assert got == data
                f.seek(0)
        finally:
            stall.stop()


def test_readinto_many_fills_each_buffer_and_frees_them(tree):
    """Several buffers read as one pipeline: each gets its bytes (the file
    ends inside the third: the counts say where), ``done(buffer, n)`` runs
    in order for each up to the end, each buffer free by then (it can be
    resized), and none is held once the call returns."""
    tree, base = tree
    path = f"{base}/many.bin"
    step = tree.io_read_size
    data = bytes(range(256)) * ((3 * step + step // 2 + 9) // 256)
    with tree.open(path, "wb") as f:
        f.write(data)
    with tree.open(path, "rb", buffering=0) as f:
        stall = Stall(tree.client, hold=0.05)      # each READ's completion held back
        try:
            sizes = [step + 5, step // 3, 3 * step, 2 * step]       # more than the file holds
            bufs = [bytearray(n) for n in sizes]
            seen = []

            def done(buf, n):
                seen.append((bufs.index(buf), n))
                buf.extend(b"!")                 # resizing needs no export left
            n = f.readinto_many(iter(bufs), done)
            stall.done()
        finally:
            stall.stop()
        assert n == len(data) == sum(k for _i, k in seen) and f.tell() == n
        assert [i for i, _k in seen] == [0, 1, 2]
        assert [k for _i, k in seen][:2] == sizes[:2]
        got = b"".join(bytes(b[:k]) for b, (_i, k) in zip(bufs, seen))
        assert got == data and bufs[3] == bytes(2 * step)
        bufs[3].extend(b"!")                     # never written, not held either
        assert f.readinto_many([bytearray(10)]) == 0          # at the end: nothing


def test_withdrawn_placement_is_never_written(samba):
    """A placed READ abandoned while its frame is half received: once
    withdraw_placement returns, the rest of the frame never reaches the
    caller's buffer (it is the caller's again: reused, resized)."""
    from smblayer.testing.proxy import FaultProxy
    size = 512 * 1024
    base = f"t-{uuid.uuid4().hex[:12]}"
    held, gate = threading.Event(), threading.Event()
    seen = [0, False]                 # s2c bytes since armed, armed

    def tap(_index, direction, data):
        if direction == "s2c" and seen[1]:
            seen[0] += len(data)
            if seen[0] > 128 * 1024 and not held.is_set():
                held.set()            # the frame's head and some data went through
                gate.wait(10)

    with FaultProxy(samba.host, samba.port, chunk_size=16 * 1024) as proxy:
        tree = fs.connect(samba.host, "share", samba.username, samba.password,
                          port=proxy.port)
        try:
            tree.mkdir(base)
            with tree.open(f"{base}/a.bin", "wb") as f:
                f.write(b"a" * size)
            with tree.open(f"{base}/a.bin", "rb", buffering=0) as f:
                assert tree._placement_ok()
                buf = bytearray(size)
                into = memoryview(buf)
                task = tree.ops.read_task(f._handle, 0, size, into=into[:])
                proxy.tap(tap)
                seen[1] = True
                generation = tree.client.generation
                future = tree.client.run_task_async(task)
                assert held.wait(10)
                deadline = time.monotonic() + 10
                while buf[64 * 1024] != ord("a"):     # the data is being placed
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                future.cancel()
                tree.client.withdraw_placement(task)
                into.release()
                buf[:] = bytes(size)
                buf.extend(b"!")                      # no export of it left
                gate.set()
                tree.client.echo()      # answered after the rest of the READ frame
                assert buf == bytes(size) + b"!"
                assert tree.client.generation == generation      # no connection lost
                proxy.tap(None)
        finally:
            gate.set()
            tree.close()
            shutil.rmtree(samba.share_path("share") / base, ignore_errors=True)
