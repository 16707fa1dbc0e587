"""Session codecs: SESSION_SETUP and LOGOFF for SMB2 ([MS-SMB2] 2.2.5 -
2.2.8) and SESSION_SETUP_ANDX (extended security) and LOGOFF_ANDX for SMB1
([MS-SMB] 2.2.4.6, [MS-CIFS] 2.2.4.54).

Theory of operation
-------------------
A session is set up in legs: each request carries a security token
(SPNEGO, NTLMSSP or Kerberos, produced elsewhere) and each response the
server's answer token, until the server stops answering
MORE_PROCESSING_REQUIRED.  These codecs only wrap and unwrap the tokens and
the few fields around them; ``smblayer.fs.session`` runs the legs, derives
the keys and signs.  A response whose token lies outside the message
raises :class:`MalformedMessage`.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Tuple

from . import smb1
from .smb2 import HEADER_SIZE, MalformedMessage

__all__ = ["session_setup_request", "parse_session_setup_response", "logoff_request",
           "session_setup_andx_request", "parse_session_setup_andx_response",
           "logoff_andx_request", "SESSION_FLAG_IS_GUEST", "SESSION_FLAG_IS_NULL",
           "SESSION_FLAG_ENCRYPT_DATA"]

SESSION_FLAG_IS_GUEST = 0x0001
SESSION_FLAG_IS_NULL = 0x0002
SESSION_FLAG_ENCRYPT_DATA = 0x0004
_SETUP_FLAGS_NONE = 0
_SETUP_FLAG_BINDING = 0x01
_CAP_DFS = 0x1                      # Capabilities: the client supports DFS
_SECURITY_MODE_SIGNING_ENABLED = 1
_SECURITY_MODE_SIGNING_REQUIRED = 2

_SETUP = struct.Struct("<HBBIIHHQ")
_SETUP_RESPONSE = struct.Struct("<HHHH")
_EMPTY_REQUEST = b"\x04\x00\x00\x00"
_ANDX_SETUP_WORDS = struct.Struct("<BBHHHHIHII")
_ANDX_SETUP_RESPONSE_WORDS = struct.Struct("<BBHHH")
_ANDX_NONE = struct.Struct("<BBH")                 # AndXCommand none, Reserved, AndXOffset
_NATIVE = "Linux\0".encode("utf-16-le") + "smblayer\0".encode("utf-16-le")


# --- SMB2 ------------------------------------------------------------------------------

def session_setup_request(token: bytes, *, require_signing: bool,
                          previous_session_id: int = 0,
                          binding: bool = False) -> Tuple[bytes, bytes]:
    """SESSION_SETUP ([MS-SMB2] 2.2.5).  ``previous_session_id`` after a
    reconnect: the server drops that session (and its durable opens wait
    for our reclaim).  ``binding``: SMB2_SESSION_FLAG_BINDING, to add this
    connection as a channel of the existing session in the header (3.x)."""
    mode = _SECURITY_MODE_SIGNING_REQUIRED if require_signing else \
        _SECURITY_MODE_SIGNING_ENABLED
    body = _SETUP.pack(25, _SETUP_FLAG_BINDING if binding else _SETUP_FLAGS_NONE, mode, _CAP_DFS, 0, HEADER_SIZE + _SETUP.size,
                       len(token), previous_session_id)
    return body, token


def parse_session_setup_response(message) -> Tuple[int, bytes]:
    """(SessionFlags, the server's security token) of a SESSION_SETUP
    response (the SessionId is in the header)."""
    message = getattr(message, "message", message)
    if len(message) < HEADER_SIZE + _SETUP_RESPONSE.size:
        raise MalformedMessage("SESSION_SETUP response truncated")
    _size, flags, off, length = _SETUP_RESPONSE.unpack_from(message, HEADER_SIZE)
    if length and (off < HEADER_SIZE or off + length > len(message)):
        raise MalformedMessage(f"security buffer out of bounds ({off}+{length})")
    return flags, bytes(message[off:off + length]) if length else b""


def logoff_request() -> Tuple[bytes]:
    """LOGOFF ([MS-SMB2] 2.2.7)."""
    return (_EMPTY_REQUEST,)


# --- SMB1 ------------------------------------------------------------------------------

def session_setup_andx_request(token: bytes, *, max_mpx: int, session_key: int,
                               capabilities: int) -> Tuple[bytes, bytes]:
    """SESSION_SETUP_ANDX with extended security ([MS-SMB] 2.2.4.6.1): the
    token, then (2-byte aligned) NativeOS and NativeLanMan."""
    words = _ANDX_SETUP_WORDS.pack(0xFF, 0, 0, 0xFFFF, min(max_mpx, 0xFFFF), 0, session_key,
                                   len(token), 0, capabilities)
    pad = b"\0" if (smb1.HEADER_SIZE + 1 + len(words) + 2 + len(token)) % 2 else b""
    return smb1.pack_params(words, token + pad + _NATIVE)


def parse_session_setup_andx_response(message) -> Tuple[int, bytes]:
    """(Action, the server's security blob) of a SESSION_SETUP_ANDX
    response (the UID is in the header); Action bit 0: logged on as guest."""
    words, data = smb1.parse_params(getattr(message, "message", message))
    if len(words) < _ANDX_SETUP_RESPONSE_WORDS.size:
        raise MalformedMessage("SESSION_SETUP_ANDX response truncated")
    _c, _r, _o, action, blob_len = _ANDX_SETUP_RESPONSE_WORDS.unpack_from(words)
    if blob_len > len(data):
        raise MalformedMessage(f"SESSION_SETUP_ANDX blob of {blob_len} bytes in "
                               f"{len(data)}")
    return action, bytes(data[:blob_len])


def logoff_andx_request() -> Tuple[bytes, bytes]:
    """LOGOFF_ANDX ([MS-CIFS] 2.2.4.54)."""
    return smb1.pack_params(_ANDX_NONE.pack(0xFF, 0, 0))
