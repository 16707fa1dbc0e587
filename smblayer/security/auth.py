"""GSS authentication for SESSION_SETUP through pyspnego.

Theory of operation: SESSION_SETUP carries opaque SPNEGO/NTLM/Kerberos
tokens.  The session layer feeds each server token to :meth:`Authenticator.step`
and sends back whatever it returns until the exchange is done; afterwards
:attr:`Authenticator.session_key` is the GSS session key from which the SMB
keys are derived (see :mod:`smblayer.security.kdf`).  The password is handed
to pyspnego once and never stored, logged or shown here.

``protocol`` is one of :data:`AUTH_PROTOCOLS`: "negotiate" (SPNEGO: Kerberos
when a ticket or a Kerberos password is usable, else NTLM), "kerberos"
(Kerberos only, never NTLM) or "ntlm" (raw NTLMSSP, no SPNEGO wrapping).

SPNEGO over NTLM must send a mechListMIC, which is an NTLM signature; a
server whose NTLM CHALLENGE does not offer NTLMSSP_NEGOTIATE_SIGN (impacket's
SMB1 server) makes that impossible and pyspnego gives up.  Samba's client
leaves the MIC out then; here :class:`NtlmWithoutIntegrity` tells the
session layer to authenticate again with raw NTLMSSP (see fs.session).
"""
from __future__ import annotations

import struct
from typing import Optional

__all__ = ["AUTH_PROTOCOLS", "Authenticator", "AnonymousAuthenticator", "NtlmWithoutIntegrity",
           "authenticator", "check_auth_protocol"]

#: the values of ``auth_protocol`` (fs.connect, fs.Session)
AUTH_PROTOCOLS = ("negotiate", "kerberos", "ntlm")


def check_auth_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`AUTH_PROTOCOLS`, else ValueError."""
    if protocol not in AUTH_PROTOCOLS:
        raise ValueError(f"auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}; "
                         f"got {protocol!r}")
    return protocol


class NtlmWithoutIntegrity(Exception):
    """SPNEGO chose NTLM, but the server's NTLM does not negotiate signing,
    so no mechListMIC can be sent: authenticate with raw NTLM instead."""


class Authenticator:
    """Client side of one SMB authentication exchange."""

    __slots__ = ("username", "hostname", "protocol", "_ctx")

    def __init__(self, username: Optional[str], password: Optional[str], hostname: str,
                 protocol: str = "negotiate", domain: Optional[str] = None) -> None:
        self.protocol = check_auth_protocol(protocol)
        if not username and protocol != "kerberos":
            # pyspnego (<= 0.12) has no anonymous NTLM initiator; Kerberos
            # without a user name takes the ticket cache's principal.
            raise ValueError("anonymous authentication is not supported by pyspnego; "
                             "give a username")
        if username and domain and "\\" not in username and "@" not in username:
            username = f"{domain}\\{username}"
        self.username = username
        self.hostname = hostname
        import spnego         # imported on first use: it costs ~50 ms at start-up
        self._ctx = spnego.client(username, password, hostname=hostname, service="cifs",
                                  protocol=protocol)

    def __repr__(self) -> str:
        return (f"Authenticator(username={self.username!r}, hostname={self.hostname!r}, "
                f"protocol={self.protocol!r})")

    def step(self, in_token: Optional[bytes] = None) -> Optional[bytes]:
        """Process the server's token (None to start); return the token to send, if any.
        Raises :class:`NtlmWithoutIntegrity` (SPNEGO only) as described above."""
        from spnego import ContextReq
        from spnego.exceptions import OperationNotAvailableError
        try:
            return self._ctx.step(in_token)
        except OperationNotAvailableError:
            if self.protocol == "negotiate" and self._ctx.negotiated_protocol == "ntlm" \
                    and not self._ctx.context_attr & ContextReq.integrity:
                raise NtlmWithoutIntegrity(
                    "the server's NTLM does not negotiate signing, so SPNEGO cannot send "
                    "its mechListMIC") from None
            raise

    @property
    def complete(self) -> bool:
        """True once the security context is fully established."""
        return bool(self._ctx.complete)

    @property
    def session_key(self) -> bytes:
        """The GSS session key (ExportedSessionKey for NTLM; may be 32 bytes for Kerberos)."""
        return self._ctx.session_key

    @property
    def negotiated_protocol(self) -> str:
        """The mechanism actually in use, e.g. 'ntlm' or 'kerberos'."""
        return self._ctx.negotiated_protocol


class AnonymousAuthenticator:
    """An anonymous (null session) NTLM exchange ([MS-NLMP] 3.2.5.1.2):
    NEGOTIATE with NTLMSSP_NEGOTIATE_ANONYMOUS, then an AUTHENTICATE with an
    empty user and NT response and a one-byte LM response.  There is no
    session key, so such a session can neither sign nor encrypt.  (pyspnego
    has no anonymous initiator; the two messages are simple enough to pack.)"""

    __slots__ = ("_state",)
    negotiated_protocol = "ntlm"
    session_key = b""
    username = ""

    _FLAGS = (0x00000001      # NEGOTIATE_UNICODE
              | 0x00000004    # REQUEST_TARGET
              | 0x00000200    # NEGOTIATE_NTLM
              | 0x00000800    # NEGOTIATE_ANONYMOUS
              | 0x00008000    # NEGOTIATE_ALWAYS_SIGN
              | 0x00080000)   # NEGOTIATE_EXTENDED_SESSIONSECURITY
    _SIGNATURE = b"NTLMSSP\0"

    def __init__(self) -> None:
        self._state = 0

    def __repr__(self) -> str:
        return "AnonymousAuthenticator()"

    def step(self, in_token: Optional[bytes] = None) -> Optional[bytes]:
        if self._state == 0:
            self._state = 1
            # Type 1: signature, type, flags, empty domain and workstation.
            return struct.pack("<8sII8s8s", self._SIGNATURE, 1, self._FLAGS, bytes(8), bytes(8))
        if self._state == 1:
            if not in_token or in_token[:8] != self._SIGNATURE or \
                    struct.unpack_from("<I", in_token, 8)[0] != 2:
                raise ValueError("expected an NTLM CHALLENGE message")
            self._state = 2
            # Type 3: LM response is one zero byte; every other field empty.
            payload_offset = 64
            fields = struct.pack("<HHI", 1, 1, payload_offset)          # LM response
            empty = struct.pack("<HHI", 0, 0, payload_offset + 1)
            return (struct.pack("<8sI", self._SIGNATURE, 3) + fields + empty * 5
                    + struct.pack("<I", self._FLAGS) + b"\0")
        return None

    @property
    def complete(self) -> bool:
        return self._state == 2


def authenticator(username: Optional[str], password: Optional[str], hostname: str,
                  protocol: str = "negotiate", domain: Optional[str] = None):
    """An Authenticator, or an AnonymousAuthenticator when there is no user
    (except for Kerberos, which then uses the ticket cache's principal)."""
    if not username and check_auth_protocol(protocol) != "kerberos":
        return AnonymousAuthenticator()
    return Authenticator(username, password, hostname, protocol=protocol, domain=domain)
