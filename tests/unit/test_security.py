"""Known-answer and property tests for smblayer.security.

Vectors come from tests/vectors/smb3-vectors.json (vendored, sources in its README) (override with the
SMBLAYER_VECTORS environment variable: a file or the directory holding it).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smblayer.security import (
    AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM, AES_CMAC, AES_GMAC, HMAC_SHA256,
    Authenticator, DecryptError, PreauthHash, Smb1Signer, Smb2Signer, TransformCipher,
    derive_session_keys, gmac_nonce, smb3kdf, transform_session_id,
)
from smblayer.security.crypto import REUSE_FROM


def _vectors_path() -> Path:
    override = os.environ.get("SMBLAYER_VECTORS")
    path = Path(override) if override else Path(__file__).resolve().parents[1] / "vectors"
    return path / "smb3-vectors.json" if path.is_dir() else path


VECTORS_FILE = _vectors_path()
VECTORS = json.loads(VECTORS_FILE.read_text())["vectors"] if VECTORS_FILE.is_file() else []


def kind(*kinds):
    return [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] in kinds]


def h(s: str) -> bytes:
    return bytes.fromhex(s)


CIPHER_IDS = {"AES-128-CCM": AES_128_CCM, "AES-128-GCM": AES_128_GCM,
              "AES-256-CCM": AES_256_CCM, "AES-256-GCM": AES_256_GCM}
SIGNING_ALGS = {"signing-hmac-sha256": HMAC_SHA256, "signing-aes-cmac": AES_CMAC,
                "signing-aes-gmac": AES_GMAC}
ENCRYPT_KINDS = tuple(f"encrypt-{c.lower()}" for c in CIPHER_IDS)


def dialect_of(vec) -> int:
    return 0x0300 if vec["dialect"].startswith("3.0") else 0x0311


def test_vector_file_present_and_complete():
    assert VECTORS_FILE.is_file(), f"test vectors missing: {VECTORS_FILE}"
    kinds = {v["kind"] for v in VECTORS}
    tested = {"kdf", "preauth-hash", "decrypt", "ntlmv2-session-key", *SIGNING_ALGS, *ENCRYPT_KINDS}
    covered_elsewhere = {"credit-charge"}       # proto/credits tests own these
    assert tested <= kinds, f"vector kinds missing from the file: {tested - kinds}"
    assert kinds <= tested | covered_elsewhere, f"untested vector kinds: {kinds - tested}"


# --------------------------------------------------------------------- KDF

@pytest.mark.parametrize("vec", kind("kdf"))
def test_kdf_vector(vec):
    i = vec["inputs"]
    key = smb3kdf(h(i["key_derivation_key"]), h(i["label"]), h(i["context"]), i["L_bits"])
    assert key.hex() == vec["expected"]["derived_key"]


_LABEL_FIELD = {
    b"SMB2AESCMAC\x00": "signing_key", b"SMBSigningKey\x00": "signing_key",
    b"SMB2APP\x00": "application_key", b"SMBAppKey\x00": "application_key",
    b"SMBC2SCipherKey\x00": "encryption_key", b"SMBS2CCipherKey\x00": "decryption_key",
}


@pytest.mark.parametrize("vec", kind("kdf"))
def test_derive_session_keys_vector(vec):
    """Every kdf vector reproduced through derive_session_keys' own labels."""
    i = vec["inputs"]
    label, context, ki = h(i["label"]), h(i["context"]), h(i["key_derivation_key"])
    if label == b"SMB2AESCCM\x00":
        field = "encryption_key" if context == b"ServerIn \x00" else "decryption_key"
    else:
        field = _LABEL_FIELD[label]
    smb311 = len(context) == 64
    if i["L_bits"] == 256:
        cipher = AES_256_GCM
    else:
        cipher = AES_128_GCM if smb311 else AES_128_CCM
    keys = derive_session_keys(ki, 0x0311 if smb311 else 0x0300, context if smb311 else None,
                               cipher, full_session_key=ki)
    assert getattr(keys, field).hex() == vec["expected"]["derived_key"]


def test_derive_session_keys_smb2x_and_padding():
    keys = derive_session_keys(b"\x01" * 8, 0x0210, None, None)
    assert keys.signing_key == b"\x01" * 8 + bytes(8)
    assert keys.encryption_key is None and keys.decryption_key is None
    long_key = bytes(range(32))
    assert derive_session_keys(long_key, 0x0202, None, None).signing_key == long_key[:16]
    assert "01" not in repr(keys)


def test_derive_session_keys_aes256_uses_full_key():
    gss, ctx = bytes(range(32)), bytes(64)
    keys = derive_session_keys(gss, 0x0311, ctx, AES_256_CCM)
    assert keys.encryption_key == smb3kdf(gss, b"SMBC2SCipherKey\x00", ctx, 256)
    assert keys.decryption_key == smb3kdf(gss, b"SMBS2CCipherKey\x00", ctx, 256)
    assert keys.signing_key == smb3kdf(gss[:16], b"SMBSigningKey\x00", ctx, 128)
    assert derive_session_keys(gss, 0x0311, ctx, None).encryption_key is None
    with pytest.raises(ValueError):
        derive_session_keys(gss, 0x0311, None, AES_128_GCM)
    with pytest.raises(ValueError):
        derive_session_keys(gss, 0x02FF, None, None)


# --------------------------------------------------------------- preauth

@pytest.mark.parametrize("vec", kind("preauth-hash"))
def test_preauth_vector(vec):
    i, e = vec["inputs"], vec["expected"]
    ph = PreauthHash(h(i["initial_hash"]))
    split = PreauthHash(h(i["initial_hash"]))
    assert len(i["messages"]) == len(e["hash_after_each_message"])
    for msg, want in zip(i["messages"], e["hash_after_each_message"]):
        raw = h(msg["message"])
        ph.update(raw)
        split.update([raw[:64], memoryview(raw)[64:]])
        assert ph.value.hex() == want
        assert split.value == ph.value
    assert ph.value.hex() == e["session_preauth_integrity_hash_value"]


def test_preauth_copy_is_independent():
    conn = PreauthHash()
    conn.update(b"negotiate")
    session = conn.copy()
    session.update(b"setup")
    assert conn.value == hashlib.sha512(bytes(64) + b"negotiate").digest()
    assert session.value != conn.value


# --------------------------------------------------------------- signing

@pytest.mark.parametrize("vec", kind(*SIGNING_ALGS))
def test_signing_vector(vec):
    i, e = vec["inputs"], vec["expected"]
    signer = Smb2Signer(SIGNING_ALGS[vec["kind"]], h(i["signing_key"]))
    msg = bytearray(h(i["message"]))
    # sign() must zero the signature field and set SMB2_FLAGS_SIGNED itself
    msg[48:64] = b"\xaa" * 16
    msg[16] &= ~0x08
    signer.sign(msg)
    assert msg.hex() == e["signed_message"]
    assert msg[48:64].hex() == e["signature"]
    if "gmac_nonce" in e:
        assert gmac_nonce(msg).hex() == e["gmac_nonce"]
    signed = bytes(msg)
    assert signer.verify(signed)
    assert signer.verify(memoryview(signed))


@pytest.mark.parametrize("vec", kind(*SIGNING_ALGS))
def test_signing_bit_flip_detected(vec):
    signer = Smb2Signer(SIGNING_ALGS[vec["kind"]], h(vec["inputs"]["signing_key"]))
    signed = h(vec["expected"]["signed_message"])
    for pos in range(len(signed)):
        mutant = bytearray(signed)
        mutant[pos] ^= 1 << (pos % 8)
        assert not signer.verify(mutant), f"bit flip at byte {pos} not detected"
    assert not signer.verify(signed + b"\x00")
    assert not signer.verify(signed[:-1])
    assert not signer.verify(signed[:63])


@pytest.mark.parametrize("alg", [HMAC_SHA256, AES_CMAC, AES_GMAC])
def test_sign_parts_equals_sign(alg):
    signer = Smb2Signer(alg, bytes(range(16)))
    header = bytearray(64)
    header[:4] = b"\xfeSMB"
    struct.pack_into("<HQ", header, 12, 9, 0)
    struct.pack_into("<Q", header, 24, 0x1_0000_0042)
    body = bytes(range(256)) * 300
    whole = bytearray(header + body)
    signer.sign(whole)
    parts_header = bytearray(header)
    signer.sign_parts(parts_header, [body[:49], memoryview(body)[49:70000], body[70000:]])
    assert parts_header == whole[:64]
    signer.sign_parts(bytearray(header), [])        # header-only messages work too
    assert signer.verify(whole)
    view = memoryview(bytearray(header + body))
    signer.sign(view)
    assert bytes(view) == bytes(whole)
    with pytest.raises(TypeError):
        signer.sign(bytes(whole))


def test_gmac_nonce_roles():
    header = bytearray(64)
    struct.pack_into("<Q", header, 24, 7)
    assert gmac_nonce(header)[8:] == b"\x00\x00\x00\x00"
    struct.pack_into("<H", header, 12, 0x000C)
    assert gmac_nonce(header)[8:] == b"\x02\x00\x00\x00"
    struct.pack_into("<I", header, 16, 0x1)
    assert gmac_nonce(header) == struct.pack("<QI", 7, 3)


def test_signer_rejects_bad_keys():
    with pytest.raises(ValueError):
        Smb2Signer(AES_CMAC, bytes(32))
    with pytest.raises(ValueError):
        Smb2Signer(7, bytes(16))
    assert "00" not in repr(Smb2Signer(HMAC_SHA256, bytes(16)))


def _smb1_message() -> bytearray:
    msg = bytearray(b"\xffSMB" + bytes(28) + b"\x00" * 2 + b"hello smb1")
    msg[4] = 0x72
    struct.pack_into("<H", msg, 10, 0xC801)
    return msg


def test_smb1_signing_round_trip():
    key, response = bytes(range(16)), bytes(range(100, 124))
    signer = Smb1Signer(key, response)
    msg = _smb1_message()
    signer.sign(msg, 5)
    assert struct.unpack_from("<H", msg, 10)[0] == 0xC805
    expected = bytearray(msg)
    expected[14:22] = struct.pack("<Q", 5)
    assert msg[14:22] == hashlib.md5(key + response + expected).digest()[:8]
    assert signer.verify(bytes(msg), 5)
    assert not signer.verify(bytes(msg), 6)
    assert not Smb1Signer(key).verify(bytes(msg), 5)
    for pos in range(len(msg)):
        mutant = bytearray(msg)
        mutant[pos] ^= 0x10
        assert not signer.verify(mutant, 5), f"bit flip at byte {pos} not detected"


# ------------------------------------------------------------ encryption

@pytest.mark.parametrize("vec", kind(*ENCRYPT_KINDS))
def test_encrypt_vector(vec):
    i, e = vec["inputs"], vec["expected"]
    assert vec["kind"] == "encrypt-" + i["cipher"].lower()
    assert i["flags_or_encryption_algorithm"] == 1
    key = h(i["key"])
    cipher = TransformCipher(CIPHER_IDS[i["cipher"]], key, key, dialect_of(vec))
    parts = cipher._seal(h(i["transform_nonce_field"]), h(i["plaintext"]), int(i["session_id"], 16))
    header, ciphertext = bytes(parts[0]), bytes(parts[1])
    assert len(header) == 52
    assert header[4:20].hex() == e["signature"]
    assert header[20:52].hex() == e["aad"]
    assert ciphertext.hex() == e["ciphertext"]
    assert (header + ciphertext).hex() == e["transform_message"]
    assert header[44:52].hex() == i["session_id_wire"]
    assert cipher.decrypt(header + ciphertext) == h(i["plaintext"])


@pytest.mark.parametrize("vec", kind("decrypt"))
def test_decrypt_vector(vec):
    i, e = vec["inputs"], vec["expected"]
    frame = h(i["transform_message"])
    cipher = TransformCipher(CIPHER_IDS[i["cipher"]], os.urandom(len(h(i["key"]))), h(i["key"]),
                             dialect_of(vec))
    plaintext = cipher.decrypt(frame)
    assert plaintext.hex() == e["plaintext"]
    assert len(plaintext) == e["original_message_size"]
    assert transform_session_id(frame) == int.from_bytes(h(e["session_id_wire"]), "little")
    assert frame[20:52].hex() == e["aad"]
    assert cipher.decrypt(memoryview(bytearray(frame))) == plaintext


@pytest.mark.parametrize("vec", kind("decrypt"))
def test_decrypt_bit_flip_detected(vec):
    i = vec["inputs"]
    frame = h(i["transform_message"])
    cipher = TransformCipher(CIPHER_IDS[i["cipher"]], h(i["key"]), h(i["key"]), dialect_of(vec))
    for pos in range(len(frame)):        # includes the unused nonce tail (in the AAD)
        mutant = bytearray(frame)
        mutant[pos] ^= 1 << (pos % 8)
        with pytest.raises(DecryptError):
            cipher.decrypt(mutant)
    for bad in (frame[:51], frame[:-1], frame + b"\x00", b"\xfeSMB" + frame[4:], b""):
        with pytest.raises(DecryptError):
            cipher.decrypt(bad)


def _cipher_pair(cipher_id):
    size = 32 if cipher_id in (AES_256_CCM, AES_256_GCM) else 16
    c2s, s2c = os.urandom(size), os.urandom(size)
    client = TransformCipher(cipher_id, c2s, s2c, 0x0311)
    server = TransformCipher(cipher_id, s2c, c2s, 0x0311)
    return client, server


ALL_CIPHERS = [AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM]


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_encrypt_decrypt_round_trip(cipher_id):
    client, server = _cipher_pair(cipher_id)
    message = [b"\xfeSMB" + bytes(60), memoryview(os.urandom(100_000)), b"tail"]
    header, ciphertext = client.encrypt(message, 0x1122334455667788)
    frame = bytes(header) + bytes(ciphertext)
    assert frame[:4] == b"\xfdSMB" and len(header) == 52
    assert struct.unpack_from("<IHH", frame, 36) == (len(b"".join(message)), 0, 1)
    assert transform_session_id(frame) == 0x1122334455667788
    assert server.decrypt(frame) == b"".join(message)
    with pytest.raises(DecryptError):
        client.decrypt(frame)                      # wrong direction key
    mutant = bytearray(frame)
    mutant[60] ^= 0x01                             # one ciphertext bit
    with pytest.raises(DecryptError):
        server.decrypt(mutant)


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_nonces_never_repeat(cipher_id):
    client, _ = _cipher_pair(cipher_id)
    nonce_len = 11 if cipher_id in (AES_128_CCM, AES_256_CCM) else 12
    nonces = set()
    for _ in range(10_000):
        header = client.encrypt([b"x"], 1)[0]
        nonce_field = bytes(header[20:36])
        assert nonce_field[nonce_len:] == bytes(16 - nonce_len)
        nonces.add(nonce_field[:nonce_len])
    assert len(nonces) == 10_000


def test_decrypt_rejects_size_mismatch_with_valid_tag():
    key = bytes(range(16))
    cipher = TransformCipher(AES_128_GCM, key, key, 0x0311)
    nonce_field = bytes(range(12)) + bytes(4)
    aad = nonce_field + struct.pack("<IHHQ", 99, 0, 1, 5)      # lies about the size
    sealed = AESGCM(key).encrypt(nonce_field[:12], b"abc", aad)
    frame = b"\xfdSMB" + sealed[-16:] + aad + sealed[:-16]
    with pytest.raises(DecryptError, match="OriginalMessageSize"):
        cipher.decrypt(frame)
    good = nonce_field + struct.pack("<IHHQ", 3, 0, 1, 5)
    sealed = AESGCM(key).encrypt(nonce_field[:12], b"abc", good)
    assert cipher.decrypt(b"\xfdSMB" + sealed[-16:] + good + sealed[:-16]) == b"abc"


def test_transform_cipher_validation():
    with pytest.raises(ValueError):
        TransformCipher(AES_128_GCM, bytes(16), bytes(16), 0x0300)   # 3.0 is CCM only
    with pytest.raises(ValueError):
        TransformCipher(AES_256_GCM, bytes(16), bytes(16), 0x0311)   # key too short
    with pytest.raises(ValueError):
        TransformCipher(9, bytes(16), bytes(16), 0x0311)
    with pytest.raises(DecryptError):
        transform_session_id(b"\xfeSMB" + bytes(60))
    assert issubclass(DecryptError, ValueError)


# ------------------------------------------------------------------ NTLM

@pytest.mark.parametrize("vec", kind("ntlmv2-session-key"))
def test_ntlmv2_session_key_vector(vec):
    """NTLMv2 key chain with pyspnego's primitives (hashlib often lacks MD4)."""
    from spnego._ntlm_raw.crypto import ntowfv1, ntowfv2, rc4k, sealkey, signkey
    from spnego._ntlm_raw.messages import NegotiateFlags

    i, e = vec["inputs"], vec["expected"]
    assert i["password"].encode("utf-16-le") == h(i["password_utf16le"])
    nt_hash = ntowfv1(i["password"])
    response_key = ntowfv2(i["user"], nt_hash, i["domain"])
    proof = hmac.new(response_key, h(i["server_challenge"]) + h(i["ntlmv2_client_challenge_blob"]),
                     "md5").digest()
    base_key = hmac.new(response_key, proof, "md5").digest()
    exported = rc4k(base_key, h(i["encrypted_random_session_key"]))
    flags = NegotiateFlags.extended_session_security | NegotiateFlags.key_128
    got = {
        "nt_hash": nt_hash, "ntowfv2": response_key, "nt_proof_str": proof,
        "session_base_key": base_key, "exported_session_key": exported,
        "client_signing_key": signkey(flags, exported, "initiate"),
        "server_signing_key": signkey(flags, exported, "accept"),
        "client_sealing_key": sealkey(flags, exported, "initiate"),
        "server_sealing_key": sealkey(flags, exported, "accept"),
    }
    assert {k: v.hex() for k, v in got.items()} == e


# ------------------------------------------------------------------ auth

def test_authenticator_ntlm_handshake(tmp_path, monkeypatch):
    import spnego

    password = "S3cret-Pa55!"
    users = tmp_path / "ntlm_users"
    users.write_text(f"DOM:alice:{password}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    client = Authenticator("DOM\\alice", password, "srv", protocol="ntlm")
    server = spnego.server(hostname="srv", service="cifs", protocol="ntlm")
    token = client.step(None)
    while token is not None:
        reply = server.step(token)
        if reply is None:
            break
        token = client.step(reply)
    assert client.complete and server.complete
    assert client.session_key == server.session_key and len(client.session_key) == 16
    assert password not in repr(client)
    assert client.username == "DOM\\alice"


def test_authenticator_domain_and_anonymous():
    assert Authenticator("bob", "pw", "srv", protocol="ntlm", domain="CORP").username == "CORP\\bob"
    assert Authenticator("X\\bob", "pw", "srv", protocol="ntlm", domain="CORP").username == "X\\bob"
    for anonymous in (None, ""):
        with pytest.raises(ValueError, match="anonymous"):
            Authenticator(anonymous, "hunter2", "srv")


@pytest.mark.parametrize("cipher_id", [AES_128_GCM, AES_256_GCM])
def test_gcm_encrypts_parts_without_joining_into_a_per_thread_buffer(cipher_id):
    client, server = _cipher_pair(cipher_id)
    parts = [b"\xfeSMB" + bytes(60), memoryview(os.urandom(70_000)), b"", b"tail"]
    header, ciphertext = client.encrypt(parts, 7)
    first = bytes(header) + bytes(ciphertext)
    assert server.decrypt(first) == b"".join(parts)
    # A small message gets its own buffer: the large one before it is intact
    # (a writer builds several small frames before it sends them together).
    header2, ciphertext2 = client.encrypt([b"\xfeSMB" + bytes(60)], 7)
    assert ciphertext2.obj is not ciphertext.obj
    assert server.decrypt(bytes(header2) + bytes(ciphertext2)) == b"\xfeSMB" + bytes(60)
    assert bytes(header) + bytes(ciphertext) == first
    # A large one (REUSE_FROM bytes or more) reuses the thread's buffer.
    big = [b"\xfeSMB" + bytes(60), bytes(REUSE_FROM)]
    header3, ciphertext3 = client.encrypt(big, 7)
    assert ciphertext3.obj is ciphertext.obj          # the thread's buffer, reused
    assert server.decrypt(bytes(header3) + bytes(ciphertext3)) == b"".join(big)
    other = []
    t = threading.Thread(target=lambda: other.append(client.encrypt(big, 7)[1]))
    t.start()
    t.join()
    assert other[0].obj is not ciphertext.obj         # another thread, another buffer
