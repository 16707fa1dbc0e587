"""SmbRawFile._recover without a server: a reclaimed handle keeps its
identity and its waiting requests are rebuilt with the new FileId; a handle
that can't be reclaimed and can't be proven the same file is lost (its next
call raises SmbConnectionError naming it, then close is quiet); a reader of
an unchanged file is reopened by path, a changed one is not."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from smblayer.errors import SmbConnectionError, SmbStatusError
from smblayer.fs.file import SmbRawFile
from smblayer.fs.ops import FileInfo, Handle
from smblayer.proto.status import NtStatus
from smblayer.task import SmbTask


class StubOps:
    durable_handles = True
    close_behind_writes = compound_close = False

    def __init__(self, reclaim=None, reopen_info=None):
        self._reclaim, self._reopen_info = reclaim, reopen_info
        self.closed = []

    def reclaim(self, handle):
        if self._reclaim is None:
            raise SmbStatusError(NtStatus.OBJECT_NAME_NOT_FOUND, "CREATE", handle.path)
        return self._reclaim

    def open(self, path, **kwargs):
        return Handle(b"r" * 16, path, FileInfo())

    def query_info(self, handle):
        return self._reopen_info

    def close(self, handle):
        self.closed.append(handle)

    def read_task(self, handle, offset, length, into=None):
        return SmbTask(8, (bytes(handle.fid),))


def _file(ops, mode="rb", info=None):
    client = SimpleNamespace(generation=2, host="h", port=445)
    tree = SimpleNamespace(client=client, ops=ops, _breaks=None, connected=True,
                           io_read_size=1 << 20, io_write_size=1 << 20,
                           _forget_file=lambda raw: None)
    handle = Handle(b"o" * 16, "dir\\f.bin", info or FileInfo(size=10, file_index=7,
                                                              last_write_time=99),
                    durable=True)
    return SmbRawFile(tree, handle, mode, readable="r" in mode, writable="w" in mode)


def test_reclaim_keeps_the_handle_and_rebuilds_waiting_requests():
    new = Handle(b"n" * 16, "dir\\f.bin", FileInfo(), durable=True)
    raw = _file(StubOps(reclaim=new))
    handle = raw.handle
    task = raw._build(lambda h: raw._ops.read_task(h, 0, 10))
    assert task.body == (b"o" * 16,)
    assert raw._recover()
    assert raw.handle is handle and handle.fid == b"n" * 16 and handle.generation == 2
    assert task.body == (b"n" * 16,)                     # rebuilt, not yet resent
    task.sends = 1
    assert raw._on_reissue(task) and task.body == (b"n" * 16,)


def test_unprovable_writer_is_lost_then_closes_quietly():
    raw = _file(StubOps(), mode="wb")
    raw._written = True
    task = raw._build(lambda h: raw._ops.read_task(h, 0, 10))
    assert not raw._recover(last_try=False)               # "not found": try again later
    assert raw._recover()
    assert task.cancel_requested                           # its pending I/O is cancelled
    with pytest.raises(SmbConnectionError, match=r"f\.bin") as info:
        raw.write(b"x")
    assert info.value.path == "dir\\f.bin"
    assert not raw._on_reissue(task)
    raw.close()                                            # quiet: reported already


@pytest.mark.parametrize("same", [True, False])
def test_reader_reopened_only_when_provably_the_same_file(same):
    now = FileInfo(size=10, file_index=7, last_write_time=99 if same else 100)
    ops = StubOps(reopen_info=now)
    raw = _file(ops)
    assert raw._recover()
    if same:
        assert raw.handle.fid == b"r" * 16 and raw._lost is None
    else:
        assert raw._lost is not None and "not the one we had open" in str(raw._lost)
        assert [h.fid for h in ops.closed] == [b"r" * 16]  # the other file closed again
