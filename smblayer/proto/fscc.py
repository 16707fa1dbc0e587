"""File-system structures administrators' calls exchange, sans-I/O ([MS-FSCC],
[MS-SMB2] 2.2.2.2.1, 2.2.32.2).

Theory of operation
-------------------
Each function here turns one server-supplied buffer into plain values (or a
value into a buffer): the stream list of FileStreamInformation, the
snapshot list of FSCTL_SRV_ENUMERATE_SNAPSHOTS, symbolic-link reparse data
(FSCTL_GET/SET_REPARSE_POINT), the symbolic link error response a CREATE
answered with STATUS_STOPPED_ON_SYMLINK carries, and the volume serial of
FileFsVolumeInformation.  Every length and offset is checked against the
buffer: a malformed one raises :class:`MalformedFscc` (an
``SmbProtocolError`` and a ``ValueError``), never IndexError or
struct.error, and never loops forever.  Nothing here does I/O.
"""
from __future__ import annotations

import re
import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List

from ..errors import SmbProtocolError
from ..records import FrozenRecord
from .smb2 import MalformedMessage


class MalformedFscc(SmbProtocolError, MalformedMessage):
    """A file-system structure from the server that cannot be parsed."""


# QUERY_INFO classes and FSCTLs used with these structures
FILE_FS_VOLUME_INFORMATION = 1
FILE_STREAM_INFORMATION = 22
FILE_ID_INFORMATION = 59
FSCTL_SET_REPARSE_POINT = 0x000900A4
FSCTL_GET_REPARSE_POINT = 0x000900A8
FSCTL_SRV_ENUMERATE_SNAPSHOTS = 0x00144064
IO_REPARSE_TAG_SYMLINK = 0xA000000C
SYMLINK_FLAG_RELATIVE = 0x00000001
SYMLINK_ERROR_TAG = 0x4C4D5953           # "SYML"
ERROR_ID_DEFAULT = 0

_STREAM = struct.Struct("<IIQQ")          # Next, NameLength, Size, AllocationSize
_SNAPSHOTS = struct.Struct("<III")        # NumberOfSnapShots, Returned, ArraySize
_REPARSE = struct.Struct("<IHH")          # ReparseTag, ReparseDataLength, Reserved
_SYMLINK = struct.Struct("<HHHHI")        # Substitute off/len, Print off/len, Flags
_SYMLINK_ERROR = struct.Struct("<IIIHH")  # SymLinkLength, Tag, ReparseTag, DataLen, Unparsed
_ERROR_CONTEXT = struct.Struct("<II")     # ErrorDataLength, ErrorId
_VOLUME = struct.Struct("<QIIBx")         # CreationTime, Serial, LabelLength, Objects
_GMT = re.compile(r"^@GMT-\d{4}\.\d{2}\.\d{2}-\d{2}\.\d{2}\.\d{2}$")


class StreamInfo(FrozenRecord):
    """One data stream of a file: ``name`` as the server gives it
    ("::$DATA" for the main stream, ":name:$DATA"), its ``size`` and
    ``allocation_size``; ``stream`` is the bare name ("" for the main one)."""

    __slots__ = ("name", "size", "allocation_size")

    def __init__(self, name: str, size: int, allocation_size: int) -> None:
        self._init(name, size, allocation_size)

    @property
    def stream(self) -> str:
        parts = self.name.split(":")
        return parts[1] if len(parts) > 1 else ""


def parse_stream_information(buf) -> List[StreamInfo]:
    """FileStreamInformation ([MS-FSCC] 2.4.49): a chain of entries."""
    buf = bytes(buf)
    out: List[StreamInfo] = []
    pos = 0
    if not buf:
        return out
    while True:
        if pos + _STREAM.size > len(buf):
            raise MalformedFscc(f"stream entry truncated at offset {pos}")
        nxt, name_len, size, alloc = _STREAM.unpack_from(buf, pos)
        start = pos + _STREAM.size
        if name_len % 2 or start + name_len > len(buf):
            raise MalformedFscc(f"stream name out of bounds at offset {pos}")
        name = buf[start:start + name_len].decode("utf-16-le", "replace")
        out.append(StreamInfo(name, size, alloc))
        if not nxt:
            return out
        if nxt < _STREAM.size + name_len or nxt % 8:
            raise MalformedFscc(f"bad NextEntryOffset {nxt} at offset {pos}")
        pos += nxt


def parse_snapshots(buf) -> tuple:
    """SRV_SNAPSHOT_ARRAY ([MS-SMB2] 2.2.32.2): (number of snapshots the
    server has, the @GMT tokens returned in the server's order, the array
    size needed).  A buffer too small for the list returns no tokens and
    the size to ask for."""
    buf = bytes(buf)
    if len(buf) < _SNAPSHOTS.size:
        raise MalformedFscc(f"snapshot array truncated ({len(buf)} bytes)")
    total, returned, size = _SNAPSHOTS.unpack_from(buf)
    if returned > total:
        raise MalformedFscc(f"{returned} snapshots returned of {total}")
    if not returned:
        return total, [], size
    if size > len(buf) - _SNAPSHOTS.size or size % 2:
        raise MalformedFscc(f"snapshot array size {size} out of bounds")
    data = buf[_SNAPSHOTS.size:_SNAPSHOTS.size + size]
    names = [n for n in data.decode("utf-16-le", "replace").split("\0") if n]
    if len(names) != returned:
        raise MalformedFscc(f"snapshot array holds {len(names)} names, not {returned}")
    for name in names:
        if not _GMT.match(name):
            raise MalformedFscc(f"not a snapshot token: {name!r}")
    return total, names, size


def is_snapshot_token(token: str) -> bool:
    return isinstance(token, str) and bool(_GMT.match(token))


class SymlinkTarget(FrozenRecord):
    """A symbolic link's target: ``substitute`` (what the server follows),
    ``printable`` (for display), ``relative`` (SYMLINK_FLAG_RELATIVE), and
    ``unparsed`` (for an error response: bytes of the path left after the
    link)."""

    __slots__ = ("substitute", "printable", "relative", "unparsed")

    def __init__(self, substitute: str, printable: str, relative: bool, unparsed: int = 0) -> None:
        self._init(substitute, printable, relative, unparsed)


def _symlink_body(buf: bytes, pos: int, end: int) -> SymlinkTarget:
    if pos + _SYMLINK.size > end:
        raise MalformedFscc("symbolic link data truncated")
    sub_off, sub_len, print_off, print_len, flags = _SYMLINK.unpack_from(buf, pos)
    base = pos + _SYMLINK.size
    names = []
    for off, length in ((sub_off, sub_len), (print_off, print_len)):
        if length % 2 or base + off + length > end:
            raise MalformedFscc("symbolic link name out of bounds")
        names.append(buf[base + off:base + off + length].decode("utf-16-le", "replace"))
    return SymlinkTarget(names[0], names[1], bool(flags & SYMLINK_FLAG_RELATIVE))


def parse_reparse_data(buf) -> SymlinkTarget:
    """A symbolic link's REPARSE_DATA_BUFFER ([MS-FSCC] 2.1.2.4); another
    reparse tag raises MalformedFscc naming it."""
    buf = bytes(buf)
    if len(buf) < _REPARSE.size:
        raise MalformedFscc(f"reparse data truncated ({len(buf)} bytes)")
    tag, length, _r = _REPARSE.unpack_from(buf)
    if tag != IO_REPARSE_TAG_SYMLINK:
        raise MalformedFscc(f"not a symbolic link (reparse tag 0x{tag:08x})")
    end = _REPARSE.size + length
    if end > len(buf):
        raise MalformedFscc(f"reparse data length {length} out of bounds")
    return _symlink_body(buf, _REPARSE.size, end)


def symlink_reparse_data(target: str, relative: bool) -> bytes:
    """The REPARSE_DATA_BUFFER of a symbolic link to ``target`` (print and
    substitute names the same)."""
    name = target.encode("utf-16-le")
    if len(name) * 2 + _SYMLINK.size > 0xFFFF:
        raise ValueError("symbolic link target too long")
    body = _SYMLINK.pack(0, len(name), len(name), len(name),
                         SYMLINK_FLAG_RELATIVE if relative else 0) + name + name
    return _REPARSE.pack(IO_REPARSE_TAG_SYMLINK, len(body), 0) + body


def parse_symlink_error(error_data, dialect_311: bool) -> SymlinkTarget:
    """The Symbolic Link Error Response ([MS-SMB2] 2.2.2.2.1) in the
    ErrorData of an SMB2 ERROR response to a CREATE that stopped on a link.
    On 3.1.1 ErrorData is a list of error contexts (2.2.2.1); the one with
    ErrorId 0 holds the response."""
    buf = bytes(error_data)
    if dialect_311:
        pos = 0
        while True:
            if pos + _ERROR_CONTEXT.size > len(buf):
                raise MalformedFscc("no symbolic link error context")
            length, error_id = _ERROR_CONTEXT.unpack_from(buf, pos)
            start = pos + _ERROR_CONTEXT.size
            if start + length > len(buf):
                raise MalformedFscc("error context out of bounds")
            if error_id == ERROR_ID_DEFAULT:
                buf = buf[start:start + length]
                break
            pos = start + length + (-length % 8)
    if len(buf) < _SYMLINK_ERROR.size:
        raise MalformedFscc(f"symbolic link error response truncated ({len(buf)} bytes)")
    sym_len, tag, reparse_tag, data_len, unparsed = _SYMLINK_ERROR.unpack_from(buf)
    if tag != SYMLINK_ERROR_TAG or reparse_tag != IO_REPARSE_TAG_SYMLINK:
        raise MalformedFscc(f"not a symbolic link error response (tag 0x{tag:08x}, "
                            f"reparse tag 0x{reparse_tag:08x})")
    end = _SYMLINK_ERROR.size + data_len
    if sym_len + 4 > len(buf) or end > len(buf):
        raise MalformedFscc("symbolic link error response out of bounds")
    found = _symlink_body(buf, _SYMLINK_ERROR.size, end)
    return SymlinkTarget(found.substitute, found.printable, found.relative, unparsed)


_ERROR_BODY = struct.Struct("<HBBI")         # SMB2 ERROR: StructureSize, ContextCount, _, ByteCount


def parse_error_data(body) -> bytes:
    """ErrorData of an SMB2 ERROR response body ([MS-SMB2] 2.2.2)."""
    body = bytes(body)
    if len(body) < _ERROR_BODY.size:
        raise MalformedFscc(f"ERROR response truncated ({len(body)} bytes)")
    _size, _count, _r, count = _ERROR_BODY.unpack_from(body)
    if _ERROR_BODY.size + count > len(body):
        raise MalformedFscc(f"ERROR response ByteCount {count} out of bounds")
    return body[_ERROR_BODY.size:_ERROR_BODY.size + count]


class SymlinkOutsideShare(ValueError):
    """A symbolic link on the way to a path leads outside the share (an
    absolute target, or a relative one climbing above the share root)."""


def follow_symlink(path: str, link: SymlinkTarget) -> str:
    """The share path to open again after CREATE of ``path`` stopped on the
    symbolic link ``link`` ([MS-SMB2] 2.2.2.2.1.1, as Windows clients do):
    the link's own path is ``path`` without its last ``link.unparsed``
    bytes (UTF-16); a relative target replaces the link's name within its
    directory, the unparsed rest follows.  An absolute target (another
    volume or machine) raises SymlinkOutsideShare."""
    encoded = path.encode("utf-16-le")
    if link.unparsed % 2 or link.unparsed > len(encoded):
        raise MalformedFscc(f"symbolic link error: UnparsedPathLength {link.unparsed} "
                            f"beyond the path ({len(encoded)} bytes)")
    cut = len(encoded) - link.unparsed
    link_path = encoded[:cut].decode("utf-16-le", "replace")
    rest = encoded[cut:].decode("utf-16-le", "replace")
    target = link.substitute.replace("/", "\\")
    if not link.relative or target.startswith("\\") or target[1:2] == ":":
        raise SymlinkOutsideShare(f"{link_path!r} is a symbolic link to the absolute path "
                                  f"{link.printable or target!r}, outside the share")
    parts = [p for p in link_path.split("\\") if p][:-1]
    for part in target.split("\\") + [p for p in rest.split("\\") if p]:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise SymlinkOutsideShare(f"{link_path!r} is a symbolic link to "
                                          f"{target!r}, which leads above the share root")
            parts.pop()
        else:
            parts.append(part)
    return "\\".join(parts)


def parse_volume_serial(buf) -> int:
    """VolumeSerialNumber of FileFsVolumeInformation ([MS-FSCC] 2.5.9)."""
    buf = bytes(buf)
    if len(buf) < _VOLUME.size - 2:
        raise MalformedFscc(f"FileFsVolumeInformation truncated ({len(buf)} bytes)")
    return struct.unpack_from("<I", buf, 8)[0]


def snapshot_filetime(token: str) -> int:
    """The FILETIME a @GMT token names (the timewarp create context's value)."""
    if not is_snapshot_token(token):
        raise ValueError(f"not a snapshot token (@GMT-YYYY.MM.DD-HH.MM.SS): {token!r}")
    import datetime         # here: only snapshot tokens need it (cold start)
    when = datetime.datetime.strptime(token, "@GMT-%Y.%m.%d-%H.%M.%S")
    seconds = int(when.replace(tzinfo=datetime.timezone.utc).timestamp())
    return seconds * 10**7 + 116444736000000000


__all__ = ["StreamInfo", "SymlinkTarget", "MalformedFscc", "parse_stream_information",
           "parse_snapshots", "parse_reparse_data", "symlink_reparse_data",
           "parse_symlink_error", "parse_volume_serial", "snapshot_filetime",
           "is_snapshot_token", "parse_error_data", "follow_symlink", "SymlinkOutsideShare"]
