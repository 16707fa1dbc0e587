"""Completion without hand-offs (issue 21, transport/completion.py): the
reader drains every reply of one recv before it wakes anyone, wakes each
waiter once, settles a Future itself while its callbacks still run on
smbiod, and a cancel racing a drained batch is never lost."""
from __future__ import annotations

import concurrent.futures
import select
import socket
import threading
import time

import pytest

import smblayer
from smblayer import Dialect, DialectRange
from smblayer.errors import SmbCancelledError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ONLY_311 = DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1)
ECHO_REPLY = 4 + 64 + 4          # framed SMB2 ECHO response


def _client(samba, **options) -> smblayer.SmbClient:
    client = smblayer.SmbClient(samba.host, samba.port, dialects=ONLY_311, **options)
    client.echo()
    return client


def _hold_reader(client):
    """Take the reader role from this thread: nothing is read until
    ``read_for`` (replies pile up in the socket)."""
    demux = client._conn.demux
    assert demux.take_reader_role()
    return demux


def _wait_buffered(client, size: int) -> None:
    """Block until ``size`` bytes of replies wait in the socket."""
    sock = client._conn.sock
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        select.select([sock], [], [], 0.05)
        if len(sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)) >= size:
            return
    raise AssertionError("the replies never arrived")


def _record_wakes(client, record):
    """Count the reader's wake-ups (the demux's wake callable, or the
    client's where the demux calls that)."""
    demux = client._conn.demux
    owner = demux if hasattr(demux, "_wake") else client
    real = owner._wake

    def wake(task):
        record(task)
        real(task)
    owner._wake = wake


def test_drain_many_wakes_every_waiter_exactly_once(samba):
    client = _client(samba)
    try:
        demux = _hold_reader(client)
        futures = [client.echo_async() for _ in range(16)]
        tasks = list(client._inflight.pending.values())
        assert len(tasks) == 16
        _wait_buffered(client, 16 * ECHO_REPLY)
        woken = []
        _record_wakes(client, lambda t: woken.append((t, len(client._inflight.pending))))
        try:
            demux.read_for(tasks[-1])
        finally:
            demux.release_reader_role()
        assert sorted(map(id, (t for t, _ in woken))) == sorted(map(id, tasks))
        # every reply was placed before the first waiter was woken
        assert [left for _, left in woken] == [0] * 16
        for f in futures:
            assert f.result(timeout=5).status == 0
        client.echo()                   # and the client carries on
        assert len(woken) == 16 + 1
    finally:
        client.close()


def test_future_settled_by_the_reader_runs_callbacks_on_smbiod(samba):
    client = _client(samba, iod_workers=4)
    gate = threading.Event()
    try:
        # Fill every smbiod worker: a Future settled through smbiod could
        # not complete now; one settled by the reader does.
        busy = [client.iod.submit(gate.wait, 30) for _ in range(8)]
        ran = []
        called = threading.Event()

        def callback(f):
            ran.append(threading.current_thread().name)
            called.set()
        demux = _hold_reader(client)
        try:
            future = client.echo_async()
            future.add_done_callback(callback)
        finally:
            demux.release_reader_role()
        assert future.result(timeout=10).status == 0
        assert ran == []                # its callback waits for smbiod, not the reader
        gate.set()
        for b in busy:
            b.result(timeout=10)
        assert called.wait(10)
        assert len(ran) == 1 and ran[0].startswith("smbiod"), ran
        # a callback added once the Future is done runs at once, here
        here = []
        future.add_done_callback(lambda f: here.append(threading.current_thread().name))
        assert here == [threading.current_thread().name]
    finally:
        gate.set()
        client.close()


def test_cancel_during_a_drained_batch_is_never_lost(samba):
    client = _client(samba)
    try:
        demux = _hold_reader(client)
        futures = [client.echo_async() for _ in range(12)]
        tasks = list(client._inflight.pending.values())
        # A sync caller waits too (its request is in the same batch).
        sync_result = []
        caller = threading.Thread(target=lambda: sync_result.append(
            _outcome(lambda: client.echo())))
        caller.start()
        deadline = time.monotonic() + 10
        while len(client._inflight.pending) < 13 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(client._inflight.pending) == 13
        demux._kicked = False           # the caller's send asked the role back; keep it
        _wait_buffered(client, 13 * ECHO_REPLY)
        # Cancelled before the read: their replies come in the batch as late ones.
        for f in futures[:4]:
            assert f.cancel()
        # Cancelled inside the batch: after its reply was placed, before its wake.
        late_cancels = []

        def cancel_in_batch(task):
            if not late_cancels:
                for t in tasks[4:8]:
                    late_cancels.append(t.cancel())
        _record_wakes(client, cancel_in_batch)
        try:
            demux.read_for(tasks[-1])
        finally:
            demux.release_reader_role()
        caller.join(10)
        assert sync_result == ["ok"]
        assert late_cancels == [False] * 4   # already complete: the cancel lost the race
        for f in futures[:4]:
            assert f.cancelled()
        for f in futures[4:]:
            assert f.result(timeout=5).status == 0
        for t in tasks[:4]:
            with pytest.raises(SmbCancelledError):
                client._finish(t)
        assert not client._inflight.pending
        client.echo()
    finally:
        client.close()


def _outcome(fn) -> str:
    try:
        fn()
        return "ok"
    except BaseException as exc:  # noqa: BLE001
        return repr(exc)


def test_async_many_in_flight_all_complete(samba):
    """64 in flight, renewed as they complete: every Future settles once."""
    client = _client(samba)
    try:
        done = 0
        pending = {client.echo_async() for _ in range(64)}
        for _ in range(20):
            finished, pending = concurrent.futures.wait(
                pending, timeout=10, return_when=concurrent.futures.FIRST_COMPLETED)
            assert finished
            for f in finished:
                assert f.result().status == 0
                done += 1
                pending.add(client.echo_async())
        for f in pending:
            f.result(timeout=10)
        assert client.stats()["_client"]["unmatched_replies"] == 0
        assert not client._inflight.pending
    finally:
        client.close()
