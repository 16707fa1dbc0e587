"""The combining writer (issue 21, transport/send.py): a caller queues its
request and returns at once while another thread writes; the writer sends
everything queued in MessageId order, so SMB1 signing sequence numbers and
3.x encryption nonces follow the wire order under concurrency."""
from __future__ import annotations

import threading
import time

import pytest

from smblayer import Dialect, DialectRange, TaskState, TimeoutPolicy, fs
from smblayer.fs import ops as fsops
from smblayer.proto import smb2
from smblayer.testing.capture import FrameLog
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MIB = 1024 * 1024


def wait_for(predicate, timeout: float, what: str) -> None:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        tick.wait(0.01)


def test_callers_behind_a_blocked_writer_return_and_go_out_in_order(samba):
    """An 8 MiB WRITE blocks its writer on a paused proxy.  Twelve ECHO
    callers then queue without waiting for the send lock (all twelve sit in
    the outbox while the writer is still blocked); once the proxy reads
    again every ECHO is answered, and the MessageIds reach the wire in
    increasing order."""
    hard = TimeoutPolicy(mode="hard", timeout=30.0)
    with FaultProxy(samba.host, samba.port) as proxy:
        tree = fs.connect(samba.host, "share", samba.username, samba.password,
                          port=proxy.port, timeouts=hard)
        client = tree.client
        threads = []
        try:
            ops = tree.ops
            assert ops.max_write >= 8 * MIB, "needs a server taking 8 MiB WRITEs"
            handle = ops.open("writer.bin", access=fsops.GENERIC_READ | fsops.GENERIC_WRITE,
                              disposition=fsops.FILE_OVERWRITE_IF)
            log = FrameLog(directions=("c2s",))
            proxy.tap(log)
            proxy.pause()
            results = []

            def call(fn, *args):
                try:
                    results.append(fn(*args))
                except BaseException as exc:  # noqa: BLE001
                    results.append(exc)
            writer = threading.Thread(target=call, daemon=True, args=(
                client.run_task, ops.write_task(handle, 0, bytes(8 * MIB))))
            writer.start()
            threads.append(writer)
            wait_for(lambda: client.stats()["_client"]["in_flight"] == 1, 10,
                     "the WRITE to be on its way")
            for _ in range(12):
                t = threading.Thread(target=call, args=(client.echo,), daemon=True)
                t.start()
                threads.append(t)
            wait_for(lambda: len(client._sender._outbox) == 12, 10,
                     "the twelve ECHOs to queue behind the writer")
            assert writer.is_alive() and client._sender.lock.locked()
            proxy.resume()
            for t in threads:
                t.join(20)
            assert not any(t.is_alive() for t in threads)
            assert not [r for r in results if isinstance(r, BaseException)], results
            client.echo()
            mids = [m.header.message_id for m in log.messages("c2s")]
            assert mids == sorted(mids), "MessageIds out of order on the wire"
            assert len(log.messages("c2s", smb2.Command.ECHO)) == 13
            ops.close(handle)
        finally:
            proxy.resume()
            client.close()
            tree.close()
            for t in threads:
                t.join(10)


@pytest.mark.parametrize("dialect, options", [
    (Dialect.SMB1, {"require_signing": True}),
    (Dialect.SMB3_1_1, {"encrypt": True}),
    (Dialect.SMB3_0, {"require_signing": True}),
], ids=["smb1-signed", "smb311-encrypted", "smb30-signed"])
def test_concurrent_callers_on_a_signed_or_encrypted_session(samba, dialect, options):
    """Sixteen threads of stat and echo on one session: frames signed with
    SMB1 sequence numbers or encrypted with counter nonces are protected in
    the order the writer puts them on the wire, so the server accepts every
    one (a frame out of order would be refused or would drop the
    connection)."""
    (samba.share_path("share") / "writer-stat.txt").write_bytes(b"x" * 77)
    tree = fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                      dialects=DialectRange(dialect, dialect), **options)
    errors = []
    try:
        client = tree.client

        def work():
            try:
                for i in range(25):
                    assert tree.stat("writer-stat.txt").st_size == 77
                    client.echo()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert client.stats()["_client"]["reconnects"] == 0
        assert client.state.name == "ACTIVE" and TaskState  # (no reconnect happened)
    finally:
        tree.close()
