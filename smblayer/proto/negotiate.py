"""Dialect negotiation as an explicit, sans-I/O state machine.

Theory of operation
-------------------
The caller's ``DialectRange`` decides the opening move ([MS-SMB2] 3.2.4.2.1,
DESIGN.md "Negotiate"):

* max below 2.0.2      -> an SMB1 negprot offering only "NT LM 0.12";
* min at or above 2.0.2 -> an SMB2 NEGOTIATE listing the dialects in range;
* otherwise             -> one SMB1 multi-protocol negprot offering
  "NT LM 0.12", "SMB 2.002" and (if max > 2.0.2) "SMB 2.???".  A server
  answering with an SMB2 response of dialect 0x02FF wants a proper SMB2
  NEGOTIATE next (MessageId 1); 0x0202 settles on 2.0.2 at once.

``Negotiator.start()`` returns the first ``Outgoing`` message; each response
goes to ``Negotiator.receive()``, which returns either the next ``Outgoing``
or the final ``NegotiateResult``.  Any answer outside the caller's bounds or
not following the protocol raises :class:`NegotiateFailed`.

States and transitions::

    START --start()--> WAIT_SMB1 (negprot sent) --SMB1 NT LM--> DONE
                           |--SMB2 0x0202--> DONE
                           '--SMB2 0x02FF--> WAIT_SMB2 --SMB2 resp--> DONE
    START --start()--> WAIT_SMB2 (SMB2 NEGOTIATE sent) --SMB2 resp--> DONE
"""
from __future__ import annotations

import enum
import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Tuple, Union

from ..config import Dialect, DialectRange
from ..records import Record
from . import smb1, smb2
from .status import NtStatus, status_name

SMB2_WILDCARD_REVISION = 0x02FF


class NegotiateFailed(ValueError):
    """Negotiation cannot succeed within the bounds; carries a reason."""


class Outgoing(Record):
    """One message to send: ``parts`` are header and body buffers."""

    __slots__ = ("smb1", "message_id", "parts")

    def __init__(self, smb1: bool, message_id: int, parts: Tuple[bytes, ...]) -> None:
        self.smb1 = smb1
        self.message_id = message_id
        self.parts = parts

    def to_bytes(self) -> bytes:
        return b"".join(self.parts)


class NegotiateResult(Record):
    """What the server and we agreed on; stored as ``client.negotiated``."""

    __slots__ = ("dialect", "server_guid", "security_mode", "capabilities", "max_transact_size",
                 "max_read_size", "max_write_size", "system_time", "server_start_time",
                 "security_buffer", "cipher_id", "signing_algorithm", "client_guid", "posix",
                 "negotiate_messages", "credits_granted", "next_message_id",
                 "request_capabilities", "request_security_mode", "request_dialects",
                 "max_mpx_count", "max_buffer_size", "smb1_session_key", "challenge")
    _hidden = ("negotiate_messages",)

    def __init__(self, dialect: Dialect, server_guid: bytes = b"", security_mode: int = 0,
                 capabilities: int = 0, max_transact_size: int = 65536, max_read_size: int = 65536,
                 max_write_size: int = 65536, system_time: int = 0, server_start_time: int = 0,
                 security_buffer: bytes = b"", cipher_id: int = 0,
                 signing_algorithm: Optional[int] = None, client_guid: bytes = b"",
                 posix: bool = False, negotiate_messages: Optional[List[bytes]] = None,
                 credits_granted: int = 1, next_message_id: int = 1, request_capabilities: int = 0,
                 request_security_mode: int = 0, request_dialects: Optional[List[int]] = None,
                 max_mpx_count: int = 0, max_buffer_size: int = 0, smb1_session_key: int = 0,
                 challenge: bytes = b"") -> None:
        self.dialect = dialect
        self.server_guid = server_guid
        self.security_mode = security_mode
        self.capabilities = capabilities
        self.max_transact_size = max_transact_size
        self.max_read_size = max_read_size
        self.max_write_size = max_write_size
        self.system_time = system_time
        self.server_start_time = server_start_time
        self.security_buffer = security_buffer
        self.cipher_id = cipher_id
        self.signing_algorithm = signing_algorithm
        self.client_guid = client_guid
        # the server agreed to the SMB3 POSIX extensions (3.1.1, asked with posix=True)
        self.posix = posix
        # The SMB2 NEGOTIATE request and response as sent/received: the 3.1.1
        # connection preauth hash is computed over these two.
        self.negotiate_messages = [] if negotiate_messages is None else negotiate_messages
        self.credits_granted = credits_granted
        self.next_message_id = next_message_id
        # What our SMB2 NEGOTIATE request said (FSCTL_VALIDATE_NEGOTIATE_INFO
        # repeats it for 3.0/3.0.2).
        self.request_capabilities = request_capabilities
        self.request_security_mode = request_security_mode
        self.request_dialects = [] if request_dialects is None else request_dialects
        # SMB1 only
        self.max_mpx_count = max_mpx_count
        self.max_buffer_size = max_buffer_size
        self.smb1_session_key = smb1_session_key
        self.challenge = challenge

    @property
    def signing_required(self) -> bool:
        if self.dialect is Dialect.SMB1:
            return bool(self.security_mode & 0x08)
        return bool(self.security_mode & smb2.SecurityMode.SIGNING_REQUIRED)

    @property
    def multi_credit(self) -> bool:
        return self.dialect >= Dialect.SMB2_1 and bool(
            self.capabilities & smb2.Capabilities.LARGE_MTU)

    @property
    def supports_encryption(self) -> bool:
        if self.dialect is Dialect.SMB3_1_1:
            return self.cipher_id != 0
        return self.dialect.is_smb3 and bool(self.capabilities & smb2.Capabilities.ENCRYPTION)


class State(enum.Enum):
    START = "start"
    WAIT_SMB1 = "wait-smb1"
    WAIT_SMB2 = "wait-smb2"
    DONE = "done"


class Negotiator:
    """See the module docstring."""

    def __init__(self, dialects: DialectRange, *, client_guid: bytes, salt: bytes,
                 require_signing: bool = False, ciphers=None, signing_algorithms=None,
                 posix: bool = False, multichannel: bool = False):
        if len(client_guid) != 16 or len(salt) != 32:
            raise ValueError("client_guid must be 16 bytes and salt 32 bytes")
        self.ciphers = tuple(ciphers) if ciphers else smb2.CIPHERS_PREFERRED
        self.signing_algorithms = tuple(signing_algorithms) if signing_algorithms \
            else smb2.SIGNING_PREFERRED
        for value in self.ciphers:
            if value not in smb2.CIPHERS_PREFERRED:
                raise ValueError(f"unknown cipher id {value!r}")
        for value in self.signing_algorithms:
            if value not in (0,) + smb2.SIGNING_PREFERRED:
                raise ValueError(f"unknown signing algorithm id {value!r}")
        self.range = dialects
        self.posix = posix          # offer the SMB3 POSIX extensions context
        self.multichannel = multichannel    # offer SMB2_GLOBAL_CAP_MULTI_CHANNEL (3.x)
        self.client_guid = client_guid
        self.salt = salt
        self.security_mode = smb2.SecurityMode.SIGNING_ENABLED | (
            smb2.SecurityMode.SIGNING_REQUIRED if require_signing else 0)
        self.state = State.START
        self._smb1_dialects: List[str] = []
        self._smb2_offered: List[int] = []
        self._smb2_request_fields = (0, 0)
        self._smb2_request = b""
        self._smb2_mid = 0          # the MessageId of the SMB2 NEGOTIATE sent

    # -- transitions --------------------------------------------------------

    def start(self) -> Outgoing:
        self._expect(State.START)
        r = self.range
        if r.max < Dialect.SMB2_0_2:
            return self._send_smb1([smb1.NT_LM_DIALECT])
        if r.min >= Dialect.SMB2_0_2:
            return self._send_smb2(message_id=0)
        offered = [smb1.NT_LM_DIALECT, smb1.SMB2_002_DIALECT]
        if r.max > Dialect.SMB2_0_2:
            offered.append(smb1.SMB2_WILDCARD_DIALECT)
        return self._send_smb1(offered)

    def receive(self, message: bytes) -> Union[Outgoing, NegotiateResult]:
        if self.state is State.WAIT_SMB1:
            if message[:4] == smb1.PROTOCOL_ID:
                return self._smb1_response(message)
            if message[:4] == smb2.PROTOCOL_ID:
                return self._smb2_response(message, after_smb1=True)
            raise smb2.MalformedMessage(f"negotiate response with protocol {message[:4]!r}")
        if self.state is State.WAIT_SMB2:
            if message[:4] != smb2.PROTOCOL_ID:
                raise smb2.MalformedMessage(f"SMB2 negotiate answered with {message[:4]!r}")
            return self._smb2_response(message, after_smb1=False)
        raise NegotiateFailed(f"negotiate response in state {self.state.value}")

    # -- helpers ------------------------------------------------------------

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise NegotiateFailed(f"negotiator in state {self.state.value}, not {state.value}")

    def _send_smb1(self, dialects: List[str]) -> Outgoing:
        self._smb1_dialects = dialects
        header = smb1.pack_header(smb1.Command.NEGOTIATE, 0)
        words, data = smb1.pack_negotiate(dialects)
        self.state = State.WAIT_SMB1
        return Outgoing(True, 0, (bytes(header), words, data))

    def _send_smb2(self, message_id: int) -> Outgoing:
        offered = [int(d) for d in self.range.smb2_dialects()]
        self._smb2_offered = offered
        self._smb2_request_fields = (0, 0)
        contexts = None
        capabilities = 0
        if max(offered) >= Dialect.SMB3_0:
            capabilities = (smb2.Capabilities.DFS | smb2.Capabilities.LEASING
                            | smb2.Capabilities.LARGE_MTU | smb2.Capabilities.ENCRYPTION
                            | smb2.Capabilities.DIRECTORY_LEASING)     # fs.dircache
            if self.multichannel:
                capabilities |= smb2.Capabilities.MULTI_CHANNEL
        elif max(offered) >= Dialect.SMB2_1:
            capabilities = smb2.Capabilities.DFS | smb2.Capabilities.LEASING | smb2.Capabilities.LARGE_MTU
        if Dialect.SMB3_1_1 in offered:
            contexts = [smb2.preauth_context(self.salt),
                        smb2.encryption_context(self.ciphers),
                        smb2.signing_context(self.signing_algorithms)]
            if self.posix:
                contexts.append(smb2.posix_context())
        guid = self.client_guid if max(offered) > Dialect.SMB2_0_2 else bytes(16)
        body = smb2.pack_negotiate_request(offered, client_guid=guid,
                                           security_mode=self.security_mode,
                                           capabilities=capabilities, contexts=contexts)
        header = smb2.pack_header(smb2.Command.NEGOTIATE, message_id, credit_charge=0,
                                  credit_request=1 if message_id == 0 else 31)
        self._smb2_request = bytes(header) + body
        self._smb2_mid = message_id
        self._smb2_request_fields = (capabilities, int(self.security_mode))
        self.state = State.WAIT_SMB2
        return Outgoing(False, message_id, (bytes(header), body))

    def _smb1_response(self, message: bytes) -> NegotiateResult:
        hdr = smb1.parse_header(message)
        if hdr.command != smb1.Command.NEGOTIATE or not hdr.is_response:
            raise smb2.MalformedMessage("SMB1 negotiate reply is not a NEGOTIATE response")
        if hdr.status != 0:
            raise NegotiateFailed(f"server refused SMB1 negotiate: {status_name(hdr.status)}")
        resp = smb1.parse_negotiate_response(message)
        if resp.dialect_index >= len(self._smb1_dialects):
            raise NegotiateFailed("no common dialect: the server accepted none of "
                                  + ", ".join(self._smb1_dialects))
        chosen = self._smb1_dialects[resp.dialect_index]
        if chosen != smb1.NT_LM_DIALECT:
            raise NegotiateFailed(f"server chose {chosen!r} in an SMB1 reply")
        if Dialect.SMB1 not in self.range:
            raise NegotiateFailed("server chose SMB1, below the minimum "
                                  f"{self.range.min.name}")
        self.state = State.DONE
        return NegotiateResult(
            Dialect.SMB1, server_guid=resp.server_guid, security_mode=resp.security_mode,
            capabilities=resp.capabilities, max_transact_size=resp.max_buffer_size,
            max_read_size=resp.max_buffer_size, max_write_size=resp.max_buffer_size,
            system_time=resp.system_time, security_buffer=resp.security_blob,
            max_mpx_count=max(1, resp.max_mpx_count), max_buffer_size=resp.max_buffer_size,
            smb1_session_key=resp.session_key, challenge=resp.challenge,
            credits_granted=max(1, resp.max_mpx_count), next_message_id=1)

    def _smb2_response(self, message: bytes, after_smb1: bool) -> Union[Outgoing, NegotiateResult]:
        hdr = smb2.parse_header(message)
        if hdr.command != smb2.Command.NEGOTIATE or not hdr.is_response:
            raise smb2.MalformedMessage("negotiate reply is not an SMB2 NEGOTIATE response")
        # the connection's MessageIds go on from the request's, never from
        # what the server says (0xFFFF...FF + 1 would not fit the header)
        sent = 0 if after_smb1 else self._smb2_mid
        if hdr.message_id != sent:
            raise smb2.MalformedMessage(
                f"NEGOTIATE response for MessageId {hdr.message_id}, not {sent}")
        if hdr.status != NtStatus.SUCCESS:
            raise NegotiateFailed(f"server refused SMB2 negotiate: {status_name(hdr.status)}")
        resp = smb2.parse_negotiate_response(message)
        revision = resp.dialect_revision
        if after_smb1:
            if revision == SMB2_WILDCARD_REVISION:
                if smb1.SMB2_WILDCARD_DIALECT not in self._smb1_dialects:
                    raise NegotiateFailed("server answered 'SMB 2.???' which was not offered")
                return self._send_smb2(message_id=1)
            if revision != Dialect.SMB2_0_2:
                raise NegotiateFailed(f"server chose dialect 0x{revision:04x} in reply to negprot")
            offered = [int(Dialect.SMB2_0_2)]
        else:
            offered = self._smb2_offered
            if revision == SMB2_WILDCARD_REVISION:
                raise NegotiateFailed("server answered 0x02FF to an SMB2 NEGOTIATE")
        if revision not in offered:
            raise NegotiateFailed(
                f"server chose dialect 0x{revision:04x}, outside "
                f"{self.range.min.name}..{self.range.max.name}")
        dialect = Dialect(revision)
        result = NegotiateResult(
            dialect, server_guid=resp.server_guid, security_mode=resp.security_mode,
            capabilities=resp.capabilities, max_transact_size=resp.max_transact_size,
            max_read_size=resp.max_read_size, max_write_size=resp.max_write_size,
            system_time=resp.system_time, server_start_time=resp.server_start_time,
            security_buffer=resp.security_buffer, client_guid=self.client_guid,
            credits_granted=max(hdr.credits, 1), next_message_id=sent + 1,
            request_capabilities=self._smb2_request_fields[0],
            request_security_mode=self._smb2_request_fields[1],
            request_dialects=list(offered))
        if dialect is Dialect.SMB3_1_1:
            self._apply_contexts(result, resp)
            result.negotiate_messages = [self._smb2_request, bytes(message)]
        self.state = State.DONE
        return result

    def _apply_contexts(self, result: NegotiateResult, resp: smb2.NegotiateResponse) -> None:
        seen_preauth = False
        for ctx in resp.contexts:
            if ctx.type == smb2.ContextType.PREAUTH_INTEGRITY_CAPABILITIES:
                if smb2.context_values(ctx) != [smb2.HASH_SHA512]:
                    raise NegotiateFailed("server chose an unknown preauth integrity hash")
                seen_preauth = True
            elif ctx.type == smb2.ContextType.ENCRYPTION_CAPABILITIES:
                ciphers = smb2.context_values(ctx)
                if len(ciphers) != 1 or ciphers[0] not in (0,) + self.ciphers:
                    raise NegotiateFailed(f"server chose unoffered ciphers {ciphers}")
                result.cipher_id = ciphers[0]
            elif ctx.type == smb2.ContextType.SIGNING_CAPABILITIES:
                algorithms = smb2.context_values(ctx)
                if len(algorithms) != 1 or algorithms[0] not in self.signing_algorithms:
                    raise NegotiateFailed(f"server chose unoffered signing {algorithms}")
                result.signing_algorithm = algorithms[0]
            elif ctx.type == smb2.ContextType.POSIX_EXTENSIONS:
                result.posix = self.posix and ctx.data == smb2.POSIX_EXTENSIONS_GUID
        if not seen_preauth:
            raise NegotiateFailed("3.1.1 response without a preauth integrity context")


# --- FSCTL_VALIDATE_NEGOTIATE_INFO ([MS-SMB2] 2.2.31.4, 2.2.32.6) ----------------------
# The request repeats what our NEGOTIATE said, the response what the server
# chose: Capabilities, Guid, SecurityMode, then the dialects (request) or the
# dialect (response).  Sent as an IOCTL (``proto.commands.ioctl_request``).
_VALIDATE = struct.Struct("<I16sHH")
VALIDATE_NEGOTIATE_SIZE = _VALIDATE.size        # the response's output


def validate_negotiate_input(result: NegotiateResult) -> bytes:
    """VALIDATE_NEGOTIATE_INFO request input for what we negotiated."""
    dialects = result.request_dialects
    return _VALIDATE.pack(result.request_capabilities, result.client_guid,
                          result.request_security_mode, len(dialects)) + \
        struct.pack(f"<{len(dialects)}H", *dialects)


def parse_validate_negotiate(output) -> Tuple[int, bytes, int, int]:
    """(capabilities, server guid, security mode, dialect) from the
    VALIDATE_NEGOTIATE_INFO response output."""
    if len(output) < _VALIDATE.size:
        raise smb2.MalformedMessage(f"VALIDATE_NEGOTIATE_INFO output truncated "
                                    f"({len(output)} bytes)")
    caps, guid, mode, dialect = _VALIDATE.unpack_from(output)
    return caps, bytes(guid), mode, dialect
