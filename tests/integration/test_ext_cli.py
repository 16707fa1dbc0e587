"""``smblayer ls //host``, ``watch`` and ``cp`` (the extras' command line)
against a private Samba with srvsvc served, run as subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from smblayer.testing.samba import SambaServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def rpc_samba():
    from smblayer.testing.pytest_plugin import require_smbd
    require_smbd()
    with SambaServer(extra_global={"rpc start on demand helpers": "yes"},
                     extra_shares={"other": {"read only": "no", "comment": "the other one"}}) \
            as server:
        yield server


def env_for(server):
    env = dict(os.environ, SMB_USER=server.username, SMB_PASSWORD=server.password)
    return env


def run(server, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "smblayer", *args], capture_output=True,
                          text=True, env=env_for(server), timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_ls_host_lists_the_shares(rpc_samba):
    proc = run(rpc_samba, "ls", f"//{rpc_samba.host}:{rpc_samba.port}")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(None, 2) for line in proc.stdout.splitlines()[2:]]
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["share"] == ["Disk"]
    assert by_name["other"] == ["Disk", "the other one"]
    assert by_name["IPC$"][0] == "IPC"
    assert proc.stdout.splitlines()[0].split() == ["Sharename", "Type", "Comment"]


def test_cp_remote_to_remote(rpc_samba):
    base = f"//{rpc_samba.host}:{rpc_samba.port}"
    data = os.urandom(3 * 1024 * 1024)
    (rpc_samba.share_path("share") / "cli-cp.src").write_bytes(data)
    proc = run(rpc_samba, "cp", f"{base}/share/cli-cp.src", f"{base}/share/cli-cp.dst")
    assert proc.returncode == 0, proc.stderr
    assert (rpc_samba.share_path("share") / "cli-cp.dst").read_bytes() == data
    # into a directory of another share
    (rpc_samba.share_path("other") / "into").mkdir(exist_ok=True)
    proc = run(rpc_samba, "cp", f"{base}/share/cli-cp.src", f"{base}/other/into")
    assert proc.returncode == 0, proc.stderr
    assert (rpc_samba.share_path("other") / "into" / "cli-cp.src").read_bytes() == data
    proc = run(rpc_samba, "cp", f"{base}/share/no-such", f"{base}/share/x")
    assert proc.returncode == 1 and "No such file" in proc.stderr


def test_watch_prints_events(rpc_samba):
    d = rpc_samba.share_path("share") / "cli-watch"
    d.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "smblayer", "watch", "-n", "1",
                             "--idle", "30",
                             f"//{rpc_samba.host}:{rpc_samba.port}/share/cli-watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(rpc_samba), stdin=subprocess.DEVNULL)
    try:
        # create files until the watch (armed asynchronously) reports one
        deadline = time.monotonic() + 30
        i = 0
        while proc.poll() is None and time.monotonic() < deadline:
            (d / f"f{i}").write_bytes(b"")
            i += 1
            try:
                proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    action, path = out.split()
    assert action == "added" and path.startswith("cli-watch/f")
