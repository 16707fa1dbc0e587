"""NTLMv2 client ([MS-NLMP]) on the standard library: raw NTLMSSP, no SPNEGO.

Theory of operation
-------------------
Why it exists: pyspnego's package import loads gssapi, krb5, CredSSP, TLS and
x509 even for NTLM (180-210 ms, more than the rest of a one-shot command).
NTLM to a server named by its IP address never uses any of that, so that path
(``auth_protocol="ntlm"``, and ``"negotiate"`` to an IP literal, where SPNEGO
would pick NTLM anyway) runs here; SPNEGO and Kerberos stay on pyspnego.

The exchange is three messages; :class:`NtlmAuthenticator` has the session
layer's authenticator interface (``step``, ``finish``, ``complete``,
``session_key``, ``negotiated_protocol``):

1. ``step(None)`` -> NEGOTIATE: our flags (Unicode, NTLM, extended session
   security, 128/56-bit, key exchange, sign/seal, version).
2. ``step(CHALLENGE)`` -> AUTHENTICATE.  The CHALLENGE is parsed with every
   length and offset checked (a malformed one is ``SmbProtocolError``).  The
   NTLMv2 response is HMAC-MD5 keyed by NTOWFv2 over the server challenge and
   a blob of the time stamp, our client challenge and the server's target
   info (MsvAvFlags gains "MIC present").  The session base key encrypts a
   random exported session key (RC4) when the server offers key exchange;
   the MIC (HMAC-MD5 under the exported key over all three messages) binds
   the exchange.
3. ``finish``: nothing to check (NTLM has no mutual authentication);
   ``session_key`` is the exported session key, from which SMB derives its
   signing and encryption keys.

MD4 (RFC 1320) is here too: OpenSSL 3 no longer offers it to ``hashlib``.
RC4 only ever encrypts the 16-byte session key.  The password is reduced
to its NT hash in ``__init__`` and not kept; nothing here logs.
"""
from __future__ import annotations

import os
import struct
import sys
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

from ..errors import SmbProtocolError
from .digests import hmac_md5

__all__ = ["NtlmAuthenticator", "md4", "nt_hash", "ntowfv2", "ntlmv2_response", "rc4"]

SIGNATURE = b"NTLMSSP\0"

NEGOTIATE_UNICODE = 0x00000001
REQUEST_TARGET = 0x00000004
NEGOTIATE_SIGN = 0x00000010
NEGOTIATE_SEAL = 0x00000020
NEGOTIATE_NTLM = 0x00000200
NEGOTIATE_ALWAYS_SIGN = 0x00008000
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NEGOTIATE_TARGET_INFO = 0x00800000
NEGOTIATE_VERSION = 0x02000000
NEGOTIATE_128 = 0x20000000
NEGOTIATE_KEY_EXCH = 0x40000000
NEGOTIATE_56 = 0x80000000

CLIENT_FLAGS = (NEGOTIATE_UNICODE | REQUEST_TARGET | NEGOTIATE_SIGN | NEGOTIATE_SEAL
                | NEGOTIATE_NTLM | NEGOTIATE_ALWAYS_SIGN | NEGOTIATE_EXTENDED_SESSIONSECURITY
                | NEGOTIATE_VERSION | NEGOTIATE_128 | NEGOTIATE_KEY_EXCH | NEGOTIATE_56)

AV_EOL = 0
AV_FLAGS = 6
AV_TIMESTAMP = 7
_AV_FLAG_MIC = 0x00000002

_VERSION = struct.pack("<BBH3xB", 10, 0, 20348, 15)    # Windows 10.0, NTLMSSP revision 15
_NEGOTIATE = struct.Struct("<8sII8s8s8s")                # 40 bytes with Version
_CHALLENGE = struct.Struct("<8sIHHII8s8xHHI")            # up to TargetInfoFields: 48 bytes
_AUTH_HEAD = struct.Struct("<8sI")
_FIELD = struct.Struct("<HHI")
_AV = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_AUTH_PAYLOAD = 88                                       # head, 6 fields, flags, version, MIC
_MIC_AT = 72
_EPOCH_AS_FILETIME = 116444736000000000
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


# -- primitives -------------------------------------------------------------------

def _md4_rounds(state: List[int], block: bytes) -> None:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    mask = 0xFFFFFFFF

    def rol(v: int, s: int) -> int:
        v &= mask
        return ((v << s) | (v >> (32 - s))) & mask

    for i in (0, 4, 8, 12):
        a = rol(a + ((b & c) | (~b & d)) + x[i], 3)
        d = rol(d + ((a & b) | (~a & c)) + x[i + 1], 7)
        c = rol(c + ((d & a) | (~d & b)) + x[i + 2], 11)
        b = rol(b + ((c & d) | (~c & a)) + x[i + 3], 19)
    for i in (0, 1, 2, 3):
        a = rol(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999, 3)
        d = rol(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999, 5)
        c = rol(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999, 9)
        b = rol(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999, 13)
    for i in (0, 2, 1, 3):
        a = rol(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1, 3)
        d = rol(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1, 9)
        c = rol(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1, 11)
        b = rol(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1, 15)
    state[0] = (state[0] + a) & mask
    state[1] = (state[1] + b) & mask
    state[2] = (state[2] + c) & mask
    state[3] = (state[3] + d) & mask


def md4(data: bytes) -> bytes:
    """MD4 digest (RFC 1320)."""
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    message = bytes(data) + b"\x80" + bytes((55 - len(data)) % 64) + _U64.pack(len(data) * 8)
    for start in range(0, len(message), 64):
        _md4_rounds(state, message[start:start + 64])
    return struct.pack("<4I", *state)


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4 of ``data`` under ``key`` (one message: a fresh key schedule).

    NTLM uses it once per session setup, on a 16-byte key: the pure-Python
    :func:`_rc4_python` takes ~0.1 ms there, while importing cryptography
    for it would cost a one-shot command several ms (a session that signs
    with HMAC-SHA256 and does not encrypt needs nothing else of it).  So
    cryptography's RC4 is used only when cryptography is loaded already."""
    if "cryptography.hazmat.primitives.ciphers" not in sys.modules:
        return _rc4_python(key, data)
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
        from cryptography.hazmat.primitives.ciphers import Cipher
        encryptor = Cipher(ARC4(bytes(key)), mode=None).encryptor()
    except Exception:  # noqa: BLE001 - ImportError, UnsupportedAlgorithm
        return _rc4_python(key, data)
    return encryptor.update(bytes(data)) + encryptor.finalize()


def _rc4_python(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def _is_hash_pair(text: str) -> bool:
    """``text`` is 32 hex digits, a colon and 32 hex digits (an ``LM:NT``
    pair; tested without a regex, whose compiling a one-shot command pays)."""
    return len(text) == 65 and text[32] == ":" and _HEX_DIGITS.issuperset(text[:32] + text[33:])


def nt_hash(password: str) -> bytes:
    """NTOWFv1: MD4 of the UTF-16LE password; an ``LM:NT`` pair of hex hashes
    is taken as the hashes themselves (pass-the-hash, as pyspnego allows)."""
    if _is_hash_pair(password):
        return bytes.fromhex(password.split(":")[1])
    return md4(password.encode("utf-16-le"))


def ntowfv2(user: str, domain: str, password_hash: bytes) -> bytes:
    """NTOWFv2 ([MS-NLMP] 3.3.2) from the NT hash."""
    return hmac_md5(password_hash, (user.upper() + domain).encode("utf-16-le"))


def ntlmv2_response(response_key: bytes, server_challenge: bytes, client_challenge: bytes,
                    timestamp: bytes, target_info: bytes) -> Tuple[bytes, bytes]:
    """(NtChallengeResponse, SessionBaseKey) of NTLMv2 ([MS-NLMP] 3.3.2)."""
    temp = b"".join((b"\x01\x01", bytes(6), timestamp, client_challenge, bytes(4),
                     target_info, bytes(4)))
    proof = hmac_md5(response_key, server_challenge, temp)
    return proof + temp, hmac_md5(response_key, proof)


def lmv2_response(response_key: bytes, server_challenge: bytes,
                  client_challenge: bytes) -> bytes:
    return hmac_md5(response_key, server_challenge, client_challenge) + client_challenge


# -- messages ---------------------------------------------------------------------

class Challenge:
    """A parsed CHALLENGE message (every length and offset checked)."""

    __slots__ = ("flags", "server_challenge", "target_info", "av_pairs", "raw")

    def __init__(self, token: bytes) -> None:
        raw = bytes(token)
        if len(raw) < _CHALLENGE.size:
            raise SmbProtocolError(f"NTLM CHALLENGE too short ({len(raw)} bytes)")
        (signature, kind, _name_len, _name_max, _name_off, flags, server_challenge,
         info_len, _info_max, info_off) = _CHALLENGE.unpack_from(raw)
        if signature != SIGNATURE or kind != 2:
            raise SmbProtocolError("expected an NTLM CHALLENGE message")
        if not flags & NEGOTIATE_TARGET_INFO:
            info_len = 0
        if info_len and (info_off < _CHALLENGE.size or info_off + info_len > len(raw)):
            raise SmbProtocolError("NTLM CHALLENGE target info out of bounds")
        self.flags = flags
        self.server_challenge = server_challenge
        self.target_info = raw[info_off:info_off + info_len] if info_len else b""
        self.av_pairs = parse_av_pairs(self.target_info)
        self.raw = raw


def parse_av_pairs(data: bytes) -> List[Tuple[int, bytes]]:
    """The AV_PAIRs of a target info up to MsvAvEOL ([MS-NLMP] 2.2.2.1)."""
    pairs: List[Tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        if at + _AV.size > len(data):
            raise SmbProtocolError("NTLM target info: truncated AV_PAIR")
        av_id, av_len = _AV.unpack_from(data, at)
        at += _AV.size
        if av_id == AV_EOL:
            return pairs
        if at + av_len > len(data):
            raise SmbProtocolError("NTLM target info: AV_PAIR value out of bounds")
        pairs.append((av_id, data[at:at + av_len]))
        at += av_len
    if data:
        raise SmbProtocolError("NTLM target info without MsvAvEOL")
    return pairs


def build_av_pairs(pairs: List[Tuple[int, bytes]]) -> bytes:
    return b"".join(_AV.pack(i, len(v)) + v for i, v in pairs) + _AV.pack(AV_EOL, 0)


def _filetime_now() -> bytes:
    return _U64.pack(int(time.time() * 10_000_000) + _EPOCH_AS_FILETIME)


def split_user(username: str, domain: Optional[str]) -> Tuple[str, str]:
    """(user, domain): ``DOMAIN\\user`` splits, ``user@realm`` stays whole
    with an empty domain ([MS-NLMP] 3.1.5.1.2), else ``domain`` or ""."""
    if "\\" in username:
        dom, user = username.split("\\", 1)
        return user, dom
    if "@" in username:
        return username, ""
    return username, domain or ""


class NtlmAuthenticator:
    """Client side of one raw NTLMSSP exchange (NTLMv2 with extended session
    security, key exchange and a MIC)."""

    __slots__ = ("username", "protocol", "_user", "_domain", "_response_key", "_state",
                 "_negotiate", "_session_key", "flags")
    negotiated_protocol = "ntlm"

    def __init__(self, username: str, password: str, domain: Optional[str] = None, *,
                 protocol: str = "ntlm") -> None:
        if not username:
            raise ValueError("NTLM needs a username")
        if password is None:
            raise ValueError("NTLM needs a password")
        self._user, self._domain = split_user(username, domain)
        self.username = (f"{self._domain}\\{self._user}" if self._domain else self._user)
        self.protocol = protocol
        self._response_key = ntowfv2(self._user, self._domain, nt_hash(password))
        self._state = 0
        self._negotiate = b""
        self._session_key = b""
        self.flags = 0

    def __repr__(self) -> str:
        return f"NtlmAuthenticator(username={self.username!r})"

    def step(self, in_token: Optional[bytes] = None) -> Optional[bytes]:
        if self._state == 0:
            self._state = 1
            self._negotiate = _NEGOTIATE.pack(SIGNATURE, 1, CLIENT_FLAGS, _FIELD.pack(0, 0, 40),
                                              _FIELD.pack(0, 0, 40), _VERSION)
            return self._negotiate
        if self._state == 1:
            if not in_token:
                raise SmbProtocolError("the server sent no NTLM CHALLENGE")
            token = self.authenticate(Challenge(in_token))
            self._state = 2
            return token
        return None

    def authenticate(self, challenge: Challenge, *, client_challenge: Optional[bytes] = None,
                     exported_key: Optional[bytes] = None,
                     timestamp: Optional[bytes] = None) -> bytes:
        """The AUTHENTICATE message answering ``challenge`` (the keyword
        arguments fix the random parts, for test vectors)."""
        client_challenge = client_challenge or os.urandom(8)
        flags = CLIENT_FLAGS & challenge.flags | NEGOTIATE_UNICODE
        pairs = [(i, v) for i, v in challenge.av_pairs if i != AV_FLAGS]
        av_flags = 0
        for i, v in challenge.av_pairs:
            if i == AV_FLAGS and len(v) == 4:
                av_flags = _U32.unpack(v)[0]
        server_time = next((v for i, v in pairs if i == AV_TIMESTAMP and len(v) == 8), None)
        with_mic = server_time is not None
        if with_mic:
            av_flags |= _AV_FLAG_MIC
        if av_flags:
            pairs.append((AV_FLAGS, _U32.pack(av_flags)))
        stamp = timestamp or server_time or _filetime_now()
        nt_response, base_key = ntlmv2_response(self._response_key, challenge.server_challenge,
                                                client_challenge, stamp,
                                                build_av_pairs(pairs) if pairs or
                                                challenge.target_info else b"")
        lm_response = bytes(24) if with_mic else lmv2_response(
            self._response_key, challenge.server_challenge, client_challenge)
        if flags & NEGOTIATE_KEY_EXCH:
            self._session_key = exported_key or os.urandom(16)
            encrypted_key = rc4(base_key, self._session_key)
        else:
            self._session_key, encrypted_key = base_key, b""
        self.flags = flags
        fields = (lm_response, nt_response, self._domain.encode("utf-16-le"),
                  self._user.encode("utf-16-le"), b"", encrypted_key)
        head = bytearray(_AUTH_HEAD.pack(SIGNATURE, 3))
        offset = _AUTH_PAYLOAD
        for value in fields:
            head += _FIELD.pack(len(value), len(value), offset)
            offset += len(value)
        head += _U32.pack(flags) + _VERSION + bytes(16)
        message = head + b"".join(fields)
        if with_mic:
            message[_MIC_AT:_MIC_AT + 16] = hmac_md5(self._session_key, self._negotiate,
                                                       challenge.raw, bytes(message))
        return bytes(message)

    def finish(self, in_token: Optional[bytes]) -> None:
        """Nothing to verify: NTLM does not authenticate the server."""

    @property
    def complete(self) -> bool:
        return self._state == 2

    @property
    def session_key(self) -> bytes:
        """The exported session key (SMB derives its keys from it)."""
        return self._session_key
