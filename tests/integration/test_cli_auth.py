"""CLI credentials (issue 12 item 8): smbclient's -U user%pass, -A FILE,
-N, -k, --auth, --version; one prompt and one connection per server."""
from __future__ import annotations

import pathlib
import shutil
import tempfile
import uuid

import pytest

from _cli_helpers import cli_env, ok, run, run_pty
from smblayer import __version__
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def url(samba):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / name).mkdir()
    (samba.share_path("share") / name / "a.txt").write_bytes(b"alpha")
    (samba.share_path("share") / name / "b.txt").write_bytes(b"beta")
    return f"//{samba.host}:{samba.port}/share/{name}"


def test_user_percent_password(samba, url):
    proc = run(["-v", "-U", f"{samba.username}%{samba.password}", "cat", f"{url}/a.txt"],
               env=cli_env())
    assert ok(proc) == b"alpha"
    assert b"connecting to" in proc.stderr           # -v logs, but never the password
    assert samba.password.encode() not in proc.stderr


def test_wrong_user_percent_password_never_logged(samba, url):
    secret = "Wr0ng-" + uuid.uuid4().hex
    proc = run(["-vv", "-U", f"WORKGROUP\\{samba.username}%{secret}", "ls", url],
               env=cli_env())
    assert proc.returncode == 1
    assert b"authentication failed" in proc.stderr
    assert secret.encode() not in proc.stderr + proc.stdout


def test_authentication_file(samba, url, tmp_path):
    auth = tmp_path / "auth"
    auth.write_text(f"# smbclient format\nusername = {samba.username}\n"
                    f"password = {samba.password}\ndomain = WORKGROUP\n")
    assert ok(run(["-A", str(auth), "cat", f"{url}/b.txt"], env=cli_env())) == b"beta"
    # after the subcommand too, and the long spelling
    assert ok(run(["cat", "--authentication-file", str(auth), f"{url}/b.txt"],
                  env=cli_env())) == b"beta"


def test_bad_authentication_file_is_a_usage_error(samba, url, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("user: someone\n")
    proc = run(["-A", str(bad), "ls", url], env=cli_env())
    assert proc.returncode == 2 and b"username=" in proc.stderr
    proc = run(["-A", str(tmp_path / "missing"), "ls", url], env=cli_env())
    assert proc.returncode == 2 and b"authentication file" in proc.stderr


def test_no_password_given_says_so(samba, url):
    """Issue 12 item 11: password None and no ticket: the message says that
    no password was given (stdin is not a terminal, so nothing is asked)."""
    proc = run(["-U", samba.username, "ls", url],
               env=cli_env(KRB5CCNAME="FILE:/nonexistent/ccache"))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "no password was given" in err and len(err.strip().splitlines()) == 1, err


def test_kerberos_without_a_ticket_fails_cleanly(samba, url):
    proc = run(["-k", "-U", samba.username, "ls", url],
               env=cli_env(KRB5CCNAME="FILE:/nonexistent/ccache"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"smblayer: ls: authentication failed")
    assert b"Password" not in proc.stderr          # -k never prompts
    proc = run(["--auth", "kerberos", "-U", samba.username, "ls", url],
               env=cli_env(KRB5CCNAME="FILE:/nonexistent/ccache"))
    assert proc.returncode == 1


def test_auth_ntlm(samba, url):
    assert ok(run(["--auth", "ntlm", "cat", f"{url}/a.txt"], samba)) == b"alpha"
    assert run(["--auth", "basic", "ls", url], samba).returncode == 2


def test_no_pass_is_anonymous(samba, url):
    """-N without a user is an anonymous session (refused by this server:
    'map to guest = never'), without a prompt even on a terminal."""
    rc, terminal, _out = run_pty(["-N", "ls", url], cli_env())
    assert rc == 1, terminal
    assert b"Password" not in terminal


@pytest.fixture
def public_dir():
    """A world-readable directory (the guest account must reach it)."""
    public = pathlib.Path(tempfile.mkdtemp(prefix="smbl-public-"))
    try:
        public.chmod(0o755)
        (public / "hello.txt").write_bytes(b"hi")
        (public / "hello.txt").chmod(0o644)
        yield public
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_no_pass_where_guests_are_allowed(samba_factory, public_dir):
    """-N reads a guest share: anonymously without -U, as a guest with an
    unknown user (no password asked, none sent)."""
    public = public_dir
    server = samba_factory(extra_global={"map to guest": "Bad User", "restrict anonymous": "0"},
                           extra_shares={"public": {"path": str(public), "guest ok": "yes",
                                                    "read only": "yes"}})
    url = f"//{server.host}:{server.port}/public/hello.txt"
    assert ok(run(["-N", "cat", url], env=cli_env())) == b"hi"
    assert ok(run(["-N", "-U", "no-such-user", "cat", url], env=cli_env())) == b"hi"


def test_version():
    proc = run(["--version"])
    assert ok(proc).decode().strip() == f"smblayer {__version__}"


def test_one_prompt_and_one_connection_for_several_urls(samba, url):
    with FaultProxy(samba.host, samba.port) as proxy:
        base = url.replace(f"{samba.host}:{samba.port}", f"{proxy.host}:{proxy.port}")
        env = cli_env()
        env["SMB_USER"] = samba.username
        rc, terminal, out = run_pty(
            ["cat", f"{base}/a.txt", f"{base}/b.txt",
             f"//{proxy.host}:{proxy.port}/readonly/hello.txt"], env,
            answers=[(b"Password for", samba.password.encode() + b"\n")])
        assert rc == 0, terminal
        assert out.startswith(b"alphabeta")
        assert terminal.count(b"Password for") == 1
        assert samba.password.encode() not in terminal
        assert proxy.total_connections == 1
