"""SmbRawFile.close with deferred close (fs.closing), no server: a written
file sets its write time and is parked; when the server refuses the write
time, close() does not fail: the handle is closed for real (the real
CLOSE stamps the time itself)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from smblayer.errors import SmbStatusError
from smblayer.fs.file import SmbRawFile
from smblayer.fs.ops import (LEASE_HANDLE, LEASE_READ, LEASE_WRITE, OPLOCK_LEASE, FileInfo,
                             Handle)
from smblayer.proto.status import NtStatus
from smblayer.task import SmbTask

pytestmark = pytest.mark.timeout(10)

SET_INFO, CLOSE = 0x11, 0x06


class StubOps:
    close_behind_writes = compound_close = False

    def set_write_time_task(self, handle, mtime):
        return SmbTask(SET_INFO, (bytes(handle.fid), mtime.to_bytes(8, "little")))

    def close_task(self, handle):
        return SmbTask(CLOSE, (bytes(handle.fid),))

    def close_done(self, handle, reply):
        handle.closed = True


class StubClient:
    generation = 3
    host, port = "h", 445

    def __init__(self, refuse_time: bool):
        self.refuse_time = refuse_time
        self.sent = []

    def run_task(self, task):
        self.sent.append(task.command)
        if task.command == SET_INFO and self.refuse_time:
            raise SmbStatusError(NtStatus.ACCESS_DENIED, "SET_INFO", "f.bin")
        return SimpleNamespace(status=0)


def written_file(refuse_time: bool):
    parked = []
    client = StubClient(refuse_time)
    tree = SimpleNamespace(client=client, ops=StubOps(), _breaks=None, connected=True,
                           io_read_size=1 << 20, io_write_size=1 << 20, deferred_close=5.0,
                           _forget_file=lambda raw: None)
    tree.deferred_closes = SimpleNamespace(park=lambda raw: parked.append(raw) or True)
    handle = Handle(b"o" * 16, "f.bin", FileInfo(size=0), OPLOCK_LEASE, lease_key=b"k" * 16,
                    lease_state=LEASE_READ | LEASE_WRITE | LEASE_HANDLE, generation=3)
    raw = SmbRawFile(tree, handle, "wb", readable=False, writable=True)
    raw._written = True
    raw._size = 42
    return raw, client, parked


def test_written_file_sets_its_time_and_is_parked():
    raw, client, parked = written_file(refuse_time=False)
    raw.close()
    assert client.sent == [SET_INFO] and parked == [raw]
    assert raw.handle.info.size == 42                 # what the next opener starts from


def test_a_refused_write_time_closes_it_for_real_quietly():
    raw, client, parked = written_file(refuse_time=True)
    raw.close()                                        # no error
    assert client.sent == [SET_INFO, CLOSE] and parked == []
    assert raw.closed and raw.handle.closed
