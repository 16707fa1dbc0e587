"""SMB 3.x key derivation ([MS-SMB2] 3.1.4.2, 3.2.5.3.1).

Theory of operation: every SMB key is derived from the GSS session key with
the SP800-108 KDF in counter mode (PRF HMAC-SHA256, r = 32).  The labels and
contexts are fixed strings that carry their own trailing NUL; the KDF adds a
second 0x00 separator after the label.  SMB 3.0/3.0.2 use constant contexts,
SMB 3.1.1 uses the session's pre-authentication integrity hash as context so
the keys are bound to the exact negotiate/session-setup exchange.  SMB 2.x
has no KDF: the session key signs directly.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional

from ..records import FrozenRecord
from .digests import hmac_digest, sha256

__all__ = ["SessionKeys", "derive_session_keys", "smb3kdf"]

_U32BE = struct.Struct(">I")

# (label, context) pairs; 3.1.1 contexts are the preauth hash.
_SMB30_SIGNING = (b"SMB2AESCMAC\x00", b"SmbSign\x00")
_SMB30_APP = (b"SMB2APP\x00", b"SmbRpc\x00")
_SMB30_C2S = (b"SMB2AESCCM\x00", b"ServerIn \x00")   # note the space: 10 bytes
_SMB30_S2C = (b"SMB2AESCCM\x00", b"ServerOut\x00")
_SMB311_SIGNING = b"SMBSigningKey\x00"
_SMB311_APP = b"SMBAppKey\x00"
_SMB311_C2S = b"SMBC2SCipherKey\x00"
_SMB311_S2C = b"SMBS2CCipherKey\x00"

_AES_256_CIPHERS = (3, 4)   # AES-256-CCM, AES-256-GCM


def smb3kdf(ki: bytes, label: bytes, context: bytes, length_bits: int = 128) -> bytes:
    """SP800-108 counter-mode KDF with HMAC-SHA256: the leftmost ``length_bits`` of
    HMAC(Ki, [i]_32be || Label || 0x00 || Context || [L]_32be) for i = 1, 2, ..."""
    if length_bits <= 0 or length_bits % 8:
        raise ValueError("length_bits must be a positive multiple of 8")
    tail = b"\x00" + context + _U32BE.pack(length_bits)
    out = b""
    counter = 1
    while len(out) * 8 < length_bits:
        out += hmac_digest(ki, (_U32BE.pack(counter), label, tail), sha256)
        counter += 1
    return out[:length_bits // 8]


class SessionKeys(FrozenRecord):
    """Per-session keys, named from the client's point of view.

    ``encryption_key`` protects client->server traffic, ``decryption_key``
    server->client traffic; both are None when no cipher applies (2.x, or
    3.1.1 without an encryption context).
    """

    __slots__ = ("signing_key", "encryption_key", "decryption_key", "application_key")

    def __init__(self, signing_key: bytes, encryption_key: Optional[bytes],
                 decryption_key: Optional[bytes], application_key: bytes) -> None:
        self._init(signing_key, encryption_key, decryption_key, application_key)

    def __repr__(self) -> str:        # never show key material
        return "SessionKeys(<redacted>)"


def derive_session_keys(session_key: bytes, dialect: int, preauth_hash: Optional[bytes],
                        cipher_id: Optional[int], full_session_key: Optional[bytes] = None
                        ) -> SessionKeys:
    """Derive the SMB session keys for wire ``dialect`` (0x0202 ... 0x0311).

    ``session_key`` is the GSS session key; Session.SessionKey is its first 16
    bytes (zero-padded).  ``full_session_key`` (default ``session_key``) is the
    KDF input of the AES-256 cipher keys, which are 32 bytes (L = 256).
    ``preauth_hash`` is required for 3.1.1.  Signing and application keys stay
    16 bytes derived from the 16-byte SessionKey (as Samba does).
    """
    key16 = bytes(session_key[:16]).ljust(16, b"\x00")
    if dialect in (0x0202, 0x0210):
        return SessionKeys(key16, None, None, key16)

    if cipher_id in _AES_256_CIPHERS:
        cipher_ki, cipher_bits = bytes(full_session_key or session_key), 256
    else:
        cipher_ki, cipher_bits = key16, 128

    if dialect in (0x0300, 0x0302):
        return SessionKeys(
            signing_key=smb3kdf(key16, *_SMB30_SIGNING),
            encryption_key=smb3kdf(cipher_ki, *_SMB30_C2S, cipher_bits),
            decryption_key=smb3kdf(cipher_ki, *_SMB30_S2C, cipher_bits),
            application_key=smb3kdf(key16, *_SMB30_APP),
        )
    if dialect == 0x0311:
        if preauth_hash is None or len(preauth_hash) != 64:
            raise ValueError("SMB 3.1.1 key derivation needs the 64-byte preauth hash")
        ctx = bytes(preauth_hash)
        has_cipher = bool(cipher_id)
        return SessionKeys(
            signing_key=smb3kdf(key16, _SMB311_SIGNING, ctx),
            encryption_key=smb3kdf(cipher_ki, _SMB311_C2S, ctx, cipher_bits) if has_cipher else None,
            decryption_key=smb3kdf(cipher_ki, _SMB311_S2C, ctx, cipher_bits) if has_cipher else None,
            application_key=smb3kdf(key16, _SMB311_APP, ctx),
        )
    raise ValueError(f"no SMB2 key derivation for dialect 0x{dialect:04x}")
