"""GSS authentication for SESSION_SETUP through pyspnego.

Theory of operation: SESSION_SETUP carries opaque SPNEGO/NTLM/Kerberos
tokens.  The session layer feeds each server token to :meth:`Authenticator.step`
and sends back whatever it returns until the exchange is done; afterwards
:attr:`Authenticator.session_key` is the GSS session key from which the SMB
keys are derived (see :mod:`smblayer.security.kdf`).  The password is handed
to pyspnego once and never stored, logged or shown here.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["Authenticator"]


class Authenticator:
    """Client side of one SMB authentication exchange."""

    __slots__ = ("username", "hostname", "protocol", "_ctx")

    def __init__(self, username: Optional[str], password: Optional[str], hostname: str,
                 protocol: str = "negotiate", domain: Optional[str] = None) -> None:
        if not username:
            # pyspnego (<= 0.12) has no anonymous NTLM initiator.
            raise ValueError("anonymous authentication is not supported by pyspnego; "
                             "give a username")
        if domain and "\\" not in username and "@" not in username:
            username = f"{domain}\\{username}"
        self.username = username
        self.hostname = hostname
        self.protocol = protocol
        import spnego         # imported on first use: it costs ~50 ms at start-up
        self._ctx = spnego.client(username, password, hostname=hostname, service="cifs",
                                  protocol=protocol)

    def __repr__(self) -> str:
        return (f"Authenticator(username={self.username!r}, hostname={self.hostname!r}, "
                f"protocol={self.protocol!r})")

    def step(self, in_token: Optional[bytes] = None) -> Optional[bytes]:
        """Process the server's token (None to start); return the token to send, if any."""
        return self._ctx.step(in_token)

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
