"""SMB message signing ([MS-SMB2] 3.1.4.1, [MS-CIFS] 3.1.4.1).

Theory of operation: a signed SMB2 message carries SMB2_FLAGS_SIGNED and a
16-byte MAC in header bytes 48..63.  The MAC covers the whole message (header
and body, including a compound element's trailing alignment padding) with the
signature field zeroed and the flag already set.  The algorithm depends on the
dialect: HMAC-SHA256 truncated to 16 bytes (2.x, or 3.1.1 when negotiated),
AES-128-CMAC (3.x) or AES-128-GMAC (3.1.1 signing capability), whose 12-byte
nonce is the MessageId plus a role word that separates server messages and
CANCEL requests.  cryptography is imported by the first AES signer only.  All MACs
are computed incrementally, so a message may be given as several buffers and
large payloads are never concatenated.

SMB1 signing is MD5(MAC key || message) with the sequence number in place of
the 8-byte SecuritySignature field, truncated to 8 bytes.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Iterable, Union

from .digests import compare_digest, hmac_sha256

# cryptography's AES primitives, imported by the first AES signer (see
# _load_aes): a session signing with HMAC-SHA256 never loads cryptography.
cmac = Cipher = algorithms = modes = None

__all__ = [
    "AES_CMAC", "AES_GMAC", "HMAC_SHA256", "Smb1Signer", "Smb2Signer", "gmac_nonce",
]

if TYPE_CHECKING:
    Buffer = Union[bytes, bytearray, memoryview]

# SigningAlgorithmId values of the 3.1.1 SMB2_SIGNING_CAPABILITIES context.
HMAC_SHA256 = 0
AES_CMAC = 1
AES_GMAC = 2

SMB2_HEADER_SIZE = 64
SMB2_FLAGS_SERVER_TO_REDIR = 0x00000001
SMB2_FLAGS_SIGNED = 0x00000008
SMB2_CANCEL = 0x000C
_SIG_START, _SIG_END = 48, 64
_ZERO_SIGNATURE = bytes(16)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_COMMAND_OFFSET, _FLAGS_OFFSET, _MESSAGE_ID_OFFSET = 12, 16, 24


def gmac_nonce(header: Buffer) -> bytes:
    """The 12-byte AES-GMAC nonce of an SMB2 header: MessageId || role (both LE)."""
    flags = _U32.unpack_from(header, _FLAGS_OFFSET)[0]
    command = _U16.unpack_from(header, _COMMAND_OFFSET)[0]
    role = (1 if flags & SMB2_FLAGS_SERVER_TO_REDIR else 0) | (2 if command == SMB2_CANCEL else 0)
    return bytes(header[_MESSAGE_ID_OFFSET:_MESSAGE_ID_OFFSET + 8]) + _U32.pack(role)


def _load_aes():
    """Import cryptography's CMAC, Cipher, algorithms and modes into this
    module (once); returns ``algorithms``.  Importing cryptography costs a
    one-shot command several ms, so only AES-CMAC/GMAC signers do it."""
    global cmac, Cipher, algorithms, modes
    if algorithms is None:
        from cryptography.hazmat.primitives import cmac as cmac_module
        from cryptography.hazmat.primitives.ciphers import Cipher as cipher_class
        from cryptography.hazmat.primitives.ciphers import algorithms as algorithms_module
        from cryptography.hazmat.primitives.ciphers import modes as modes_module
        cmac, Cipher, modes = cmac_module, cipher_class, modes_module
        algorithms = algorithms_module
    return algorithms


class Smb2Signer:
    """Signs and verifies SMB2 messages with one signing key."""

    __slots__ = ("algorithm", "_key", "_aes")

    def __init__(self, algorithm: int, key: bytes) -> None:
        if algorithm == HMAC_SHA256:
            if not key:
                raise ValueError("empty signing key")
        elif algorithm in (AES_CMAC, AES_GMAC):
            if len(key) != 16:
                raise ValueError("AES-CMAC/GMAC signing needs a 16-byte key")
        else:
            raise ValueError(f"unknown signing algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._key = bytes(key)
        self._aes = _load_aes().AES(self._key) if algorithm != HMAC_SHA256 else None

    def __repr__(self) -> str:
        return f"Smb2Signer(algorithm={self.algorithm})"

    def _mac(self, header: Buffer, parts: Iterable[Buffer]) -> bytes:
        """MAC over header followed by parts; the signature field must be zero."""
        if self.algorithm == HMAC_SHA256:
            return hmac_sha256(self._key, (header, *parts))[:16]
        if self.algorithm == AES_CMAC:
            mac = cmac.CMAC(self._aes)
            mac.update(header)
            for part in parts:
                mac.update(part)
            return mac.finalize()
        gcm = Cipher(self._aes, modes.GCM(gmac_nonce(header))).encryptor()
        gcm.authenticate_additional_data(header)
        for part in parts:
            gcm.authenticate_additional_data(part)
        gcm.finalize()
        return gcm.tag

    def sign(self, message: Union[bytearray, memoryview]) -> None:
        """Sign one complete SMB2 message (header + body + padding) in place."""
        self.sign_parts(message, ())

    def sign_parts(self, header: Union[bytearray, memoryview], parts: Iterable[Buffer]) -> None:
        """Sign a message given as a writable first buffer (at least the 64-byte
        header) followed by ``parts``; the signature is written into ``header``."""
        view = memoryview(header)
        if view.readonly:
            raise TypeError("sign needs a writable buffer (bytearray or memoryview)")
        if view.nbytes < SMB2_HEADER_SIZE:
            raise ValueError("buffer shorter than an SMB2 header")
        view = view.cast("B")
        flags = _U32.unpack_from(view, _FLAGS_OFFSET)[0]
        _U32.pack_into(view, _FLAGS_OFFSET, flags | SMB2_FLAGS_SIGNED)
        view[_SIG_START:_SIG_END] = _ZERO_SIGNATURE
        view[_SIG_START:_SIG_END] = self._mac(view, parts)

    def verify(self, message: Buffer) -> bool:
        """True if ``message`` (one complete SMB2 message) carries a valid signature."""
        view = memoryview(message).cast("B")
        if view.nbytes < SMB2_HEADER_SIZE:
            return False
        header = bytearray(view[:SMB2_HEADER_SIZE])
        if not _U32.unpack_from(header, _FLAGS_OFFSET)[0] & SMB2_FLAGS_SIGNED:
            return False
        received = bytes(header[_SIG_START:_SIG_END])
        header[_SIG_START:_SIG_END] = _ZERO_SIGNATURE
        return compare_digest(self._mac(header, (view[SMB2_HEADER_SIZE:],)), received)


# SMB1 header offsets (message without the 4-byte NetBIOS length).
SMB1_HEADER_SIZE = 32
SMB_FLAGS2_SMB_SECURITY_SIGNATURE = 0x0004
_SMB1_FLAGS2_OFFSET = 10
_SMB1_SIG_START, _SMB1_SIG_END = 14, 22


class Smb1Signer:
    """SMB1 (NT LM 0.12) MD5 signing; the MAC key is session_key || response."""

    __slots__ = ("_mac_key", "_md5")

    def __init__(self, session_key: bytes, response: bytes = b"") -> None:
        if not session_key:
            raise ValueError("empty SMB1 session key")
        import hashlib                  # OpenSSL's MD5: an SMB1 signer MACs every message
        self._mac_key = bytes(session_key) + bytes(response)
        self._md5 = hashlib.md5

    def __repr__(self) -> str:
        return "Smb1Signer()"

    def _mac(self, message: Buffer, seq: int) -> bytes:
        view = memoryview(message).cast("B")
        md5 = self._md5(self._mac_key)
        md5.update(view[:_SMB1_SIG_START])
        md5.update(_U64.pack(seq))
        md5.update(view[_SMB1_SIG_END:])
        return md5.digest()[:8]

    def sign(self, message: Union[bytearray, memoryview], seq: int) -> None:
        """Set SMB_FLAGS2_SMB_SECURITY_SIGNATURE and write the signature for ``seq``."""
        if len(message) < SMB1_HEADER_SIZE:
            raise ValueError("buffer shorter than an SMB1 header")
        flags2 = _U16.unpack_from(message, _SMB1_FLAGS2_OFFSET)[0]
        _U16.pack_into(message, _SMB1_FLAGS2_OFFSET, flags2 | SMB_FLAGS2_SMB_SECURITY_SIGNATURE)
        message[_SMB1_SIG_START:_SMB1_SIG_END] = self._mac(message, seq)

    def verify(self, message: Buffer, seq: int) -> bool:
        """True if ``message`` carries the valid signature for sequence number ``seq``."""
        if len(message) < SMB1_HEADER_SIZE:
            return False
        received = bytes(message[_SMB1_SIG_START:_SMB1_SIG_END])
        return compare_digest(self._mac(message, seq), received)
