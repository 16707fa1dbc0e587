"""DFS referral codec ([MS-DFSC] 2.2.2 - 2.2.5.4), sans-I/O.

Theory of operation
-------------------
A client asks a DFS server which share stands behind a path with
REQ_GET_DFS_REFERRAL: the highest referral version it understands and the
path (one leading backslash, NUL-terminated UTF-16LE).  On SMB2 the request
is the input of FSCTL_DFS_GET_REFERRALS (an IOCTL on IPC$, see
:func:`smblayer.proto.commands.ioctl_request`); on SMB1 it is the
parameter block of TRANS2_GET_DFS_REFERRAL.  Either way the answer is a
RESP_GET_DFS_REFERRAL, which :func:`parse_referral_response` turns into a
:class:`Referral`: the consumed prefix of the path, the targets in the
server's order and a time to live.

Referral entries of version 1 to 4 are understood; the name-list entries
of a domain referral are not targets and are skipped.  Every offset is
bounds-checked; a bad one raises :class:`MalformedMessage`.  What to *do*
with a referral (cache it, connect its targets, fail over) is
``smblayer.fs.dfs``'s business.
"""
from __future__ import annotations

import struct
from typing import List

from ..records import FrozenRecord, Record
from .smb2 import MalformedMessage

__all__ = ["FSCTL_DFS_GET_REFERRALS", "TRANS2_GET_DFS_REFERRAL", "MAX_REFERRAL_LEVEL",
           "ReferralTarget", "Referral", "referral_request", "parse_referral_response",
           "MalformedMessage"]

FSCTL_DFS_GET_REFERRALS = 0x00060194       # [MS-FSCC] 2.3.16
TRANS2_GET_DFS_REFERRAL = 0x0010           # [MS-CIFS] 2.2.6.16
MAX_REFERRAL_LEVEL = 4

_REQUEST = struct.Struct("<H")                  # MaxReferralLevel (then the path)
_RESP_HEADER = struct.Struct("<HHI")            # PathConsumed, NumberOfReferrals, flags
_ENTRY_HEADER = struct.Struct("<HHHH")          # Version, Size, ServerType, EntryFlags
_V2 = struct.Struct("<IIHHH")                   # Proximity, TTL, 3 offsets
_V34 = struct.Struct("<IHHH")                   # TTL, 3 offsets (+ 16-byte site GUID)
_NAME_LIST_REFERRAL = 0x0002
_ROOT_TARGETS = 0x0001
_DEFAULT_TTL = 300                              # a version 1 entry has none


class ReferralTarget(FrozenRecord):
    """``\\\\server\\share\\path`` of one target (``path`` may be "")."""

    __slots__ = ("server", "share", "path")

    def __init__(self, server: str, share: str, path: str = "") -> None:
        self._init(server, share, path)

    def __str__(self) -> str:
        tail = "\\" + self.path if self.path else ""
        return f"\\\\{self.server}\\{self.share}{tail}"


class Referral(Record):
    """One referral: ``prefix`` (the DFS path it covers, ``\\\\host\\dfs\\link``),
    its targets in order, the TTL in seconds, whether it is a root referral.
    ``expires`` and ``preferred`` are its cache's bookkeeping."""

    __slots__ = ("prefix", "targets", "ttl", "root", "expires", "preferred", "version")

    def __init__(self, prefix: str, targets: List[ReferralTarget], ttl: int, root: bool = False,
                 expires: float = 0.0, preferred: int = 0, version: int = 0) -> None:
        self.prefix = prefix
        self.targets = targets
        self.ttl = ttl
        self.root = root
        self.expires = expires
        self.preferred = preferred    # index of the target that worked last
        self.version = version

    def ordered(self) -> List[ReferralTarget]:
        return self.targets[self.preferred:] + self.targets[:self.preferred]


def referral_request(path: str, max_level: int = MAX_REFERRAL_LEVEL) -> bytes:
    """REQ_GET_DFS_REFERRAL ([MS-DFSC] 2.2.2) for DFS ``path``
    (``\\host\\share\\...``; sent with one leading backslash, 2.2.1)."""
    request_path = "\\" + path.lstrip("\\")
    return _REQUEST.pack(max_level) + (request_path + "\0").encode("utf-16-le")


def _utf16z(buf: bytes, offset: int) -> str:
    if offset >= len(buf):
        raise MalformedMessage(f"DFS referral name offset {offset} out of bounds")
    end = offset
    while end + 1 < len(buf) and buf[end:end + 2] != b"\0\0":
        end += 2
    return buf[offset:end].decode("utf-16-le", "replace")


def _split_unc(path: str) -> ReferralTarget:
    parts = [p for p in path.split("\\") if p]
    if len(parts) < 2:
        raise MalformedMessage(f"DFS referral names a bad target {path!r}")
    return ReferralTarget(parts[0], parts[1], "\\".join(parts[2:]))


def parse_referral_response(data: bytes, request_path: str) -> Referral:
    """RESP_GET_DFS_REFERRAL ([MS-DFSC] 2.2.4) for ``request_path`` (the
    path asked for).  The prefix comes back with one leading backslash."""
    data = bytes(data)
    if len(data) < _RESP_HEADER.size:
        raise MalformedMessage("DFS referral response truncated")
    consumed, count, _flags = _RESP_HEADER.unpack_from(data)
    request_path = "\\" + request_path.lstrip("\\")
    prefix = "\\" + request_path[:consumed // 2].rstrip("\\").lstrip("\\")
    targets: List[ReferralTarget] = []
    ttl, root, version = _DEFAULT_TTL, False, 0
    pos = _RESP_HEADER.size
    for _ in range(count):
        if pos + _ENTRY_HEADER.size > len(data):
            raise MalformedMessage("DFS referral entry truncated")
        version, size, server_type, entry_flags = _ENTRY_HEADER.unpack_from(data, pos)
        if size < _ENTRY_HEADER.size or pos + size > len(data):
            raise MalformedMessage(f"DFS referral entry of bad size {size}")
        body = pos + _ENTRY_HEADER.size
        root = bool(server_type & _ROOT_TARGETS)
        if version == 1:
            address = _utf16z(data, body)
        elif version == 2:
            if body + _V2.size > pos + size:
                raise MalformedMessage("DFS referral v2 entry truncated")
            _prox, ttl, _dfs, _alt, net = _V2.unpack_from(data, body)
            address = _utf16z(data, pos + net)
        elif version in (3, 4):
            if body + _V34.size > pos + size:
                raise MalformedMessage(f"DFS referral v{version} entry truncated")
            ttl, _dfs, _alt, net = _V34.unpack_from(data, body)
            if entry_flags & _NAME_LIST_REFERRAL:
                pos += size
                continue
            address = _utf16z(data, pos + net)
        else:
            raise MalformedMessage(f"DFS referral version {version} not supported")
        targets.append(_split_unc(address))
        pos += size
    if not targets:
        raise MalformedMessage(f"DFS referral for {request_path!r} names no target")
    return Referral(prefix, targets, ttl, root, version=version)
