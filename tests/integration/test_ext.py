"""The extension API and the extras built on it, against the real Samba (RPC
helpers enabled so srvsvc is served on IPC$): share listing, watch,
server-side copy, IOCTL, raw handles, subclass hooks, task hooks, the
credit charge of large output buffers and the dialect check."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest

import smblayer
from smblayer import (Dialect, DialectRange, SmbClient, SmbTask, TimeoutPolicy, fs)
from smblayer.fs.ops import FILE_DIRECTORY_FILE, FILE_LIST_DIRECTORY, FILE_OPEN
from smblayer.proto import commands as c
from smblayer.proto.smb2 import Command
from smblayer.rpc import open_srvsvc, share_enum
from smblayer.testing.pytest_plugin import SERVERS, require_samba_root, require_smbd
from smblayer.testing.samba import SambaServer
from smblayer.testing.watching import armed, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RPC = {"rpc start on demand helpers": "yes"}
SMB1 = DialectRange(Dialect.SMB1, Dialect.SMB1)
SMB2_DIALECTS = [Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0, Dialect.SMB3_0_2,
                 Dialect.SMB3_1_1]
# (dialect, share, encrypt, require_signing)
CASES = [(d, "share", False, False) for d in SMB2_DIALECTS] + [
    (Dialect.SMB2_1, "share", False, True), (Dialect.SMB3_1_1, "share", False, True),
    (Dialect.SMB3_0, "encrypted", True, False), (Dialect.SMB3_1_1, "encrypted", True, False)]
IDS = [f"{d.name}-{s}{'-signed' if sign else ''}" for d, s, _e, sign in CASES]
# Share listing works on SMB1 too (srvsvc through TRANSACTION, issue 18).
LIST_CASES = CASES + [(Dialect.SMB1, "share", False, False), (Dialect.SMB1, "share", False, True)]
LIST_IDS = [f"{d.name}-{s}{'-signed' if sign else ''}" for d, s, _e, sign in LIST_CASES]


@pytest.fixture(scope="module", params=SERVERS)
def rpc_samba(request):
    """Share listing, watch and server-side copy run on Samba 4.17 and 4.22."""
    require_smbd()
    root = require_samba_root() if request.param == "4.22" else None
    extra = {f"data{i:03d}": {"read only": "no", "comment": f"test share number {i} " + "x" * 40}
             for i in range(3)}
    extra["other"] = {"read only": "no"}
    with SambaServer(extra_global=RPC, extra_shares=extra, root=root) as server:
        yield server


def connect(server, share="share", dialect=Dialect.SMB3_1_1, **kw):
    return fs.connect(server.host, share, server.username, server.password, port=server.port,
                      dialects=DialectRange(dialect, dialect), **kw)


def smbclient_shares(server):
    exe = server.smbclient_command()[0]
    out = subprocess.run([exe, "-L", server.host, "-p", str(server.port), "-s",
                          server.client_conf_path, "-A", server.auth_file, "-g"],
                         capture_output=True, text=True, timeout=60).stdout
    return sorted(tuple(line.split("|")[:3]) for line in out.splitlines()
                  if re.match(r"^(Disk|IPC|Printer)\|", line))


# --- share listing -----------------------------------------------------------------------

@pytest.mark.parametrize("dialect,share,encrypt,sign", LIST_CASES, ids=LIST_IDS)
def test_list_shares_like_smbclient(rpc_samba, dialect, share, encrypt, sign):
    shares = fs.list_shares(rpc_samba.host, rpc_samba.username, rpc_samba.password,
                            port=rpc_samba.port, dialects=DialectRange(dialect, dialect),
                            encrypt=encrypt, require_signing=sign)
    assert all(isinstance(s, fs.ShareInfo) for s in shares)
    ours = sorted((s.kind, s.name, s.comment) for s in shares)
    assert ours == smbclient_shares(rpc_samba)
    assert {"share", "encrypted", "readonly", "IPC$"} <= {s.name for s in shares}


def test_smb1_share_list_without_srvsvc_uses_rap(samba):
    """A server that does not serve srvsvc (Samba without its RPC helpers)
    lists its shares over SMB1 by RAP NetShareEnum, as smbclient -L does."""
    shares = fs.list_shares(samba.host, samba.username, samba.password, port=samba.port,
                            dialects=SMB1)
    exe = samba.smbclient_command()[0]
    out = subprocess.run([exe, "-L", samba.host, "-p", str(samba.port), "-s",
                          samba.client_conf_path, "-A", samba.auth_file, "-g", "-m", "NT1",
                          "--option=client min protocol=NT1"],
                         capture_output=True, text=True, timeout=60).stdout
    theirs = sorted(tuple(line.split("|")[:3]) for line in out.splitlines()
                    if re.match(r"^(Disk|IPC|Printer)\|", line))
    assert sorted((s.kind, s.name, s.comment) for s in shares) == theirs
    assert {"share", "encrypted", "readonly", "IPC$"} <= {s.name for s in shares}


def test_share_listing_is_one_round_trip_after_the_bind(rpc_samba):
    with connect(rpc_samba, "IPC$") as ipc:
        with open_srvsvc(ipc) as pipe:
            ioctls = ipc.client.stats()["IOCTL"]["ops"]
            shares = share_enum(pipe, "\\\\" + rpc_samba.host)
            assert pipe.round_trips == 1
            assert ipc.client.stats()["IOCTL"]["ops"] == ioctls + 1
    assert len(shares) >= 7


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_large_share_list_crosses_fragments(samba_factory, dialect):
    """A response larger than one DCE/RPC fragment (4280 bytes) is
    reassembled from the transceive and the following pipe reads."""
    extra = {f"s{i:03d}": {"comment": "c" * 60} for i in range(120)}
    server = samba_factory(extra_global=RPC, extra_shares=extra)
    with connect(server, "IPC$", dialect) as ipc, open_srvsvc(ipc) as pipe:
        shares = share_enum(pipe, "\\\\x")
        assert pipe.round_trips > 1
    assert {f"s{i:03d}" for i in range(120)} <= {s.name for s in shares}
    assert all(s.comment == "c" * 60 for s in shares if re.fullmatch(r"s\d{3}", s.name))


# --- watch ------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect,share,encrypt,sign", CASES, ids=IDS)
def test_watch_reports_changes(rpc_samba, dialect, share, encrypt, sign):
    with connect(rpc_samba, share, dialect, encrypt=encrypt, require_signing=sign) as tree:
        d = f"w-{dialect.name}-{sign}"
        tree.makedirs(d + "/sub", exist_ok=True)
        with tree.watch(d) as w:
            armed(tree, w, d)
            tree.write_bytes(d + "/new.txt", b"1")
            tree.rename(d + "/new.txt", d + "/renamed.txt")
            tree.remove(d + "/renamed.txt")
            seen = []
            while ("removed", d + "/renamed.txt") not in seen:
                event = w.next(10)
                assert event is not None, f"no event after {seen}"
                seen.append(tuple(event))
            assert ("added", d + "/new.txt") in seen
            # Samba maps inotify's IN_MOVED_FROM/TO pair to OLD_NAME/NEW_NAME
            # when both come in one read of the inotify fd; under load they
            # can come apart and it reports REMOVED + ADDED instead.
            assert {("renamed_from", d + "/new.txt"), ("renamed_to", d + "/renamed.txt")} \
                <= set(seen) or \
                {("removed", d + "/new.txt"), ("added", d + "/renamed.txt")} <= set(seen), seen
        assert w.closed
        with pytest.raises(StopIteration):
            next(w)
        # recursive: a change below a subdirectory
        with tree.watch(d, recursive=True) as w:
            armed(tree, w, d)
            tree.write_bytes(d + "/sub/deep.bin", b"x")
            until(w, ("added", d + "/sub/deep.bin"))


def test_watch_close_cancels_from_another_thread(rpc_samba):
    with connect(rpc_samba) as tree:
        tree.makedirs("wc", exist_ok=True)
        w = tree.watch("wc")
        got = []
        t = threading.Thread(target=lambda: got.extend(w))
        t.start()
        time.sleep(0.2)
        w.close()
        t.join(5)
        assert not t.is_alive() and got == []
        # the CANCEL was answered: nothing stays in flight
        deadline = time.monotonic() + 5
        while tree.client.stats()["_client"]["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree.client.stats()["_client"]["in_flight"] == 0
        assert tree.listdir("wc") == []


def test_watch_is_a_long_poll_not_a_timeout(rpc_samba):
    """Pending for several timer periods: the connection is probed (keepalive ECHO),
    the watch is not counted as timed out and still reports the change."""
    policy = TimeoutPolicy(mode="soft", timeout=0.3, echo_interval=0.1, soft_timeout=1.0,
                           keepalive=0.3)
    with connect(rpc_samba, timeouts=policy) as tree:
        tree.makedirs("lp", exist_ok=True)
        with tree.watch("lp") as w:
            armed(tree, w, "lp")
            assert w.next(1.5) is None
            tree.write_bytes("lp/late.txt", b"")
            until(w, ("added", "lp/late.txt"))
        stats = tree.client.stats()
        assert stats["CHANGE_NOTIFY"]["timeouts"] == 0
        assert stats["ECHO"]["ops"] >= 1
        assert stats["_client"]["reconnects"] == 0


def test_change_notify_and_query_info_with_buffers_over_64k(rpc_samba):
    """CreditCharge from the output buffer size: before, both failed with
    STATUS_INVALID_PARAMETER (charged one credit for 256 KiB)."""
    with connect(rpc_samba) as tree:
        tree.makedirs("big", exist_ok=True)
        with tree.watch("big", buffer_size=256 * 1024) as w:
            armed(tree, w, "big")
            tree.write_bytes("big/a", b"")
            until(w, ("added", "big/a"))
        handle = tree.open_handle("big", directory=True)
        try:
            body = c.query_info_request(handle.fid, c.INFO_FILE, c.FILE_ALL_INFORMATION,
                                        output_length=200 * 1024)
            reply = tree.client.run_task(SmbTask(Command.QUERY_INFO, body,
                                                 security=tree.session, tree=tree))
            assert len(c.parse_query_info_response(reply)) >= 100
            assert reply.header.credit_charge >= 0
        finally:
            tree.close_handle(handle)


# --- server-side copy -------------------------------------------------------------------

@pytest.mark.parametrize("dialect,share,encrypt,sign", CASES, ids=IDS)
def test_server_side_copy(rpc_samba, dialect, share, encrypt, sign):
    data = os.urandom(5 * 1024 * 1024 + 123)
    with connect(rpc_samba, share, dialect, encrypt=encrypt, require_signing=sign) as tree:
        name = f"copy-{dialect.name}-{sign}"
        tree.write_bytes(name + ".src", data)
        written = tree.client.stats()["WRITE"]["ops"]
        assert tree.copy(name + ".src", name + ".dst") == len(data)
        assert tree.client.stats()["WRITE"]["ops"] == written       # no data through us
        assert tree.read_bytes(name + ".dst") == data
        assert (rpc_samba.share_path(share) / (name + ".dst")).read_bytes() == data
        with pytest.raises(FileNotFoundError):
            tree.copy("no-such-file", name + ".x")


def test_copy_falls_back_to_read_write(rpc_samba, samba_nt1):
    data = os.urandom(300000)
    with fs.connect(samba_nt1.host, "share", samba_nt1.username, samba_nt1.password,
                    port=samba_nt1.port, dialects=SMB1) as tree:
        assert tree.client.dialect is Dialect.SMB1
        tree.write_bytes("fb.src", data)
        assert tree.copy("fb.src", "fb.dst") == len(data)
        assert tree.read_bytes("fb.dst") == data
    with connect(rpc_samba) as a, connect(rpc_samba, "readonly", Dialect.SMB3_0) as _ro, \
            connect(rpc_samba, "share", Dialect.SMB2_1) as b:
        assert a.client is not b.client
        a.write_bytes("cross.src", data)
        assert a.copy("cross.src", "cross.dst", dst_tree=b) == len(data)
        assert b.read_bytes("cross.dst") == data
        # one client, two sessions: Samba refuses the other session's resume key
        with connect(rpc_samba, "other") as c2:
            assert c2.client is a.client and c2.session is not a.session
            assert a.copy("cross.src", "cross2.dst", dst_tree=c2) == len(data)
            assert c2.read_bytes("cross2.dst") == data
        # one session, two shares: server-side
        other = a.session.tree_connect("other")
        try:
            writes = a.client.stats()["WRITE"]["ops"]
            assert a.copy("cross.src", "cross3.dst", dst_tree=other) == len(data)
            assert a.client.stats()["WRITE"]["ops"] == writes
            assert other.read_bytes("cross3.dst") == data
        finally:
            other.disconnect()


# --- raw handles, IOCTL, dialect check ------------------------------------------------

def test_open_handle_directory_and_check_handle(rpc_samba):
    with connect(rpc_samba) as tree:
        tree.makedirs("hd", exist_ok=True)
        handle = tree.open_handle("hd", directory=True)
        tree.check_handle(handle)            # generation 0 was rejected before
        direct = tree.ops.open("hd", access=FILE_LIST_DIRECTORY, disposition=FILE_OPEN,
                               create_options=FILE_DIRECTORY_FILE)
        tree.check_handle(direct)
        tree.close_handle(direct)
        tree.close_handle(handle)
        tree.close_handle(handle)            # twice: nothing sent
        with open_pipe_tree(rpc_samba) as ipc:
            pipe = ipc.open_pipe("srvsvc")
            pipe.close()


def open_pipe_tree(server):
    return connect(server, "IPC$")


def test_ioctl_with_a_file_object(rpc_samba):
    with connect(rpc_samba) as tree:
        tree.write_bytes("ioctl.bin", b"abc")
        with tree.open("ioctl.bin", "rb") as f:
            key = c.parse_resume_key(tree.ioctl(f, c.FSCTL_SRV_REQUEST_RESUME_KEY,
                                                max_output=32))
        assert len(key) == 24


def test_smb2_command_on_smb1_is_a_value_error_before_sending(samba_nt1):
    with fs.connect(samba_nt1.host, "share", samba_nt1.username, samba_nt1.password,
                    port=samba_nt1.port, dialects=SMB1) as tree:
        client = tree.client
        before = client.stats()
        task = SmbTask(Command.CHANGE_NOTIFY, c.change_notify_request(bytes(16)),
                       security=tree.session, tree=tree)
        with pytest.raises(ValueError, match="SMB1"):
            client.run_task(task)
        after = client.stats()
        assert after["_client"]["reconnects"] == before["_client"]["reconnects"] == 0
        assert sum(v.get("ops", 0) for k, v in after.items() if k != "_client") == \
            sum(v.get("ops", 0) for k, v in before.items() if k != "_client")
        assert tree.listdir("") is not None
        with pytest.raises(ValueError):
            tree.watch("")


def test_smb1_command_on_smb2_is_a_value_error(rpc_samba):
    with connect(rpc_samba) as tree:
        with pytest.raises(ValueError):
            tree.client.run_task(SmbTask(0xA2, (b"\x00",), tree=tree, security=tree.session))


# --- subclass hooks -------------------------------------------------------------------------

class MyClient(SmbClient):
    pass


class MySession(fs.Session):
    pass


class MyTree(fs.Tree):
    pass


def test_client_class_is_part_of_the_sharing_key(rpc_samba):
    kw = dict(dialects=DialectRange(Dialect.SMB3_0, Dialect.SMB3_0))
    a = smblayer.get_client(rpc_samba.host, rpc_samba.port, client_class=MyClient, **kw)
    b = smblayer.get_client(rpc_samba.host, rpc_samba.port, client_class=MyClient, **kw)
    base = smblayer.get_client(rpc_samba.host, rpc_samba.port, **kw)
    try:
        assert a is b and type(a) is MyClient and a.refcount == 2
        assert base is not a and type(base) is SmbClient
        assert repr(a).startswith("<MyClient ")
        host, port = a.local_address
        assert host == "127.0.0.1" and port != rpc_samba.port
        assert rpc_samba.connection_child(port, timeout=5.0)
    finally:
        a.release()
        b.release()
        base.release()
    with pytest.raises(TypeError):
        smblayer.get_client(rpc_samba.host, rpc_samba.port, client_class=dict)


def test_session_and_tree_classes(rpc_samba):
    with connect(rpc_samba, session_class=MySession, tree_class=MyTree,
                 client_class=MyClient) as tree:
        assert type(tree) is MyTree and type(tree.session) is MySession
        assert type(tree.client) is MyClient
        other = tree.session.tree_connect("readonly")
        assert type(other) is fs.Tree
        other.disconnect()
        MySession.tree_class = MyTree
        try:
            again = tree.session.tree_connect("readonly")
            assert type(again) is MyTree
            again.disconnect()
        finally:
            MySession.tree_class = None


def test_copy_learns_the_servers_chunk_limits(rpc_samba, monkeypatch):
    """Start above Samba's limits (1 MiB per chunk): every request in flight
    is answered STATUS_INVALID_PARAMETER with the server's limits, which are
    then used; the copy completes."""
    from smblayer.fs import srvcopy
    monkeypatch.setattr(srvcopy, "MAX_CHUNKS", 1)
    monkeypatch.setattr(srvcopy, "MAX_CHUNK_SIZE", 4 << 20)
    monkeypatch.setattr(srvcopy, "MAX_TOTAL", 4 << 20)
    data = os.urandom(20 << 20)
    with connect(rpc_samba) as tree:
        _write(tree, "limits.src", data)
        errors = tree.client.stats().get("IOCTL", {}).get("errors", 0)
        assert tree.copy("limits.src", "limits.dst") == len(data)
        assert tree.client.stats()["IOCTL"]["errors"] > errors
        assert (rpc_samba.share_path("share") / "limits.dst").read_bytes() == data


def _write(tree, path, data):
    with tree.open(path, "wb") as f:
        f.write(data)
