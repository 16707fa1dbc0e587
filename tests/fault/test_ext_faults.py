"""The extras across a SIGKILL of the smbd child serving the connection: a
pending watch re-arms and reports a rescan, a share listing retries, the
public reconnect hooks run in the documented order and a task's reissue
hook rebuilds or declines."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from smblayer import (ClientState, Dialect, DialectRange, ReconnectPolicy, SmbConnectionError,
                      SmbTask, TimeoutPolicy, fs)
from smblayer.proto import commands as c
from smblayer.proto.smb2 import Command
from smblayer.testing.watching import armed, until

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90)]

RPC = {"rpc start on demand helpers": "yes"}
POLICY = TimeoutPolicy(mode="soft", timeout=5.0, echo_interval=0.5, soft_timeout=5.0,
                       connect_timeout=3.0)
QUICK = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


@pytest.fixture
def server(samba_factory):
    return samba_factory(extra_global=RPC)


def connect(server, share="share", dialect=Dialect.SMB3_1_1, **kw):
    return fs.connect(server.host, share, server.username, server.password, port=server.port,
                      dialects=DialectRange(dialect, dialect), timeouts=POLICY, reconnect=QUICK,
                      **kw)


def kill_serving_child(server, client) -> None:
    pid = server.connection_child(client.local_address[1], timeout=5.0)
    assert pid, "no smbd child for the client's connection"
    os.kill(pid, signal.SIGKILL)


def wait_active_after_reconnect(client, count=1, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    done = threading.Event()
    while not (client.stats()["_client"]["reconnects"] >= count and
               client.state is ClientState.ACTIVE):
        assert time.monotonic() < deadline, "no reconnect"
        done.wait(0.02)


@pytest.mark.parametrize("dialect,share,encrypt", [
    (Dialect.SMB2_0_2, "share", False), (Dialect.SMB2_1, "share", False),
    (Dialect.SMB3_0, "share", False), (Dialect.SMB3_0_2, "encrypted", True),
    (Dialect.SMB3_1_1, "share", False), (Dialect.SMB3_1_1, "encrypted", True)],
    ids=lambda v: getattr(v, "name", str(v)))
def test_pending_watch_rearms_and_reports_rescan(server, dialect, share, encrypt):
    with connect(server, share, dialect, encrypt=encrypt, require_signing=not encrypt) as tree:
        tree.mkdir("wk")
        with tree.watch("wk") as w:
            armed(tree, w, "wk")
            tree.write_bytes("wk/before", b"")
            until(w, ("added", "wk/before"))
            kill_serving_child(server, tree.client)
            assert until(w, ("rescan", "wk")) <= {("modified", "wk/before")}
            # re-armed on the new connection: later changes arrive
            armed(tree, w, "wk")
            assert tree.client.stats()["_client"]["reconnects"] == 1


def test_share_listing_retries_across_a_kill(server):
    kills = []

    class KillingTree(fs.Tree):
        """Kills the serving smbd right after the pipe is open, once."""

        def open_pipe(self, name):
            pipe = super().open_pipe(name)
            if not kills:
                kills.append(self.client.local_address)
                kill_serving_child(server, self.client)
            return pipe

    shares = fs.list_shares(server.host, server.username, server.password, port=server.port,
                            tree_class=KillingTree, timeouts=POLICY, reconnect=QUICK)
    assert kills and {"share", "IPC$"} <= {s.name for s in shares}


def test_share_listing_retries_when_the_pipe_died_before_its_first_request(server):
    """The kill is noticed and the client reconnected before the bind goes
    out: the bind reaches the new connection with the old pipe's FileId
    (STATUS_FILE_CLOSED), which is a lost pipe too, and is retried."""
    kills = []

    class KillingTree(fs.Tree):
        def open_pipe(self, name):
            pipe = super().open_pipe(name)
            if not kills:
                back = threading.Event()
                self.client.add_active_handler(lambda client: back.set())
                kills.append(self.client.generation)
                kill_serving_child(server, self.client)
                assert back.wait(15)            # reconnected, the pipe's handle is gone
            return pipe

    shares = fs.list_shares(server.host, server.username, server.password, port=server.port,
                            tree_class=KillingTree, timeouts=POLICY, reconnect=QUICK)
    assert kills and {"share", "IPC$"} <= {s.name for s in shares}


def test_reconnect_hooks_run_in_the_documented_order(server):
    order = []

    class MySession(fs.Session):
        def on_reconnect(self, client):
            order.append("session-start")
            super().on_reconnect(client)
            order.append("session-done")

    class MyTree(fs.Tree):
        def on_reconnect(self):
            order.append(("tree", self.session.session_id != 0))
            super().on_reconnect()

    with connect(server, session_class=MySession, tree_class=MyTree) as tree:
        client = tree.client
        active = threading.Event()
        client.add_active_handler(lambda cl: (order.append(("active", cl.state)), active.set()))
        kill_serving_child(server, client)
        tree.listdir("")                        # reissued after the reconnect
        assert active.wait(15)
        # The recovery stages: every session, then every tree (then the
        # open files), then ACTIVE.
        assert order == ["session-start", "session-done", ("tree", True),
                         ("active", ClientState.ACTIVE)]
        assert tree.tree_id and tree.connected


def test_reissue_hook_rebuilds_or_declines(server):
    """A long-poll CHANGE_NOTIFY in flight across a kill: a hook that
    declines fails it with SmbConnectionError; one that rebuilds the body
    with a new FileId gets it answered on the new connection."""
    with connect(server) as tree:
        tree.mkdir("rh")
        for rebuild in (False, True):
            handle = tree.open_handle("rh", directory=True)
            calls = []

            def hook(task, rebuild=rebuild):
                calls.append(tree.client.generation)
                if not rebuild:
                    return False
                fresh = tree.open_handle("rh", directory=True)
                task.body = c.change_notify_request(fresh.fid)
                return True

            task = SmbTask(Command.CHANGE_NOTIFY, c.change_notify_request(handle.fid),
                           security=tree.session, tree=tree, long_poll=True, on_reissue=hook)
            future = tree.client.run_task_async(task)
            deadline = time.monotonic() + 5
            while task.async_id is None:            # the interim reply is in
                assert time.monotonic() < deadline
                time.sleep(0.01)
            generation = tree.client.generation
            kill_serving_child(server, tree.client)
            if rebuild:
                time.sleep(0.5)
                wait_active_after_reconnect(tree.client, 2)
                while task.async_id is None or task.generation == generation:
                    assert time.monotonic() < deadline + 15
                    time.sleep(0.01)
                tree.write_bytes("rh/file", b"")
                reply = future.result(10)
                assert [e.name for e in c.parse_change_notify_response(reply)] == ["file"]
            else:
                with pytest.raises(SmbConnectionError, match="cannot be reissued"):
                    future.result(15)
            assert calls and calls[0] > generation
