"""auth_protocol on fs.connect and the SPNEGO fallback (issue 12, item 5).

impacket's SMB server (a second server implementation, the one the audit
used) answers NTLM without NTLMSSP_NEGOTIATE_SIGN on its SMB1 path, so
SPNEGO cannot send its mechListMIC; smbclient copes, and so must we.
Kerberos must never turn into NTLM, and a missing password is said plainly."""
from __future__ import annotations

import importlib.util
import logging
import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

from smblayer import Dialect, DialectRange, NtStatus, SmbAuthError, TimeoutPolicy, fs
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER, PASSWORD = "alice", "Imp4cket-Secret"

_SERVER = textwrap.dedent("""
    import logging, sys
    from impacket import smbserver
    from impacket.ntlm import compute_nthash
    logging.disable(logging.CRITICAL)
    root, user, password = sys.argv[1:4]
    server = smbserver.SimpleSMBServer(listenAddress="127.0.0.1", listenPort=0)
    server.addShare("SHARE", root, "")
    server.setSMB2Support(True)
    server.addCredential(user, 0, "aad3b435b51404eeaad3b435b51404ee",
                         compute_nthash(password).hex())
    server.setSMBChallenge("")
    print(server.getServer().server_address[1], flush=True)
    server.start()
""")


def _require_impacket() -> None:
    if importlib.util.find_spec("impacket") is None:
        reason = "impacket is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(reason + " (CI=true: a missing test dependency is an error)",
                        pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def impacket_server(tmp_path_factory):
    """impacket's SimpleSMBServer on 127.0.0.1 (SMB1 and SMB 2.0.2/2.1), one
    user, share "SHARE" holding hello.txt: yields its port."""
    _require_impacket()
    root = tmp_path_factory.mktemp("impacket-share")
    (root / "hello.txt").write_bytes(b"hello from impacket")
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(root), USER, PASSWORD],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        line = proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            pytest.fail(f"impacket's server did not start (exit code {proc.poll()})")
        yield int(line)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


DIALECTS = {"SMB1": DialectRange(Dialect.SMB1, Dialect.SMB1),
            "SMB2": DialectRange(Dialect.SMB2_0_2, Dialect.SMB3_1_1)}
_FAST = dict(timeouts=TimeoutPolicy(timeout=10.0, connect_timeout=10.0))


def _connect(port, dialects, password=PASSWORD, **options):
    # "localhost", not the address: SPNEGO is kept for host names (an IP
    # literal gets NTLM directly, as on Windows), so the fallback shows.
    return fs.connect("localhost", "SHARE", USER, password, port=port,
                      dialects=DIALECTS[dialects], **_FAST, **options)


@pytest.mark.parametrize("dialects", ["SMB1", "SMB2"])
def test_spnego_works_against_impacket(impacket_server, dialects, caplog):
    """The default (negotiate) reads a file from impacket on SMB1 (where its
    NTLM cannot sign and smblayer answers with raw NTLMSSP) and on SMB2."""
    caplog.set_level(logging.INFO, logger="smblayer")
    with _connect(impacket_server, dialects) as tree:
        assert tree.read_bytes("hello.txt") == b"hello from impacket"
        assert tree.session.auth_protocol == "negotiate"
    fell_back = "authenticating with NTLM directly" in caplog.text
    assert fell_back is (dialects == "SMB1")
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("dialects", ["SMB1", "SMB2"])
def test_ntlm_against_impacket(impacket_server, dialects):
    with _connect(impacket_server, dialects, auth_protocol="ntlm") as tree:
        assert tree.read_bytes("hello.txt") == b"hello from impacket"


@pytest.mark.parametrize("dialects", ["SMB1", "SMB2"])
def test_wrong_password_against_impacket_is_still_refused(impacket_server, dialects):
    """The fallback does not turn a refused password into anything else."""
    with pytest.raises(SmbAuthError) as info:
        _connect(impacket_server, dialects, password="not-the-password").close()
    assert info.value.status == NtStatus.LOGON_FAILURE


class _NtlmSeen:
    """c2s rewrite hook: did an NTLMSSP message go out?"""

    def __init__(self) -> None:
        self.frames = 0
        self.ntlm = False

    def __call__(self, frame: bytes):
        self.frames += 1
        self.ntlm = self.ntlm or b"NTLMSSP\0" in frame
        return None


@pytest.mark.parametrize("server", ["samba", "impacket"])
def test_kerberos_never_falls_back_to_ntlm(request, server):
    """auth_protocol="kerberos" without a usable ticket or KDC fails with
    SmbAuthError, and no NTLM message is ever sent."""
    if server == "samba":
        target = request.getfixturevalue("samba")
        host, port, share, user, password = (target.host, target.port, "share",
                                             target.username, target.password)
    else:
        host, port, share, user, password = ("127.0.0.1",
                                             request.getfixturevalue("impacket_server"),
                                             "SHARE", USER, PASSWORD)
    seen = _NtlmSeen()
    with FaultProxy(host, port) as proxy:
        proxy.rewrite("c2s", seen)
        started = time.monotonic()
        with pytest.raises(SmbAuthError) as info:
            fs.connect(host, share, user, password, port=proxy.port, auth_protocol="kerberos",
                       **_FAST).close()
        assert time.monotonic() - started < 60
    assert seen.frames >= 1 and not seen.ntlm
    assert password not in str(info.value)


def test_no_password_and_no_ticket_says_so(samba, monkeypatch, tmp_path):
    """password=None with no Kerberos ticket: a clear SmbAuthError naming
    the missing password, before any SESSION_SETUP is sent."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'no-such-ccache'}")
    monkeypatch.delenv("NTLM_USER_FILE", raising=False)
    seen = _NtlmSeen()
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("c2s", seen)
        with pytest.raises(SmbAuthError) as info:
            fs.connect(samba.host, "share", samba.username, None, port=proxy.port,
                       **_FAST).close()
    assert "no password was given" in str(info.value)
    assert not seen.ntlm


def test_bad_auth_protocol_is_refused_before_connecting():
    """A ValueError, not a connection attempt (nothing listens on port 1)."""
    with pytest.raises(ValueError, match="auth_protocol"):
        fs.connect("127.0.0.1", "share", "u", "p", port=1, auth_protocol="ntlmv1")


@pytest.mark.parametrize("dialects", ["SMB1", "SMB2"])
def test_cli_echo_runs_inside_a_session_against_impacket(impacket_server, dialects):
    """Issue 12 item 4: impacket answers an ECHO with SessionId 0 by
    ACCESS_DENIED; with credentials `smblayer echo` sets up a session first
    and its echoes carry that session's id, as smbclient's do."""
    env = dict(os.environ, SMB_USER=USER, SMB_PASSWORD=PASSWORD)
    extra = ["--dialect-max", "NT1"] if dialects == "SMB1" else []
    proc = subprocess.run([sys.executable, "-m", "smblayer", "echo", "-c", "2", *extra,
                           f"//127.0.0.1:{impacket_server}"], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("seq=") == 2
