"""FileOps for SMB1 (NT LM 0.12, [MS-CIFS] with the [MS-SMB] extensions).

Theory of operation
-------------------
Every operation is one SMB1 request built as separate buffers after the
header: ``WordCount+words``, ``ByteCount(+pad)+data`` and, for WRITE_ANDX,
the payload itself (never concatenated).  The client fills in the header
(TID from the tree, UID from the session, MID), signs through the session
and raises the mapped SmbStatusError for an error status.

Strings are UTF-16LE (the client always sets FLAGS2_UNICODE); a Unicode
string in the data area must start at an even offset from the SMB header,
so ``_pad`` inserts one zero byte when needed.  The data area of a request
with ``n`` words starts at 32 + 1 + 2n + 2, which is always odd.

Commands: NT_CREATE_ANDX / CLOSE / FLUSH for handles; READ_ANDX and
WRITE_ANDX with the 32-bit offset extension (OffsetHigh) and the
CAP_LARGE_READX/WRITEX length extensions; TRANSACTION2 for directory
listing (FIND_FIRST2 / FIND_NEXT2 / FIND_CLOSE2), metadata
(QUERY_PATH_INFORMATION / QUERY_FILE_INFORMATION) and truncation
(SET_FILE_INFORMATION); DELETE, DELETE_DIRECTORY, CREATE_DIRECTORY and
RENAME for the namespace.  ``rename(replace=True)`` uses the pass-through
FileRenameInformation level (atomic) when both names share a directory and
the server has CAP_INFOLEVEL_PASSTHRU, otherwise deletes the target first.

Search attributes: DELETE, RENAME and FIND_FIRST2 name the attributes of
the files they may touch; without HIDDEN and SYSTEM (and DIRECTORY where a
directory may match) the server acts as if such a file did not exist, and
Samba marks every dot file hidden ("hide dot files", the default).  So
every request carrying them includes those bits, as smbclient does; the
pass-through rename carries none, and falls back to RENAME when the server
answers NO_SUCH_FILE for a hidden source.

A TRANSACTION2 reply must fit in one message (the client completes a MID on
the first reply), so MaxDataCount stays below the 64 KiB MaxBufferSize we
announce in SESSION_SETUP; the server then returns fewer directory entries.

Oplock breaks arrive as a LOCKING_ANDX *request* with MID 0xFFFF; the
acknowledgement (LOCKING_ANDX with OPLOCK_RELEASE) has no response, so it
goes out with ``client.send_oneway``.

Every reply is parsed with bounds checks; malformed ones raise
SmbProtocolError.
"""
from __future__ import annotations

import struct
from typing import Any, Iterator, List, Optional, Tuple

from ..errors import SmbProtocolError, SmbStatusError
from ..proto import smb1
from ..proto.smb2 import MalformedMessage
from ..proto.status import NtStatus
from ..task import SmbTask
from .ops import (FILE_OPEN, FILE_SHARE_ALL, FILE_WRITE_ATTRIBUTES, OPLOCK_BATCH,
                  OPLOCK_EXCLUSIVE, OPLOCK_LEASE, OPLOCK_LEVEL_II, OPLOCK_NONE, SYNCHRONIZE,
                  FileInfo, FileOps, FsSize, Handle)

Command = smb1.Command
Caps = smb1.Capabilities
HEADER = smb1.HEADER_SIZE

# NT_CREATE_ANDX ([MS-CIFS] 2.2.4.64)
_NT_CREATE = struct.Struct("<BBHBHIIIQIIIIIB")
_NT_CREATE_RESPONSE = struct.Struct("<BBHBHIQQQQIQQHHB")
NT_CREATE_REQUEST_OPLOCK = 0x02
NT_CREATE_REQUEST_OPBATCH = 0x04
SEC_IMPERSONATE = 2
# Granted OplockLevel in the response -> ops level, and back for requests.
_GRANTED = {0: OPLOCK_NONE, 1: OPLOCK_EXCLUSIVE, 2: OPLOCK_BATCH, 3: OPLOCK_LEVEL_II}
_REQUEST_FLAGS = {OPLOCK_NONE: 0,
                  OPLOCK_LEVEL_II: NT_CREATE_REQUEST_OPLOCK,   # the server picks level II
                  OPLOCK_EXCLUSIVE: NT_CREATE_REQUEST_OPLOCK,
                  OPLOCK_BATCH: NT_CREATE_REQUEST_OPLOCK | NT_CREATE_REQUEST_OPBATCH}

_CLOSE = struct.Struct("<HI")
_FID = struct.Struct("<H")

# READ_ANDX / WRITE_ANDX with OffsetHigh ([MS-SMB] 2.2.4.2, 2.2.4.3)
_READ = struct.Struct("<BBHHIHHIHI")
_READ_RESPONSE = struct.Struct("<BBHHHHHHH8x")
_WRITE = struct.Struct("<BBHHIIHHHHHI")
_WRITE_RESPONSE = struct.Struct("<BBHHHHH")
_WRITE_DATA_OFFSET = HEADER + 1 + _WRITE.size + 2 + 1     # + one pad byte = 64

# LOCKING_ANDX ([MS-CIFS] 2.2.4.32)
_LOCKING = struct.Struct("<BBHHBBIHH")
LOCKING_ANDX_OPLOCK_RELEASE = 0x02
_LOCKING_SHARED = 0x01
_LOCKING_LARGE_FILES = 0x10
_LOCK_RANGE = struct.Struct("<HHIIII")       # PID, Pad, OffsetHigh/Low, LengthHigh/Low
_PID = 0xFEFF                               # the header's PID (smb1.pack_header)
_LOCKFLAG_EXCLUSIVE = 0x02
_LOCKFLAG_UNLOCK = 0x04
_LOCKFLAG_FAIL_IMMEDIATELY = 0x10
OPLOCK_BREAK_TO_NONE = 0
OPLOCK_BREAK_TO_LEVEL_II = 1

# TRANSACTION2 ([MS-CIFS] 2.2.4.46): the layout is proto.smb1's
# pack_transaction / parse_transaction_response (one setup word).
TRANS2_FIND_FIRST2 = 0x0001
TRANS2_FIND_NEXT2 = 0x0002
TRANS2_QUERY_FS_INFORMATION = 0x0003
SMB_QUERY_FS_SIZE_INFO = 0x0103               # [MS-CIFS] 2.2.8.2.4
_FS_SIZE_INFO = struct.Struct("<QQII")
TRANS2_QUERY_PATH_INFORMATION = 0x0005
TRANS2_SET_PATH_INFORMATION = 0x0006
TRANS2_QUERY_FILE_INFORMATION = 0x0007
TRANS2_SET_FILE_INFORMATION = 0x0008
# Replies must fit in one message: we announce MaxBufferSize 0xFFFF.
TRANS2_MAX_DATA = 0xF000

_FIND_FIRST = struct.Struct("<HHHHI")
_FIND_FIRST_RESPONSE = struct.Struct("<HHHHH")
_FIND_NEXT = struct.Struct("<HHHIH")
_FIND_NEXT_RESPONSE = struct.Struct("<HHHH")
# SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO ([MS-SMB] 2.2.8.1.3): the entries with
# their file ids (st_ino); FileIndex is 0 on most servers.
SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO = 0x0105
_DIRECTORY_INFO = struct.Struct("<IIQQQQQQIIIIQ")
FIND_CLOSE_AT_EOS = 0x0002
FIND_CONTINUE_FROM_LAST = 0x0008
FIND_SEARCH_COUNT = 1024
SMB_FILE_ATTRIBUTE_HIDDEN = 0x02
SMB_FILE_ATTRIBUTE_SYSTEM = 0x04
SMB_FILE_ATTRIBUTE_DIRECTORY = 0x10
_SEARCH_FILES = SMB_FILE_ATTRIBUTE_HIDDEN | SMB_FILE_ATTRIBUTE_SYSTEM
_SEARCH_ALL = _SEARCH_FILES | SMB_FILE_ATTRIBUTE_DIRECTORY

SMB_QUERY_FILE_ALL_INFO = 0x0107
SMB_SET_FILE_BASIC_INFO = 0x0101
SMB_SET_FILE_END_OF_FILE_INFO = 0x0104
SMB_INFO_PASSTHROUGH = 1000
FILE_INTERNAL_INFORMATION = SMB_INFO_PASSTHROUGH + 6
FILE_RENAME_INFORMATION = SMB_INFO_PASSTHROUGH + 10
FILE_ALL_INFORMATION = SMB_INFO_PASSTHROUGH + 18
_QUERY_PATH = struct.Struct("<HI")
_QUERY_FILE = struct.Struct("<HH")
_SET_FILE = struct.Struct("<HHH")
_U64 = struct.Struct("<Q")
_RENAME_INFO = struct.Struct("<B3xII")
_BASIC_INFO = struct.Struct("<QQQQI4x")          # times, attributes
# The first 64 bytes of SMB_QUERY_FILE_ALL_INFO and FileAllInformation agree
# (basic + standard information).
_ALL_INFO = struct.Struct("<QQQQI4xQQIBBH")

# Without CAP_LARGE_READX/WRITEX the server's MaxBufferSize bounds a message.
_SMALL_IO_OVERHEAD = 128
# With them (measured against Samba 4.17): reads up to 16 MiB, except on a
# signed connection, where a reply carries at most 131011 bytes (no "big"
# READ_ANDX while signing).  Samba reads a request's length in 17 bits
# (0x1FFFF), so a write carries at most 0x1FFFF - 64 bytes; 124 KiB keeps
# the chunks 4 KiB aligned.  1 MiB reads: large enough for full speed, small
# enough that MaxMpxCount (50) of them in flight stay cheap.
LARGE_READ = 1024 * 1024
LARGE_READ_SIGNED = 124 * 1024
LARGE_WRITE = 124 * 1024


def _utf16z(text: str) -> bytes:
    """``text`` as a NUL-terminated UTF-16LE string."""
    return (text + "\0").encode("utf-16-le")


def _pad(offset: int) -> bytes:
    """The pad byte that puts a Unicode string at an even offset."""
    return b"\0" if offset % 2 else b""


def _data_start(words: int) -> int:
    """Offset of the data area of a request with ``words`` parameter words."""
    return HEADER + 1 + 2 * words + 2


def _params(message) -> Tuple[memoryview, memoryview]:
    try:
        return smb1.parse_params(message)
    except MalformedMessage as exc:
        raise SmbProtocolError(f"malformed SMB1 reply: {exc}") from None


def _unpack(fmt: struct.Struct, buf, what: str, offset: int = 0) -> tuple:
    if len(buf) < offset + fmt.size:
        raise SmbProtocolError(f"{what} reply truncated ({len(buf)} bytes)")
    return fmt.unpack_from(buf, offset)


_WILDCARDS = frozenset('*?<>"')


def _check_name(path: str) -> None:
    """SMB1 DELETE and RENAME take wildcards (also the DOS ones ``<>"``):
    refuse them in a path."""
    if not _WILDCARDS.isdisjoint(path):
        raise ValueError(f"wildcard in path {path!r}")


def _split(path: str) -> Tuple[str, str]:
    """(parent directory, leaf name) of a backslash path."""
    parent, _sep, leaf = path.rpartition("\\")
    return parent, leaf


class Smb1FileOps(FileOps):
    """The FileOps of NT LM 0.12 (see the module docstring)."""

    def __init__(self, tree):
        super().__init__(tree)
        negotiated = self.client.negotiated
        self._caps = negotiated.capabilities if negotiated is not None else 0
        self._max_buffer = negotiated.max_buffer_size if negotiated is not None else 0
        self._passthrough = bool(self._caps & Caps.INFOLEVEL_PASSTHRU)

    # -- helpers --------------------------------------------------------------

    def _task(self, command: int, words: bytes, data: bytes = b"", *,
              path: Optional[str] = None, ok: Tuple[int, ...] = (0,)) -> SmbTask:
        return SmbTask(command, smb1.pack_params(words, data), tree=self.tree,
                       security=self.session, ok_statuses=ok, path=path)

    def _run(self, command: int, words: bytes, data: bytes = b"", *,
             path: Optional[str] = None, ok: Tuple[int, ...] = (0,)):
        return self.client.run_task(self._task(command, words, data, path=path, ok=ok))

    @property
    def _signing(self) -> bool:
        return self.session.signer is not None

    # -- sizes ----------------------------------------------------------------

    @property
    def max_read(self) -> int:
        if self._caps & Caps.LARGE_READX:
            return LARGE_READ_SIGNED if self._signing else LARGE_READ
        return max(1024, min(self._max_buffer, 0xFFFF) - _SMALL_IO_OVERHEAD)

    @property
    def max_write(self) -> int:
        if self._caps & Caps.LARGE_WRITEX:
            return LARGE_WRITE
        return max(1024, min(self._max_buffer, 0xFFFF) - _SMALL_IO_OVERHEAD)

    # -- handles --------------------------------------------------------------

    def open(self, path: str, *, access: int, disposition: int, create_options: int = 0,
             share_access: int = FILE_SHARE_ALL, oplock: int = OPLOCK_NONE,
             lease_key: Optional[bytes] = None, lease_state: int = 0,
             attributes: int = 0, durable: bool = False) -> Handle:
        # SMB1 has no durable handles: ``durable`` is ignored.
        if oplock == OPLOCK_LEASE:
            raise ValueError("leases need SMB 2.1 or later; SMB1 has oplocks only")
        if oplock not in _REQUEST_FLAGS:
            raise ValueError(f"unknown oplock level {oplock!r}")
        generation = self.client.generation
        name = _utf16z(path)
        words = _NT_CREATE.pack(0xFF, 0, 0, 0, len(name), _REQUEST_FLAGS[oplock], 0,
                                access, 0, attributes, share_access, disposition,
                                create_options, SEC_IMPERSONATE, 0)
        data = _pad(_data_start(_NT_CREATE.size // 2)) + name
        reply = self._run(Command.NT_CREATE_ANDX, words, data, path=path)
        words, _data = _params(reply.message)
        (_c, _r, _o, level, fid, _action, ctime, atime, mtime, chtime, attrs, alloc, eof,
         _type, _pipe, _dir) = _unpack(_NT_CREATE_RESPONSE, words, "NT_CREATE_ANDX")
        info = FileInfo(_split(path)[1], eof, alloc, attrs, ctime, atime, mtime, chtime)
        return Handle(fid, path, info, oplock_level=_GRANTED.get(level, OPLOCK_NONE),
                      granted_access=access, access=access, share_access=share_access,
                      create_options=create_options, requested_oplock=oplock,
                      generation=generation)

    def close(self, handle: Handle) -> None:
        if handle.closed:
            return
        handle.closed = True
        self.client.run_task(self.close_task(handle))

    # Samba 4.17 crashes (close_file_smb from an immediate handler) when an
    # SMB1 CLOSE arrives while WRITE_ANDX requests on the file are pending.
    close_behind_writes = False

    def close_task(self, handle: Handle) -> SmbTask:
        return self._task(Command.CLOSE, _CLOSE.pack(handle.fid, 0xFFFFFFFF), path=handle.path)

    def close_done(self, handle: Handle, reply) -> None:
        handle.closed = True

    # -- data -----------------------------------------------------------------

    def read_task(self, handle: Handle, offset: int, length: int) -> SmbTask:
        if not 0 <= length <= self.max_read:
            raise ValueError(f"read length {length} outside 0..{self.max_read}")
        if offset < 0:
            raise ValueError("negative offset")
        words = _READ.pack(0xFF, 0, 0, handle.fid, offset & 0xFFFFFFFF, length & 0xFFFF,
                           length & 0xFFFF, length >> 16, 0, offset >> 32)
        task = self._task(Command.READ_ANDX, words, path=handle.path,
                          ok=(0, NtStatus.END_OF_FILE))
        task.expected_response = length
        return task

    def parse_read(self, reply) -> memoryview:
        message = reply.message
        if reply.status == NtStatus.END_OF_FILE:
            return memoryview(message)[0:0]
        words, _data = _params(message)
        (_c, _r, _o, _avail, _mode, _res, low, offset, high) = _unpack(
            _READ_RESPONSE, words, "READ_ANDX")
        length = low | (high << 16)
        if length == 0:
            return memoryview(message)[0:0]
        if offset < HEADER + 1 + _READ_RESPONSE.size + 2 or offset + length > len(message):
            raise SmbProtocolError(f"READ_ANDX data out of bounds ({offset}+{length} in "
                                   f"{len(message)} bytes)")
        return memoryview(message)[offset:offset + length]

    def write_task(self, handle: Handle, offset: int, data) -> SmbTask:
        length = len(data)
        if length > self.max_write:
            raise ValueError(f"write of {length} bytes exceeds max_write {self.max_write}")
        if offset < 0:
            raise ValueError("negative offset")
        words = _WRITE.pack(0xFF, 0, 0, handle.fid, offset & 0xFFFFFFFF, 0, 0, 0,
                            length >> 16, length & 0xFFFF, _WRITE_DATA_OFFSET, offset >> 32)
        # ByteCount covers the pad byte and the data; it is truncated to 16
        # bits for a large write (the server takes DataLength/DataLengthHigh).
        body = (bytes([_WRITE.size // 2]) + words,
                struct.pack("<HB", (length + 1) & 0xFFFF, 0), data)
        return SmbTask(Command.WRITE_ANDX, body, tree=self.tree, security=self.session,
                       path=handle.path)

    def parse_write(self, reply) -> int:
        words, _data = _params(reply.message)
        _c, _r, _o, low, _avail, high, _res = _unpack(_WRITE_RESPONSE, words, "WRITE_ANDX")
        return low | (high << 16)

    def flush(self, handle: Handle) -> None:
        self._run(Command.FLUSH, _FID.pack(handle.fid), path=handle.path)

    # -- TRANSACTION2 ---------------------------------------------------------

    def _trans2(self, subcommand: int, params: bytes, data: bytes = b"", *,
                path: Optional[str], max_params: int = 16,
                max_data: int = TRANS2_MAX_DATA) -> Tuple[memoryview, memoryview]:
        """Run one TRANSACTION2 request; (parameters, data) of the reply."""
        body = smb1.pack_transaction((subcommand,), params, data, max_params=max_params,
                                     max_data=max_data)
        task = SmbTask(Command.TRANSACTION2, body, tree=self.tree, security=self.session,
                       path=path)
        try:
            return smb1.parse_transaction_response(self.client.run_task(task).message)
        except MalformedMessage as exc:
            raise SmbProtocolError(f"TRANSACTION2: {exc}") from None

    # -- metadata -------------------------------------------------------------

    @property
    def _all_info_level(self) -> int:
        return FILE_ALL_INFORMATION if self._passthrough else SMB_QUERY_FILE_ALL_INFO

    def _query(self, level: int, *, path: str, fid: Optional[int] = None) -> memoryview:
        """The data of QUERY_FILE_INFORMATION (``fid``) or
        QUERY_PATH_INFORMATION (``path``) at ``level``."""
        if fid is not None:
            _p, data = self._trans2(TRANS2_QUERY_FILE_INFORMATION,
                                    _QUERY_FILE.pack(fid, level), path=path)
        else:
            _p, data = self._trans2(TRANS2_QUERY_PATH_INFORMATION,
                                    _QUERY_PATH.pack(level, 0) + _utf16z(path), path=path)
        return data

    # -- security descriptors (NT_TRANSACT, [MS-CIFS] 2.2.7.6, 2.2.7.3) -----------------

    def query_security(self, handle: Handle, info: int, max_data: int = 0xF000) -> bytes:
        """The self-relative security descriptor of an open file (the parts
        in ``info``, AdditionalInformation bits)."""
        params = struct.pack("<HHI", handle.fid, 0, info)
        try:
            message = self._nt_transact(handle, smb1.pack_nt_transact(
                smb1.NT_TRANSACT_QUERY_SECURITY_DESC, params, max_params=4,
                max_data=max_data)).message
            return bytes(smb1.parse_nt_transact_response(message)[1])
        except MalformedMessage as exc:
            raise SmbProtocolError(f"NT_TRANSACT_QUERY_SECURITY_DESC: {exc}") from None

    def set_security(self, handle: Handle, info: int, descriptor: bytes) -> None:
        params = struct.pack("<HHI", handle.fid, 0, info)
        self._nt_transact(handle, smb1.pack_nt_transact(smb1.NT_TRANSACT_SET_SECURITY_DESC,
                                                        params, descriptor))

    def _nt_transact(self, handle: Handle, body):
        return self.client.run_task(SmbTask(Command.NT_TRANSACT, body, tree=self.tree,
                                            security=self.session, path=handle.path))

    def query_path(self, path: str, level: int) -> bytes:
        """The data of TRANS2_QUERY_PATH_INFORMATION at ``level`` (e.g.
        SMB_QUERY_FILE_STREAM_INFO for the admin calls)."""
        return bytes(self._query(level, path=path))

    def query_fs(self, level: int) -> bytes:
        """The data of TRANS2_QUERY_FS_INFORMATION at ``level``."""
        _p, data = self._trans2(TRANS2_QUERY_FS_INFORMATION, struct.pack("<H", level), path="")
        return bytes(data)

    def _info(self, path: str, fid: Optional[int] = None) -> FileInfo:
        """Times, sizes, attributes and links, then (pass-through level
        FileInternalInformation) the file id: Samba's SMB1 answer to the
        pass-through FileAllInformation has no IndexNumber (it carries the
        native level's EaSize and FileName there)."""
        data = self._query(self._all_info_level, path=path, fid=fid)
        (ctime, atime, mtime, chtime, attrs, alloc, eof, links, _delete, _dir,
         _r) = _unpack(_ALL_INFO, data, "QUERY_INFORMATION")
        index = 0
        if self._passthrough:
            data = self._query(FILE_INTERNAL_INFORMATION, path=path, fid=fid)
            (index,) = _unpack(_U64, data, "FileInternalInformation")
        return FileInfo(_split(path)[1], eof, alloc, attrs, ctime, atime, mtime, chtime,
                        index, links)

    def query_info(self, handle: Handle) -> FileInfo:
        return self._info(handle.path, handle.fid)

    def stat(self, path: str) -> FileInfo:
        return self._info(path)

    def fs_size(self) -> FsSize:
        _p, data = self._trans2(TRANS2_QUERY_FS_INFORMATION,
                                struct.pack("<H", SMB_QUERY_FS_SIZE_INFO), path="")
        if len(data) < _FS_SIZE_INFO.size:
            raise SmbProtocolError("SMB_QUERY_FS_SIZE_INFO truncated")
        total, free, sectors, sector_size = _FS_SIZE_INFO.unpack_from(data)
        return FsSize(total, free, free, sectors, sector_size)

    def set_end_of_file(self, handle: Handle, size: int) -> None:
        if size < 0:
            raise ValueError("negative size")
        self._trans2(TRANS2_SET_FILE_INFORMATION,
                     _SET_FILE.pack(handle.fid, SMB_SET_FILE_END_OF_FILE_INFO, 0),
                     _U64.pack(size), path=handle.path)
        handle.info.size = size

    def set_times(self, path: str, atime: int, mtime: int) -> None:
        """Set the access and write times (FILETIME; 0 leaves one as it is)
        on an open handle (Samba answers a path-based set on a missing file
        with INVALID_HANDLE, not "not found")."""
        handle = self.open(path, access=FILE_WRITE_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_OPEN)
        try:
            self._trans2(TRANS2_SET_FILE_INFORMATION,
                         _SET_FILE.pack(handle.fid, SMB_SET_FILE_BASIC_INFO, 0),
                         _BASIC_INFO.pack(0, atime, mtime, 0, 0), path=path)
        finally:
            self.close(handle)

    # -- directories ----------------------------------------------------------

    def listdir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """FIND_FIRST2 now (errors raise here), FIND_NEXT2 while iterating.
        The server matches ``pattern`` (``*`` and ``?``, case-insensitively)."""
        full = f"{path}\\{pattern}" if path else pattern
        params = _FIND_FIRST.pack(_SEARCH_ALL, FIND_SEARCH_COUNT, FIND_CLOSE_AT_EOS,
                                  SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO, 0) + _utf16z(full)
        try:
            rparams, data = self._trans2(TRANS2_FIND_FIRST2, params, path=path)
        except SmbStatusError as exc:
            if exc.status == NtStatus.NO_SUCH_FILE and pattern != "*":
                return iter(())             # nothing matches the pattern
            raise
        sid, count, end, _ea, _last = _unpack(_FIND_FIRST_RESPONSE, rparams, "FIND_FIRST2")
        entries = _parse_directory_info(data, count)
        return self._find_rest(path, sid, entries, bool(end) or not entries)

    def _find_rest(self, path: str, sid: int, entries: List[FileInfo],
                   end: bool) -> Iterator[FileInfo]:
        try:
            while True:
                for info in entries:
                    if info.name not in (".", ".."):
                        yield info
                if end:
                    return
                params = _FIND_NEXT.pack(sid, FIND_SEARCH_COUNT,
                                         SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO,
                                         0, FIND_CLOSE_AT_EOS | FIND_CONTINUE_FROM_LAST) \
                    + _utf16z(entries[-1].name)
                rparams, data = self._trans2(TRANS2_FIND_NEXT2, params, path=path)
                count, eos, _ea, _last = _unpack(_FIND_NEXT_RESPONSE, rparams, "FIND_NEXT2")
                resume = entries[-1].name
                entries = _parse_directory_info(data, count)
                end = bool(eos) or not entries
                if entries and entries[-1].name == resume:
                    raise SmbProtocolError("FIND_NEXT2 made no progress")
        finally:
            if not end:
                # Abandoned before the end: the server still holds the search.
                try:
                    self._run(Command.FIND_CLOSE2, _FID.pack(sid), path=path)
                except Exception:  # noqa: BLE001 - best effort on a dead link
                    pass

    def mkdir(self, path: str) -> None:
        self._run(Command.CREATE_DIRECTORY, b"", b"\x04" + _utf16z(path), path=path)

    def delete(self, path: str, directory: bool = False) -> None:
        _check_name(path)
        if directory:
            # data at offset 35: 0x04 there, the name at 36 (even).
            self._run(Command.DELETE_DIRECTORY, b"", b"\x04" + _utf16z(path), path=path)
        else:
            # one word: data at 37, 0x04 there, the name at 38 (even).
            self._run(Command.DELETE, _FID.pack(_SEARCH_FILES), b"\x04" + _utf16z(path),
                      path=path)

    def rename(self, path: str, new_path: str, replace: bool = False) -> None:
        _check_name(path)
        _check_name(new_path)
        if replace:
            parent, leaf = _split(new_path)
            if self._passthrough and parent == _split(path)[0]:
                # Atomic: FileRenameInformation with ReplaceIfExists.  It has
                # no search attributes: Samba applies none, so it answers
                # NO_SUCH_FILE for a hidden or system source (a dot file under
                # "hide dot files"); RENAME below includes them.
                name = leaf.encode("utf-16-le")
                try:
                    self._trans2(TRANS2_SET_PATH_INFORMATION,
                                 _QUERY_PATH.pack(FILE_RENAME_INFORMATION, 0) + _utf16z(path),
                                 _RENAME_INFO.pack(1, 0, len(name)) + name, path=path)
                    return
                except SmbStatusError as exc:
                    if exc.status != NtStatus.NO_SUCH_FILE:
                        raise
            try:
                self._rename(path, new_path)
                return
            except FileExistsError:
                self.delete(new_path)
        self._rename(path, new_path)

    def _rename(self, path: str, new_path: str) -> None:
        old = b"\x04" + _utf16z(path)                   # the old name starts at 38
        start = _data_start(1) + len(old) + 1
        data = old + b"\x04" + _pad(start) + _utf16z(new_path)
        self._run(Command.RENAME, _FID.pack(_SEARCH_ALL), data, path=path)

    # -- oplocks --------------------------------------------------------------

    def parse_break(self, notification) -> Tuple[str, Any, int]:
        reply = notification.reply
        words, _data = _params(reply.message)
        (_c, _r, _o, fid, lock_type, level, _timeout, _unlocks,
         _locks) = _unpack(_LOCKING, words, "LOCKING_ANDX break")
        if not lock_type & LOCKING_ANDX_OPLOCK_RELEASE:
            raise SmbProtocolError(f"LOCKING_ANDX from the server is not an oplock break "
                                   f"(TypeOfLock 0x{lock_type:02x})")
        return ("oplock", fid,
                OPLOCK_LEVEL_II if level == OPLOCK_BREAK_TO_LEVEL_II else OPLOCK_NONE)

    def lock_task(self, handle: Handle, ranges, *, sequence: int = 0) -> SmbTask:
        """LOCKING_ANDX for byte ranges ([MS-CIFS] 2.2.4.32, large-file
        ranges): ``ranges`` are (offset, length, LOCKFLAG_* as on SMB2), all
        locks or all unlocks; a lock without FAIL_IMMEDIATELY waits on the
        server (Timeout -1).  ``sequence`` is SMB2's (ignored here)."""
        unlock = bool(ranges[0][2] & _LOCKFLAG_UNLOCK)
        lock_type = _LOCKING_LARGE_FILES
        if not unlock and not ranges[0][2] & _LOCKFLAG_EXCLUSIVE:
            lock_type |= _LOCKING_SHARED
        wait = not unlock and not ranges[0][2] & _LOCKFLAG_FAIL_IMMEDIATELY
        data = b"".join(_LOCK_RANGE.pack(_PID, 0, off >> 32, off & 0xFFFFFFFF, n >> 32,
                                         n & 0xFFFFFFFF) for off, n, _f in ranges)
        words = _LOCKING.pack(0xFF, 0, 0, handle.fid, lock_type, 0,
                              0xFFFFFFFF if wait else 0, len(ranges) if unlock else 0,
                              0 if unlock else len(ranges))
        task = self._task(Command.LOCKING_ANDX, words, data, path=handle.path)
        task.long_poll = wait
        return task

    def ack_break(self, handle: Handle, new_level: int) -> None:
        """Release the oplock down to ``new_level``; the server sends no reply."""
        if handle.closed:
            return
        level = OPLOCK_BREAK_TO_LEVEL_II if new_level == OPLOCK_LEVEL_II else \
            OPLOCK_BREAK_TO_NONE
        handle.oplock_level = OPLOCK_LEVEL_II if level else OPLOCK_NONE
        words = _LOCKING.pack(0xFF, 0, 0, handle.fid, LOCKING_ANDX_OPLOCK_RELEASE, level,
                              0, 0, 0)
        task = self._task(Command.LOCKING_ANDX, words, path=handle.path)
        task.replayable = False
        self.client.send_oneway(task)


def _parse_directory_info(data, count: int) -> List[FileInfo]:
    """Entries of SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO (at most ``count``)."""
    entries: List[FileInfo] = []
    pos = 0
    while count > 0:
        if pos + _DIRECTORY_INFO.size > len(data):
            raise SmbProtocolError("directory listing truncated")
        (nxt, _index, ctime, atime, mtime, chtime, eof, alloc, attrs, name_len, _ea, _r,
         file_id) = _DIRECTORY_INFO.unpack_from(data, pos)
        start = pos + _DIRECTORY_INFO.size
        if start + name_len > len(data):
            raise SmbProtocolError("directory entry name out of bounds")
        name = bytes(data[start:start + name_len]).decode("utf-16-le", "replace").rstrip("\0")
        entries.append(FileInfo(name, eof, alloc, attrs, ctime, atime, mtime, chtime, file_id))
        count -= 1
        if not nxt:
            break
        if nxt < _DIRECTORY_INFO.size:
            raise SmbProtocolError(f"bad NextEntryOffset {nxt}")
        pos += nxt
    return entries
