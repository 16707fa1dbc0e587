"""Kerberos failures named from the messages MIT krb5/gssapi give (as seen
against Samba's KDC), never with the password; principal names for
Kerberos."""
from __future__ import annotations

import pytest

from smblayer.proto.status import NtStatus
from smblayer.security.auth import Authenticator, _describe, _kerberos_principal

SEEN = [
    ("Cannot contact any KDC for realm 'SMBL.TEST' -1765328228", "kdc_unreachable",
     NtStatus.NO_LOGON_SERVERS),
    ("Minor (2529638949): Clock skew too great, Context: Processing security token",
     "clock_skew", NtStatus.TIME_DIFFERENCE_AT_DC),
    ("Preauthentication failed -1765328360", "wrong_password", NtStatus.WRONG_PASSWORD),
    ("Minor (2529638919): Server not found in Kerberos database", "unknown_principal",
     NtStatus.LOGON_FAILURE),
    ("Client 'mallory@SMBL.TEST' not found in Kerberos database -1765328378", "unknown_user",
     NtStatus.NO_SUCH_USER),
    ("Minor (2529638944): Ticket expired", "expired", NtStatus.LOGON_FAILURE),
    ("Password has expired -1765328361", "password_expired", NtStatus.PASSWORD_EXPIRED),
    ("No Kerberos credentials available (default cache: FILE:/tmp/x)", "no_credentials",
     NtStatus.NO_SUCH_LOGON_SESSION),
    ("Something else entirely", "failed", NtStatus.LOGON_FAILURE),
]


@pytest.mark.parametrize("text,cause,status", SEEN, ids=[c for _, c, _ in SEEN])
def test_failures_are_named(text, cause, status):
    failure = _describe(RuntimeError(text), "srv.example", "kerberos", None)
    assert (failure.cause, failure.status) == (cause, status)
    assert text.split(" -")[0].split(",")[0][-20:] in str(failure)


def test_password_never_in_the_message():
    failure = _describe(RuntimeError("bad things with S3cret-pw inside"), "h", "kerberos",
                        "S3cret-pw")
    assert "S3cret-pw" not in str(failure)


def test_spn_is_named():
    failure = _describe(RuntimeError("Server not found in Kerberos database"), "fs1.corp",
                        "kerberos", None)
    assert "cifs/fs1.corp" in str(failure)


def test_kerberos_principals():
    assert _kerberos_principal(None, None) is None
    assert _kerberos_principal("alice", None) == "alice"
    assert _kerberos_principal("SMBL\\alice", "SMBL") == "alice"
    assert _kerberos_principal("alice", "smbl.test") == "alice@SMBL.TEST"
    assert _kerberos_principal("alice@OTHER.REALM", "smbl.test") == "alice@OTHER.REALM"


def test_bad_auth_protocol_and_password_without_user():
    with pytest.raises(ValueError):
        Authenticator("u", "p", "h", protocol="basic")
    with pytest.raises(ValueError):
        Authenticator(None, "p", "h", protocol="kerberos")
