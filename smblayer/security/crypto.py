"""SMB 3.x transform (encryption) ([MS-SMB2] 2.2.41, 3.1.4.3, 3.2.5.1.1.1).

Theory of operation: an encrypted SMB2 message travels as a 52-byte
TRANSFORM_HEADER followed by the AEAD ciphertext of the plain message(s):

    0  ProtocolId fd 'SMB'      4
    4  Signature (AEAD tag)    16
    20 Nonce                   16  (CCM uses the first 11 bytes, GCM 12)
    36 OriginalMessageSize      4
    40 Reserved                 2
    42 Flags/EncryptionAlgorithm 2 (always 0x0001)
    44 SessionId                8

The AAD is bytes 20..51 exactly as transmitted (peers may leave garbage in
the unused nonce tail, so it is never rebuilt on receive).  A nonce must never
repeat under one key, so each TransformCipher draws nonces from its own
64-bit counter followed by a random salt; share one TransformCipher between
all channels of a session.  Encrypted messages are not signed.

A TransformCipher is made for every 3.x session whose server offers
encryption, used or not; it imports cryptography (several ms of a one-shot
command) and keys its AEADs on its first message only.
"""
from __future__ import annotations

import itertools
import os
import struct
import threading
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Union

# cryptography's names, imported when a session first encrypts or decrypts
# (see _load_cryptography): a session that never does never loads it.
InvalidTag = Cipher = algorithms = modes = AESCCM = AESGCM = None

__all__ = [
    "AES_128_CCM", "AES_128_GCM", "AES_256_CCM", "AES_256_GCM", "DecryptError",
    "TRANSFORM_HEADER_SIZE", "TransformCipher", "transform_session_id",
]

if TYPE_CHECKING:
    Buffer = Union[bytes, bytearray, memoryview]

# Cipher ids of the 3.1.1 SMB2_ENCRYPTION_CAPABILITIES context.
AES_128_CCM = 1
AES_128_GCM = 2
AES_256_CCM = 3
AES_256_GCM = 4

PROTOCOL_ID = b"\xfdSMB"
TRANSFORM_HEADER_SIZE = 52
TAG_SIZE = 16
_ENCRYPTED = 0x0001     # 3.1.1 Flags "Encrypted" == 3.0 EncryptionAlgorithm AES-128-CCM
_AAD_START = 20

# ProtocolId, Signature, Nonce, OriginalMessageSize, Reserved, Flags, SessionId
_HEADER = struct.Struct("<4s16s16sIHHQ")
_AAD = struct.Struct("<16sIHHQ")
_U64 = struct.Struct("<Q")
_SESSION_ID_OFFSET = 44

#: messages from this size on are encrypted into a per-thread reused buffer
REUSE_FROM = 64 * 1024

# cipher id -> (key length, nonce length)
_CIPHERS = {
    AES_128_CCM: (16, 11),
    AES_128_GCM: (16, 12),
    AES_256_CCM: (32, 11),
    AES_256_GCM: (32, 12),
}


class DecryptError(ValueError):
    """A transformed message is malformed or fails authentication."""


def _load_cryptography() -> None:
    """Import the cryptography names this module uses (once)."""
    global InvalidTag, Cipher, algorithms, modes, AESCCM, AESGCM
    if AESGCM is None:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import ciphers
        from cryptography.hazmat.primitives.ciphers import aead
        InvalidTag, Cipher = exceptions.InvalidTag, ciphers.Cipher
        algorithms, modes = ciphers.algorithms, ciphers.modes
        AESCCM, AESGCM = aead.AESCCM, aead.AESGCM


def _aead(cipher_id: int, key: bytes) -> Union[AESCCM, AESGCM]:
    _load_cryptography()
    key_len = _CIPHERS[cipher_id][0]
    if len(key) != key_len:
        raise ValueError(f"cipher {cipher_id} needs a {key_len}-byte key, got {len(key)}")
    if cipher_id in (AES_128_CCM, AES_256_CCM):
        return AESCCM(bytes(key), tag_length=TAG_SIZE)
    return AESGCM(bytes(key))


def transform_session_id(frame: Buffer) -> int:
    """The SessionId of a transformed message (to pick the session's cipher)."""
    if len(frame) < TRANSFORM_HEADER_SIZE or bytes(frame[:4]) != PROTOCOL_ID:
        raise DecryptError("not an SMB2 TRANSFORM_HEADER message")
    return _U64.unpack_from(frame, _SESSION_ID_OFFSET)[0]


class TransformCipher:
    """Encrypts client->server and decrypts server->client messages of one session."""

    __slots__ = ("cipher_id", "dialect", "_encryptor", "_decryptor", "_nonce_len",
                 "_salt", "_counter", "_decryption_key", "_encryption_key", "_out")

    def __init__(self, cipher_id: int, encryption_key: bytes, decryption_key: bytes,
                 dialect: int) -> None:
        if cipher_id not in _CIPHERS:
            raise ValueError(f"unknown cipher id {cipher_id!r}")
        if dialect < 0x0300:
            raise ValueError(f"dialect 0x{dialect:04x} has no encryption")
        if dialect < 0x0311 and cipher_id != AES_128_CCM:
            raise ValueError("SMB 3.0/3.0.2 only support AES-128-CCM")
        self.cipher_id = cipher_id
        self.dialect = dialect
        key_len = _CIPHERS[cipher_id][0]
        for key in (encryption_key, decryption_key):
            if len(key) != key_len:
                raise ValueError(f"cipher {cipher_id} needs a {key_len}-byte key, got {len(key)}")
        self._encryptor = self._decryptor = None     # AEADs keyed on first use (_keyed)
        self._decryption_key = decryption_key
        self._encryption_key = bytes(encryption_key)
        self._out = threading.local()       # per sending thread: a reusable output buffer
        self._nonce_len = _CIPHERS[cipher_id][1]
        self._salt = os.urandom(self._nonce_len - 8)
        self._counter = itertools.count()   # next() is atomic under the GIL

    def __repr__(self) -> str:
        return f"TransformCipher(cipher_id={self.cipher_id}, dialect=0x{self.dialect:04x})"

    def _keyed(self) -> None:
        """Import cryptography and key the AEADs (a cipher's first message)."""
        self._encryptor = _aead(self.cipher_id, self._encryption_key)
        self._decryptor = _aead(self.cipher_id, self._decryption_key)

    def encrypt(self, message_parts: Sequence[Buffer], session_id: int) -> List[Buffer]:
        """Encrypt the concatenation of ``message_parts``.

        Returns ``[transform_header, ciphertext]`` ready to send after the
        transport length prefix.
        """
        counter = next(self._counter)
        if counter >> 64:
            raise OverflowError("nonce counter exhausted; re-key the session")
        nonce = _U64.pack(counter) + self._salt
        if self.cipher_id in (AES_128_GCM, AES_256_GCM):
            return self._seal_gcm(nonce.ljust(16, b"\x00"), message_parts, session_id)
        return self._seal(nonce.ljust(16, b"\x00"), b"".join(message_parts), session_id)

    def _seal_gcm(self, nonce_field: bytes, parts: Sequence[Buffer],
                  session_id: int) -> List[Buffer]:
        """GCM without joining the parts: each is encrypted straight into the
        output buffer.  A message of REUSE_FROM bytes or more goes into a
        buffer reused by this thread (valid until its next encrypt of such a
        message: the sender writes a large frame before it builds another);
        a smaller one gets its own (a writer may build several before it
        sends them together)."""
        if self._encryptor is None:
            self._keyed()
        size = sum(map(len, parts))
        aad = _AAD.pack(nonce_field, size, 0, _ENCRYPTED, session_id)
        encryptor = Cipher(algorithms.AES(self._encryption_key),
                           modes.GCM(nonce_field[:self._nonce_len])).encryptor()
        encryptor.authenticate_additional_data(aad)
        if size < REUSE_FROM:
            out = bytearray(size + 15)                 # cryptography wants 15 bytes of slack
        else:
            out = getattr(self._out, "buffer", None)
            if out is None or len(out) < size + 15:
                out = self._out.buffer = bytearray(size + 15)
        view = memoryview(out)
        pos = 0
        for part in parts:
            n = len(part)
            if n:
                pos += encryptor.update_into(part, view[pos:pos + n + 15])
        pos += len(encryptor.finalize())
        if pos != size:
            raise RuntimeError(f"GCM produced {pos} of {size} bytes")
        return [PROTOCOL_ID + encryptor.tag + aad, view[:size]]

    def _seal(self, nonce_field: bytes, plaintext: bytes, session_id: int) -> List[Buffer]:
        if self._encryptor is None:
            self._keyed()
        aad = _AAD.pack(nonce_field, len(plaintext), 0, _ENCRYPTED, session_id)
        sealed = self._encryptor.encrypt(nonce_field[:self._nonce_len], plaintext, aad)
        ciphertext = memoryview(sealed)[:-TAG_SIZE]
        return [PROTOCOL_ID + sealed[-TAG_SIZE:] + aad, ciphertext]

    def decrypt(self, frame: Buffer) -> bytes:
        """Authenticate and decrypt one transformed message; raise DecryptError."""
        view = memoryview(frame).cast("B")
        tag, nonce = self._check_header(view, view.nbytes - TRANSFORM_HEADER_SIZE)
        ciphertext = view[TRANSFORM_HEADER_SIZE:]
        if self._decryptor is None:
            self._keyed()
        try:
            return self._decryptor.decrypt(nonce[:self._nonce_len], b"".join((ciphertext, tag)),
                                           view[_AAD_START:TRANSFORM_HEADER_SIZE])
        except InvalidTag:
            raise DecryptError("transformed message failed authentication") from None

    @staticmethod
    def _check_header(view, ciphertext_size: int):
        if view.nbytes < TRANSFORM_HEADER_SIZE:
            raise DecryptError("transformed message shorter than its header")
        protocol, tag, nonce, size, _reserved, flags, _sid = _HEADER.unpack_from(view)
        if protocol != PROTOCOL_ID:
            raise DecryptError("not an SMB2 TRANSFORM_HEADER message")
        if flags != _ENCRYPTED:
            raise DecryptError(f"unsupported transform flags 0x{flags:04x}")
        if size != ciphertext_size:
            raise DecryptError("OriginalMessageSize does not match the ciphertext length")
        return tag, nonce

    def decrypt_stream(self, header: Buffer, ciphertext_size: int) -> "Optional[GcmStream]":
        """A streaming decryptor for the message after ``header`` (the 52-byte
        transform header), so the plaintext can be written wherever it belongs
        (a READ payload straight into the caller's buffer).  GCM only (CCM
        is one-shot): None for CCM.  Nothing is authentic until
        ``GcmStream.finalize()`` returned."""
        if self.cipher_id not in (AES_128_GCM, AES_256_GCM):
            return None
        view = memoryview(header).cast("B")[:TRANSFORM_HEADER_SIZE]
        tag, nonce = self._check_header(view, ciphertext_size)
        if self._decryptor is None:
            self._keyed()
        decryptor = Cipher(algorithms.AES(self._decryption_key),
                           modes.GCM(nonce[:self._nonce_len], tag)).decryptor()
        decryptor.authenticate_additional_data(view[_AAD_START:TRANSFORM_HEADER_SIZE])
        return GcmStream(decryptor)


class GcmStream:
    """Incremental AES-GCM decryption into caller-provided buffers."""

    __slots__ = ("_decryptor",)

    def __init__(self, decryptor):
        self._decryptor = decryptor

    def update_into(self, data: Buffer, out: memoryview) -> None:
        """Decrypt ``data`` into ``out[:len(data)]``.  (cryptography wants 15
        bytes of slack after the output; the last block goes through a small
        scratch buffer so ``out`` may be exactly ``len(data)`` long.)"""
        data = memoryview(data).cast("B")
        n = data.nbytes
        if len(out) < n:
            raise ValueError("output buffer too small")
        bulk = max(0, n - 16)
        if bulk:
            self._decryptor.update_into(data[:bulk], out[:bulk + 15])
        scratch = bytearray(n - bulk + 15)
        done = self._decryptor.update_into(data[bulk:], scratch)
        out[bulk:n] = scratch[:done]

    def finalize(self) -> None:
        """Check the tag; DecryptError if the message is not authentic."""
        try:
            self._decryptor.finalize()
        except InvalidTag:
            raise DecryptError("transformed message failed authentication") from None
