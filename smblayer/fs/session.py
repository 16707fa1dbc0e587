"""Authenticated sessions: SESSION_SETUP through pyspnego, then signing and
encryption of every request and verification of every response.

Theory of operation
-------------------
A ``Session`` is the ``security`` object of the tasks it sends.  The client
calls ``protect(task, header, parts)`` under its send lock once the
MessageId is in the header (so signatures and SMB1 sequence numbers follow
wire order) and ``verify(task, reply)`` in the waiting thread; the demux
calls ``decrypt(frame)`` for transform frames.  An SMB2 response is checked
with the key its request was signed with (``task.signer``: the key of the
connection both went on, a multichannel channel's own), whatever became of
that channel since.

Setup: pyspnego produces tokens; each leg is a SESSION_SETUP task that
is *not* replayable (a reconnect mid-setup fails it; the reconnect handler
starts over).  For 3.1.1 the preauth hash runs from the connection's
NEGOTIATE hash over every SESSION_SETUP request and every non-final
response; the keys come from the hash before the final response, which is
then verified with the new signing key.  All legs go on one connection,
and the hash starts from that connection's NEGOTIATE.  Once set up, a
session (guest and anonymous ones too) is one of the client's
(``client.session_up``, until logoff: multichannel's failover counts them);
one whose connection was lost before that is set up again.  A session with
keys is also registered by id (``register_session``: decryption, ECHO).

Per-dialect differences live in two small operation tables,
``_Smb2Auth`` and ``_Smb1Auth``; Session itself never branches on the dialect.

After a reconnect the connect worker runs ``_on_reconnect`` at the first
recovery stage, STAGE_SESSION: a new SESSION_SETUP (new SessionId and
keys).  The trees and their open files recover at their own stages
(``smblayer.fs.recovery``); the requests waiting meanwhile are reissued
with the new ids because the header's SessionId/TreeId are read from the
live objects at send time.
"""
from __future__ import annotations

import logging
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Optional

from ..client import STAGE_SESSION, SmbClient
from ..config import Dialect
from ..errors import (SmbAuthError, SmbConnectionError, SmbError, SmbNegotiateError,
                      SmbProtocolError, SmbStatusError)
from ..proto import smb1, smb2
from ..proto.commands import (FSCTL_VALIDATE_NEGOTIATE_INFO, NO_FILE_ID, ioctl_request,
                              parse_ioctl_response)
from ..proto import session as codec
from ..proto.negotiate import (VALIDATE_NEGOTIATE_SIZE, parse_validate_negotiate,
                               validate_negotiate_input)
from ..proto.session import (SESSION_FLAG_ENCRYPT_DATA, SESSION_FLAG_IS_GUEST,
                             SESSION_FLAG_IS_NULL)
from ..proto.smb2 import MalformedMessage
from ..proto.status import NtStatus
from ..security import (AES_128_CCM, AES_CMAC, HMAC_SHA256, AnonymousAuthenticator,
                        AuthenticationFailed, Authenticator, NtlmWithoutIntegrity, PreauthHash,
                        Smb1Signer, Smb2Signer, TransformCipher, authenticator,
                        check_auth_protocol,
                        derive_session_keys)
from ..task import Reply, SmbTask

log = logging.getLogger("smblayer")



_MORE = NtStatus.MORE_PROCESSING_REQUIRED
_RENEW_LIMIT = 8          # sends of one request across session renewals
_SETUP_TRIES = 3          # SESSION_SETUP exchanges cut short by a reconnect, then give up


class _ConnectionChanged(Exception):
    """A SESSION_SETUP leg was lost with its connection, or went out on a
    newer one than the exchange began on: start over (``error``: what to
    raise when out of tries).  ``counts``: False when the exchange ended
    but its connection was lost before the session was counted (no try
    lost: the next one waits for a connection)."""

    def __init__(self, error: SmbError, counts: bool = True):
        super().__init__(str(error))
        self.error = error
        self.counts = counts


def _decode(parse, reply):
    """``parse(reply)`` (a proto codec); a malformed reply is an SmbProtocolError."""
    try:
        return parse(reply)
    except MalformedMessage as exc:
        raise SmbProtocolError(str(exc)) from None


class _Smb2Auth:
    """SESSION_SETUP / LOGOFF for SMB 2.0.2 .. 3.1.1."""

    def __init__(self, session: "Session"):
        self.s = session

    def setup_task(self, token: bytes, session_id: int) -> SmbTask:
        body = codec.session_setup_request(token, require_signing=self.s.require_signing,
                                           previous_session_id=self.s.previous_session_id)
        return SmbTask(smb2.Command.SESSION_SETUP, body, session_id=session_id)

    @staticmethod
    def parse_setup(reply: Reply):
        flags, token = _decode(codec.parse_session_setup_response, reply)
        return reply.header.session_id, flags, token

    def logoff_task(self) -> SmbTask:
        return SmbTask(smb2.Command.LOGOFF, codec.logoff_request(), replayable=False)

    def make_keys(self, gss_key: bytes, preauth: Optional[bytes]) -> None:
        s = self.s
        negotiated = s.client.negotiated
        dialect = negotiated.dialect
        cipher = negotiated.cipher_id if dialect is Dialect.SMB3_1_1 else (
            AES_128_CCM if negotiated.supports_encryption else 0)
        keys = derive_session_keys(gss_key[:16].ljust(16, b"\0"), int(dialect),
                                   preauth if dialect is Dialect.SMB3_1_1 else None,
                                   cipher or None, full_session_key=gss_key)
        if dialect < Dialect.SMB3_0:
            algorithm = HMAC_SHA256
        elif dialect is Dialect.SMB3_1_1 and negotiated.signing_algorithm is not None:
            algorithm = negotiated.signing_algorithm
        else:
            algorithm = AES_CMAC
        s.signer = Smb2Signer(algorithm, keys.signing_key)
        s.cipher = (TransformCipher(cipher, keys.encryption_key, keys.decryption_key,
                                    int(dialect)) if cipher else None)
        s.application_key = keys.application_key

    def check_final_response(self, reply: Reply, task: SmbTask) -> None:
        """The final SESSION_SETUP response of an authenticated session is
        signed with the new key.  On 3.1.1 it MUST be ([MS-SMB2] 3.2.5.3.1):
        its signature covers the preauth hash, which is what shows a
        negotiate downgraded by a man in the middle.  A session that
        requires signing insists on it on every dialect (as smbclient)."""
        s = self.s
        if not reply.header.flags & smb2.Flags.SIGNED:
            if s.client.negotiated.dialect is Dialect.SMB3_1_1 or s.signing:
                raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP",
                                   message="the server's final SESSION_SETUP response is not "
                                           "signed; session refused (it may have been tampered "
                                           "with on the way)")
            return
        if not s.signer.verify(reply.message):
            raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP",
                               message="bad signature on the server's final SESSION_SETUP "
                                       "response; session refused")

    def protect(self, task: SmbTask, header: bytearray, parts: list) -> list:
        s = self.s
        smb2.set_session_id(header, s.session_id)
        if s.preauth is not None:
            s.preauth.update(parts)
        if s.cipher is not None and (s.encrypt or (task.tree is not None and task.tree.encrypt)):
            _clear_signed(header)
            return s.cipher.encrypt(parts, s.session_id)
        if s.signer is not None and (s.signing or self._must_sign(task)):
            signer = task.signer = _signer_for(s, task)
            signer.sign_parts(header, parts[1:])
        return parts

    def _must_sign(self, task: SmbTask) -> bool:
        """3.1.1 signs TREE_CONNECT even when signing is not required
        ([MS-SMB2] 3.2.4.1.1); a task may ask for a signature itself."""
        if task.header_flags & smb2.FLAG_SIGNED:
            return True
        return task.command == smb2.Command.TREE_CONNECT and \
            self.s.client.negotiated.dialect is Dialect.SMB3_1_1

    def validate_negotiate(self, tree) -> None:
        """FSCTL_VALIDATE_NEGOTIATE_INFO ([MS-SMB2] 3.2.5.5): a signed echo
        of what was negotiated, so a downgrade by a man in the middle shows."""
        n = self.s.client.negotiated
        request = ioctl_request(FSCTL_VALIDATE_NEGOTIATE_INFO, NO_FILE_ID,
                                validate_negotiate_input(n), max_output=VALIDATE_NEGOTIATE_SIZE)
        task = SmbTask(smb2.Command.IOCTL, request, tree=tree, security=self.s,
                       expected_response=VALIDATE_NEGOTIATE_SIZE)
        task.header_flags = smb2.FLAG_SIGNED
        try:
            reply = self.s.client.run_task(task)
        except SmbError as exc:
            if getattr(exc, "status", None) in (NtStatus.NOT_SUPPORTED,
                                                NtStatus.INVALID_DEVICE_REQUEST,
                                                NtStatus.FILE_CLOSED):
                log.info("smblayer: server does not validate negotiate: %s", exc)
                return
            raise
        if not reply.encrypted and not reply.header.flags & smb2.FLAG_SIGNED:
            raise SmbProtocolError("VALIDATE_NEGOTIATE_INFO response is neither signed nor "
                                   "encrypted")
        try:
            caps, guid, mode, dialect = parse_validate_negotiate(parse_ioctl_response(reply)
                                                                 .output)
        except MalformedMessage as exc:
            raise SmbProtocolError(f"VALIDATE_NEGOTIATE_INFO: {exc}") from None
        if (caps, guid, mode, dialect) != (n.capabilities, n.server_guid, n.security_mode,
                                           int(n.dialect)):
            self.s.client.close()
            raise SmbNegotiateError("VALIDATE_NEGOTIATE_INFO mismatch: the negotiate was "
                                    "tampered with; connection closed")

    def verify(self, task: SmbTask, reply: Reply) -> None:
        if reply.encrypted:
            return
        s = self.s
        if s.cipher is not None and s.encrypt_verified and (
                s.encrypt or (task.tree is not None and task.tree.encrypt)):
            raise SmbProtocolError(
                f"unencrypted {smb2.Command(task.command).name} response on an encrypted "
                "session; rejected")
        if smb2.flags_of(reply.message) & smb2.FLAG_SIGNED:     # no header object, no enum
            if s.signer is not None and reply.status != _SESSION_DELETED and \
                    not (task.signer or _signer_for(s, task)).verify(reply.message):
                raise SmbProtocolError(
                    f"bad signature on the {smb2.Command(task.command).name} response; rejected")
        elif s.signing and s.signer is not None and task.command != smb2.Command.SESSION_SETUP \
                and reply.status not in _UNSIGNED_OK:
            raise SmbProtocolError(
                f"unsigned {smb2.Command(task.command).name} response on a signed session; "
                "rejected")

    def protect_cancel(self, task: SmbTask, parts) -> list:
        header = bytearray(parts[0])
        return self.protect(task, header, [header, *parts[1:]])

    def protect_compound(self, tasks, elements) -> list:
        """Sign each element of a compound over its own bytes (padding
        included), or encrypt the whole chain as one message."""
        s = self.s
        session_id = s.session_id
        flat: list = []
        for parts in elements:
            smb2.set_session_id(parts[0], session_id)
            flat += parts
        if s.cipher is not None and self._encrypts(tasks):
            for parts in elements:
                _clear_signed(parts[0])
            return s.cipher.encrypt(flat, s.session_id)
        if s.signer is not None and (s.signing or self._signs(tasks)):
            signer = _signer_for(s, tasks[0])
            for task, parts in zip(tasks, elements):
                task.signer = signer
                signer.sign_parts(parts[0], parts[1:])
        return flat

    def _encrypts(self, tasks) -> bool:
        """Does any element of a compound go encrypted?"""
        if self.s.encrypt:
            return True
        for task in tasks:
            if task.tree is not None and task.tree.encrypt:
                return True
        return False

    def _signs(self, tasks) -> bool:
        """Must a compound be signed on a session that does not sign?"""
        for task in tasks:
            if self._must_sign(task):
                return True
        return False

    def decrypt(self, frame) -> bytes:
        cipher = self.s.cipher
        if cipher is None:
            raise SmbProtocolError("encrypted frame on a session without encryption keys")
        return cipher.decrypt(frame)


def _signer_for(session, task: SmbTask):
    """The key that signs ``task`` and its response: its channel's (a
    multichannel session's extra channel, [MS-SMB2] 3.2.4.1.1), else the
    session's.  Asked when the request is signed (under the send lock: the
    key of the connection it goes on), and kept as ``task.signer``: the
    response comes on that connection, signed with that key, and is checked
    with it even if the channel was lost and bound again (a new key) before
    the waiting thread got to it."""
    channel = task.channel
    if channel is not None:
        if channel.signer is not None:
            return channel.signer
    elif session.client.multichannel:
        return session.client.channel0_signer(session) or session.signer
    return session.signer


def _clear_signed(header: bytearray) -> None:
    """An encrypted message is authenticated by its transform header and is
    not signed ([MS-SMB2] 3.2.4.1.1): no SMB2_FLAGS_SIGNED with a zero
    signature inside it, whatever the task asked for."""
    smb2.clear_flags(header, smb2.FLAG_SIGNED)


# Responses a server may send unsigned even on a signed session.
#: a SESSION_SETUP refused for these: the credentials are wrong (trying
#: again on a new connection would not help)
_CREDENTIALS_REFUSED = frozenset({
    NtStatus.LOGON_FAILURE, NtStatus.WRONG_PASSWORD, NtStatus.NO_SUCH_USER,
    NtStatus.ACCOUNT_DISABLED, NtStatus.ACCOUNT_LOCKED_OUT, NtStatus.ACCOUNT_EXPIRED,
    NtStatus.ACCOUNT_RESTRICTION, NtStatus.PASSWORD_EXPIRED, NtStatus.PASSWORD_MUST_CHANGE,
    NtStatus.INVALID_ACCOUNT_NAME})
_UNSIGNED_OK = frozenset({NtStatus.PENDING, NtStatus.USER_SESSION_DELETED,
                          NtStatus.NETWORK_SESSION_EXPIRED})
#: ... and STATUS_USER_SESSION_DELETED is not checked even when signed: the
#: server no longer has the session's key (Samba signs it with another key;
#: smbXcli_base.c skips the check too), and it is taken unsigned anyway, so
#: the signature proves nothing; failing it would drop a connection that
#: other sessions' requests are on
_SESSION_DELETED = int(NtStatus.USER_SESSION_DELETED)


class _Smb1Signing:
    """SMB1 signs per connection, not per session ([MS-CIFS] 3.2.4.1.1):
    the first signed session's key and one sequence counter serve every
    session on the connection.  Kept as ``client.smb1_signing`` (the client
    drops it with the connection)."""

    def __init__(self, signer: Smb1Signer):
        self.signer = signer
        # The final SESSION_SETUP request/response pair used 0 and 1.
        self.seq = 2


class _Smb1Auth:
    """SESSION_SETUP_ANDX (extended security), LOGOFF_ANDX."""

    def __init__(self, session: "Session"):
        self.s = session

    def setup_task(self, token: bytes, session_id: int) -> SmbTask:
        n = self.s.client.negotiated
        caps = smb1.CLIENT_CAPABILITIES & n.capabilities | smb1.Capabilities.EXTENDED_SECURITY
        task = SmbTask(smb1.Command.SESSION_SETUP_ANDX,
                       codec.session_setup_andx_request(token, max_mpx=n.max_mpx_count,
                                                        session_key=n.smb1_session_key,
                                                        capabilities=caps),
                       session_id=session_id)
        if self.s.require_signing:
            task.header_flags = smb1.Flags2.SMB_SECURITY_SIGNATURE
        return task

    @staticmethod
    def parse_setup(reply: Reply):
        action, token = _decode(codec.parse_session_setup_andx_response, reply)
        return reply.header.uid, (SESSION_FLAG_IS_GUEST if action & 1 else 0), token

    def logoff_task(self) -> SmbTask:
        return SmbTask(smb1.Command.LOGOFF_ANDX, codec.logoff_andx_request(), replayable=False)

    def make_keys(self, gss_key: bytes, preauth: Optional[bytes]) -> None:
        s = self.s
        client = s.client
        if client.smb1_signing is not None:
            s.signer = client.smb1_signing.signer      # the connection already signs
        elif s.signing:
            s.signer = Smb1Signer(gss_key)
            client.smb1_signing = _Smb1Signing(s.signer)

    def check_final_response(self, reply: Reply, task: SmbTask) -> None:
        """When signing starts with this session its final response is the
        first signed message (sequence 1); on a connection that already
        signed, run_task has verified it in sequence."""
        s = self.s
        if s.signer is not None and task.sign_seq < 0 and not s.signer.verify(reply.message, 1):
            raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP_ANDX",
                               message="bad signature on the server's final SESSION_SETUP_ANDX "
                                       "response; session refused")

    def protect(self, task: SmbTask, header: bytearray, parts: list) -> list:
        s = self.s
        smb1.set_uid(header, s.session_id)
        signing = s.client.smb1_signing
        task.sign_seq = -1
        if signing is not None:
            task.sign_seq = signing.seq
            # NT_CANCEL has no response, so it takes one number, others two.
            signing.seq += 1 if task.command == smb1.Command.NT_CANCEL else 2
            message = bytearray(b"".join(parts))
            signing.signer.sign(message, task.sign_seq)
            return [message]
        return parts

    def verify(self, task: SmbTask, reply: Reply) -> None:
        signing = self.s.client.smb1_signing
        if task.sign_seq >= 0 and signing is not None and \
                not signing.signer.verify(reply.message, task.sign_seq + 1):
            raise SmbProtocolError(
                f"bad signature on the {smb1.Command(task.command).name} response; rejected")

    def protect_cancel(self, task: SmbTask, parts) -> list:
        header = bytearray(parts[0])
        cancel = SmbTask(smb1.Command.NT_CANCEL, ())
        return self.protect(cancel, header, [header, *parts[1:]])

    @staticmethod
    def decrypt(frame) -> bytes:
        raise SmbProtocolError("SMB1 has no encryption")


class Session:
    """An authenticated SMB session on ``client`` (any dialect).

    ``encrypt=True`` encrypts every request after setup (SMB 3.x only);
    a share that requires encryption is encrypted automatically.
    ``require_signing`` defaults to what the server or client demands.
    ``auth_protocol`` is "negotiate" (SPNEGO), "kerberos" (never NTLM) or
    "ntlm"; with "negotiate", a server whose NTLM cannot sign (so SPNEGO
    cannot send its mechListMIC) is answered with raw NTLMSSP, as smbclient
    manages it.  Kerberos comes from the ticket cache (KRB5CCNAME) when
    ``password`` is None.

    ``allow_guest=False`` refuses (SmbAuthError, cause "guest") a guest
    session the server gives in answer to credentials (a server that maps
    bad users or passwords to guest): such a session is not the caller's
    user and can neither sign nor encrypt.  The default, True, goes on as
    guest, as smbclient does.
    """

    def __init__(self, client: SmbClient, username: Optional[str] = None,
                 password: Optional[str] = None, *, domain: Optional[str] = None,
                 encrypt: bool = False, require_signing: Optional[bool] = None,
                 auth_protocol: str = "negotiate", server_name: Optional[str] = None,
                 allow_guest: bool = True):
        if not isinstance(client, SmbClient):
            raise TypeError("Session needs an SmbClient")
        self.client = client
        # The server's name for Kerberos (cifs/<name>) and share paths, when
        # the client connected to an address (e.g. a DFS target's name).
        self.server_name = server_name or client.host
        self.username = username
        self._password = password
        self.domain = domain
        self.auth_protocol = check_auth_protocol(auth_protocol)
        self.encrypt = bool(encrypt)
        self.allow_guest = bool(allow_guest)
        self._require_signing_arg = require_signing
        self.session_id = 0
        self.established = False        # set up (again, after a reconnect): its trees may reconnect
        self.previous_session_id = 0    # sent in SESSION_SETUP after a reconnect
        self.signer = None
        self.cipher = None
        self.application_key = b""
        self.signing = False
        self.encrypt_verified = False
        self.is_guest = False
        self.preauth: Optional[PreauthHash] = None
        self._setup_generation = 0          # the connection a SESSION_SETUP exchange runs on
        self.trees: Dict[int, object] = {}
        self._trees_lock = threading.Lock()
        self._closed = False
        self._setup_lock = threading.RLock()
        self._renewed_at = 0.0
        self.mechanism = ""              # "kerberos" / "ntlm" once set up
        self._protocol_used = self.auth_protocol
        self._setup()
        client.add_reconnect_handler(self._on_reconnect, stage=STAGE_SESSION)
        client.add_exit_handler(self._at_exit)

    def __repr__(self) -> str:
        return (f"<Session {self.username!r}@{self.client.host}:{self.client.port} "
                f"id=0x{self.session_id:x} signing={self.signing} encrypt={self.encrypt}>")

    # -- setup -----------------------------------------------------------------

    @property
    def require_signing(self) -> bool:
        n = self.client.negotiated
        if self._require_signing_arg is not None:
            return self._require_signing_arg or n.signing_required
        return self.client.require_signing or n.signing_required

    def _setup(self) -> None:
        with self._setup_lock:
            tries = 0
            while True:
                try:
                    return self._setup_once()
                except _ConnectionChanged as changed:
                    tries += changed.counts
                    if tries == _SETUP_TRIES:
                        raise changed.error from None
                    log.info("smblayer: %s:%s: the connection changed during SESSION_SETUP; "
                             "starting over", self.client.host, self.client.port)

    def _setup_once(self) -> None:
        """One SESSION_SETUP exchange, all of it on one connection: on 3.1.1
        the keys come from that connection's NEGOTIATE (the preauth hash),
        and a SessionId lives on its connection.  A reconnect in between
        (a leg lost with its connection, or sent on the next one) raises
        _ConnectionChanged: ``_setup`` starts over on the new connection.
        So does that connection's loss before the session is one of the
        client's (``client.session_up``): the server logged it off with
        the connection, and a multichannel failover decided meanwhile did
        not count it (the bound session then binds channel 0's next
        connection instead of a reconnect that would set this one up again)."""
        self.established = False
        negotiated = self.client.negotiated
        if negotiated is None:
            raise SmbError("client is not connected")
        self._ops = _Smb1Auth(self) if negotiated.dialect is Dialect.SMB1 else _Smb2Auth(self)
        if self.encrypt and not negotiated.supports_encryption:
            raise SmbError(f"encryption requested but {negotiated.dialect.name} with this "
                           "server does not support it")
        self.signer = self.cipher = None
        self.negotiate_validated = False
        self.signing = False
        self.encrypt_verified = False
        self.session_id = 0
        try:
            self._authenticate(self.auth_protocol)
        except NtlmWithoutIntegrity as exc:
            log.info("smblayer: %s:%s: %s; authenticating with NTLM directly",
                     self.client.host, self.client.port, exc)
            self._authenticate("ntlm")
        if not self.client.session_up(self, self._setup_generation):
            self.client.unregister_session(self.session_id)
            raise _ConnectionChanged(SmbConnectionError(
                f"connection to {self.client.host}:{self.client.port} lost as SESSION_SETUP "
                "ended"), counts=False)
        self.established = True

    def _authenticate(self, protocol: str, reauth: bool = False) -> None:
        """SESSION_SETUP legs until success.  ``reauth``: re-authenticate the
        existing session in place (same SessionId, keys kept, [MS-SMB2]
        3.2.4.2.3), e.g. after its Kerberos ticket expired.  An SmbAuthError
        carries the server's ``host`` and ``port``."""
        try:
            self._setup_legs(protocol, reauth)
        except SmbAuthError as exc:
            exc.host, exc.port = self.client.host, self.client.port
            raise

    def _setup_legs(self, protocol: str, reauth: bool) -> None:
        ops = self._ops
        # The legs must all go on this connection, and on 3.1.1 its NEGOTIATE
        # starts the preauth hash: both from one Connection (the connect
        # worker numbers a new connection before it is the client's).
        conn = self.client.connection
        if conn is None:
            raise SmbError("client is not connected")
        self._setup_generation = conn.generation
        negotiated = conn.negotiated
        if not reauth:
            self.preauth = None
            if negotiated.dialect is Dialect.SMB3_1_1:
                # A new session's preauth hash starts from the connection's.
                self.preauth = PreauthHash()
                self.preauth.update(negotiated.negotiate_messages[0])
                self.preauth.update(negotiated.negotiate_messages[1])
        try:
            auth = authenticator(self.username, self._password, self.server_name,
                                 protocol=protocol, domain=self.domain)
            token = auth.step(None)
        except AuthenticationFailed as exc:
            raise SmbAuthError(exc.status, "SESSION_SETUP", message=str(exc),
                               cause=exc.cause) from None
        except ValueError as exc:
            raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                               message=str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - pyspnego raises many types
            raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                               message=self._start_failure(protocol, exc)) from None
        session_id = self.session_id if reauth else 0
        while True:
            task = ops.setup_task(token or b"", session_id)
            task.security = self
            task.replayable = False
            task.ok_statuses = frozenset({0, _MORE})
            try:
                reply = self.client.run_task(task)
            except SmbAuthError:
                raise
            except SmbError as exc:
                if not reauth and (isinstance(exc, SmbConnectionError) or
                                   task.generation != self._setup_generation):
                    raise _ConnectionChanged(exc) from None
                status = getattr(exc, "status", None)
                if status is not None:
                    raise SmbAuthError(status, "SESSION_SETUP",
                                       message=f"{protocol} authentication as "
                                               f"{self.username!r} failed") from None
                raise
            if not reauth and task.generation != self._setup_generation:
                raise _ConnectionChanged(SmbConnectionError(
                    f"connection to {self.client.host}:{self.client.port} changed during "
                    "SESSION_SETUP"))
            session_id, flags, in_token = ops.parse_setup(reply)
            if not reauth:
                self.session_id = session_id
            status = reply.header.status
            try:
                if status == _MORE:
                    if self.preauth is not None:
                        self.preauth.update(reply.message)
                    token = auth.step(in_token)
                    continue
                # Success: finish the mechanism (Kerberos: the AP-REP, mutual
                # authentication), then derive keys.
                auth.finish(in_token)
            except AuthenticationFailed as exc:
                raise SmbAuthError(exc.status, "SESSION_SETUP", message=str(exc),
                                   cause=exc.cause) from None
            except (NtlmWithoutIntegrity, SmbError):
                raise
            except Exception as exc:  # noqa: BLE001 - pyspnego raises many types
                raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                                   message=f"authentication failed: "
                                           f"{type(exc).__name__}") from None
            self.mechanism = auth.negotiated_protocol
            self._protocol_used = protocol
            if not reauth:
                self._established(auth, flags, reply, task)
            return

    def authenticator(self) -> Authenticator:
        """A fresh authenticator with this session's credentials and
        mechanism (binding a channel authenticates again, [MS-SMB2] 3.2.4.2.3)."""
        return authenticator(self.username, self._password, self.server_name,
                             protocol=self._protocol_used, domain=self.domain)

    def renew(self, task: SmbTask) -> bool:
        """The client's hook for a reply with STATUS_NETWORK_SESSION_EXPIRED:
        re-authenticate this session in place (a new ticket from the cache or
        the credentials; NTLM too) unless another request already did since
        ``task`` was sent; True means "send the request again"."""
        setup = ((smb1.Command.SESSION_SETUP_ANDX, smb1.Command.LOGOFF_ANDX)
                 if isinstance(self._ops, _Smb1Auth)
                 else (smb2.Command.SESSION_SETUP, smb2.Command.LOGOFF))
        if self._closed or task.command in setup or task.sends > _RENEW_LIMIT:
            return False
        with self._setup_lock:
            if self._renewed_at < task.t_sent:
                log.info("smblayer: session 0x%x on %s:%s expired; re-authenticating",
                         self.session_id, self.client.host, self.client.port)
                self.reauthenticate()
        return True

    def reauthenticate(self) -> None:
        """Re-authenticate this session in place now (same SessionId and keys;
        a new Kerberos ticket from the cache or the credentials).  Raises
        SmbAuthError if that fails."""
        with self._setup_lock:
            self._authenticate(self._protocol_used, reauth=True)
            self._renewed_at = time.monotonic()

    def _start_failure(self, protocol: str, exc: Exception) -> str:
        """Why authentication could not even start (nothing was sent)."""
        if isinstance(exc, ImportError) and protocol == "kerberos":
            return "Kerberos needs the Python package 'gssapi' (pip install gssapi)"
        if self._password is None:
            if protocol == "ntlm":
                return (f"no password was given for {self.username!r} (NTLM needs one); "
                        "nothing was sent to the server")
            return (f"no password was given for {self.username!r} and no usable Kerberos "
                    "ticket was found (KRB5CCNAME); nothing was sent to the server")
        detail = str(exc)
        if self._password:
            detail = detail.replace(self._password, "***")
        return f"cannot start {protocol} authentication: {type(exc).__name__}: {detail}"

    def _established(self, auth: Authenticator, flags: int, reply: Reply, task: SmbTask) -> None:
        # Guest and anonymous (null) sessions have no session key: no signing.
        # ([MS-SMB2] 3.2.5.3.1's signed final response needs a key; smbclient
        # does not check it for them either.)
        self.is_guest = bool(flags & (SESSION_FLAG_IS_GUEST | SESSION_FLAG_IS_NULL)) or \
            isinstance(auth, AnonymousAuthenticator)
        preauth = self.preauth.value if self.preauth is not None else None
        self.preauth = None
        if flags & SESSION_FLAG_ENCRYPT_DATA:
            self.encrypt = True
        if self.is_guest:
            if not self.allow_guest and not isinstance(auth, AnonymousAuthenticator):
                raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                                   message=f"the server gave a guest session instead of "
                                           f"logging on {self.username!r} (allow_guest=False)",
                                   cause="guest")
            if self.require_signing or self.encrypt:
                raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                                   message="a guest or anonymous session cannot sign or "
                                           "encrypt")
            return
        gss_key, why = _session_key(auth)
        if not gss_key:
            # Fail closed: without a key nothing can be signed, encrypted or
            # checked (on 3.1.1 the signed final response is what proves the
            # negotiate was not tampered with).
            dialect = self.client.negotiated.dialect
            if self.require_signing or self.encrypt or dialect is Dialect.SMB3_1_1:
                need = ("encrypt" if self.encrypt else "sign" if self.require_signing
                        else f"verify the {dialect.name} final response")
                raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP",
                                   message=f"the session must {need} but has no session "
                                           f"key ({why}); session refused",
                                   cause="no_session_key")
            log.warning("smblayer: %s:%s: session 0x%x has no session key (%s); it is "
                        "neither signed nor encrypted", self.client.host, self.client.port,
                        self.session_id, why)
            return
        # Sign when either side requires it ([MS-SMB2] 3.2.5.3.1); signed
        # responses are verified either way.
        self.signing = self.require_signing
        self._ops.make_keys(gss_key, preauth)
        self._ops.check_final_response(reply, task)
        self.client.register_session(self.session_id, self)
        if self.client.negotiated.dialect is Dialect.SMB1:
            if self.signer is not None and self.client.default_security is None:
                self.client.default_security = self
            return
        if self.encrypt and self.cipher is None:
            raise SmbError("server requires encryption but no cipher was negotiated")
        self.encrypt_verified = True

    # -- the client's security hooks ----------------------------------------------

    def protect(self, task: SmbTask, header: bytearray, parts: list) -> list:
        return self._ops.protect(task, header, parts)

    def verify(self, task: SmbTask, reply: Reply) -> None:
        self._ops.verify(task, reply)

    def protect_cancel(self, task: SmbTask, parts) -> list:
        return self._ops.protect_cancel(task, parts)

    def protect_compound(self, tasks, elements) -> list:
        if not hasattr(self._ops, "protect_compound"):
            raise ValueError("compound requests need SMB2 or later")
        return self._ops.protect_compound(tasks, elements)

    def decrypt(self, frame) -> bytes:
        return self._ops.decrypt(frame)

    # -- trees -----------------------------------------------------------------------

    #: the Tree class ``tree_connect`` builds (a protocol package may
    #: override it here or per call)
    tree_class: Optional[type] = None

    def tree_connect(self, share: str, tree_class: Optional[type] = None):
        """Connect to ``share`` and return a :class:`~smblayer.fs.tree.Tree`
        (or ``tree_class``, a Tree subclass, default ``self.tree_class``)."""
        from .tree import Tree
        if not share or "\\" in share or "/" in share:
            raise ValueError(f"bad share name {share!r}")
        cls = tree_class or self.tree_class or Tree
        if not (isinstance(cls, type) and issubclass(cls, Tree)):
            raise TypeError("tree_class must be Tree or a subclass")
        tree = cls(self, share)
        tree._connect()
        with self._trees_lock:
            self.trees[id(tree)] = tree
        return tree

    def _validate_negotiate_once(self, tree) -> None:
        """FSCTL_VALIDATE_NEGOTIATE_INFO on the first tree of a signed 3.0 /
        3.0.2 session ([MS-SMB2] 3.2.5.5): on ``tree``, once."""
        dialect = self.client.negotiated.dialect
        if dialect in (Dialect.SMB3_0, Dialect.SMB3_0_2) and not self.negotiate_validated \
                and self.signer is not None:
            self._ops.validate_negotiate(tree)
            self.negotiate_validated = True

    def _forget_tree(self, tree) -> None:
        with self._trees_lock:
            self.trees.pop(id(tree), None)

    # -- lifetime ----------------------------------------------------------------------

    def _on_reconnect(self, client: SmbClient) -> None:
        """The client's reconnect handler (STAGE_SESSION, connect worker)."""
        if self._closed:
            return
        self.on_reconnect(client)

    def on_reconnect(self, client: SmbClient) -> None:
        """Reconnect hook (public, overridable), run by the connect worker at
        STAGE_SESSION, after the client re-negotiated: a new SESSION_SETUP
        (PreviousSessionId the old one).  The trees then reconnect at
        STAGE_TREE (``Tree.on_reconnect``) and their open files at
        STAGE_HANDLE (see ``smblayer.fs.recovery``); then the other
        reconnect handlers by stage, the client goes ACTIVE, waiting
        requests are reissued (their ``on_reissue`` hooks run first) and
        the client's active handlers are called.  An override calls
        ``super().on_reconnect(client)`` first."""
        old = self.session_id
        client.unregister_session(old)
        self.previous_session_id = old
        try:
            self._setup()
        except SmbStatusError as exc:
            if exc.status in _CREDENTIALS_REFUSED:
                raise
            # Not the credentials (Samba answers e.g. OBJECT_NAME_NOT_FOUND
            # while it cleans up a killed smbd's sessions): without a session
            # nothing on this connection works -- the connect worker starts
            # over with a new connection after its back-off.
            raise SmbConnectionError(f"re-establishing the session on {client.host}:"
                                     f"{client.port} failed: {exc}") from exc
        finally:
            self.previous_session_id = 0
        log.info("smblayer: session re-established on %s:%s (0x%x -> 0x%x)",
                 client.host, client.port, old, self.session_id)

    def _at_exit(self, client: SmbClient) -> None:
        """Interpreter exit: flush and close the open files, disconnect, log
        off (the client bounds how long this may take)."""
        with self._trees_lock:
            trees = list(self.trees.values())
        for tree in trees:
            try:
                tree.disconnect()
            except Exception as exc:  # noqa: BLE001
                log.debug("smblayer: closing %r at exit failed: %s", tree, exc)
        self.logoff()

    def logoff(self) -> None:
        """Disconnect the trees and log off (errors on a dead link are ignored)."""
        if self._closed:
            return
        self._closed = True
        self.established = False
        if getattr(self.client, "channel_session", None) is self:
            self.client.close_channels()
        self.client.remove_reconnect_handler(self._on_reconnect)
        self.client.remove_exit_handler(self._at_exit)
        with self._trees_lock:
            trees = list(self.trees.values())
        for tree in trees:
            tree.disconnect(wait=False)          # answered with the LOGOFF: one round trip
        try:
            task = self._ops.logoff_task()
            task.security = self
            self.client.run_task(task)
        except SmbError as exc:
            log.debug("smblayer: LOGOFF failed: %s", exc)
        finally:
            self.client.unregister_session(self.session_id)
            self.client.session_down(self)
            if self.client.default_security is self:
                self.client.default_security = None

    close = logoff

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.logoff()


__all__ = ["Session"]


def _session_key(auth: Authenticator):
    """(key, why it is missing): the mechanism's session key, or b"" and a
    reason that names no secret (the exception's type only)."""
    try:
        key = auth.session_key
    except Exception as exc:  # noqa: BLE001 - pyspnego raises many types
        return b"", f"reading it failed: {type(exc).__name__}"
    if not key:
        return b"", "the mechanism gave none"
    return bytes(key), ""
