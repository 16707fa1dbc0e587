"""MD5, SHA-256, SHA-512 and HMAC for the session set-up, without OpenSSL.

Theory of operation: ``import hashlib`` (and ``hmac``, which imports it)
loads OpenSSL's libcrypto through ``_hashlib``: ~12 M instructions, about 6 %
of a one-shot ``smblayer ls``.  What a session set-up hashes is a few
hundred bytes (NTLMv2's HMAC-MD5s, the SP800-108 key derivation, the
3.1.1 preauth SHA-512, the signatures of SESSION_SETUP and TREE_CONNECT),
and the interpreter's own hash modules (``_md5``, ``_sha256``, ``_sha512``)
do that as fast and load for almost nothing.  They are about five times
slower than OpenSSL on bulk data, so :func:`hmac_sha256` hands a large
message (a signed READ or WRITE) to hashlib's, imported then.  An
interpreter built without its own hash modules uses hashlib's throughout.

:func:`hmac_digest` is RFC 2104's HMAC over a message given as parts.
"""
from __future__ import annotations

import _operator

try:
    from _md5 import md5
    from _sha256 import sha256
    from _sha512 import sha512
except ImportError:                 # built with OpenSSL's hashes only
    from hashlib import md5, sha256, sha512

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Iterable, Union
    Buffer = Union[bytes, bytearray, memoryview]

__all__ = ["compare_digest", "hmac_digest", "hmac_md5", "hmac_sha256", "md5", "sha256",
           "sha512"]

#: constant-time comparison (what ``hmac.compare_digest`` is without OpenSSL)
compare_digest = _operator._compare_digest

#: from this many bytes on, a message is MACed with OpenSSL's SHA-256
BULK = 4096

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_digest(key: bytes, parts: Iterable[Buffer], new: Callable = sha256) -> bytes:
    """HMAC (RFC 2104) of the concatenation of ``parts`` under ``key``, with
    the hash whose constructor is ``new``."""
    inner = new()
    block = inner.block_size
    key = bytes(key)
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    inner.update(key.translate(_IPAD))
    for part in parts:
        inner.update(part)
    outer = new(key.translate(_OPAD))
    outer.update(inner.digest())
    return outer.digest()


def hmac_md5(key: bytes, *parts: Buffer) -> bytes:
    """HMAC-MD5 of the concatenated ``parts``."""
    return hmac_digest(key, parts, md5)


def hmac_sha256(key: bytes, parts: Iterable[Buffer]) -> bytes:
    """HMAC-SHA256 of the concatenated ``parts``; OpenSSL's (hashlib) for a
    message of :data:`BULK` bytes or more."""
    parts = tuple(parts)
    if sum(map(len, parts)) < BULK:
        return hmac_digest(key, parts, sha256)
    import hashlib
    import hmac
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()
