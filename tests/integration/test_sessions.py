"""Sessions and security against the real Samba: SESSION_SETUP on every
dialect, signing, every cipher and signing algorithm, clear errors, and
tampered responses rejected."""
from __future__ import annotations

import logging

import pytest

import smblayer
from smblayer import (Dialect, DialectRange, ReconnectPolicy, SmbAuthError, SmbProtocolError,
                      TimeoutPolicy, fs)
from smblayer.proto import smb2
from smblayer.security import AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM
from smblayer.task import Reply, SmbTask
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# Interop: every test of this module runs on Samba 4.17 and on Samba 4.22.
@pytest.fixture(scope="module", params=SERVERS)
def samba(request, samba):
    return on_both(request, samba, "samba_422")


ALL_DIALECTS = [Dialect.SMB1, Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0,
                Dialect.SMB3_0_2, Dialect.SMB3_1_1]
SMB3 = [Dialect.SMB3_0, Dialect.SMB3_0_2, Dialect.SMB3_1_1]


def connect(samba, share="share", dialect=Dialect.SMB3_1_1, **options):
    return fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                      dialects=DialectRange(dialect, dialect), **options)


@pytest.mark.parametrize("dialect", ALL_DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("sign", [False, True], ids=["plain", "signed"])
def test_session_and_tree_on_every_dialect(samba, dialect, sign):
    with connect(samba, dialect=dialect, require_signing=sign) as tree:
        session = tree.session
        assert tree.client.dialect is dialect
        assert session.session_id and tree.tree_id
        assert session.signing is sign
        if sign:
            assert session.signer is not None
        # A second tree on the same session, then traffic on the connection.
        tree.session.tree_connect("readonly").disconnect()
        for _ in range(5):
            tree.client.echo()
        if dialect in (Dialect.SMB3_0, Dialect.SMB3_0_2):
            assert session.negotiate_validated


@pytest.mark.parametrize("dialect", [Dialect.SMB3_0, Dialect.SMB3_0_2], ids=lambda d: d.name)
def test_encrypted_share_smb30(samba, dialect):
    with connect(samba, "encrypted", dialect=dialect, encrypt=True) as tree:
        assert tree.session.cipher is not None
        assert tree.client.negotiated.supports_encryption
        tree.session.tree_connect("share").disconnect()


@pytest.mark.parametrize("cipher", [AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM],
                         ids=["aes128ccm", "aes128gcm", "aes256ccm", "aes256gcm"])
@pytest.mark.parametrize("signing", [0, 1, 2], ids=["hmac", "cmac", "gmac"])
def test_every_cipher_and_signing_algorithm_311(samba, cipher, signing):
    with connect(samba, "encrypted", encrypt=True, require_signing=True,
                 ciphers=(cipher,), signing_algorithms=(signing,)) as tree:
        n = tree.client.negotiated
        assert (n.cipher_id, n.signing_algorithm) == (cipher, signing)
        for _ in range(3):
            tree.session.tree_connect("share").disconnect()


def test_encrypted_share_is_encrypted_without_asking(samba):
    with connect(samba, "encrypted") as tree:
        assert tree.encrypt          # the share said SMB2_SHAREFLAG_ENCRYPT_DATA
        tree.session.tree_connect("readonly").disconnect()


def test_wrong_password_is_a_clear_auth_error_without_the_password(samba, caplog):
    secret = "Wr0ng-Secret-Pw!"
    caplog.set_level(logging.DEBUG, logger="smblayer")
    with pytest.raises(SmbAuthError) as info:
        fs.connect(samba.host, "share", samba.username, secret, port=samba.port)
    err = info.value
    assert err.status == smblayer.NtStatus.LOGON_FAILURE
    assert "STATUS_LOGON_FAILURE" in str(err)
    assert secret not in str(err) and secret not in repr(err)
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_unknown_share(samba):
    with pytest.raises(FileNotFoundError) as info:
        connect(samba, "no-such-share")
    assert info.value.status == smblayer.NtStatus.BAD_NETWORK_NAME


def test_unencrypted_response_on_encrypted_session_is_rejected(samba):
    with connect(samba, "encrypted", encrypt=True) as tree:
        session = tree.session
        task = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), security=session)
        header = smb2.pack_header(smb2.Command.ECHO, 7, flags=smb2.Flags.SERVER_TO_REDIR,
                                  session_id=session.session_id)
        forged = Reply(smb2.parse_header, bytes(header) + b"\x04\x00\x00\x00", 64, 0,
                       encrypted=False)
        with pytest.raises(SmbProtocolError, match="unencrypted"):
            session.verify(task, forged)


def test_bad_signature_is_rejected(samba):
    with connect(samba, require_signing=True) as tree:
        session = tree.session
        task = SmbTask(smb2.Command.ECHO, (smb2.ECHO_BODY,), security=session)
        header = smb2.pack_header(smb2.Command.ECHO, 9, flags=smb2.Flags.SERVER_TO_REDIR,
                                  session_id=session.session_id)
        message = bytearray(bytes(header) + b"\x04\x00\x00\x00")
        session.signer.sign(message)
        good = Reply(smb2.parse_header, bytes(message), 64, 0)
        session.verify(task, good)                       # a correct signature passes
        message[66] ^= 0x01
        with pytest.raises(SmbProtocolError, match="signature"):
            session.verify(task, Reply(smb2.parse_header, bytes(message), 64, 0))


@pytest.mark.parametrize("mode", ["signed", "encrypted"])
def test_tampered_response_through_proxy_is_rejected(samba, mode):
    """A proxy flips one bit in the server's next reply: the signed or
    encrypted session refuses it instead of returning the data."""
    with FaultProxy(samba.host, samba.port) as proxy:
        share, options = ("share", {"require_signing": True}) if mode == "signed" else \
            ("encrypted", {"encrypt": True})
        tree = fs.connect(samba.host, share, samba.username, samba.password, port=proxy.port,
                          timeouts=TimeoutPolicy(timeout=5.0, connect_timeout=5.0),
                          reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
                          **options)
        try:
            tree.session.tree_connect("readonly").disconnect()
            # Byte 4 + 64 + 2 is inside the TREE_CONNECT response body; for a
            # transform frame it is inside the ciphertext.
            proxy.corrupt_next("s2c", offset=4 + 70, xor=0x01)
            with pytest.raises(SmbProtocolError):
                tree.session.tree_connect("readonly")
        finally:
            tree.client.close()


@pytest.mark.parametrize("cipher", [AES_128_GCM, AES_128_CCM], ids=["gcm-streamed", "ccm"])
def test_tampered_large_encrypted_read_is_rejected(samba, cipher):
    """A large encrypted READ reply is decrypted straight into the caller's
    buffer (GCM); a flipped bit in it must still fail the read."""
    import os
    data = os.urandom(3 << 20)
    (samba.share_path("encrypted") / "tamper.bin").write_bytes(data)
    with FaultProxy(samba.host, samba.port) as proxy:
        tree = fs.connect(samba.host, "encrypted", samba.username, samba.password,
                          port=proxy.port, encrypt=True, ciphers=(cipher,),
                          timeouts=TimeoutPolicy(timeout=5.0, connect_timeout=5.0),
                          reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2))
        try:
            buf = bytearray(len(data))
            with tree.open("tamper.bin", "rb", buffering=0) as f:
                assert f.readinto(buf) == len(data) and buf == data     # clean read
            with tree.open("tamper.bin", "rb", buffering=0) as f:
                proxy.corrupt_next("s2c", offset=4 + 52 + 80 + 5000, xor=0x04)
                with pytest.raises(SmbProtocolError):
                    f.readinto(bytearray(len(data)))
        finally:
            tree.client.close()


def test_two_signed_smb1_sessions_share_the_connection_signing(samba_factory):
    """SMB1 signs per connection: a second session on a signing connection
    keeps the connection's key and sequence numbers in step."""
    from smblayer.fs.session import Session
    server = samba_factory(extra_global={"server signing": "mandatory"})
    client = smblayer.get_client(server.host, server.port,
                                 dialects=DialectRange(Dialect.SMB1, Dialect.SMB1))
    try:
        first = Session(client, server.username, server.password, require_signing=True)
        tree1 = first.tree_connect("share")
        second = Session(client, server.username, server.password, require_signing=True)
        tree2 = second.tree_connect("share")
        for i in range(3):
            tree1.write_bytes("shared.txt", b"%d" % i * 100)
            assert tree2.read_bytes("shared.txt") == b"%d" % i * 100
            client.echo()
        second.logoff()
        assert tree1.read_bytes("shared.txt") == b"2" * 100
        first.logoff()
    finally:
        client.close()


@pytest.fixture(scope="module")
def guest_samba():
    """A server that maps unknown users to guest and lets guests (and null
    sessions) read the share "public"; the guest account must be able to
    reach the files, so they live in a world-readable temp dir."""
    import pathlib
    import shutil
    import tempfile
    from smblayer.testing.pytest_plugin import require_smbd
    from smblayer.testing.samba import SambaServer
    require_smbd()
    public = pathlib.Path(tempfile.mkdtemp(prefix="smbl-public-"))
    try:
        public.chmod(0o755)
        (public / "hello.txt").write_bytes(b"hi")
        (public / "hello.txt").chmod(0o644)
        with SambaServer(extra_global={"map to guest": "Bad User", "restrict anonymous": "0"},
                         extra_shares={"public": {"path": str(public), "guest ok": "yes",
                                                  "read only": "yes"}}) as server:
            yield server
    finally:
        shutil.rmtree(public, ignore_errors=True)


@pytest.mark.parametrize("dialect", ALL_DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("who", ["guest", "anonymous"])
def test_guest_and_anonymous_sessions_where_allowed(guest_samba, dialect, who):
    user, password = ("no-such-user", "whatever") if who == "guest" else (None, None)
    with fs.connect(guest_samba.host, "public", user, password, port=guest_samba.port,
                    dialects=DialectRange(dialect, dialect)) as tree:
        assert tree.session.is_guest and tree.session.signer is None
        assert tree.read_bytes("hello.txt") == b"hi"
    with pytest.raises(SmbAuthError):
        fs.connect(guest_samba.host, "public", user, password, port=guest_samba.port,
                   dialects=DialectRange(dialect, dialect), require_signing=True)


def test_a_session_set_up_while_a_new_connection_is_installed_hashes_its_negotiate(
        samba, monkeypatch):
    """Defect: a SESSION_SETUP exchange took the connection its legs must go
    on from the connect worker's numbering (``client.generation``, counted
    when a new connection is negotiated) but the NEGOTIATE its 3.1.1
    preauth hash starts from from the client's current connection, the
    lost one until the new one is installed.  Begun in between, its legs
    went on the new connection, passed the one-connection check, and the
    keys came from the wrong hash: "bad signature on the server's final
    SESSION_SETUP response".  Now both come from one connection (the lost
    one: the exchange starts over on the new one)."""
    import socket
    import threading

    from smblayer.fs.session import Session
    from smblayer.transport.connect import ConnectWorker

    installing, release, leg_waits = threading.Event(), threading.Event(), threading.Event()
    armed = []
    real_install = ConnectWorker._install

    def install(self, conn):
        if armed:
            armed.pop()
            installing.set()                     # negotiated and numbered, not installed
            release.wait(10)
        return real_install(self, conn)

    monkeypatch.setattr(ConnectWorker, "_install", install)
    with connect(samba, reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2)) as tree:
        client = tree.session.client
        real_run_task = client.run_task

        def run_task(task, **kwargs):
            if task.command == smb2.Command.SESSION_SETUP:
                leg_waits.set()                  # the exchange took its connection
            return real_run_task(task, **kwargs)

        client.run_task = run_task
        armed.append(client)
        client.connection.sock.shutdown(socket.SHUT_RDWR)     # lost: a reconnect
        result = {}
        try:
            assert installing.wait(10)
            assert client.generation != client.connection.generation

            def set_up():
                try:
                    result["session"] = Session(client, samba.username, samba.password)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    result["error"] = exc

            thread = threading.Thread(target=set_up, daemon=True)
            thread.start()
            assert leg_waits.wait(10)
        finally:
            release.set()
        thread.join(30)
        assert "error" not in result, result
        session = result["session"]
        try:
            other = session.tree_connect("share")
            assert other.listdir("") is not None
        finally:
            session.logoff()
        assert tree.listdir("") is not None
