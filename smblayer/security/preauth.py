"""SMB 3.1.1 pre-authentication integrity hash ([MS-SMB2] 3.2.5.2, 3.2.5.3.1).

Theory of operation: the hash starts at 64 zero bytes and absorbs every
NEGOTIATE and SESSION_SETUP message (header + body as sent, without the
4-byte transport length) as H = SHA-512(H || message).  The connection hash
covers NEGOTIATE request and response; each session copies it and adds its
SESSION_SETUP requests and non-final responses.  The final value is the KDF
context of the 3.1.1 session keys, binding them to the whole exchange.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Sequence, Union

from .digests import sha512

__all__ = ["PREAUTH_HASH_SIZE", "PreauthHash"]

if TYPE_CHECKING:
    Buffer = Union[bytes, bytearray, memoryview]
PREAUTH_HASH_SIZE = 64


class PreauthHash:
    """A running SHA-512 pre-authentication integrity hash value."""

    __slots__ = ("_value",)

    def __init__(self, initial: bytes = bytes(PREAUTH_HASH_SIZE)) -> None:
        if len(initial) != PREAUTH_HASH_SIZE:
            raise ValueError("a preauth hash value is 64 bytes")
        self._value = bytes(initial)

    def update(self, message: Union[Buffer, Sequence[Buffer]]) -> None:
        """Absorb one complete message, given as one buffer or a list of buffers."""
        sha = sha512(self._value)
        if isinstance(message, (list, tuple)):
            for part in message:
                sha.update(part)
        else:
            sha.update(message)
        self._value = sha.digest()

    @property
    def value(self) -> bytes:
        """The current 64-byte hash value."""
        return self._value

    def copy(self) -> "PreauthHash":
        """An independent hash with the same value (e.g. a session from its connection)."""
        return PreauthHash(self._value)

    def __repr__(self) -> str:
        return f"PreauthHash({self._value[:8].hex()}...)"
