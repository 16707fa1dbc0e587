"""Session binding: the fs side of multichannel ([MS-SMB2] 3.2.4.2.3,
3.2.5.3.3, 3.3.5.5.2).

Theory of operation
-------------------
``start_multichannel(tree)`` (fs.connect with ``multichannel=True``) first
refuses, with :class:`~smblayer.errors.SmbMultichannelError` and nothing
sent, what cannot have channels: a dialect before 3.0, a server that did
not offer SMB2_GLOBAL_CAP_MULTI_CHANNEL, a guest or anonymous session, a
session without a signing key.  Then the client's ChannelSet asks the
:class:`Binder` for the interfaces (FSCTL_QUERY_NETWORK_INTERFACE_INFO on
the tree, signed) and to bind each new channel:

* SESSION_SETUP legs with SMB2_SESSION_FLAG_BINDING and the session's
  SessionId, each signed with the session's signing key (Session.SigningKey)
  and pinned to the new channel; the credentials authenticate again (a
  fresh authenticator of the same mechanism);
* on 3.1.1 the channel has its own preauth hash: the channel connection's
  NEGOTIATE hash, then every binding request (as sent, signed) and every
  non-final response;
* the channel's signing key is derived from the binding's session key
  (3.1.1: with the channel's preauth hash as context); the final response
  MUST be signed with it, and is verified: a missing or wrong signature is
  an SmbAuthError and the channel is closed, the others untouched.
  Encryption keys stay the session's.
"""
from __future__ import annotations

import logging
from typing import List, Optional

from ..config import Dialect
from ..errors import SmbAuthError, SmbError, SmbMultichannelError, SmbProtocolError
from ..proto import session as codec
from ..proto import smb2
from ..proto.commands import (FSCTL_QUERY_NETWORK_INTERFACE_INFO, NO_FILE_ID, ioctl_request,
                              parse_ioctl_response)
from ..proto.netif import NetworkInterface, parse_network_interfaces
from ..proto.smb2 import MalformedMessage
from ..proto.status import NtStatus
from ..security import (AnonymousAuthenticator, AuthenticationFailed, PreauthHash, Smb2Signer,
                        derive_session_keys)
from ..task import Reply, SmbTask

log = logging.getLogger("smblayer")

__all__ = ["Binder", "start_multichannel", "check_multichannel"]

_MORE = NtStatus.MORE_PROCESSING_REQUIRED
_INTERFACES_MAX_OUTPUT = 65536


def check_multichannel(session) -> None:
    """Raise SmbMultichannelError if ``session`` cannot have more channels."""
    client = session.client
    negotiated = client.negotiated
    dialect = negotiated.dialect if negotiated is not None else None
    name = dialect.name if dialect is not None else None

    def refuse(why: str, reason: str) -> None:
        error = SmbMultichannelError(f"multichannel refused: {why}", reason=reason,
                                     dialect=name)
        error.host, error.port = client.host, client.port
        raise error

    if dialect is None or dialect < Dialect.SMB3_0:
        refuse(f"the dialect is {name}; session binding needs SMB 3.0 or later", "dialect")
    if not negotiated.capabilities & smb2.Capabilities.MULTI_CHANNEL:
        refuse("the server did not offer SMB2_GLOBAL_CAP_MULTI_CHANNEL", "capability")
    if session.is_guest:
        refuse("a guest or anonymous session cannot be bound to another channel",
               "anonymous" if not session.username else "guest")
    if session.signer is None:
        refuse("the session has no signing key to sign the binding with", "signing")


def start_multichannel(tree) -> list:
    """Bind the extra channels of ``tree``'s session (see the module docstring);
    returns ``client.channels``."""
    session = tree.session
    check_multichannel(session)
    client = session.client
    client.start_channels(session, Binder(session, tree))
    return client.channels


class Binder:
    """Queries interfaces and binds channels for one session."""

    def __init__(self, session, tree):
        self.session = session
        self._tree = tree

    def _any_tree(self):
        tree = self._tree
        if getattr(tree, "connected", True) and tree.tree_id:
            return tree
        for other in list(self.session.trees.values()):
            if other.tree_id:
                return other
        return None

    def query_interfaces(self) -> List[NetworkInterface]:
        """FSCTL_QUERY_NETWORK_INTERFACE_INFO, signed, on channel 0."""
        session = self.session
        tree = self._any_tree()
        if tree is None:
            raise SmbMultichannelError("no tree connected to query interfaces on",
                                       reason="tree")
        task = SmbTask(smb2.Command.IOCTL,
                       ioctl_request(FSCTL_QUERY_NETWORK_INTERFACE_INFO, NO_FILE_ID,
                                     max_output=_INTERFACES_MAX_OUTPUT),
                       tree=tree, security=session, expected_response=_INTERFACES_MAX_OUTPUT)
        task.header_flags = smb2.FLAG_SIGNED
        reply = session.client.run_task(task)
        if not reply.encrypted and not reply.header.flags & smb2.FLAG_SIGNED:
            raise SmbProtocolError("QUERY_NETWORK_INTERFACE_INFO response is neither signed "
                                   "nor encrypted")
        try:
            return parse_network_interfaces(parse_ioctl_response(reply).output)
        except MalformedMessage as exc:
            raise SmbProtocolError(f"QUERY_NETWORK_INTERFACE_INFO: {exc}") from None

    def bind(self, channel) -> None:
        """SESSION_SETUP with SMB2_SESSION_FLAG_BINDING on ``channel``; sets
        ``channel.signer``.  Raises SmbAuthError when the server's final
        response does not carry the channel key's signature."""
        session = self.session
        check_multichannel(session)
        negotiated = channel.connection.negotiated
        dialect = negotiated.dialect
        preauth: Optional[PreauthHash] = None
        if dialect is Dialect.SMB3_1_1:
            preauth = PreauthHash()
            preauth.update(negotiated.negotiate_messages[0])
            preauth.update(negotiated.negotiate_messages[1])
        try:
            auth = session.authenticator()
            if isinstance(auth, AnonymousAuthenticator):
                raise SmbMultichannelError("an anonymous session cannot be bound",
                                           reason="anonymous", dialect=dialect.name)
            token = auth.step(None)
            while True:
                reply, task = self._leg(channel, token or b"", preauth)
                flags, in_token = codec.parse_session_setup_response(reply)
                if reply.header.status == _MORE:
                    if preauth is not None:
                        preauth.update(reply.message)
                    token = auth.step(in_token)
                    continue
                auth.finish(in_token)
                break
            key = bytes(auth.session_key or b"")
        except AuthenticationFailed as exc:
            raise SmbAuthError(exc.status, "SESSION_SETUP", message=f"binding: {exc}",
                               cause=exc.cause) from None
        except (SmbError, MalformedMessage):
            raise
        except Exception as exc:  # noqa: BLE001 - pyspnego raises many types
            raise SmbAuthError(NtStatus.LOGON_FAILURE, "SESSION_SETUP",
                               message=f"binding failed: {type(exc).__name__}") from None
        if flags & (codec.SESSION_FLAG_IS_GUEST | codec.SESSION_FLAG_IS_NULL):
            raise SmbMultichannelError("the server bound the channel as guest; refused",
                                       reason="guest", dialect=dialect.name)
        if not key:
            raise SmbMultichannelError("the binding gave no session key", reason="signing",
                                       dialect=dialect.name)
        keys = derive_session_keys(key[:16].ljust(16, b"\0"), int(dialect),
                                   preauth.value if preauth is not None else None,
                                   None, full_session_key=key)
        signer = Smb2Signer(session.signer.algorithm, keys.signing_key)
        if not reply.header.flags & smb2.FLAG_SIGNED or not signer.verify(reply.message):
            raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP",
                               message=f"binding channel {channel.index} to {channel.host}: "
                                       "the server's final response is not signed with the "
                                       "channel key; channel refused")
        channel.signer = signer

    def _leg(self, channel, token: bytes, preauth: Optional[PreauthHash]):
        session = self.session
        body = codec.session_setup_request(token, require_signing=session.require_signing,
                                           binding=True)
        task = SmbTask(smb2.Command.SESSION_SETUP, body, session_id=session.session_id,
                       security=_BindingSecurity(session, preauth), replayable=False,
                       ok_statuses=(0, _MORE))
        task.header_flags = smb2.FLAG_SIGNED
        task.channel = channel
        task.pinned = True
        try:
            return session.client.run_task(task), task
        except SmbAuthError:
            raise
        except SmbError as exc:
            status = getattr(exc, "status", None)
            if status is not None:
                raise SmbAuthError(status, "SESSION_SETUP",
                                   message=f"binding channel {channel.index} to "
                                           f"{channel.host} refused") from None
            raise


class _BindingSecurity:
    """The ``security`` of a binding leg: signed with Session.SigningKey,
    the request (as sent) and non-final responses feed the channel's preauth
    hash; an interim response signed is checked with the session key."""

    def __init__(self, session, preauth: Optional[PreauthHash]):
        self._session = session
        self._preauth = preauth

    def protect(self, task: SmbTask, header: bytearray, parts: list) -> list:
        smb2.set_session_id(header, self._session.session_id)
        self._session.signer.sign_parts(header, parts[1:])
        if self._preauth is not None:
            self._preauth.update(parts)
        return parts

    def protect_cancel(self, task: SmbTask, parts) -> list:
        header = bytearray(parts[0])
        smb2.set_session_id(header, self._session.session_id)
        self._session.signer.sign_parts(header, parts[1:])
        return [header, *parts[1:]]

    def verify(self, task: SmbTask, reply: Reply) -> None:
        status = reply.header.status
        if status == 0:
            return          # the final response: checked with the channel key (bind)
        if status == NtStatus.USER_SESSION_DELETED:
            return          # no key left for the session (Samba signs it with none of
            #                 ours): the binding is refused by its status (_leg)
        if reply.header.flags & smb2.FLAG_SIGNED and \
                not self._session.signer.verify(reply.message):
            raise SmbAuthError(NtStatus.ACCESS_DENIED, "SESSION_SETUP",
                               message="bad signature on a binding response; channel refused")
