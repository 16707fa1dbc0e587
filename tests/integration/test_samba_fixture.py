"""The private Samba fixtures work, checked with Samba's own C smbclient."""

import os
import select
import signal
import socket
import subprocess
import time

import pytest

from smblayer.testing import pytest_plugin
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.samba import SambaServer, local_ports_of

pytestmark = pytest.mark.integration

NT1_CLIENT = ["-m", "NT1", "--option=client min protocol=NT1"]


def _out(res):
    return res.stdout + res.stderr


def _wait_client_port(proc, server, timeout=20.0):
    """Local port of ``proc``'s established connection to ``server``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        ports = local_ports_of(proc.pid, server.port)
        if ports:
            return ports[0]
        time.sleep(0.05)
    raise AssertionError("smbclient never connected")


@pytest.mark.timeout(60)
def test_server_is_up(samba):
    assert samba.running
    assert samba.host == "127.0.0.1"
    assert 1024 < samba.port < 65536
    with socket.create_connection((samba.host, samba.port), timeout=5):
        pass
    assert os.path.isdir(samba.tempdir)
    assert samba.share_path("share").is_dir()
    assert samba.share_path("encrypted").is_dir()
    assert samba.share_path("readonly").is_dir()
    conf = open(samba.conf_path).read()
    assert "smb ports = %d" % samba.port in conf
    assert "server min protocol = NT1" in conf
    assert "server max protocol = SMB3_11" in conf
    assert "smbd version" in samba.log_tail(200)
    # credentials are not on any command line
    assert samba.password not in " ".join(samba.smbclient_command(["-c", "ls"]))


@pytest.mark.timeout(60)
def test_smbclient_ls_put_get(samba, tmp_path):
    res = samba.smbclient(["-c", "ls"])
    assert res.returncode == 0, _out(res)

    payload = os.urandom(5000)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    dst = tmp_path / "dst.bin"
    res = samba.smbclient(
        ["-c", "put %s fixture-test.bin; get fixture-test.bin %s" % (src, dst)])
    assert res.returncode == 0, _out(res)
    assert (samba.share_path("share") / "fixture-test.bin").read_bytes() == payload
    assert dst.read_bytes() == payload

    res = samba.smbclient(["-c", "ls"])
    assert "fixture-test.bin" in res.stdout
    res = samba.smbclient(["-c", "del fixture-test.bin"])
    assert res.returncode == 0, _out(res)
    assert not (samba.share_path("share") / "fixture-test.bin").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dialect", ["NT1", "SMB2_02", "SMB2_10", "SMB3_00",
                                     "SMB3_02", "SMB3_11"])
def test_every_dialect_allowed_by_default(samba, dialect):
    args = ["-m", dialect, "--option=client min protocol=%s" % dialect]
    res = samba.smbclient(args + ["-c", "ls"])
    assert res.returncode == 0, _out(res)


@pytest.mark.timeout(60)
def test_wrong_password_is_refused(samba, tmp_path):
    auth = tmp_path / "auth.txt"
    auth.write_text("username = %s\npassword = wrong\n" % samba.username)
    cmd = samba.smbclient_command(["-c", "ls"])
    cmd[cmd.index("-A") + 1] = str(auth)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in _out(res)


@pytest.mark.timeout(60)
def test_readonly_share(samba, tmp_path):
    res = samba.smbclient(["-c", "get hello.txt %s" % (tmp_path / "h.txt")],
                          share="readonly")
    assert res.returncode == 0, _out(res)
    assert (tmp_path / "h.txt").read_text().startswith("hello")
    src = tmp_path / "x"
    src.write_bytes(b"x")
    res = samba.smbclient(["-c", "put %s x" % src], share="readonly")
    assert res.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in _out(res)


@pytest.mark.timeout(60)
def test_encrypted_share(samba):
    # explicit encryption (4.17 spelling of the old -e)
    res = samba.smbclient(["--client-protection=encrypt", "-c", "ls"],
                          share="encrypted")
    assert res.returncode == 0, _out(res)
    res = samba.smbclient(["-m", "SMB3_11", "--client-protection=encrypt",
                           "-c", "ls"], share="encrypted")
    assert res.returncode == 0, _out(res)

    # An SMB 3.x client that did not ask for encryption is told to encrypt by
    # the share flags (SMB2_SHAREFLAG_ENCRYPT_DATA) and smbclient complies.
    res = samba.smbclient(["-m", "SMB3_00", "--client-protection=off",
                           "-c", "ls"], share="encrypted")
    assert res.returncode == 0, _out(res)

    # SMB 2.x cannot encrypt: TREE_CONNECT is refused.
    res = samba.smbclient(["-m", "SMB2", "-c", "ls"], share="encrypted")
    assert res.returncode != 0
    assert "tree connect failed: NT_STATUS_ACCESS_DENIED" in _out(res)

    # SMB1 without (unix-extension) encryption: the tree connect succeeds but
    # every operation on the share is denied.
    res = samba.smbclient(NT1_CLIENT + ["-c", "ls"], share="encrypted")
    assert res.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in _out(res)

    # the plain share does not require it
    res = samba.smbclient(["-m", "SMB2", "-c", "ls"], share="share")
    assert res.returncode == 0, _out(res)


@pytest.mark.timeout(60)
def test_nt1_server(samba_nt1):
    assert "server max protocol = NT1" in open(samba_nt1.conf_path).read()
    res = samba_nt1.smbclient(NT1_CLIENT + ["-c", "ls"])
    assert res.returncode == 0, _out(res)
    # an SMB2-only client (no SMB1 negprot) gets nowhere
    res = samba_nt1.smbclient(["-m", "SMB3", "--option=client min protocol=SMB2",
                               "-c", "ls"])
    assert res.returncode != 0
    assert "protocol negotiation failed" in _out(res)


@pytest.mark.timeout(60)
def test_smb3_server(samba_smb3):
    res = samba_smb3.smbclient(["-m", "SMB3_11", "-c", "ls"])
    assert res.returncode == 0, _out(res)
    res = samba_smb3.smbclient(NT1_CLIENT + ["-c", "ls"])
    assert res.returncode != 0
    assert "protocol negotiation failed" in _out(res)
    res = samba_smb3.smbclient(["-m", "SMB2_10", "-c", "ls"])
    assert res.returncode != 0
    assert "protocol negotiation failed" in _out(res)


@pytest.mark.timeout(60)
def test_connection_child(samba):
    proc = samba.smbclient_popen()
    try:
        port = _wait_client_port(proc, samba)
        child = samba.connection_child(port)
        assert child is not None
        assert child != samba.pid
        assert child in samba.children()
        assert samba.pid not in samba.children()
        # helpers (notifyd, cleanupd) are no connection children
        assert set(samba.children()) <= set(samba.children(include_helpers=True))
        # a port with no connection behind it
        assert samba.connection_child(1, timeout=0) is None
        out, _ = proc.communicate(b"ls\nexit\n", timeout=30)
        assert proc.returncode == 0, out
        assert b"blocks of size" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(60)
def test_killing_the_connection_child(samba):
    proc = samba.smbclient_popen()
    try:
        port = _wait_client_port(proc, samba)
        child = samba.connection_child(port)
        assert child is not None
        pidfd = os.pidfd_open(child)
        try:
            os.kill(child, signal.SIGKILL)
            # a pidfd becomes readable when the process is gone
            ready, _, _ = select.select([pidfd], [], [], 10)
            assert ready, "the killed child is still there after 10 s"
        finally:
            os.close(pidfd)
        assert child not in samba.children()
        out, _ = proc.communicate(b"ls\nexit\n", timeout=30)
        # smbclient notices the dead connection (the exact status varies)
        assert b"NT_STATUS_" in out or proc.returncode != 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # the server itself is fine
    assert samba.running
    res = samba.smbclient(["-c", "ls"])
    assert res.returncode == 0, _out(res)


@pytest.mark.timeout(60)
def test_smbclient_through_fault_proxy(samba):
    with FaultProxy(samba.host, samba.port) as proxy:
        res = samba.smbclient(["-c", "ls"], port=proxy.port)
        assert res.returncode == 0, _out(res)
        assert proxy.bytes_c2s > 0 and proxy.bytes_s2c > 0
        proxy.refuse(True)
        res = samba.smbclient(["-c", "ls"], port=proxy.port)
        assert res.returncode != 0
        assert "NT_STATUS_CONNECTION" in _out(res)
        proxy.refuse(False)
        # the serving smbd child of a proxied connection is found by the
        # proxy's upstream port, which is what smbd sees as the client port
        proc = samba.smbclient_popen(port=proxy.port)
        try:
            assert proxy.wait_connections(1, timeout=20)
            deadline = time.monotonic() + 20
            child = None
            while child is None and time.monotonic() < deadline:
                # the proxy's upstream socket lives in this process
                for port in local_ports_of(os.getpid(), samba.port):
                    child = samba.connection_child(port, timeout=0)
                    if child:
                        break
                else:
                    time.sleep(0.05)
            assert child in samba.children()
            assert proxy.reset() == 1
            out, _ = proc.communicate(b"ls\nexit\n", timeout=30)
            assert b"NT_STATUS_CONNECTION" in out or proc.returncode != 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _system_samba_state():
    """(path, size, mtime) of everything under the system Samba directories."""
    state = set()
    for root in ("/var/log/samba", "/var/lib/samba", "/var/cache/samba",
                 "/run/samba", "/etc/samba"):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                state.add((p, st.st_size if not os.path.isdir(p) else 0,
                           st.st_mtime_ns if not os.path.isdir(p) else 0))
    return state


@pytest.mark.timeout(120)
def test_factory_private_and_cleaned_up(samba_factory, tmp_path):
    before = _system_samba_state()
    srv = samba_factory(min_protocol="SMB2_02", max_protocol="SMB3_11",
                        log_level=2)
    assert srv.start_seconds < 15
    src = tmp_path / "f"
    src.write_bytes(b"factory")
    res = srv.smbclient(["-c", "put %s f; ls; get f %s" % (src, tmp_path / "g")])
    assert res.returncode == 0, _out(res)
    res = srv.smbclient(["-c", "ls"], share="encrypted")
    assert res.returncode == 0, _out(res)
    res = srv.smbclient(["-L", "//127.0.0.1"])  # IPC$ (no RPC helpers)
    pid, tempdir, conf = srv.pid, srv.tempdir, srv.conf_path
    children = srv.children(include_helpers=True)
    assert children  # notifyd, cleanupd at least

    srv.stop()
    assert not srv.running
    assert not os.path.exists(tempdir)
    for p in [pid] + children:
        try:
            with open("/proc/%d/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state in ("Z", "X"), (p, state)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/stat" % entry) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            assert conf.encode() not in cmd or state == "Z", entry
    assert _system_samba_state() == before


@pytest.mark.timeout(120)
def test_factory_server_survives_restart(samba_factory):
    srv = samba_factory()
    port = srv.port
    os.kill(srv.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while srv.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not srv.running
    srv.restart()
    assert srv.port == port
    res = srv.smbclient(["-c", "ls"])
    assert res.returncode == 0, _out(res)


@pytest.mark.timeout(60)
def test_missing_smbd_skips_or_fails(monkeypatch):
    monkeypatch.setattr(pytest_plugin, "find_smbd", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="smbd was not found"):
        pytest_plugin.require_smbd()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="smbd was not found"):
        pytest_plugin.require_smbd()


@pytest.mark.timeout(60)
def test_start_failure_is_reported_and_cleaned_up():
    srv = SambaServer(extra_global={"passdb backend": "bogus"})
    with pytest.raises(RuntimeError, match="bogus"):
        srv.start()
    assert srv.tempdir is None
    assert not srv.running


@pytest.mark.timeout(120)
def test_port_race_is_retried(monkeypatch, samba_factory):
    from smblayer.testing import samba as samba_mod

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    real = samba_mod._free_port
    ports = [taken]

    def fake_free_port(host="127.0.0.1"):
        return ports.pop() if ports else real(host)

    monkeypatch.setattr(samba_mod, "_free_port", fake_free_port)
    try:
        srv = samba_factory()
        assert srv.port != taken
        res = srv.smbclient(["-c", "ls"])
        assert res.returncode == 0, _out(res)
        assert srv.start_attempts == 2
    finally:
        squatter.close()
