"""The one-step send path (issue 21, Sender.send_now) and the SmbFuture's
cancel hook: a request goes out in one step only when nothing else is
queued, no writer holds the send lock and its credits are at hand; else it
takes the general path with its guarantees (hold_sends batches, FIFO credit
waits, cancel before the writer takes it: never sent).  Credits of every
reply of one read are granted before anyone is woken."""
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


def _client(samba) -> smblayer.SmbClient:
    client = smblayer.SmbClient(samba.host, samba.port, dialects=ONLY_311)
    client.echo()
    return client


def _sends(client) -> int:
    return client.stats()["ECHO"]["ops"]


def test_a_held_writer_is_never_bypassed(samba):
    """hold_sends: requests made meanwhile queue (nothing on the wire, no
    MessageId) and go out together at release_sends."""
    client = _client(samba)
    try:
        before = _sends(client)
        assert client.hold_sends()
        try:
            futures = [client.echo_async() for _ in range(5)]
            assert _sends(client) == before           # nobody wrote past the holder
            assert not client._inflight.pending
        finally:
            client.release_sends()
        for f in futures:
            assert f.result(timeout=10).status == 0
        assert _sends(client) == before + 5
    finally:
        client.close()


def test_short_of_credits_a_request_waits_its_turn(samba):
    """With the credits spoken for, a request is not sent in one step: it
    waits in the gate (FIFO) and goes out when a reply grants credits."""
    client = _client(samba)
    try:
        gate = client._credits
        hoard = gate.available
        assert gate.take_now(hoard, True)             # every credit taken
        result = []
        caller = threading.Thread(target=lambda: result.append(client.echo()))
        caller.start()
        caller.join(0.3)
        assert caller.is_alive() and not result       # waiting for credits, not sent
        assert not client._inflight.pending
        gate.grant(hoard, hoard)
        caller.join(10)
        assert len(result) == 1
        client.echo()
    finally:
        client.close()


def test_cancelling_a_future_cancels_the_request_once(samba):
    """SmbFuture.cancel: the request is cancelled (CANCEL sent, its
    MessageId kept for the late reply), wait() sees the Future done at
    once, a second cancel changes nothing, the client carries on."""
    client = _client(samba)
    try:
        demux = client._conn.demux
        assert demux.take_reader_role()               # no reply is read meanwhile
        try:
            future = client.echo_async()
            task = next(iter(client._inflight.pending.values()))
            assert future.cancel()
            done, _ = concurrent.futures.wait([future], timeout=0)
            assert done == {future} and future.cancelled()
            assert future.cancel()                    # again: still cancelled, nothing more
            with pytest.raises(SmbCancelledError):
                client._finish(task)
            assert task.future is None                # no cycle keeps it alive
        finally:
            demux.release_reader_role()
        deadline = time.monotonic() + 10
        while client._inflight.pending and time.monotonic() < deadline:
            time.sleep(0.01)                          # the late reply retires its MessageId
        assert not client._inflight.pending
        assert client.stats()["ECHO"]["cancels"] == 1
        assert client.stats()["_client"]["unmatched_replies"] == 0
        client.echo()
    finally:
        client.close()


def test_credits_of_one_read_are_granted_before_the_first_wake(samba):
    """The replies of one read are placed and their credits granted (one
    grant for the read) before the first waiter runs."""
    client = _client(samba)
    try:
        demux = client._conn.demux
        assert demux.take_reader_role()
        futures = [client.echo_async() for _ in range(8)]
        tasks = list(client._inflight.pending.values())
        sock = client._conn.sock
        deadline = time.monotonic() + 10
        while _buffered(sock, 8 * ECHO_REPLY) < 8 * ECHO_REPLY:
            assert time.monotonic() < deadline, "the replies never arrived"
            select.select([sock], [], [], 0.05)
        seen = []
        owner = demux if hasattr(demux, "_wake") else client
        real = owner._wake

        def wake(task):
            seen.append((client._credits.in_flight, len(client._inflight.pending)))
            real(task)
        owner._wake = wake
        try:
            demux.read_for(tasks[-1])
        finally:
            demux.release_reader_role()
        for f in futures:
            assert f.result(timeout=10).status == 0
        assert seen == [(0, 0)] * 8
    finally:
        client.close()


def _buffered(sock, size: int) -> int:
    """Bytes waiting in ``sock`` (up to ``size``), without reading them."""
    try:
        return len(sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


def test_a_task_run_again_after_a_refused_run_starts_clean(samba):
    """Running a finished task again clears what its last run left (reply,
    sends) as it moves back to NEW, before anything can refuse the new run:
    a run refused by the check (a body over the frame limit) and then
    fixed is a first send (one send, a fresh reply), not a resend."""
    from smblayer.proto import smb2
    from smblayer.transport.task import SmbTask, TaskState
    client = _client(samba)
    try:
        task = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), priority=True)
        first = client.run_task(task)
        assert task.sends == 1
        body, size = task.body, task.payload_size
        task.payload_size = 1 << 30            # refused by the check
        with pytest.raises(ValueError):
            client.run_task(task)
        assert task.state is TaskState.NEW
        assert task.reply is None and task.sends == 0
        task.body, task.payload_size = body, size
        second = client.run_task(task)
        assert second is not first and second.status == 0
        assert task.sends == 1                 # a first send, not a replay
    finally:
        client.close()


def test_a_future_cancelled_as_its_reply_is_settled_stays_cancelled(samba):
    """The settling thread sets a Future's result without asking done()
    first: one the caller cancelled meanwhile stays cancelled, and the
    settle raises nothing (the reply is dropped)."""
    from smblayer.transport.completion import SmbFuture
    from smblayer.transport.task import TaskState
    client = _client(samba)
    try:
        reply = client.echo_async().result(timeout=10)
        task = client._echo_task()
        late = SmbFuture(client.iod, client, task)
        late.cancel()                            # the caller's cancel won
        task.future, task.reply, task.state = late, reply, TaskState.DONE
        client._settle_future(task)              # no InvalidStateError
        assert late.cancelled() and task.future is None
    finally:
        client.close()
