"""The command line's whole round trip on every dialect, SMB1 included, and
encrypted on 3.x, run as a user runs it (the console script in a
subprocess) against a private Samba that serves srvsvc (issue 18): put a
new file, put over it, get, ls -l, stat, mv, cp, rm with a wildcard, and
ls //host.  Plus the command line's side of the issue's other items:
``--no-guest``, the RAP share list, one-line errors."""
from __future__ import annotations

import os
import uuid

import pytest

from _cli_helpers import ok, run
from smblayer.testing.guest import guest_server
from smblayer.testing.pytest_plugin import require_smbd
from smblayer.testing.samba import SambaServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# (dialect, encrypted)
CASES = [("NT1", False), ("2.0.2", False), ("2.1", False), ("3.0", False),
         ("3.0.2", False), ("3.1.1", False), ("3.0", True), ("3.0.2", True),
         ("3.1.1", True)]


@pytest.fixture(scope="module")
def server():
    """NT1 .. 3.1.1, with the RPC helpers so ``ls //host`` has srvsvc."""
    require_smbd()
    with SambaServer(extra_global={"rpc start on demand helpers": "yes"}) as samba:
        yield samba


def _one_error_line(proc, command: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"smblayer: {command}: "), err
    assert "Error:" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("dialect,encrypt", CASES,
                         ids=[f"{d}{'-encrypted' if e else ''}" for d, e in CASES])
def test_round_trip(server, tmp_path, dialect, encrypt):
    opts = ["--dialect-min", dialect, "--dialect-max", dialect] + (["--encrypt"] if encrypt else [])

    def cli(*args, input=None):
        proc = run([*opts, *args], server, input=input)
        out = ok(proc)
        assert not proc.stderr, proc.stderr       # no warning either
        return out.decode()

    name = f"cli-{dialect}{'-e' if encrypt else ''}-{uuid.uuid4().hex[:6]}"
    folder = server.share_path("share") / name
    folder.mkdir()
    host = f"//{server.host}:{server.port}"
    url = f"{host}/share/{name}"
    first, second = os.urandom(300_000), os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "first.bin").write_bytes(first)
    (tmp_path / "second.bin").write_bytes(second)

    cli("put", str(tmp_path / "first.bin"), f"{url}/data.bin")          # a new file
    assert (folder / "data.bin").read_bytes() == first
    cli("put", str(tmp_path / "second.bin"), f"{url}/data.bin")         # over it
    assert (folder / "data.bin").read_bytes() == second
    assert sorted(p.name for p in folder.iterdir()) == ["data.bin"]     # no temporary left
    cli("get", f"{url}/data.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == second

    listing = cli("ls", "-l", url)
    assert any("data.bin" in line and str(len(second)) in line
               for line in listing.splitlines()), listing
    status = cli("stat", f"{url}/data.bin")
    assert f"Size: {len(second)}" in status and "regular file" in status

    cli("mv", f"{url}/data.bin", f"{url}/moved.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["moved.bin"]
    cli("cp", f"{url}/moved.bin", f"{url}/copy.bin")
    assert (folder / "copy.bin").read_bytes() == second
    (folder / "keep.txt").write_bytes(b"kept")
    cli("rm", f"{url}/*.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]

    shares = cli("ls", host)
    rows = {line.split()[0]: line.split()[1] for line in shares.splitlines()[2:]}
    assert rows["share"] == "Disk" and rows["IPC$"] == "IPC", shares

    # A failure is one line naming what failed and why.
    line = _one_error_line(run([*opts, "stat", f"{url}/missing"], server), "stat")
    assert "missing" in line and "STATUS_OBJECT_NAME_NOT_FOUND" in line


def test_ls_host_on_nt1_without_srvsvc(samba):
    """A server without its RPC helpers has no srvsvc: over SMB1 the share
    list comes by RAP (as smbclient -L); over SMB2 the error says why."""
    host = f"//{samba.host}:{samba.port}"
    out = ok(run(["--dialect-max", "NT1", "ls", host], samba)).decode()
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows["share"] == "Disk" and rows["IPC$"] == "IPC", out
    line = _one_error_line(run(["--dialect-min", "3.1.1", "ls", host], samba), "ls")
    assert "no share list" in line and "srvsvc" in line


@pytest.fixture(scope="module")
def guest_mapping():
    """Bad passwords (and unknown users) get a guest session, which may
    read the share "public"."""
    require_smbd()
    with guest_server("Bad Password") as samba:
        yield samba


@pytest.mark.parametrize("dialect", ["NT1", "2.1", "3.1.1"])
def test_no_guest(guest_mapping, dialect):
    server = guest_mapping
    url = f"//{server.host}:{server.port}/public/hello.txt"
    opts = ["--dialect-min", dialect, "--dialect-max", dialect]
    wrong = "not-" + uuid.uuid4().hex
    # Today's default: the guest session reads the file, as smbclient would.
    assert ok(run([*opts, "cat", url], server, password=wrong)) == b"hi"
    proc = run([*opts, "--no-guest", "cat", url], server, password=wrong)
    line = _one_error_line(proc, "cat")
    assert "guest" in line and wrong not in line
    # The right password is no guest: --no-guest lets it through.
    assert ok(run([*opts, "--no-guest", "cat", url], server)) == b"hi"
