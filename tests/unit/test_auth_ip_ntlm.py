"""SPNEGO to a server named by its IP address uses NTLM only (as Windows
does): a Kerberos attempt there needs a KDC lookup that stalled connects for
5 s where none is configured, and a service ticket needs a host name."""
from smblayer.security.auth import Authenticator

KRB5_OID = bytes.fromhex("06092a864886f712010202")
NTLMSSP = b"NTLMSSP\0"


def test_ip_literal_gets_ntlm_only():
    for host in ("127.0.0.1", "::1", "[::1]"):
        token = Authenticator("user", "pw", host, protocol="negotiate").step(None)
        assert NTLMSSP in token and KRB5_OID not in token, host


def test_a_host_name_is_left_to_spnego():
    token = Authenticator("user", "pw", "fileserver.example", protocol="negotiate").step(None)
    assert token.startswith(b"\x60")          # an SPNEGO NegTokenInit, not raw NTLMSSP
