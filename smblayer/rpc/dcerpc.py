"""Connection-oriented DCE/RPC (C706 chapter 12, [MS-RPCE]) over an SMB
named pipe: PDU codecs (BIND, BIND_ACK, REQUEST, RESPONSE, FAULT),
fragmentation both ways, and :class:`RpcPipe`, a bound interface on an
open pipe.

Transport (public extension API only): the pipe is a file from
``Tree.open_pipe(name)``; a call's last (or only) request fragment goes out
with FSCTL_PIPE_TRANSCEIVE (SMB1: TRANSACTION with TRANSACT_NMPIPE, see
:mod:`~smblayer.rpc.smb1pipe`), which returns the first response fragment in
the same round trip; earlier request fragments are plain writes, later
response fragments plain reads.  A call on a bound pipe is therefore one
SMB round trip when request and response each fit one fragment.
"""
from __future__ import annotations

import struct
import threading
import uuid
from typing import List, Optional, Tuple

from ..errors import SmbError
from ..proto.commands import FSCTL_PIPE_TRANSCEIVE
from ..records import Record
from .ndr import NDR_UUID, NDR_VERSION
from .smb1pipe import transact_nmpipe

PTYPE_REQUEST = 0
PTYPE_RESPONSE = 2
PTYPE_FAULT = 3
PTYPE_BIND = 11
PTYPE_BIND_ACK = 12
PTYPE_BIND_NAK = 13
PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
DREP_LE = b"\x10\x00\x00\x00"
MAX_FRAG = 4280                 # what Windows and Samba use

_COMMON = struct.Struct("<BBBB4sHHI")           # 16 bytes
_BIND = struct.Struct("<HHIB3x")
_CONTEXT = struct.Struct("<HB1x16sHH16sI")
_BIND_ACK = struct.Struct("<HHIH")
_REQUEST = struct.Struct("<IHH")
_RESPONSE = struct.Struct("<IHBx")
_FAULT = struct.Struct("<IHBxI")
_RESULT = struct.Struct("<HH16sI")


class RpcError(SmbError):
    """A DCE/RPC failure: a FAULT (``status`` is the fault code), a
    rejected bind, or a malformed PDU."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class Pdu(Record):
    __slots__ = ("ptype", "flags", "call_id", "body")

    def __init__(self, ptype: int, flags: int, call_id: int, body: bytes) -> None:
        self.ptype = ptype
        self.flags = flags
        self.call_id = call_id
        self.body = body    # after the 16-byte common header (auth trailer excluded)


def pack_pdu(ptype: int, flags: int, call_id: int, body: bytes) -> bytes:
    return _COMMON.pack(5, 0, ptype, flags, DREP_LE, _COMMON.size + len(body), 0,
                        call_id) + body


def parse_pdu(data) -> Tuple[Pdu, int]:
    """The first PDU in ``data`` and its length; RpcError if incomplete
    or malformed (check :func:`pdu_length` first to know)."""
    length = pdu_length(data)
    if length is None or length > len(data):
        raise RpcError("DCE/RPC PDU truncated")
    vers, minor, ptype, flags, drep, frag_len, auth_len, call_id = _COMMON.unpack_from(data)
    if vers != 5 or minor not in (0, 1):
        raise RpcError(f"not a DCE/RPC v5 PDU (version {vers}.{minor})")
    if bytes(drep[:1]) != b"\x10":
        raise RpcError("big-endian DCE/RPC is not supported")
    end = frag_len - (auth_len + 8 if auth_len else 0)
    if end < _COMMON.size:
        raise RpcError("DCE/RPC auth trailer larger than the fragment")
    return Pdu(ptype, flags, call_id, bytes(data[_COMMON.size:end])), frag_len


def pdu_length(data) -> Optional[int]:
    """FragLength of the PDU starting ``data`` (None if the header is not all there)."""
    if len(data) < _COMMON.size:
        return None
    frag_len = struct.unpack_from("<H", data, 8)[0]
    if frag_len < _COMMON.size:
        raise RpcError(f"bad DCE/RPC FragLength {frag_len}")
    return frag_len


def _syntax(uuid_text: str) -> bytes:
    return uuid.UUID(uuid_text).bytes_le


def bind_body(interface: str, version: Tuple[int, int], max_frag: int = MAX_FRAG) -> bytes:
    context = _CONTEXT.pack(0, 1, _syntax(interface), version[0], version[1],
                            _syntax(NDR_UUID), NDR_VERSION)
    return _BIND.pack(max_frag, max_frag, 0, 1) + context


def parse_bind_ack(body: bytes) -> Tuple[int, int]:
    """(max_xmit_frag, max_recv_frag) of an accepted BIND_ACK."""
    if len(body) < _BIND_ACK.size:
        raise RpcError("BIND_ACK truncated")
    max_xmit, max_recv, _group, addr_len = _BIND_ACK.unpack_from(body)
    pos = _BIND_ACK.size + addr_len
    pos += -pos % 4
    if pos + 4 + _RESULT.size > len(body):
        raise RpcError("BIND_ACK result list truncated")
    count = body[pos]
    if count < 1:
        raise RpcError("BIND_ACK without results")
    result, reason, _syn, _ver = _RESULT.unpack_from(body, pos + 4)
    if result != 0:
        raise RpcError(f"bind rejected (result {result}, reason {reason})", result)
    if max_xmit < 1024 or max_recv < 1024:
        raise RpcError(f"BIND_ACK fragment sizes too small ({max_xmit}, {max_recv})")
    return max_xmit, max_recv


def request_fragments(call_id: int, opnum: int, stub: bytes, max_frag: int) -> List[bytes]:
    """The REQUEST PDUs carrying ``stub`` (split to fit ``max_frag``)."""
    room = max_frag - _COMMON.size - _REQUEST.size
    room -= room % 8
    pieces = [stub[i:i + room] for i in range(0, len(stub), room)] or [b""]
    out = []
    for i, piece in enumerate(pieces):
        flags = (PFC_FIRST_FRAG if i == 0 else 0) | \
            (PFC_LAST_FRAG if i == len(pieces) - 1 else 0)
        out.append(pack_pdu(PTYPE_REQUEST, flags, call_id,
                            _REQUEST.pack(len(stub) - i * room, 0, opnum) + piece))
    return out


class RpcPipe:
    """A DCE/RPC interface bound on an open named pipe (a file from
    ``Tree.open_pipe``).  ``call(opnum, stub)`` returns the response stub.
    One call at a time (a lock serialises them)."""

    def __init__(self, tree, pipe_file, interface: str, version: Tuple[int, int]):
        self.tree = tree
        self.file = pipe_file
        self.interface = interface
        self._lock = threading.Lock()
        self._call_id = 0
        self._buffer = bytearray()
        self.max_xmit = self.max_recv = MAX_FRAG
        self.round_trips = 0           # SMB requests made by calls (for tests/benchmarks)
        pdus = self._exchange([pack_pdu(PTYPE_BIND, PFC_FIRST_FRAG | PFC_LAST_FRAG,
                                        self._next_call(), bind_body(interface, version))],
                              expect=PTYPE_BIND_ACK)
        self.max_xmit, self.max_recv = parse_bind_ack(pdus[0].body)
        self.round_trips = 0

    @classmethod
    def open(cls, tree, pipe_name: str, interface: str,
             version: Tuple[int, int]) -> "RpcPipe":
        pipe_file = tree.open_pipe(pipe_name)
        try:
            return cls(tree, pipe_file, interface, version)
        except BaseException:
            pipe_file.close()
            raise

    def _next_call(self) -> int:
        self._call_id += 1
        return self._call_id

    def call(self, opnum: int, stub: bytes) -> bytes:
        with self._lock:
            call_id = self._next_call()
            fragments = request_fragments(call_id, opnum, stub, self.max_xmit)
            pdus = self._exchange(fragments, expect=PTYPE_RESPONSE, call_id=call_id)
        return b"".join(p.body[_RESPONSE.size:] for p in pdus)

    def _exchange(self, fragments: List[bytes], expect: int,
                  call_id: Optional[int] = None) -> List[Pdu]:
        """Send the fragments (the last one with TRANSCEIVE) and collect the
        response PDUs up to the one flagged LAST_FRAG."""
        for fragment in fragments[:-1]:
            self.file.write(fragment)
            self.round_trips += 1
        self._buffer += self._transceive(fragments[-1])
        self.round_trips += 1
        pdus: List[Pdu] = []
        while True:
            length = pdu_length(self._buffer)
            while length is None or length > len(self._buffer):
                more = self.file.read(self.max_recv)
                self.round_trips += 1
                if not more:
                    raise RpcError("named pipe closed in the middle of a DCE/RPC response")
                self._buffer += more
                length = pdu_length(self._buffer)
            pdu, used = parse_pdu(self._buffer)
            del self._buffer[:used]
            if pdu.ptype == PTYPE_FAULT:
                status = _FAULT.unpack_from(pdu.body)[3] if len(pdu.body) >= _FAULT.size else 0
                raise RpcError(f"DCE/RPC fault 0x{status:08x}", status)
            if pdu.ptype == PTYPE_BIND_NAK:
                raise RpcError("bind rejected (BIND_NAK)")
            if pdu.ptype != expect or (call_id is not None and pdu.call_id != call_id):
                raise RpcError(f"unexpected DCE/RPC PDU type {pdu.ptype} "
                               f"(call {pdu.call_id})")
            if expect == PTYPE_RESPONSE and len(pdu.body) < _RESPONSE.size:
                raise RpcError("RESPONSE PDU truncated")
            pdus.append(pdu)
            if pdu.flags & PFC_LAST_FRAG:
                return pdus
            if len(pdus) > 4096:
                raise RpcError("DCE/RPC response has too many fragments")

    def _transceive(self, fragment: bytes) -> bytes:
        """Write ``fragment`` and read the first answer in one round trip:
        FSCTL_PIPE_TRANSCEIVE on SMB2, TRANSACT_NMPIPE on SMB1."""
        if self.tree.client.dialect.is_smb1:
            return transact_nmpipe(self.tree, self.file, fragment, self.max_recv)
        return self.tree.ioctl(self.file, FSCTL_PIPE_TRANSCEIVE, fragment,
                               max_output=self.max_recv)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "RpcPipe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
