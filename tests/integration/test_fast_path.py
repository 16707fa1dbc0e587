"""The caller fast path (DESIGN.md "Threads") under concurrency: a caller
holding the reader role must never wait for anything that only a reply can
bring (credits, another connection), and every request joining hands the role
back, so many threads setting up sessions and calling at once on one shared
client all finish."""
from __future__ import annotations

import concurrent.futures
import threading

import pytest

import smblayer
from smblayer import Dialect, DialectRange, fs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("dialect", [Dialect.SMB3_1_1, Dialect.SMB2_1, Dialect.SMB1],
                         ids=lambda d: d.name)
def test_concurrent_sessions_and_calls_on_one_fresh_client(samba, dialect):
    """Right after NEGOTIATE the server grants few credits: 12 threads that
    all set up a session and then stat and echo at once must all finish
    (a fast reader waiting for credits that only replies grant hung here)."""
    bounds = DialectRange(dialect, dialect)
    client = smblayer.SmbClient(samba.host, samba.port, dialects=bounds)
    barrier = threading.Barrier(12)

    def work(i: int) -> int:
        barrier.wait(10)
        session = fs.Session(client, samba.username, samba.password)
        try:
            tree = session.tree_connect("share")
            for _ in range(20):
                tree.exists(f"nothing-{i}")
                client.echo()
            return i
        finally:
            session.logoff()

    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            done = [f.result(timeout=60) for f in [pool.submit(work, i) for i in range(12)]]
        assert sorted(done) == list(range(12))
        assert client.stats()["_client"]["reconnects"] == 0
    finally:
        client.close()


def test_async_and_sync_callers_mixed(samba):
    """Sync callers (fast path) and async ones on one client: every reply
    reaches its waiter, nothing is lost or dispatched twice."""
    with smblayer.get_client(samba.host, samba.port) as client:
        stop = threading.Event()
        errors = []

        def sync_loop() -> None:
            try:
                while not stop.is_set():
                    client.echo()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=sync_loop) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(20):
                futures = [client.echo_async() for _ in range(50)]
                for f in concurrent.futures.as_completed(futures, timeout=30):
                    f.result()
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors
        assert client.stats()["_client"]["unmatched_replies"] == 0


def test_fast_path_backs_off_while_callers_keep_joining(samba):
    """A fast reader asked to hand the role back before its reply came makes
    the next FAST_PATH_BACKOFF offers go to the demux (no take/kick/give-back
    per request while many callers join); then the fast path is offered again,
    and a lone caller still reads its own replies."""
    from smblayer.transport.demux import FAST_PATH_BACKOFF
    client = smblayer.SmbClient(samba.host, samba.port)
    try:
        client.echo()
        demux = client._conn.demux
        assert demux.take_reader_role()
        try:
            future = client.echo_async()
            task = next(iter(client._inflight.pending.values()))
            kicker = threading.Thread(target=demux.kick)     # another caller joins
            kicker.start()
            kicker.join(5)
            demux.read_for(task)          # returns at once: asked to hand back
            assert task.state.in_flight
        finally:
            demux.release_reader_role()
        assert future.result(timeout=10).status == 0      # the demux read it
        declined = [demux.take_reader_role() for _ in range(FAST_PATH_BACKOFF)]
        assert declined == [False] * FAST_PATH_BACKOFF
        assert demux.take_reader_role()
        demux.release_reader_role()
        for _ in range(50):
            client.echo()
        assert client.stats()["_client"]["unmatched_replies"] == 0
    finally:
        client.close()
