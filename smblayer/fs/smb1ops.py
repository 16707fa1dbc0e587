"""FileOps for SMB1 (NT LM 0.12, [MS-CIFS] with the [MS-SMB] extensions).

Theory of operation
-------------------
Every operation is one SMB1 request built as separate buffers after the
header: ``WordCount+words``, ``ByteCount(+pad)+data`` and, for WRITE_ANDX,
the payload itself (never concatenated).  The layouts are the codecs of
``smblayer.proto.smb1commands`` (and, inside TRANSACTION2, the [MS-FSCC]
structures of ``smblayer.proto.info`` and ``proto.commands``): this module
holds none of its own.  The client fills in the header
(TID from the tree, UID from the session, MID), signs through the session
and raises the mapped SmbStatusError for an error status.

Strings are UTF-16LE (the client always sets FLAGS2_UNICODE); a Unicode
string in the data area must start at an even offset from the SMB header
(the codecs insert the pad byte).

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

from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

from ..errors import SmbProtocolError, SmbStatusError
from ..proto import commands, smb1
from ..proto import info as fscc
from ..proto import smb1commands as codec
from ..proto.smb2 import MalformedMessage
from ..proto.status import NtStatus
from ..task import SmbTask
from .ops import (FILE_OPEN, FILE_SHARE_ALL, FILE_WRITE_ATTRIBUTES, OPLOCK_BATCH,
                  OPLOCK_EXCLUSIVE, OPLOCK_LEASE, OPLOCK_LEVEL_II, OPLOCK_NONE, SYNCHRONIZE,
                  FileInfo, FileOps, FsSize, Handle)

Command = smb1.Command
_SHAREFLAG_DFS = 0x0001         # the SMB2 share flag the Tree reads ([MS-SMB2] 2.2.10)
Caps = smb1.Capabilities
HEADER = smb1.HEADER_SIZE

# NT_CREATE_ANDX ([MS-CIFS] 2.2.4.64)
NT_CREATE_REQUEST_OPLOCK = 0x02
NT_CREATE_REQUEST_OPBATCH = 0x04
# Granted OplockLevel in the response -> ops level, and back for requests.
_GRANTED = {0: OPLOCK_NONE, 1: OPLOCK_EXCLUSIVE, 2: OPLOCK_BATCH, 3: OPLOCK_LEVEL_II}
_REQUEST_FLAGS = {OPLOCK_NONE: 0,
                  OPLOCK_LEVEL_II: NT_CREATE_REQUEST_OPLOCK,   # the server picks level II
                  OPLOCK_EXCLUSIVE: NT_CREATE_REQUEST_OPLOCK,
                  OPLOCK_BATCH: NT_CREATE_REQUEST_OPLOCK | NT_CREATE_REQUEST_OPBATCH}

# LOCKING_ANDX ([MS-CIFS] 2.2.4.32)
LOCKING_ANDX_OPLOCK_RELEASE = codec.LOCKING_ANDX_OPLOCK_RELEASE
_LOCKFLAG_EXCLUSIVE = 0x02              # the SMB2 LOCKFLAG_* a lock range carries
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
TRANS2_QUERY_PATH_INFORMATION = 0x0005
TRANS2_SET_PATH_INFORMATION = 0x0006
TRANS2_QUERY_FILE_INFORMATION = 0x0007
TRANS2_SET_FILE_INFORMATION = 0x0008
# Replies must fit in one message: we announce MaxBufferSize 0xFFFF.
TRANS2_MAX_DATA = 0xF000

# SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO ([MS-SMB] 2.2.8.1.3): the entries with
# their file ids (st_ino); FileIndex is 0 on most servers.
SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO = 0x0105
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
# The first 64 bytes of SMB_QUERY_FILE_ALL_INFO and FileAllInformation agree
# (basic + standard information): fscc.parse_all_information(with_file_id=False).

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


R = TypeVar("R")


def _decode(parse: Callable[..., R], *args) -> R:
    """``parse(*args)`` (a proto codec); a malformed reply is an SmbProtocolError."""
    try:
        return parse(*args)
    except MalformedMessage as exc:
        raise SmbProtocolError(f"malformed SMB1 reply: {exc}") from None


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

    def _task(self, command: int, body: Tuple[bytes, ...], *, path: Optional[str] = None,
              ok: Tuple[int, ...] = (0,)) -> SmbTask:
        return SmbTask(command, body, tree=self.tree, security=self.session, ok_statuses=ok,
                       path=path)

    def _run(self, command: int, body: Tuple[bytes, ...], *, path: Optional[str] = None,
             ok: Tuple[int, ...] = (0,)):
        return self.client.run_task(self._task(command, body, path=path, ok=ok))

    @property
    def _signing(self) -> bool:
        return self.session.signer is not None

    # -- the tree -------------------------------------------------------------

    def tree_connect_task(self) -> SmbTask:
        return SmbTask(Command.TREE_CONNECT_ANDX,
                       smb1.pack_tree_connect_andx(self.session.server_name, self.tree.share),
                       security=self.session, tree=self.tree, path=self.tree.share,
                       replayable=False)

    @staticmethod
    def parse_tree_connect(reply) -> Tuple[int, int, int, int]:
        """OptionalSupport's SMB_SHARE_IS_IN_DFS becomes SMB2_SHAREFLAG_DFS,
        so a DFS share is known on SMB1 too."""
        dfs = smb1.parse_tree_connect_andx(reply.message) & smb1.SMB_SHARE_IS_IN_DFS
        return reply.header.tid, (_SHAREFLAG_DFS if dfs else 0), 0, 0

    def tree_disconnect_task(self) -> SmbTask:
        return SmbTask(Command.TREE_DISCONNECT, smb1.pack_tree_disconnect(), tree=self.tree,
                       security=self.session, replayable=False)

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
        request = codec.nt_create_andx_request(
            path, flags=_REQUEST_FLAGS[oplock], access=access, attributes=attributes,
            share_access=share_access, disposition=disposition, create_options=create_options)
        reply = self._run(Command.NT_CREATE_ANDX, request, path=path)
        r = _decode(codec.parse_nt_create_andx_response, reply.message)
        return Handle(r.fid, path, FileInfo(_split(path)[1]).update(r),
                      oplock_level=_GRANTED.get(r.oplock_level, OPLOCK_NONE),
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
        return self._task(Command.CLOSE, codec.close_request(handle.fid), path=handle.path)

    def close_done(self, handle: Handle, reply) -> None:
        handle.closed = True

    # -- data -----------------------------------------------------------------

    def read_task(self, handle: Handle, offset: int, length: int) -> SmbTask:
        if not 0 <= length <= self.max_read:
            raise ValueError(f"read length {length} outside 0..{self.max_read}")
        if offset < 0:
            raise ValueError("negative offset")
        task = self._task(Command.READ_ANDX, codec.read_andx_request(handle.fid, offset, length),
                          path=handle.path,
                          ok=(0, NtStatus.END_OF_FILE))
        task.expected_response = length
        return task

    def parse_read(self, reply) -> memoryview:
        message = reply.message
        if reply.status == NtStatus.END_OF_FILE:
            return memoryview(message)[0:0]
        return _decode(codec.read_andx_response_data, message)

    def write_task(self, handle: Handle, offset: int, data) -> SmbTask:
        length = len(data)
        if length > self.max_write:
            raise ValueError(f"write of {length} bytes exceeds max_write {self.max_write}")
        if offset < 0:
            raise ValueError("negative offset")
        return SmbTask(Command.WRITE_ANDX,
                       (*codec.write_andx_request(handle.fid, offset, length), data),
                       tree=self.tree, security=self.session, path=handle.path)

    def parse_write(self, reply) -> int:
        return _decode(codec.write_andx_response_count, reply.message)

    def flush(self, handle: Handle) -> None:
        self._run(Command.FLUSH, codec.fid_request(handle.fid), path=handle.path)

    # -- TRANSACTION2 ---------------------------------------------------------

    def trans2(self, subcommand: int, params: bytes, data: bytes = b"", *,
                path: Optional[str], max_params: int = 16,
                max_data: int = TRANS2_MAX_DATA) -> Tuple[memoryview, memoryview]:
        """Run one TRANSACTION2 request; (parameters, data) of the reply."""
        request = smb1.pack_transaction((subcommand,), params, data, max_params=max_params,
                                        max_data=max_data)
        message = self._run(Command.TRANSACTION2, request, path=path).message
        return _decode(smb1.parse_transaction_response, message)

    # -- metadata -------------------------------------------------------------

    @property
    def _all_info_level(self) -> int:
        return FILE_ALL_INFORMATION if self._passthrough else SMB_QUERY_FILE_ALL_INFO

    def _query(self, level: int, *, path: str, fid: Optional[int] = None) -> memoryview:
        """The data of QUERY_FILE_INFORMATION (``fid``) or
        QUERY_PATH_INFORMATION (``path``) at ``level``."""
        if fid is not None:
            _p, data = self.trans2(TRANS2_QUERY_FILE_INFORMATION,
                                   codec.query_file_params(fid, level), path=path)
        else:
            _p, data = self.trans2(TRANS2_QUERY_PATH_INFORMATION,
                                   codec.query_path_params(level, path), path=path)
        return data

    # -- security descriptors (NT_TRANSACT, [MS-CIFS] 2.2.7.6, 2.2.7.3) -----------------

    def query_security(self, handle: Handle, info: int, max_data: int = 0xF000) -> bytes:
        """The self-relative security descriptor of an open file (the parts
        in ``info``, AdditionalInformation bits)."""
        params = codec.security_desc_params(handle.fid, info)
        try:
            message = self._nt_transact(handle, smb1.pack_nt_transact(
                smb1.NT_TRANSACT_QUERY_SECURITY_DESC, params, max_params=4,
                max_data=max_data)).message
            return bytes(smb1.parse_nt_transact_response(message)[1])
        except MalformedMessage as exc:
            raise SmbProtocolError(f"NT_TRANSACT_QUERY_SECURITY_DESC: {exc}") from None

    def set_security(self, handle: Handle, info: int, descriptor: bytes) -> None:
        params = codec.security_desc_params(handle.fid, info)
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
        _p, data = self.trans2(TRANS2_QUERY_FS_INFORMATION, codec.query_fs_params(level), path="")
        return bytes(data)

    def _info(self, path: str, fid: Optional[int] = None) -> FileInfo:
        """Times, sizes, attributes and links, then (pass-through level
        FileInternalInformation) the file id: Samba's SMB1 answer to the
        pass-through FileAllInformation has no IndexNumber (it carries the
        native level's EaSize and FileName there)."""
        data = self._query(self._all_info_level, path=path, fid=fid)
        a = _decode(fscc.parse_all_information, data, False)
        index = 0
        if self._passthrough:
            data = self._query(FILE_INTERNAL_INFORMATION, path=path, fid=fid)
            index = _decode(fscc.parse_u64, data)
        return FileInfo(_split(path)[1], file_index=index, nlink=a.links).update(a)

    def query_info(self, handle: Handle) -> FileInfo:
        return self._info(handle.path, handle.fid)

    def stat(self, path: str) -> FileInfo:
        return self._info(path)

    def fs_size(self) -> FsSize:
        _p, data = self.trans2(TRANS2_QUERY_FS_INFORMATION,
                               codec.query_fs_params(SMB_QUERY_FS_SIZE_INFO), path="")
        total, free, sectors, sector_size = _decode(fscc.parse_fs_size_information, data)
        return FsSize(total, free, free, sectors, sector_size)

    def set_end_of_file(self, handle: Handle, size: int) -> None:
        if size < 0:
            raise ValueError("negative size")
        self.trans2(TRANS2_SET_FILE_INFORMATION,
                    codec.set_file_params(handle.fid, SMB_SET_FILE_END_OF_FILE_INFO),
                    fscc.end_of_file_information(size), path=handle.path)
        handle.info.size = size

    def set_times(self, path: str, atime: int, mtime: int) -> None:
        """Set the access and write times (FILETIME; 0 leaves one as it is)
        on an open handle (Samba answers a path-based set on a missing file
        with INVALID_HANDLE, not "not found")."""
        handle = self.open(path, access=FILE_WRITE_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_OPEN)
        try:
            self.trans2(TRANS2_SET_FILE_INFORMATION,
                        codec.set_file_params(handle.fid, SMB_SET_FILE_BASIC_INFO),
                        fscc.basic_information(0, atime, mtime), path=path)
        finally:
            self.close(handle)

    # -- directories ----------------------------------------------------------

    def listdir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """FIND_FIRST2 now (errors raise here), FIND_NEXT2 while iterating.
        The server matches ``pattern`` (``*`` and ``?``, case-insensitively)."""
        full = f"{path}\\{pattern}" if path else pattern
        params = codec.find_first2_params(full, search_attributes=_SEARCH_ALL,
                                          count=FIND_SEARCH_COUNT, flags=FIND_CLOSE_AT_EOS,
                                          level=SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO)
        try:
            rparams, data = self.trans2(TRANS2_FIND_FIRST2, params, path=path)
        except SmbStatusError as exc:
            if exc.status == NtStatus.NO_SUCH_FILE and pattern != "*":
                return iter(())             # nothing matches the pattern
            raise
        sid, count, end = _decode(codec.parse_find_first2_params, rparams)
        entries = _parse_directory_info(data, count)
        return self._find_rest(path, sid, entries, end or not entries)

    def _find_rest(self, path: str, sid: int, entries: List[FileInfo],
                   end: bool) -> Iterator[FileInfo]:
        try:
            while True:
                for info in entries:
                    if info.name not in (".", ".."):
                        yield info
                if end:
                    return
                params = codec.find_next2_params(
                    sid, count=FIND_SEARCH_COUNT, level=SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO,
                    flags=FIND_CLOSE_AT_EOS | FIND_CONTINUE_FROM_LAST,
                    resume_name=entries[-1].name)
                rparams, data = self.trans2(TRANS2_FIND_NEXT2, params, path=path)
                count, eos = _decode(codec.parse_find_next2_params, rparams)
                resume = entries[-1].name
                entries = _parse_directory_info(data, count)
                end = eos or not entries
                if entries and entries[-1].name == resume:
                    raise SmbProtocolError("FIND_NEXT2 made no progress")
        finally:
            if not end:
                # Abandoned before the end: the server still holds the search.
                try:
                    self._run(Command.FIND_CLOSE2, codec.fid_request(sid), path=path)
                except Exception:  # noqa: BLE001 - best effort on a dead link
                    pass

    def mkdir(self, path: str) -> None:
        self._run(Command.CREATE_DIRECTORY, codec.path_request(path), path=path)

    def delete(self, path: str, directory: bool = False) -> None:
        _check_name(path)
        if directory:
            self._run(Command.DELETE_DIRECTORY, codec.path_request(path), path=path)
        else:
            self._run(Command.DELETE, codec.path_request(path, _SEARCH_FILES), path=path)

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
                try:
                    self.trans2(TRANS2_SET_PATH_INFORMATION,
                                codec.query_path_params(FILE_RENAME_INFORMATION, path),
                                fscc.rename_information(leaf, True, wide=False), path=path)
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
        self._run(Command.RENAME, codec.rename_request(path, new_path, _SEARCH_ALL), path=path)

    # -- oplocks --------------------------------------------------------------

    def parse_break(self, notification) -> Tuple[str, Any, int]:
        fid, level = _decode(codec.parse_oplock_break, notification.reply.message)
        return ("oplock", fid,
                OPLOCK_LEVEL_II if level == OPLOCK_BREAK_TO_LEVEL_II else OPLOCK_NONE)

    def lock_task(self, handle: Handle, ranges, *, sequence: int = 0) -> SmbTask:
        """LOCKING_ANDX for byte ranges ([MS-CIFS] 2.2.4.32, large-file
        ranges): ``ranges`` are (offset, length, LOCKFLAG_* as on SMB2), all
        locks or all unlocks; a lock without FAIL_IMMEDIATELY waits on the
        server (Timeout -1).  ``sequence`` is SMB2's (ignored here)."""
        unlock = bool(ranges[0][2] & _LOCKFLAG_UNLOCK)
        shared = not unlock and not ranges[0][2] & _LOCKFLAG_EXCLUSIVE
        wait = not unlock and not ranges[0][2] & _LOCKFLAG_FAIL_IMMEDIATELY
        body = codec.locking_andx_request(handle.fid, [(off, n) for off, n, _f in ranges],
                                          shared=shared, unlock=unlock, wait=wait)
        task = self._task(Command.LOCKING_ANDX, body, path=handle.path)
        task.long_poll = wait
        return task

    def ack_break(self, handle: Handle, new_level: int) -> None:
        """Release the oplock down to ``new_level``; the server sends no reply."""
        if handle.closed:
            return
        level = OPLOCK_BREAK_TO_LEVEL_II if new_level == OPLOCK_LEVEL_II else \
            OPLOCK_BREAK_TO_NONE
        handle.oplock_level = OPLOCK_LEVEL_II if level else OPLOCK_NONE
        task = self._task(Command.LOCKING_ANDX, codec.oplock_release_request(handle.fid, level),
                          path=handle.path)
        task.replayable = False
        self.client.send_oneway(task)


def _parse_directory_info(data, count: int) -> List[FileInfo]:
    """Entries of SMB_FIND_FILE_ID_FULL_DIRECTORY_INFO ([MS-SMB] 2.2.8.1.3,
    the layout of FileIdFullDirectoryInformation), at most ``count``."""
    return [FileInfo(e.name.rstrip("\0"), e.end_of_file, e.allocation_size,
                     e.file_attributes, *e.times, e.file_id)
            for e in _decode(commands.parse_directory_entries, data,
                             commands.FILE_ID_FULL_DIRECTORY_INFORMATION, count)]
