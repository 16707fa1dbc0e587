"""The protocol audit's security findings (issue 12, items 1, 2, 3), shown on
the wire: a FaultProxy between smblayer and the real Samba tampers with or
captures whole frames (``FaultProxy.rewrite``)."""
from __future__ import annotations

import struct
import threading
from typing import List

import pytest

from smblayer import Dialect, DialectRange, NtStatus, ReconnectPolicy, SmbAuthError, TimeoutPolicy, fs
from smblayer.fs import session as session_module
from smblayer.proto import smb2
from smblayer.security import TransformCipher
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(120)]

SMB2_MAGIC = b"\xfeSMB"
TRANSFORM_MAGIC = b"\xfdSMB"
FLAGS_SIGNED = 0x00000008
FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204
_HEADER = struct.Struct("<4sHHIHHIIQ")     # up to MessageId


def _header(message: bytes, offset: int = 0):
    """(status, command, flags, next_command) of the SMB2 header at ``offset``."""
    _magic, _size, _charge, status, command, _credits, flags, nxt, _mid = \
        _HEADER.unpack_from(message, offset)
    return status, command, flags, nxt


def _messages(plain: bytes):
    """Offsets of each SMB2 message in a (possibly compound) plain frame."""
    offset = 0
    while True:
        yield offset
        nxt = _header(plain, offset)[3]
        if not nxt:
            return
        offset += nxt


def _options(**extra):
    return dict(timeouts=TimeoutPolicy(timeout=5.0, connect_timeout=5.0),
                reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2), **extra)


class _StripFinalSetupSignature:
    """s2c rewrite: the final (STATUS_SUCCESS) SESSION_SETUP response loses
    SMB2_FLAGS_SIGNED and its signature, as a man in the middle would do
    (``corrupt=True``: keeps the flag, one bit of the signature flipped)."""

    def __init__(self, corrupt: bool = False) -> None:
        self.corrupt = corrupt
        self.stripped = 0

    def __call__(self, frame: bytes):
        if frame[:4] != SMB2_MAGIC:
            return None
        status, command, flags, _nxt = _header(frame)
        if command != smb2.Command.SESSION_SETUP or status != 0 or not flags & FLAGS_SIGNED:
            return None
        self.stripped += 1
        out = bytearray(frame)
        if self.corrupt:
            out[50] ^= 0x01
        else:
            struct.pack_into("<I", out, 16, flags & ~FLAGS_SIGNED)
            out[48:64] = bytes(16)
        return bytes(out)


class _Capture:
    """c2s rewrite that only records every frame the client sends."""

    def __init__(self) -> None:
        self.frames: List[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, frame: bytes):
        with self._lock:
            self.frames.append(frame)
        return None

    def snapshot(self) -> List[bytes]:
        with self._lock:
            return list(self.frames)


def _refused(target, proxy: FaultProxy, dialect: Dialect):
    """fs.connect through ``proxy`` must fail with SmbAuthError (a tree that
    came up anyway is closed, so a failing test leaks nothing)."""
    with pytest.raises(SmbAuthError) as info:
        fs.connect(target.host, "share", target.username, target.password, port=proxy.port,
                   dialects=DialectRange(dialect, dialect), **_options()).close()
    return info


@pytest.fixture
def signing_mandatory_samba(samba_factory):
    return samba_factory(extra_global={"server signing": "mandatory"})


# -- item 1: an unsigned final SESSION_SETUP response on 3.1.1 --------------------------

@pytest.mark.parametrize("server", ["signing-auto", "signing-mandatory"])
def test_311_refuses_an_unsigned_final_session_setup(samba, signing_mandatory_samba, server):
    """[MS-SMB2] 3.2.5.3.1: on 3.1.1 the client MUST fail when the final
    SESSION_SETUP response is not signed (smbclient: ACCESS_DENIED), whether
    or not the server requires signing."""
    target = samba if server == "signing-auto" else signing_mandatory_samba
    strip = _StripFinalSetupSignature()
    with FaultProxy(target.host, target.port) as proxy:
        proxy.rewrite("s2c", strip)
        info = _refused(target, proxy, Dialect.SMB3_1_1)
        assert strip.stripped == 1
        assert info.value.status == NtStatus.ACCESS_DENIED
        assert "not signed" in str(info.value)
        assert target.password not in str(info.value)
        assert proxy.rewrite_error is None


@pytest.mark.parametrize("dialect", [Dialect.SMB2_0_2, Dialect.SMB2_1, Dialect.SMB3_0,
                                     Dialect.SMB3_0_2], ids=lambda d: d.name)
def test_a_signing_session_refuses_an_unsigned_final_session_setup(signing_mandatory_samba,
                                                                    dialect):
    """Below 3.1.1 a session that requires signing refuses it too (the
    server signs it then, [MS-SMB2] 3.3.5.5.3)."""
    target = signing_mandatory_samba
    strip = _StripFinalSetupSignature()
    with FaultProxy(target.host, target.port) as proxy:
        proxy.rewrite("s2c", strip)
        info = _refused(target, proxy, dialect)
        assert strip.stripped == 1
        assert info.value.status == NtStatus.ACCESS_DENIED


@pytest.mark.parametrize("dialect", [Dialect.SMB2_1, Dialect.SMB3_1_1], ids=lambda d: d.name)
def test_a_bad_final_session_setup_signature_is_refused(signing_mandatory_samba, dialect):
    target = signing_mandatory_samba
    corrupt = _StripFinalSetupSignature(corrupt=True)
    with FaultProxy(target.host, target.port) as proxy:
        proxy.rewrite("s2c", corrupt)
        info = _refused(target, proxy, dialect)
        assert corrupt.stripped == 1
        assert info.value.status == NtStatus.ACCESS_DENIED
        assert "bad signature" in str(info.value)


def test_smb1_bad_final_session_setup_signature_is_refused(signing_mandatory_samba):
    """SMB1 signing starts with the final SESSION_SETUP_ANDX response
    (sequence 1): a flipped bit in its SecuritySignature refuses the session."""
    target = signing_mandatory_samba
    flipped = []

    def flip(frame: bytes):
        if frame[:4] != b"\xffSMB" or frame[4] != 0x73:       # SESSION_SETUP_ANDX
            return None
        if struct.unpack_from("<I", frame, 5)[0] != 0:          # the final one
            return None
        flipped.append(1)
        out = bytearray(frame)
        out[14] ^= 0x01                                         # SecuritySignature
        return bytes(out)

    with FaultProxy(target.host, target.port) as proxy:
        proxy.rewrite("s2c", flip)
        info = _refused(target, proxy, Dialect.SMB1)
    assert flipped == [1]
    assert info.value.status == NtStatus.ACCESS_DENIED


@pytest.mark.parametrize("server", ["signing-auto", "signing-mandatory"])
def test_the_untampered_path_through_the_same_proxy_works(samba, signing_mandatory_samba,
                                                          server):
    """The same rewrite hook, with a function that leaves the frames alone:
    the session comes up and the final response was signed."""
    target = samba if server == "signing-auto" else signing_mandatory_samba
    seen = []

    def watch(frame: bytes):
        if frame[:4] == SMB2_MAGIC:
            status, command, flags, _ = _header(frame)
            if command == smb2.Command.SESSION_SETUP and status == 0:
                seen.append(bool(flags & FLAGS_SIGNED))
        return None

    with FaultProxy(target.host, target.port) as proxy:
        proxy.rewrite("s2c", watch)
        with fs.connect(target.host, "share", target.username, target.password,
                        port=proxy.port, dialects=DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1),
                        **_options()) as tree:
            tree.write_bytes("audit-ok.txt", b"fine")
            assert tree.read_bytes("audit-ok.txt") == b"fine"
            tree.remove("audit-ok.txt")
        assert seen == [True]


# -- items 2 and 3: what goes out encrypted, and how ----------------------------------------

@pytest.fixture
def session_keys(monkeypatch):
    """The keys each session derives (the real derivation, observed)."""
    derived = []
    real = session_module.derive_session_keys

    def observe(*args, **kwargs):
        keys = real(*args, **kwargs)
        derived.append(keys)
        return keys

    monkeypatch.setattr(session_module, "derive_session_keys", observe)
    return derived


def _client_frames(capture: _Capture, keys, dialect: Dialect, cipher_id: int):
    """[(encrypted, plain message)] for every frame the client sent; the
    transformed ones decrypted with the client's encryption key."""
    reader = TransformCipher(cipher_id, keys.decryption_key, keys.encryption_key, int(dialect))
    out = []
    for frame in capture.snapshot():
        if frame[:4] == TRANSFORM_MAGIC:
            out.append((True, reader.decrypt(frame)))
        elif frame[:4] == SMB2_MAGIC:
            out.append((False, frame))
    return out


def _is_validate_negotiate(message: bytes, offset: int) -> bool:
    _status, command, _flags, _nxt = _header(message, offset)
    if command != smb2.Command.IOCTL:
        return False
    (ctl_code,) = struct.unpack_from("<I", message, offset + 64 + 4)
    return ctl_code == FSCTL_VALIDATE_NEGOTIATE_INFO


@pytest.mark.parametrize("dialect", [Dialect.SMB3_0, Dialect.SMB3_0_2], ids=lambda d: d.name)
def test_validate_negotiate_goes_out_encrypted_on_an_encrypted_share(samba, session_keys,
                                                                     dialect):
    """Encryption from the share flag only (encrypt=False): the tree is
    encrypted before FSCTL_VALIDATE_NEGOTIATE_INFO is sent, so that IOCTL is
    a TRANSFORM frame ([MS-SMB2] 3.2.4.1.8), and validation succeeds."""
    capture = _Capture()
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("c2s", capture)
        with fs.connect(samba.host, "encrypted", samba.username, samba.password,
                        port=proxy.port, dialects=DialectRange(dialect, dialect),
                        **_options()) as tree:
            assert tree.encrypt and not tree.session.encrypt
            assert tree.session.negotiate_validated
            cipher_id = tree.session.cipher.cipher_id
            tree.write_bytes("validated.txt", b"x")
            tree.remove("validated.txt")
    frames = _client_frames(capture, session_keys[-1], dialect, cipher_id)
    validate = [encrypted for encrypted, plain in frames for off in _messages(plain)
                if _is_validate_negotiate(plain, off)]
    assert validate == [True], "VALIDATE_NEGOTIATE_INFO must be sent once, encrypted"


@pytest.mark.parametrize("how", ["session", "share"])
@pytest.mark.parametrize("dialect", [Dialect.SMB3_0, Dialect.SMB3_0_2, Dialect.SMB3_1_1],
                         ids=lambda d: d.name)
def test_encrypted_messages_carry_no_signed_flag(samba, session_keys, dialect, how):
    """Inside every TRANSFORM frame the client sends, no SMB2 header has
    SMB2_FLAGS_SIGNED (an encrypted message is not signed; a set flag with a
    zero signature is malformed), compounds included."""
    capture = _Capture()
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("c2s", capture)
        with fs.connect(samba.host, "encrypted", samba.username, samba.password,
                        port=proxy.port, dialects=DialectRange(dialect, dialect),
                        encrypt=(how == "session"), require_signing=True, **_options()) as tree:
            cipher_id = tree.session.cipher.cipher_id
            tree.write_bytes("flags.txt", b"y" * 1000)            # CREATE/WRITE/CLOSE
            assert tree.read_bytes("flags.txt") == b"y" * 1000
            tree.stat("flags.txt")
            tree.remove("flags.txt")
    frames = _client_frames(capture, session_keys[-1], dialect, cipher_id)
    inner = [(plain, off) for encrypted, plain in frames if encrypted for off in _messages(plain)]
    assert len(inner) > 5
    signed = [smb2.Command(_header(plain, off)[1]).name for plain, off in inner
              if _header(plain, off)[2] & FLAGS_SIGNED]
    assert signed == [], f"encrypted messages with SMB2_FLAGS_SIGNED: {signed}"
    if dialect is not Dialect.SMB3_1_1:
        assert any(_is_validate_negotiate(plain, off) for plain, off in inner)
