"""The second test server: Samba 4.22 from a Debian 13 root
(``SambaServer(root=...)``, fixture ``samba_422``)."""

import os

import pytest

from smblayer import fs
from smblayer.testing import chroot
from smblayer.testing.procfs import alive, descendants
from smblayer.testing.samba import SambaServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_root_server_is_samba_4_22_and_paths_match_inside(samba_422):
    root = chroot.SambaRoot(chroot.default_root())
    assert root.version.startswith("4.22."), root.version
    # a file smbd writes through its (chroot) path is the file we see here
    with fs.connect(samba_422.host, "share", samba_422.username, samba_422.password,
                    port=samba_422.port) as tree:
        tree.write_bytes("inside.txt", b"written through smbd in the root")
        assert (samba_422.share_path() / "inside.txt").read_bytes() == \
            b"written through smbd in the root"
    # the smbd we started is the one in the root (stopped by this pid)
    assert os.readlink("/proc/%d/root" % samba_422.pid) == root.path


def test_the_roots_smbstatus_reads_its_state(samba_422):
    with fs.connect(samba_422.host, "share", samba_422.username, samba_422.password,
                    port=samba_422.port) as tree:
        with tree.open("held.txt", "wb") as f:
            f.write(b"x")
            out = samba_422.smbstatus("-L")
        assert "held.txt" in out
    assert "Samba version 4.22" in samba_422.smbstatus("-b")


def test_stop_leaves_no_process_and_no_mount(samba_root):
    server = SambaServer(root=samba_root).start()
    pid = server.pid
    with fs.connect(server.host, "share", server.username, server.password,
                    port=server.port) as tree:
        tree.write_bytes("a", b"a")
        pids = [pid] + descendants(pid)
    server.stop()
    assert not any(alive(p) for p in pids)
    with open("/proc/self/mountinfo") as f:
        assert samba_root not in f.read()     # the mounts lived in smbd's namespace only


def test_a_missing_root_names_the_missing_piece(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere")
    problem = chroot.root_problem(missing)
    if os.geteuid() != 0:
        assert "needs root" in problem
        return
    assert missing in problem and "tools/make_samba_root.sh" in problem
    os.mkdir(missing)
    assert "incomplete" in chroot.root_problem(missing)
    monkeypatch.setenv("SMBLAYER_SAMBA_ROOT", missing)
    assert chroot.default_root() == missing
