"""CLI messages that say what happened (issue 12 item 11)."""
from __future__ import annotations

import os
import threading
import uuid

import pytest

from _cli_helpers import cli_env, ok, run, run_pty, screen_lines
from smblayer.cli import describe_error
from smblayer.errors import status_error
from smblayer.proto.status import status_name
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def url(samba):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / name).mkdir()
    return f"//{samba.host}:{samba.port}/share/{name}"


def one_line_error(proc, command: str) -> str:
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"smblayer: {command}: "), err
    return err


def test_no_such_share(samba):
    err = one_line_error(run(["ls", f"//{samba.host}:{samba.port}/nosuch"], samba), "ls")
    assert "no such share" in err and "nosuch" in err and "STATUS_BAD_NETWORK_NAME" in err


def test_wildcard_where_not_supported_gets_a_hint(samba, url):
    err = one_line_error(run(["stat", f"{url}/big*"], samba), "stat")
    assert "wildcards work with get, put, ls, rm" in err


def test_raw_codes_have_names():
    assert status_name(0xC0000236) == "STATUS_CONNECTION_REFUSED"
    assert status_name(0xC000023C) == "STATUS_NETWORK_UNREACHABLE"
    assert status_name(0xC0000234) == "STATUS_ACCOUNT_LOCKED_OUT"
    assert status_name(0xC0000257) == "STATUS_PATH_NOT_COVERED"
    assert status_name(0xC0FFEE00) == "NTSTATUS 0xc0ffee00"
    text = describe_error(status_error(0xC0000236, "CREATE", "a.txt"))
    assert "STATUS_CONNECTION_REFUSED" in text and "0xc0000236" not in text


def test_encryption_required_below_smb3(samba):
    err = one_line_error(run(["--dialect-max", "2.1", "ls",
                              f"//{samba.host}:{samba.port}/encrypted"], samba), "ls")
    assert "STATUS_ACCESS_DENIED" in err
    assert "encryption" in err and "SMB 3.0" in err and "SMB2_1" in err
    # With 3.x it just works (encrypted because the share says so).
    ok(run(["ls", f"//{samba.host}:{samba.port}/encrypted"], samba))


def test_mv_onto_an_existing_file_names_the_destination(samba, url):
    folder = samba.share_path("share") / url.rsplit("/", 1)[1]
    (folder / "a.txt").write_bytes(b"a")
    (folder / "b.txt").write_bytes(b"b")
    err = one_line_error(run(["mv", f"{url}/a.txt", f"{url}/b.txt"], samba), "mv")
    assert f"{url}/b.txt" in err and "-f" in err and "STATUS_OBJECT_NAME_COLLISION" in err
    assert (folder / "a.txt").read_bytes() == b"a" and (folder / "b.txt").read_bytes() == b"b"
    ok(run(["mv", "-f", f"{url}/a.txt", f"{url}/b.txt"], samba))
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]
    assert (folder / "b.txt").read_bytes() == b"a"
    # Into an existing directory, as mv does.
    (folder / "d").mkdir()
    ok(run(["mv", f"{url}/b.txt", f"{url}/d"], samba))
    assert (folder / "d" / "b.txt").read_bytes() == b"a"


@pytest.mark.parametrize("argv", [
    ["echo", "-c", "0", "//h"], ["echo", "-c", "x", "//h"], ["echo", "-i", "-1", "//h"],
    ["--timeout", "-1", "echo", "//h"], ["--timeout", "nan", "echo", "//h"],
    ["--timeout", "0", "echo", "//h"], ["bench", "--size", "0", "//h/s"],
    ["bench", "--size", "lots", "//h/s"], ["bench", "--threads", "0", "//h/s"],
    ["bench", "--duration", "-2", "//h/s"], ["--auth", "basic", "ls", "//h/s"],
    ["--dialect-min", "4.0", "ls", "//h/s"],
])
def test_invalid_option_values_exit_2(argv):
    proc = run(argv)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr


def test_progress_bar_fits_80_columns_and_keeps_off_log_lines(samba, url, tmp_path):
    """On an 80-column terminal the bar never wraps, and the log messages of
    a server going silent in the middle of the transfer (hard mode: "not
    responding, still trying", then "OK") get lines of their own."""
    folder = samba.share_path("share") / url.rsplit("/", 1)[1]
    long_name = "a-rather-long-file-name-" + "x" * 60 + ".bin"
    data = os.urandom(96 * 1024 * 1024)
    (folder / long_name).write_bytes(data)
    with FaultProxy(samba.host, samba.port) as proxy:
        def pause_a_while():
            proxy.pause()
            timer = threading.Timer(2.0, proxy.resume)
            timer.daemon = True
            timer.start()
        proxy.delay(0.002)
        base = url.replace(f"{samba.host}:{samba.port}", f"{proxy.host}:{proxy.port}")
        rc, terminal, _out = run_pty(
            ["-v", "--hard", "--timeout", "0.5", "get", f"{base}/{long_name}",
             str(tmp_path / "got")], cli_env(samba),
            answers=[(b"MB/s", pause_a_while)], columns=80)
    assert rc == 0, terminal
    assert (tmp_path / "got").read_bytes() == data
    lines = [line for line in screen_lines(terminal) if line]
    bars = [line for line in lines if "MB/s" in line]
    logs = [line for line in lines if " INFO " in line or " WARNING " in line]
    assert bars and any("not responding" in line for line in logs), lines
    for line in bars:
        assert len(line) < 80, line
        assert line not in logs, line
    # every write of the bar stays within the width too
    for piece in terminal.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        for segment in piece.split("\r"):
            if "MB/s" in segment:
                assert len(segment.rstrip()) < 80, segment
