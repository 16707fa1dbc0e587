"""Sessions that must not go on (issue 18): one that has to sign or
encrypt but has no session key fails closed, and a guest session given in
answer to credentials is refused with ``allow_guest=False``.  Against real
Samba servers configured for it (signing mandatory; bad users and
passwords mapped to guest)."""
from __future__ import annotations

import logging

import pytest

from smblayer import Dialect, DialectRange, SmbAuthError, fs
from smblayer.fs import session as session_module
from smblayer.testing.guest import guest_server
from smblayer.testing.pytest_plugin import require_smbd
from smblayer.testing.samba import SambaServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_DIALECTS = [Dialect.SMB1, Dialect.SMB2_1, Dialect.SMB3_1_1]


@pytest.fixture(scope="module")
def mandatory_signing():
    """A server with ``server signing = mandatory``."""
    require_smbd()
    with SambaServer(extra_global={"server signing": "mandatory"}) as server:
        yield server


class _KeyLess:
    """A real authenticator whose session key cannot be had: reading it
    raises (``broken="raise"``) or gives nothing (``broken="empty"``)."""

    def __init__(self, inner, broken: str):
        self._inner, self._broken = inner, broken

    def __getattr__(self, name):
        return getattr(self._inner, name)

    @property
    def session_key(self) -> bytes:
        if self._broken == "raise":
            raise RuntimeError("no key for you: s3cr3t-material")
        return b""


@pytest.fixture(params=["raise", "empty"])
def keyless(request, monkeypatch):
    real = session_module.authenticator

    def make(*args, **kwargs):
        return _KeyLess(real(*args, **kwargs), request.param)

    monkeypatch.setattr(session_module, "authenticator", make)
    return request.param


def connect(server, dialect, **options):
    return fs.connect(server.host, "share", server.username, server.password,
                      port=server.port, dialects=DialectRange(dialect, dialect), **options)


def _refused(exc_info, server, caplog) -> None:
    exc = exc_info.value
    assert exc.cause == "no_session_key"
    assert "session key" in str(exc)
    assert "s3cr3t" not in str(exc) and "s3cr3t" not in caplog.text
    assert server.password not in str(exc) and server.password not in caplog.text


@pytest.mark.parametrize("dialect", [Dialect.SMB3_0, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_no_key_encrypt_fails_closed(samba, keyless, dialect, caplog):
    """encrypt=True without a key: no request may go out in clear."""
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as exc:
        connect(samba, dialect, encrypt=True)
    _refused(exc, samba, caplog)


@pytest.mark.parametrize("dialect", KEY_DIALECTS, ids=lambda d: d.name)
def test_no_key_client_requires_signing(samba, keyless, dialect, caplog):
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as exc:
        connect(samba, dialect, require_signing=True)
    _refused(exc, samba, caplog)


@pytest.mark.parametrize("dialect", KEY_DIALECTS, ids=lambda d: d.name)
def test_no_key_server_requires_signing(mandatory_signing, keyless, dialect, caplog):
    """The server demands signing (``server signing = mandatory``); the
    caller asked nothing."""
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as exc:
        connect(mandatory_signing, dialect)
    _refused(exc, mandatory_signing, caplog)


def test_no_key_share_that_requires_encryption(samba, keyless, caplog):
    """A 3.0 session without a key may go on unsigned, but a share that
    requires encryption is refused at TREE_CONNECT: nothing goes out on it
    in clear."""
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as exc:
        fs.connect(samba.host, "encrypted", samba.username, samba.password, port=samba.port,
                   dialects=DialectRange(Dialect.SMB3_0, Dialect.SMB3_0))
    _refused(exc, samba, caplog)
    assert exc.value.command == "TREE_CONNECT" and exc.value.path == "encrypted"


@pytest.fixture(scope="module")
def encrypting_server():
    """A server that encrypts every session (``server smb encrypt =
    required``: SESSION_FLAG_ENCRYPT_DATA in SESSION_SETUP)."""
    require_smbd()
    with SambaServer(min_protocol="SMB3", max_protocol="SMB3_11",
                     extra_global={"server smb encrypt": "required"}) as server:
        yield server


def test_no_key_session_flag_encrypt_data(encrypting_server, keyless, caplog):
    """SESSION_FLAG_ENCRYPT_DATA counts as 'must encrypt' even when the
    caller did not ask for encryption.  (Samba 4.17 then refuses 3.0 and
    3.0.2 at NEGOTIATE, smbclient included.)"""
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as exc:
        connect(encrypting_server, Dialect.SMB3_1_1)
    _refused(exc, encrypting_server, caplog)


def test_session_flag_encrypt_data_with_a_key(encrypting_server):
    with connect(encrypting_server, Dialect.SMB3_1_1) as tree:
        assert tree.session.encrypt and tree.session.cipher is not None
        assert tree.listdir("") is not None


def test_no_key_without_protection_goes_on_with_a_warning(samba, keyless, caplog):
    """Nothing demands signing (2.1, signing not required): the session is
    used as before, but the missing key is logged (without a secret)."""
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with connect(samba, Dialect.SMB2_1) as tree:
        assert tree.session.signer is None
        tree.write_bytes("keyless.txt", b"x")
        tree.remove("keyless.txt")
    assert "no session key" in caplog.text
    assert "s3cr3t" not in caplog.text and samba.password not in caplog.text


# -- guest sessions given for credentials -----------------------------------------

ALL_DIALECTS = [Dialect.SMB1, Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0,
                Dialect.SMB3_0_2, Dialect.SMB3_1_1]


@pytest.fixture(scope="module")
def guest_mapping():
    """A server that answers bad passwords (and unknown users) with a guest
    session (``map to guest = Bad Password``); guests may read "public"."""
    require_smbd()
    with guest_server("Bad Password") as server:
        yield server


def connect_public(server, dialect, username, password, **options):
    return fs.connect(server.host, "public", username, password, port=server.port,
                      dialects=DialectRange(dialect, dialect), **options)


@pytest.mark.parametrize("dialect", ALL_DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_allow_guest_false_refuses_a_guest_session(guest_mapping, dialect, who):
    user, password = ((guest_mapping.username, "not-the-password") if who == "wrong-password"
                      else ("no-such-user", "whatever"))
    # Today's default: the server's guest session is used, as smbclient does.
    with connect_public(guest_mapping, dialect, user, password) as tree:
        assert tree.session.is_guest
        assert tree.read_bytes("hello.txt") == b"hi"
    with pytest.raises(SmbAuthError) as exc:
        connect_public(guest_mapping, dialect, user, password, allow_guest=False)
    assert exc.value.cause == "guest"
    assert "guest" in str(exc.value) and user in str(exc.value)
    assert password not in str(exc.value)


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_allow_guest_false_keeps_real_and_anonymous_logons(guest_mapping, dialect):
    with connect_public(guest_mapping, dialect, guest_mapping.username,
                        guest_mapping.password, allow_guest=False) as tree:
        assert not tree.session.is_guest
        assert tree.read_bytes("hello.txt") == b"hi"
    # No credentials asked for nothing better than anonymous: not refused.
    with connect_public(guest_mapping, dialect, None, None, allow_guest=False) as tree:
        assert tree.session.is_guest
