"""GSS authentication for SESSION_SETUP through pyspnego.

Theory of operation: SESSION_SETUP carries opaque SPNEGO/NTLM/Kerberos
tokens.  The session layer feeds each server token to :meth:`Authenticator.step`
and sends back whatever it returns until the exchange is done; afterwards
:attr:`Authenticator.session_key` is the GSS session key from which the SMB
keys are derived (see :mod:`smblayer.security.kdf`).  The password is handed
to pyspnego once and never stored, logged or shown here.

``protocol`` is one of :data:`AUTH_PROTOCOLS`: "negotiate" (SPNEGO: Kerberos
when a ticket or a Kerberos password is usable, else NTLM), "kerberos"
(Kerberos only, never NTLM: a raw krb5 token, no SPNEGO, as smbprotocol
sends it; Windows and Samba accept it) or "ntlm" (raw NTLMSSP).  Kerberos
failures are :class:`AuthenticationFailed` naming the cause.

SPNEGO over NTLM must send a mechListMIC, which is an NTLM signature; a
server whose NTLM CHALLENGE does not offer NTLMSSP_NEGOTIATE_SIGN (impacket's
SMB1 server) makes that impossible and pyspnego gives up.  Samba's client
leaves the MIC out then; here :class:`NtlmWithoutIntegrity` tells the
session layer to authenticate again with raw NTLMSSP (see fs.session).
"""
from __future__ import annotations

import _socket
import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional, Tuple

from ..proto.status import NtStatus

__all__ = ["AUTH_PROTOCOLS", "Authenticator", "AnonymousAuthenticator", "AuthenticationFailed",
           "NtlmWithoutIntegrity", "authenticator", "check_auth_protocol",
           "kerberos_available"]

#: the values of ``auth_protocol`` (fs.connect, fs.Session)
AUTH_PROTOCOLS = ("negotiate", "kerberos", "ntlm")


def _is_ip_literal(host: str) -> bool:
    # inet_pton, not the ipaddress module: that import cost every connect
    # ~1.5 ms (cold start, issue 20); an IPv6 scope ("%eth0") is allowed
    address = host.strip("[]").split("%", 1)[0]
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return True
    return False


def check_auth_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`AUTH_PROTOCOLS`, else ValueError."""
    if protocol not in AUTH_PROTOCOLS:
        raise ValueError(f"auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}; "
                         f"got {protocol!r}")
    return protocol


class NtlmWithoutIntegrity(Exception):
    """SPNEGO chose NTLM, but the server's NTLM does not negotiate signing,
    so no mechListMIC can be sent: authenticate with raw NTLM instead."""


def kerberos_available() -> bool:
    """True if pyspnego can do Kerberos here (its gssapi and krb5 modules,
    ``pip install smblayer[kerberos]``)."""
    try:
        from spnego._gss import GSSAPIProxy    # where pyspnego 0.9 .. 0.12 keep it
    except ImportError:  # pragma: no cover - a later pyspnego
        try:
            import gssapi  # noqa: F401
            import krb5  # noqa: F401
        except ImportError:
            return False
        return True
    return "kerberos" in GSSAPIProxy.available_protocols()


class AuthenticationFailed(Exception):
    """The client side of the exchange failed; ``status`` (an NTSTATUS for
    the SmbAuthError), ``cause`` (a short keyword) and the text say why.
    Never carries a password or a key."""

    def __init__(self, status: int, cause: str, message: str):
        super().__init__(message)
        self.status = status
        self.cause = cause


# (substring of the GSS/Kerberos message, cause, NTSTATUS, explanation)
_KRB_FAILURES: Tuple[Tuple[str, str, int, str], ...] = (
    ("cannot contact any kdc", "kdc_unreachable", NtStatus.NO_LOGON_SERVERS,
     "the KDC is unreachable"),
    ("cannot find kdc", "kdc_unreachable", NtStatus.NO_LOGON_SERVERS,
     "no KDC is known for the realm"),
    ("clock skew too great", "clock_skew", NtStatus.TIME_DIFFERENCE_AT_DC,
     "the clocks of client and KDC/server differ too much (clock skew)"),
    ("preauthentication failed", "wrong_password", NtStatus.WRONG_PASSWORD,
     "wrong password"),
    ("password incorrect", "wrong_password", NtStatus.WRONG_PASSWORD, "wrong password"),
    ("server not found in kerberos database", "unknown_principal", NtStatus.LOGON_FAILURE,
     "unknown service principal {spn}"),
    ("client '", "unknown_user", NtStatus.NO_SUCH_USER, "unknown user"),
    ("client not found in kerberos database", "unknown_user", NtStatus.NO_SUCH_USER,
     "unknown user"),
    ("password has expired", "password_expired", NtStatus.PASSWORD_EXPIRED,
     "the password has expired"),
    ("expired", "expired", NtStatus.LOGON_FAILURE,
     "the Kerberos ticket (or the ticket cache) has expired; renew it with kinit"),
    ("no kerberos credentials", "no_credentials", NtStatus.NO_SUCH_LOGON_SESSION,
     "no Kerberos ticket in the cache; get one with kinit or give a password"),
    ("no credentials cache", "no_credentials", NtStatus.NO_SUCH_LOGON_SESSION,
     "no Kerberos ticket cache; get a ticket with kinit or give a password"),
    ("credential cache is empty", "no_credentials", NtStatus.NO_SUCH_LOGON_SESSION,
     "the Kerberos ticket cache is empty; get a ticket with kinit or give a password"),
    ("matching credential not found", "no_credentials", NtStatus.NO_SUCH_LOGON_SESSION,
     "no ticket for this user in the Kerberos ticket cache"),
)


def _describe(exc: BaseException, hostname: str, protocol: str,
              password: Optional[str]) -> AuthenticationFailed:
    """An AuthenticationFailed naming the cause of a pyspnego/GSS failure."""
    detail = " ".join(str(exc).split())
    if password:
        detail = detail.replace(password, "***")
    if len(detail) > 400:
        detail = detail[:400] + "..."
    lowered = detail.lower()
    for needle, cause, status, text in _KRB_FAILURES:
        if needle in lowered and (cause != "unknown_user" or "not found" in lowered):
            text = text.format(spn=f"cifs/{hostname}")
            return AuthenticationFailed(status, cause, f"Kerberos: {text} ({detail})")
    return AuthenticationFailed(NtStatus.LOGON_FAILURE, "failed",
                                f"{protocol} authentication failed: "
                                f"{type(exc).__name__}: {detail}")


def _kerberos_principal(username: Optional[str], domain: Optional[str]) -> Optional[str]:
    """``user@REALM`` as Kerberos wants it: ``DOMAIN\\user`` loses the NetBIOS
    domain (the default realm applies); a dotted ``domain`` is the realm."""
    if not username:
        return None
    if "\\" in username:
        username = username.split("\\", 1)[1]
    if "@" not in username and domain and "." in domain:
        username = f"{username}@{domain.upper()}"
    return username


class Authenticator:
    """Client side of one SMB authentication exchange.

    ``protocol`` is ``"negotiate"`` (SPNEGO: Kerberos when a ticket can be
    had, else NTLM), ``"kerberos"`` (Kerberos only, never NTLM; without a
    username the default principal of the ticket cache, without a password
    a ticket from the cache, with one a TGT got in memory without kinit) or
    ``"ntlm"``.  Failures raise :class:`AuthenticationFailed`."""

    __slots__ = ("username", "hostname", "protocol", "_ctx")

    def __init__(self, username: Optional[str], password: Optional[str], hostname: str,
                 protocol: str = "negotiate", domain: Optional[str] = None) -> None:
        check_auth_protocol(protocol)
        if protocol == "kerberos":
            if password is not None and not username:
                raise ValueError("a password needs a username")
            username = _kerberos_principal(username, domain)
        else:
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
        if protocol == "kerberos" and not kerberos_available():
            raise AuthenticationFailed(
                NtStatus.LOGON_FAILURE, "unavailable",
                "Kerberos is not available: install smblayer[kerberos] (pyspnego's gssapi "
                "and krb5 modules, built against libkrb5-dev)")
        options = 0
        if protocol == "negotiate" and password is not None and _is_ip_literal(hostname):
            # As Windows does: a server named by its IP address gets NTLM (a
            # service ticket needs a host name).  Trying Kerberos here costs a
            # KDC lookup that stalls for seconds where none is configured.
            options = spnego.NegotiateOptions.use_ntlm
        try:
            # Kerberos alone is a raw krb5 GSS token: no SPNEGO, no NTLM fallback.
            self._ctx = spnego.client(username, password, hostname=hostname, service="cifs",
                                      protocol=protocol, options=options)
        except Exception as exc:  # noqa: BLE001 - pyspnego/gssapi raise many types
            if protocol != "kerberos":
                raise          # the session says why (e.g. no password, no ticket)
            raise _describe(exc, hostname, protocol, password) from None

    def __repr__(self) -> str:
        return (f"Authenticator(username={self.username!r}, hostname={self.hostname!r}, "
                f"protocol={self.protocol!r})")

    def step(self, in_token: Optional[bytes] = None) -> Optional[bytes]:
        """Process the server's token (None to start); return the token to send, if any.
        Raises :class:`NtlmWithoutIntegrity` (SPNEGO only) as described above,
        :class:`AuthenticationFailed` for a Kerberos failure."""
        from spnego import ContextReq
        from spnego.exceptions import OperationNotAvailableError
        try:
            out = self._ctx.step(in_token)
        except OperationNotAvailableError as exc:
            if self.protocol == "negotiate" and self._mechanism() == "ntlm" \
                    and not self._ctx.context_attr & ContextReq.integrity:
                raise NtlmWithoutIntegrity(
                    "the server's NTLM does not negotiate signing, so SPNEGO cannot send "
                    "its mechListMIC") from None
            raise _describe(exc, self.hostname, self.protocol, None) from None
        except Exception as exc:  # noqa: BLE001
            if self.protocol != "kerberos" and self._mechanism() != "kerberos":
                raise
            raise _describe(exc, self.hostname, self.protocol, None) from None
        if self.protocol == "kerberos" and self._mechanism() == "ntlm":
            raise AuthenticationFailed(NtStatus.LOGON_FAILURE, "ntlm_fallback",
                                       "Kerberos was required but NTLM was negotiated")
        return out

    def finish(self, in_token: Optional[bytes]) -> None:
        """After the server's success: process its last token (Kerberos: the
        AP-REP) and check that the server proved its identity."""
        if in_token and not self.complete:
            try:
                self.step(in_token)
            except AuthenticationFailed as exc:
                if self._mechanism() != "kerberos" and self.protocol != "kerberos":
                    raise
                raise AuthenticationFailed(
                    NtStatus.MUTUAL_AUTHENTICATION_FAILED, "mutual_auth",
                    f"Kerberos mutual authentication failed: the server's AP-REP does not "
                    f"verify ({exc})") from None
        if self._mechanism() == "kerberos" and not self.complete:
            raise AuthenticationFailed(NtStatus.MUTUAL_AUTHENTICATION_FAILED, "mutual_auth",
                                       "Kerberos mutual authentication failed: the server "
                                       "did not prove its identity (no AP-REP)")

    def _mechanism(self) -> str:
        try:
            return self._ctx.negotiated_protocol or ""
        except Exception:  # noqa: BLE001 - not yet known
            return ""

    @property
    def complete(self) -> bool:
        """True once the security context is fully established."""
        return bool(self._ctx.complete)

    @property
    def session_key(self) -> bytes:
        """The GSS session key (ExportedSessionKey for NTLM; 32 bytes for
        Kerberos with AES-256, the full key goes into the AES-256 SMB keys)."""
        return self._ctx.session_key

    @property
    def negotiated_protocol(self) -> str:
        """The mechanism actually in use, e.g. 'ntlm' or 'kerberos'."""
        return self._mechanism()


class AnonymousAuthenticator:
    """An anonymous (null session) NTLM exchange ([MS-NLMP] 3.2.5.1.2):
    NEGOTIATE with NTLMSSP_NEGOTIATE_ANONYMOUS, then an AUTHENTICATE with an
    empty user and NT response and a one-byte LM response.  There is no
    session key, so such a session can neither sign nor encrypt.  (pyspnego
    has no anonymous initiator; the two messages are simple enough to pack.)"""

    __slots__ = ("_state",)
    negotiated_protocol = "ntlm"
    protocol = "ntlm"
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

    def finish(self, in_token: Optional[bytes]) -> None:
        """Nothing to check: an anonymous session proves nothing."""


def authenticator(username: Optional[str], password: Optional[str], hostname: str,
                  protocol: str = "negotiate", domain: Optional[str] = None):
    """An Authenticator, or an AnonymousAuthenticator when there is no user
    (except for Kerberos, where no user means the ticket cache's principal)."""
    if not username and check_auth_protocol(protocol) != "kerberos":
        return AnonymousAuthenticator()
    if password is not None and (protocol == "ntlm" or
                                 (protocol == "negotiate" and _is_ip_literal(hostname))):
        # NTLM with a password: the in-tree NTLMv2 (security/ntlm.py), raw
        # NTLMSSP.  To an IP address SPNEGO would choose NTLM anyway (no
        # service ticket without a host name); pyspnego's import (gssapi,
        # krb5, TLS: ~200 ms) is left for Kerberos and SPNEGO proper.
        from .ntlm import NtlmAuthenticator
        return NtlmAuthenticator(username, password, domain, protocol=protocol)
    return Authenticator(username, password, hostname, protocol=protocol, domain=domain)
