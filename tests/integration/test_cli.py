"""The ``smblayer`` command line against a private Samba, run as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from _cli_helpers import cli_env, ok, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def url(samba):
    """A fresh directory on the share: its URL (the directory exists)."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / name).mkdir()
    return f"//{samba.host}:{samba.port}/share/{name}"


def test_put_get_round_trip(samba, url, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    ok(run(["put", str(src), f"{url}/f.bin"], samba))
    assert (samba.share_path("share") / url.rsplit("/", 1)[1] / "f.bin").read_bytes() == data
    dst = tmp_path / "dst.bin"
    ok(run(["get", f"{url}/f.bin", str(dst)], samba))
    assert dst.read_bytes() == data


def test_stdin_stdout(samba, url):
    data = os.urandom(200_000) + b"\n\x00end"
    ok(run(["put", "-", f"{url}/piped.bin"], samba, input=data))
    assert ok(run(["get", f"{url}/piped.bin", "-"], samba)) == data
    assert ok(run(["cat", f"{url}/piped.bin"], samba)) == data


def test_smb_scheme_and_empty_file(samba, url, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    smb_url = "smb:" + url
    ok(run(["put", str(empty), f"{smb_url}/empty"], samba))
    assert ok(run(["get", f"{smb_url}/empty", "-"], samba)) == b""


def test_ls_and_stat(samba, url):
    ok(run(["put", "-", f"{url}/listed.txt"], samba, input=b"x" * 1234))
    ok(run(["mkdir", f"{url}/sub"], samba))
    out = ok(run(["ls", url], samba)).decode()
    assert "listed.txt" in out.split()
    assert "sub/" in out.split()
    out = ok(run(["ls", "-l", url], samba)).decode()
    assert any("1234" in line and "listed.txt" in line for line in out.splitlines())
    out = ok(run(["stat", f"{url}/listed.txt"], samba)).decode()
    assert "Size: 1234" in out
    assert "regular file" in out


def test_rm_then_stat_fails(samba, url):
    ok(run(["put", "-", f"{url}/gone.txt"], samba, input=b"bye"))
    ok(run(["rm", f"{url}/gone.txt"], samba))
    proc = run(["stat", f"{url}/gone.txt"], samba)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("smblayer: stat: ")
    assert "STATUS_OBJECT_NAME_NOT_FOUND" in err
    assert "gone.txt" in err


def test_mkdir_rmdir_mv(samba, url):
    name = url.rsplit("/", 1)[1]
    ok(run(["mkdir", "-p", f"{url}/a/b"], samba))
    assert (samba.share_path("share") / name / "a" / "b").is_dir()
    ok(run(["mkdir", "-p", f"{url}/a/b"], samba))          # -p: no error if it exists
    proc = run(["mkdir", f"{url}/a"], samba)
    assert proc.returncode == 1 and b"STATUS_OBJECT_NAME_COLLISION" in proc.stderr
    ok(run(["mv", f"{url}/a/b", f"{url}/a/c"], samba))
    assert (samba.share_path("share") / name / "a" / "c").is_dir()
    ok(run(["rmdir", f"{url}/a/c", f"{url}/a"], samba))
    assert not (samba.share_path("share") / name / "a").exists()


def test_echo_prints_a_time(samba):
    out = ok(run(["echo", "-c", "2", f"//{samba.host}:{samba.port}"])).decode()
    assert out.count("time=") == 2
    assert "µs" in out


@pytest.mark.parametrize("bad", ["not-a-url", "//", "//host", "http://h/s/p", "//h:99999/s/p"])
def test_bad_url_is_a_usage_error(bad):
    proc = run(["stat", bad])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(b"smblayer: ")


def test_usage_errors():
    assert run([]).returncode == 2
    assert run(["frobnicate"]).returncode == 2
    assert run(["get"]).returncode == 2
    assert run(["--dialect-max", "9.9", "echo", "//h"]).returncode == 2


def test_wrong_password(samba, url):
    secret = "Wr0ng-" + uuid.uuid4().hex
    proc = run(["ls", url], samba, password=secret)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert "authentication failed" in err and "STATUS_LOGON_FAILURE" in err
    assert secret not in err and secret.encode() not in proc.stdout
    # Not in verbose logging either.
    proc = run(["-vv", "ls", url], samba, password=secret)
    assert proc.returncode == 1
    assert secret.encode() not in proc.stderr + proc.stdout


def test_dialect_and_encrypt_options(samba, url):
    ok(run(["--dialect-max", "2.1", "put", "-", f"{url}/d.txt"], samba, input=b"abc"))
    out = ok(run(["echo", "--dialect-min", "NT1", "--dialect-max", "NT1",
                  f"//{samba.host}:{samba.port}"])).decode()
    assert "NT LM 0.12" in out
    assert ok(run(["--encrypt", "cat", f"{url}/d.txt"], samba)) == b"abc"


def test_bench_json(samba, url):
    proc = run(["bench", url, "--size", "256K", "--count", "20", "--threads", "2",
                "--duration", "0.2", "--files", "5", "--json"], samba)
    result = json.loads(ok(proc))
    assert result["echo_latency"]["median_us"] > 0
    assert result["echo_threads"]["ops_per_s"] > 0
    assert result["bulk"]["size"] == 256 * 1024
    assert result["bulk"]["write_MBps"] > 0 and result["bulk"]["read_MBps"] > 0
    assert result["small_files"]["files_per_s"] > 0
    # bench cleans up after itself
    name = url.rsplit("/", 1)[1]
    assert list((samba.share_path("share") / name).iterdir()) == []


def test_failed_get_keeps_existing_local_file(samba, url, tmp_path):
    """Issue 12 item 6: a get of a missing remote file leaves the local file
    of that name as it was, and no temporary file behind."""
    local = tmp_path / "keep.txt"
    local.write_bytes(b"precious")
    proc = run(["get", f"{url}/missing.txt", str(local)], samba)
    assert proc.returncode == 1
    assert b"STATUS_OBJECT_NAME_NOT_FOUND" in proc.stderr
    assert local.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    # A get that works replaces it, without leftovers either.
    ok(run(["put", "-", f"{url}/there.txt"], samba, input=b"new"))
    ok(run(["get", f"{url}/there.txt", str(local)], samba))
    assert local.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _wait_for(predicate, timeout: float = 30.0):
    """Wait (bounded) for something the subprocess does on the server."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_interrupted_put_leaves_destination_intact(samba, url):
    """Issue 12 item 7: Ctrl-C in the middle of a put leaves the existing
    remote file as it was and no temporary file behind."""
    folder = samba.share_path("share") / url.rsplit("/", 1)[1]
    (folder / "good.bin").write_bytes(b"good data")
    proc = subprocess.Popen([sys.executable, "-m", "smblayer", "put", "-", f"{url}/good.bin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env(samba))
    try:
        proc.stdin.write(os.urandom(40 * 1024 * 1024))     # more than one chunk
        proc.stdin.flush()

        def temp_has_data():
            return any(p.name != "good.bin" and p.stat().st_size > 0 for p in folder.iterdir())
        _wait_for(temp_has_data)
        assert (folder / "good.bin").read_bytes() == b"good data"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert (folder / "good.bin").read_bytes() == b"good data"
    assert [p.name for p in folder.iterdir()] == ["good.bin"]


def test_put_help_explains_the_temporary_name():
    out = ok(run(["put", "--help"])).decode()
    assert "temporary" in out and "Ctrl-C" in out
