"""Task and client states change only through their transition tables
(issue 18): ``task.move`` / ``SmbClient._move`` are the only writers, so
``IllegalTransition`` is a real guard.  Checked against a real Samba with
tracing subclasses that record every write of ``state`` made anywhere
else: the one-way send of an SMB1 oplock-break acknowledgement, and the
client a forked child inherits."""
from __future__ import annotations

import json
import os
import signal
import struct
import sys

import pytest

import smblayer
from smblayer import Dialect, DialectRange, SmbClient, fs
from smblayer import task as task_module
from smblayer.fs import ops as O
from smblayer.fs.ops import ops_for
from smblayer.proto import smb1
from smblayer.task import SmbTask, TaskState
from smblayer.transport.states import ClientState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_TASK_SLOT = SmbTask.__dict__["state"]


class TracedTask(SmbTask):
    """An SmbTask that records every state write not made by ``task.move``
    (its constructor's initial NEW aside)."""

    def __init__(self, *args, **kwargs):
        self.moves = []
        self.stray = []
        super().__init__(*args, **kwargs)

    @property
    def state(self):
        return _TASK_SLOT.__get__(self, SmbTask)

    @state.setter
    def state(self, new):
        caller = sys._getframe(1).f_code
        if caller is task_module.move.__code__:
            self.moves.append(new)
        elif caller is not SmbTask.__init__.__code__:
            self.stray.append(f"{caller.co_name}: -> {new.name}")
        _TASK_SLOT.__set__(self, new)


class TracedClient(SmbClient):
    """An SmbClient that records every state write not made by ``_move``."""

    stray: list = []

    @property
    def state(self):
        return self.__dict__.get("_traced_state", ClientState.CONNECTING)

    @state.setter
    def state(self, new):
        caller = sys._getframe(1).f_code
        if caller not in (SmbClient._move.__code__, SmbClient.__init__.__code__):
            self.__dict__.setdefault("_stray", []).append(f"{caller.co_name}: -> {new.name}")
        self.__dict__["_traced_state"] = new


SMB1 = DialectRange(Dialect.SMB1, Dialect.SMB1)
_LOCKING = struct.Struct("<BBHHBBIHH")        # LOCKING_ANDX words ([MS-CIFS] 2.2.4.32)
LOCKING_ANDX_OPLOCK_RELEASE = 0x02


@pytest.fixture(params=["samba", "samba_nt1"])
def server(request):
    return request.getfixturevalue(request.param)


def test_send_oneway_moves_through_the_table(server):
    """An SMB1 oplock release (no reply) goes NEW -> QUEUED -> SENT -> DONE,
    each by ``move``; before, send_oneway wrote DONE over NEW itself."""
    with fs.connect(server.host, "share", server.username, server.password,
                    port=server.port, dialects=SMB1) as tree:
        tree.write_bytes("oneway.bin", b"x")
        ops = ops_for(tree)
        handle = ops.open("oneway.bin", access=O.GENERIC_READ, disposition=O.FILE_OPEN,
                          oplock=O.OPLOCK_BATCH)
        try:
            words = _LOCKING.pack(0xFF, 0, 0, handle.fid, LOCKING_ANDX_OPLOCK_RELEASE, 0,
                                  0, 0, 0)
            task = TracedTask(smb1.Command.LOCKING_ANDX, smb1.pack_params(words, b""),
                              tree=tree, security=tree.session, replayable=False)
            assert tree.client.send_oneway(task)
            assert task.stray == []
            assert task.moves == [TaskState.QUEUED, TaskState.SENT, TaskState.DONE]
            assert task.state is TaskState.DONE
            # Sent again, the same object starts over from NEW.
            task.moves.clear()
            assert tree.client.send_oneway(task)
            assert task.stray == [] and task.moves[0] is TaskState.NEW
            tree.client.echo()                # the connection is still in step
        finally:
            ops.close(handle)
        tree.remove("oneway.bin")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_closes_through_the_table(server):
    """The client a forked child inherits is CLOSED by ``_move`` (before,
    the fork hook wrote CLOSED itself)."""
    client = smblayer.get_client(server.host, server.port, client_class=TracedClient,
                                 dialects=DialectRange(Dialect.SMB1, Dialect.SMB3_1_1))
    try:
        client.echo()
        assert client.__dict__.get("_stray", []) == []
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                      # child
            report = {}
            try:
                os.close(r)
                report["state"] = client.state.value
                report["stray"] = client.__dict__.get("_stray", [])
            except BaseException as exc:  # noqa: BLE001
                report["error"] = repr(exc)
            finally:
                try:
                    os.write(w, json.dumps(report).encode())
                finally:
                    os._exit(0)
        os.close(w)
        try:
            with os.fdopen(r, "rb") as pipe:
                raw = pipe.read()
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        finally:
            os.waitpid(pid, 0)
        report = json.loads(raw)
        assert report == {"state": "closed", "stray": []}
        client.echo()                                     # the parent's is untouched
    finally:
        client.release()
