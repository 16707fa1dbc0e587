"""Kerberos against a real Samba AD DC (the ``samba_ad_dc`` fixture): from the
ticket cache and from a password on every dialect, signing and encryption
with Kerberos keys (checked on the server with smbstatus and its audit log),
no NTLM fallback, failures named and bounded, sessions re-authenticated in
place."""
from __future__ import annotations

import logging
import os
import struct
import threading
import time

import pytest

from smblayer import Dialect, DialectRange, SmbAuthError, fs
from smblayer.proto.status import NtStatus
from smblayer.security import AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALL_DIALECTS = [Dialect.SMB1, Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0,
                Dialect.SMB3_0_2, Dialect.SMB3_1_1]
# Every failure must come back quickly: nothing here may wait for a timeout.
FAIL_BOUND = 10.0


@pytest.fixture
def dc(samba_ad_dc, tmp_path):
    """The DC with KRB5_CONFIG/KRB5CCNAME set for this test (a fresh TGT for
    alice in the default cache)."""
    with samba_ad_dc.environ():
        samba_ad_dc.kinit()
        yield samba_ad_dc


def connect(dc, share="share", dialect=Dialect.SMB3_1_1, **kwargs):
    kwargs.setdefault("auth_protocol", "kerberos")
    return fs.connect(dc.host, share, port=dc.port, dialects=DialectRange(dialect, dialect),
                      **kwargs)


def client_port(tree) -> int:
    return tree.client._conn.sock.getsockname()[1]


def assert_kerberos_logon(dc, tree):
    assert tree.session.mechanism == "kerberos"
    mech = dc.logon_mechanism(client_port(tree))
    assert mech is not None and mech.endswith(",krb5"), dc.auth_log()[-3:]


@pytest.mark.parametrize("dialect", ALL_DIALECTS, ids=lambda d: d.name)
def test_kerberos_from_ticket_cache_on_every_dialect(dc, dialect):
    # No username, no password: the cache's default principal (alice).
    with connect(dc, dialect=dialect) as tree:
        assert tree.client.dialect is dialect
        assert_kerberos_logon(dc, tree)
        assert tree.session.signing          # a DC requires signing
        tree.write_bytes(f"cache-{dialect.name}.txt", b"ticket from the cache")
        assert tree.read_bytes(f"cache-{dialect.name}.txt") == b"ticket from the cache"


@pytest.mark.parametrize("dialect", [Dialect.SMB1, Dialect.SMB2_1, Dialect.SMB3_1_1],
                         ids=lambda d: d.name)
def test_kerberos_from_password_without_kinit(dc, tmp_path, dialect):
    empty = f"FILE:{tmp_path}/no-such-cache"
    with dc.environ(KRB5CCNAME=empty):
        with connect(dc, dialect=dialect, username=dc.username, password=dc.password) as tree:
            assert_kerberos_logon(dc, tree)
            tree.listdir("")
    assert not os.path.exists(tmp_path / "no-such-cache")   # the TGT stayed in memory


def test_negotiate_uses_kerberos_when_a_ticket_is_there(dc):
    with connect(dc, auth_protocol="negotiate", username=dc.username) as tree:
        assert_kerberos_logon(dc, tree)


@pytest.mark.parametrize("dialect,cipher", [
    (Dialect.SMB3_0_2, AES_128_CCM),              # 3.0.2 has AES-128-CCM only
    (Dialect.SMB3_1_1, AES_128_CCM), (Dialect.SMB3_1_1, AES_128_GCM),
    (Dialect.SMB3_1_1, AES_256_CCM), (Dialect.SMB3_1_1, AES_256_GCM)],
    ids=["302-aes128ccm", "311-aes128ccm", "311-aes128gcm", "311-aes256ccm", "311-aes256gcm"])
def test_signing_and_encryption_with_kerberos_keys(dc, dialect, cipher):
    with connect(dc, dialect=dialect, encrypt=True, require_signing=True,
                 ciphers=(cipher,)) as tree:
        assert_kerberos_logon(dc, tree)
        data = os.urandom(200_000)
        tree.write_bytes("enc.bin", data)
        assert tree.read_bytes("enc.bin") == data
        status = dc.session_status(client_port(tree))
        assert status is not None
        assert status["session_dialect"] == {Dialect.SMB3_0_2: "SMB3_02",
                                             Dialect.SMB3_1_1: "SMB3_11"}[dialect]
        expected = {AES_128_CCM: "AES-128-CCM", AES_128_GCM: "AES-128-GCM",
                    AES_256_CCM: "AES-256-CCM", AES_256_GCM: "AES-256-GCM"}[cipher]
        assert status["encryption"]["cipher"] == expected
        assert status["encryption"]["degree"] in ("full", "partial")
    # The 32-byte Kerberos session key (aes256-cts) was used whole for AES-256.


@pytest.mark.parametrize("dialect", [Dialect.SMB3_0_2, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_signing_with_kerberos_keys(dc, dialect):
    with connect(dc, dialect=dialect, require_signing=True) as tree:
        assert_kerberos_logon(dc, tree)
        tree.write_bytes("signed.bin", b"x" * 70_000)
        status = dc.session_status(client_port(tree))
        assert status["signing"]["degree"] == "full"
        assert status["signing"]["cipher"] in ("AES-128-CMAC", "AES-128-GMAC")
        assert status["encryption"]["cipher"] == "-"


def test_kerberos_never_falls_back_to_ntlm(dc, samba):
    # The standalone server has no keytab: Kerberos must fail there, and must
    # not quietly become NTLM (which would succeed with these credentials).
    t0 = time.monotonic()
    with pytest.raises(SmbAuthError):      # a ticket for cifs/127.0.0.1 from the cache
        fs.connect(samba.host, "share", port=samba.port, auth_protocol="kerberos")
    with pytest.raises(SmbAuthError):      # no such user in the realm
        fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                   auth_protocol="kerberos")
    assert time.monotonic() - t0 < FAIL_BOUND
    # Same server, same environment, negotiate: NTLM works.
    with fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port) as t:
        assert t.session.mechanism == "ntlm"


def _bad(dc, **kwargs) -> SmbAuthError:
    t0 = time.monotonic()
    with pytest.raises(SmbAuthError) as info:
        connect(dc, **kwargs)
    assert time.monotonic() - t0 < FAIL_BOUND
    return info.value


def test_wrong_password_named_and_never_shown(dc, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="smblayer")
    secret = "Wr0ng-Kerb-Secret!"
    with dc.environ(KRB5CCNAME=f"FILE:{tmp_path}/empty"):
        err = _bad(dc, username=dc.username, password=secret)
    assert err.cause == "wrong_password" and err.status == NtStatus.WRONG_PASSWORD
    assert (err.host, err.port, err.command) == (dc.host, dc.port, "SESSION_SETUP")
    assert "wrong password" in str(err)
    assert secret not in str(err) and secret not in caplog.text
    assert dc.password not in caplog.text


def test_unknown_user(dc, tmp_path):
    with dc.environ(KRB5CCNAME=f"FILE:{tmp_path}/empty"):
        err = _bad(dc, username="mallory", password="whatever-1")
    assert err.cause == "unknown_user"


def test_kdc_unreachable(dc, tmp_path):
    dead = socket_port_closed()
    conf = dc.write_krb5_conf(str(tmp_path / "krb5.conf"), kdc=f"127.0.0.1:{dead}")
    with dc.environ(KRB5_CONFIG=conf, KRB5CCNAME=f"FILE:{tmp_path}/empty"):
        err = _bad(dc, username=dc.username, password=dc.password)
    assert err.cause == "kdc_unreachable" and err.status == NtStatus.NO_LOGON_SERVERS
    # With a TGT in the cache the service ticket still needs the KDC.
    with dc.environ(KRB5_CONFIG=conf):
        err = _bad(dc)
    assert err.cause == "kdc_unreachable"
    assert "unreachable" in str(err)


def test_unknown_service_principal(dc):
    # "localhost" reaches the same server, but cifs/localhost is no SPN.
    t0 = time.monotonic()
    with pytest.raises(SmbAuthError) as info:
        fs.connect("localhost", "share", port=dc.port, auth_protocol="kerberos")
    assert time.monotonic() - t0 < FAIL_BOUND
    assert info.value.cause == "unknown_principal"
    assert "cifs/localhost" in str(info.value)


def _skewed_ccache(dc, tmp_path, offset: int) -> str:
    """A copy of the default cache whose header says the KDC's clock is
    ``offset`` seconds ahead (MIT's kdc_timesync DeltaTime tag): the client
    then lives ``offset`` seconds in the future."""
    with open(dc.ccache[len("FILE:"):], "rb") as f:
        data = f.read()
    assert data[:2] == b"\x05\x04"
    header_len = struct.unpack(">H", data[2:4])[0]
    path = tmp_path / f"skew{offset}"
    path.write_bytes(b"\x05\x04" + struct.pack(">HHHii", 12, 1, 8, offset, 0)
                     + data[4 + header_len:])
    return f"FILE:{path}"


def test_clock_skew(dc, tmp_path):
    with dc.environ(KRB5CCNAME=_skewed_ccache(dc, tmp_path, 3600)):
        err = _bad(dc)
    assert err.cause == "clock_skew" and err.status == NtStatus.TIME_DIFFERENCE_AT_DC


def test_expired_ticket_cache(dc, tmp_path):
    # A day later every ticket of the cache (10 h) has expired.
    with dc.environ(KRB5CCNAME=_skewed_ccache(dc, tmp_path, 86400)):
        err = _bad(dc)
    assert err.cause == "expired" and "kinit" in str(err)


def test_no_ticket_cache(dc, tmp_path):
    with dc.environ(KRB5CCNAME=f"FILE:{tmp_path}/none"):
        err = _bad(dc)
    assert err.cause == "no_credentials"


def test_reauthenticate_in_place(dc, samba):
    """The re-authentication used on STATUS_NETWORK_SESSION_EXPIRED, run
    directly: same SessionId, keys kept, traffic goes on (Kerberos, and NTLM
    on the standalone server)."""
    for tree in (connect(dc, encrypt=True),
                 fs.connect(samba.host, "share", samba.username, samba.password,
                            port=samba.port, require_signing=True)):
        with tree:
            session = tree.session
            sid, signer = session.session_id, session.signer
            tree.write_bytes("reauth.txt", b"before")
            session.reauthenticate()
            assert session.session_id == sid and session.signer is signer
            assert tree.read_bytes("reauth.txt") == b"before"
            tree.write_bytes("reauth.txt", b"after")


def socket_port_closed() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- expiring sessions --------------------------------------------------------------

# Samba's KDC refuses service tickets for a TGT with 120 s or less left, so
# the shortest session lifetime a client can ask for is a little over that.
LIFETIME = 135


@pytest.mark.timeout(LIFETIME + 120)
def test_expired_session_is_renewed_transparently(dc, tmp_path):
    """A session whose ticket expired gets STATUS_NETWORK_SESSION_EXPIRED on
    its next request; the layer re-authenticates in place (new ticket: from
    the password, or from a cache renewed meanwhile) and reissues the
    request.  Single requests, compounds and async I/O all go through."""
    conf = tmp_path / "krb5.conf"
    dc.write_krb5_conf(str(conf))
    with open(conf) as f:
        text = f.read()
    conf.write_text(text.replace("[libdefaults]\n", f"[libdefaults]\n\tticket_lifetime = "
                                                    f"{LIFETIME}s\n", 1))
    cache = f"FILE:{tmp_path}/short"
    with dc.environ(KRB5_CONFIG=str(conf), KRB5CCNAME=cache):
        dc.kinit(ccache=cache, lifetime=f"{LIFETIME}s")
        started = time.monotonic()
        new = Dialect.SMB3_1_1
        compound = connect(dc, dialect=new, username=dc.username, password=dc.password,
                           encrypt=True)
        single = connect(dc, dialect=new)                         # from the cache
        pipelined = connect(dc, dialect=new, username=dc.username, password=dc.password)
        smb2 = connect(dc, dialect=Dialect.SMB2_0_2)
        smb1 = connect(dc, dialect=Dialect.SMB1, username=dc.username, password=dc.password)
        trees = (compound, single, pipelined, smb2, smb1)
        try:
            for tree in trees:
                tree.write_bytes("exp.txt", b"one")
            sids = [t.session.session_id for t in trees]
            connected = time.monotonic()        # the last ticket was got before this
            # A new TGT in the cache before the old one runs out.
            time.sleep(max(0.0, LIFETIME - 20 - (time.monotonic() - started)))
            dc.kinit(ccache=cache)
            time.sleep(max(0.0, LIFETIME + 3 - (time.monotonic() - connected)))
            # The sessions have expired now: the first call on each meets
            # STATUS_NETWORK_SESSION_EXPIRED and must not notice.
            assert compound.read_bytes("exp.txt") == b"one"           # CREATE+READ+CLOSE
            assert "exp.txt" in single.listdir("")                    # single requests
            with pipelined.open("big.bin", "wb") as f:                # async writes
                f.write(b"z" * 300_000)
            assert pipelined.stat("big.bin").st_size == 300_000
            assert smb2.stat("exp.txt").st_size == 3
            assert smb1.read_bytes("exp.txt") == b"one"
            assert [t.session.session_id for t in trees] == sids
            # Samba expires SMB2+ sessions only: the SMB1 one just went on.
            renewed = [t.session._renewed_at > started for t in trees]
            assert renewed == [True, True, True, True, False], renewed
        finally:
            for tree in trees:
                tree.close()


@pytest.mark.parametrize("dialect", [Dialect.SMB2_0_2, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_mutual_authentication_is_checked(dc, dialect):
    """A server reply whose AP-REP does not verify (one byte changed on the
    way) fails the logon: the server has not proved who it is."""
    import smblayer
    from smblayer.testing.proxy import FaultProxy
    with FaultProxy(dc.host, dc.port) as proxy:
        client = smblayer.get_client(dc.host, proxy.port,
                                     dialects=DialectRange(dialect, dialect))
        try:
            # The next server-to-client bytes are the SESSION_SETUP response:
            # length prefix, SMB2 header, fixed body, then the token.
            proxy.corrupt_next("s2c", offset=4 + 64 + 8 + 60, xor=0x55)
            with pytest.raises(SmbAuthError) as info:
                fs.Session(client, auth_protocol="kerberos")
        finally:
            client.release()
    assert info.value.cause == "mutual_auth"
    assert info.value.status == NtStatus.MUTUAL_AUTHENTICATION_FAILED


def test_standalone_smbd_logons_while_the_dc_runs(samba_ad_dc, samba_factory):
    """A DC's winbindd on the machine's default socket made every standalone
    smbd started after it fail all logons; the standalone fixtures run with
    _NO_WINBINDD=1 (and the DC hides its winbindd where it can, see
    ``samba_ad_dc.isolated``; SMBLAYER_DC_ISOLATE=0 turns that off)."""
    assert samba_ad_dc.running
    server = samba_factory()
    with fs.connect(server.host, "share", server.username, server.password,
                    port=server.port, auth_protocol="ntlm") as tree:
        tree.write_bytes("with-dc.txt", b"ok")
