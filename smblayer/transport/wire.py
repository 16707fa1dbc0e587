"""The per-dialect wire operations table (sunrpc's rpc_xprt_ops, cifs's
smb_version_operations): how a family of dialects builds headers, reads
the routing fields of a reply, probes with ECHO and cancels.

``Smb2Wire`` serves 2.0.2 through 3.1.1; ``Smb1Wire`` serves NT LM 0.12.
The client picks one after NEGOTIATE and never branches on the dialect
elsewhere in the hot path.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional, Tuple

from ..config import Dialect
from ..proto import credits as credit_math
from ..proto import smb1, smb2
from ..proto.framing import MAX_FRAME
from ..proto.negotiate import NegotiateResult

# SMB2 header + the fixed part of a READ response: where READ data starts.
PLACEMENT_HEAD = 80
READ = int(smb2.Command.READ)
_U32 = struct.Struct("<I")
_SYNC_HEADER_PACK = smb2.SYNC_HEADER.pack
_SMB2_ID = smb2.PROTOCOL_ID
_ZERO16 = bytes(16)
_SERVER_TO_REDIR = smb2.FLAG_SERVER_TO_REDIR
_ASYNC_COMMAND = smb2.FLAG_ASYNC_COMMAND
_SMB2_HEADER = smb2.HEADER_SIZE
_SMB1_REPLY = int(smb1.Flags.REPLY)
# smb2.route's fields, unpacked here without the extra call (one per reply):
# CreditCharge, Status, Command, Credits, Flags, NextCommand, MessageId
# (the ProtocolId read as a number: no slice of the message to compare)
_ROUTE = struct.Struct("<I2xHIHHIIQ").unpack_from
_SMB2_ID_U32 = _U32.unpack(_SMB2_ID)[0]

#: the class constants the hot path reads, copied onto each instance:
#: CPython 3.11 specialises loading an instance attribute, not a class
#: attribute read through an instance (~190 instructions more per read)
_PER_INSTANCE = ("is_smb1", "max_request", "unsolicited_id", "echo_command",
                 "teardown_commands", "replay_flag", "multi_credit", "flat_charge")

# Routed reply: (message_id, status, credits granted, is_interim, async_id, body offset)
if TYPE_CHECKING:
    Route = Tuple[int, int, int, bool, Optional[int], int]


class Smb2Wire:
    """SMB 2.0.2 .. 3.1.1."""

    is_smb1 = False
    max_request = MAX_FRAME
    unsolicited_id = smb2.UNSOLICITED_MESSAGE_ID
    echo_command = int(smb2.Command.ECHO)   # (a plain int: hashed and packed per echo)
    # closing a handle, a tree or a session: bounded waits on a dead server
    teardown_commands = frozenset({smb2.Command.CLOSE, smb2.Command.TREE_DISCONNECT,
                                   smb2.Command.LOGOFF})

    def __init__(self, negotiated: NegotiateResult):
        self.dialect = negotiated.dialect
        self.multi_credit = negotiated.multi_credit
        self.replay_flag = smb2.FLAG_REPLAY_OPERATION if self.dialect.is_smb3 else 0
        #: CreditCharge of a request whose size does not count (not READ,
        #: WRITE, IOCTL, QUERY_DIRECTORY, CHANGE_NOTIFY, QUERY/SET_INFO)
        self.flat_charge = 1 if self.multi_credit else 0
        for name in _PER_INSTANCE:
            setattr(self, name, getattr(self, name))
        #: the ECHO request's body parts; the reply header parser (both constant)
        self.echo_parts = (smb2.ECHO_BODY,)
        self.header_parser = smb2.parse_header

    def charge(self, command: int, payload: int, expected: int) -> int:
        """(CreditCharge in the header, credits consumed)."""
        if command in credit_math.MULTI_CREDIT_COMMANDS:
            charge = credit_math.credit_charge(payload, expected, self.multi_credit)
        else:
            charge = 1 if self.multi_credit else 0
        return charge

    def build_header(self, task, message_id: int, credit_request: int) -> bytearray:
        flags = task.flags | task.header_flags
        if task.sends > 1:
            flags |= self.replay_flag
        tree = task.tree
        return bytearray(_SYNC_HEADER_PACK(
            _SMB2_ID, 64, task.credit_charge, 0, task.command, credit_request, flags, 0,
            message_id, 0, tree.tree_id if tree is not None else task.tree_id,
            task.session_id, _ZERO16))

    def route(self, message, offset: int = 0) -> Route:
        if len(message) - offset < _SMB2_HEADER:
            raise smb2.MalformedMessage("not an SMB2 message")
        pid, charge, status, command, credits, flags, nxt, mid = _ROUTE(message, offset)
        if pid != _SMB2_ID_U32:
            raise smb2.MalformedMessage("not an SMB2 message")
        if not flags & _SERVER_TO_REDIR:
            raise smb2.MalformedMessage(f"request (not response) for MessageId {mid}")
        if flags & _ASYNC_COMMAND:
            return (mid, status, credits, smb2.is_pending_interim(status, flags),
                    smb2.async_id(message, offset), _SMB2_HEADER)
        return mid, status, credits, False, None, _SMB2_HEADER

    @staticmethod
    def parse_header(message, offset: int = 0):
        return smb2.parse_header(message, offset)

    @staticmethod
    def placement(head, length: int) -> Optional[Tuple[int, int]]:
        """(MessageId, data length) if the frame starting with ``head`` is a
        plain successful READ response whose data follows the 80-byte head
        exactly, so it can be received straight into the caller's buffer."""
        if len(head) < PLACEMENT_HEAD or bytes(head[:4]) != _SMB2_ID:
            return None
        _charge, status, command, _credits, flags, nxt, mid = smb2.route(head)
        if command != READ or status or nxt or flags & smb2.FLAG_SIGNED:
            return None
        data_offset = head[_SMB2_HEADER + 2]
        (data_len,) = _U32.unpack_from(head, _SMB2_HEADER + 4)
        if data_offset != PLACEMENT_HEAD or PLACEMENT_HEAD + data_len != length:
            return None
        return mid, data_len

    @staticmethod
    def echo_body() -> Tuple[bytes, ...]:
        return (smb2.ECHO_BODY,)

    def cancel_message(self, task) -> Tuple[bytes, ...]:
        """An SMB2 CANCEL for ``task`` ([MS-SMB2] 3.2.4.24): same MessageId,
        the AsyncId if the server went async, no credits consumed."""
        header = smb2.pack_header(smb2.Command.CANCEL, task.message_id, credit_charge=0,
                                  credit_request=0, session_id=task.session_id,
                                  tree_id=task.tree_id, async_id=task.async_id)
        return (header, smb2.CANCEL_BODY)


class Smb1Wire:
    """NT LM 0.12.  "Credits" are the server's MaxMpxCount; MIDs are 16-bit."""

    is_smb1 = True
    # Samba (and Windows) read an SMB1 request length in 17 bits.
    max_request = 0x1FFFF
    unsolicited_id = 0xFFFF
    echo_command = int(smb1.Command.ECHO)
    teardown_commands = frozenset({smb1.Command.CLOSE, smb1.Command.TREE_DISCONNECT,
                                   smb1.Command.LOGOFF_ANDX})
    replay_flag = 0
    multi_credit = False
    flat_charge = 1

    def __init__(self, negotiated: NegotiateResult):
        self.dialect = Dialect.SMB1
        self.capabilities = negotiated.capabilities
        for name in _PER_INSTANCE:
            setattr(self, name, getattr(self, name))
        self.echo_parts = self.echo_body()
        self.header_parser = smb1.parse_header

    @staticmethod
    def charge(command: int, payload: int, expected: int) -> int:
        return 1

    @staticmethod
    def build_header(task, message_id: int, credit_request: int) -> bytearray:
        flags2 = smb1.DEFAULT_FLAGS2 | task.header_flags
        tree = task.tree
        return smb1.pack_header(task.command, message_id,
                                tid=tree.tree_id if tree is not None else task.tree_id,
                                uid=task.session_id, flags2=flags2)

    def route(self, message, offset: int = 0) -> Route:
        command, status, flags, flags2, mid = smb1.route(message)
        if not flags & _SMB1_REPLY:
            if command == smb1.Command.LOCKING_ANDX:      # server oplock break
                return 0xFFFF, status, 0, False, None, smb1.HEADER_SIZE
            raise smb2.MalformedMessage(f"SMB1 request (not reply) for MID {mid}")
        return mid, status, 1, False, None, smb1.HEADER_SIZE

    @staticmethod
    def parse_header(message, offset: int = 0):
        return smb1.parse_header(message)

    @staticmethod
    def echo_body() -> Tuple[bytes, ...]:
        return smb1.pack_echo(b"smblayer")

    @staticmethod
    def placement(head, length: int) -> None:
        return None

    @staticmethod
    def cancel_message(task) -> Tuple[bytes, ...]:
        header = smb1.pack_header(smb1.Command.NT_CANCEL, task.message_id, tid=task.tree_id,
                                  uid=task.session_id)
        return (header,) + smb1.pack_nt_cancel()


def wire_for(negotiated: NegotiateResult):
    """The operations table for the negotiated dialect."""
    return Smb1Wire(negotiated) if negotiated.dialect is Dialect.SMB1 else Smb2Wire(negotiated)
