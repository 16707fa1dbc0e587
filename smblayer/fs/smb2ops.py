"""FileOps for SMB 2.0.2 .. 3.1.1 ([MS-SMB2] 2.2.13 - 2.2.40).

Every request is one ``SmbTask`` built from precompiled structs; payloads
(write data, names) stay separate buffers.  Replies are parsed with
``unpack_from`` on the reply's memoryview, so READ data is never copied here.

Plans: an operation that is one round trip (one request, or one related
compound) is also offered as a *plan* (``stat_plan``, ``open_plan``,
``mkdir_plan`` ...): ``(tasks, finish)``, the tasks to send and the function
that turns their replies into the result.  ``run_plan`` runs one with the
blocking API; ``smblayer.aio`` awaits the same plans with
``run_task_async`` / ``run_compound_async``, so both front ends send the
same bytes.
"""
from __future__ import annotations

import logging
import os
import struct
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from ..config import Dialect
from ..errors import SmbError, SmbProtocolError, status_error
from ..proto import fscc, posix, smb2
from ..proto.commands import LOCKFLAG_FAIL_IMMEDIATELY as _LOCKFLAG_FAIL_IMMEDIATELY
from ..proto.commands import LOCKFLAG_UNLOCK as _LOCKFLAG_UNLOCK
from ..proto.commands import lock_request
from ..proto.status import NtStatus
from ..task import Reply, SmbTask
from .ops import (DELETE, FILE_ATTRIBUTE_DIRECTORY, FILE_CREATE, FILE_DELETE_ON_CLOSE,
                  FILE_DIRECTORY_FILE, FILE_LIST_DIRECTORY, FILE_NON_DIRECTORY_FILE, FILE_OPEN,
                  FILE_OPEN_REPARSE_POINT,
                  FILE_OVERWRITE_IF, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_WRITE_ATTRIBUTES,
                  FILE_WRITE_DATA, FILE_SHARE_ALL, LEASE_HANDLE, LEASE_WRITE, OPLOCK_BATCH,
                  OPLOCK_LEASE, OPLOCK_LEVEL_II, OPLOCK_NONE, SYNCHRONIZE, FileInfo, FileOps,
                  FsSize, Handle)
from .posix import POSIX_DIR_MODE, POSIX_FILE_MODE, apply_posix_info, posix_file_info

log = logging.getLogger("smblayer")

Command = smb2.Command
_BODY = smb2.HEADER_SIZE            # offsets in SMB2 bodies count from the header

# CREATE ([MS-SMB2] 2.2.13, 2.2.14)
_CREATE = struct.Struct("<HBBIQQIIIIIHHII")
_CREATE_RESP = struct.Struct("<HBBIQQQQQQII16sII")
_CONTEXT = struct.Struct("<IHHHHI")           # Next, NameOffset, NameLength, Reserved, DataOffset, DataLength
_LEASE_V1 = struct.Struct("<16sIIQ")          # LeaseKey, LeaseState, LeaseFlags, LeaseDuration
_LEASE_V2 = struct.Struct("<16sIIQ16sHH")     # ... ParentLeaseKey, Epoch, Reserved
# Durable handles ([MS-SMB2] 2.2.13.2.3 - 2.2.13.2.12, 2.2.14.2.3 - 2.2.14.2.12)
_DH2Q = struct.Struct("<II8s16s")             # Timeout, Flags, Reserved, CreateGuid
_DH2Q_RESP = struct.Struct("<II")             # Timeout, Flags
_DH2C = struct.Struct("<16s16sI")             # FileId, CreateGuid, Flags
DH2_FLAG_PERSISTENT = 0x02
SHARE_CAP_CONTINUOUS_AVAILABILITY = 0x10
DURABLE_TIMEOUT_MS = 60000                    # what we ask for (Linux cifs' default)
IMPERSONATION = 2
# CLOSE (2.2.15, 2.2.16)
_CLOSE = struct.Struct("<HHI16s")
_RELATED_FID = b"\xff" * 16           # "the handle the first request of the compound opened"


class _AnyStatus:
    """ok_statuses that accept everything: the CLOSE of a compound stat
    fails whenever its CREATE did, and the CREATE's status is what counts."""

    def __contains__(self, status: object) -> bool:
        return True


_ANY_STATUS = _AnyStatus()
_CLOSE_RESP = struct.Struct("<HHIQQQQQQI")
CLOSE_FLAG_POSTQUERY_ATTRIB = 0x0001
# FLUSH (2.2.17)
_FLUSH = struct.Struct("<HHI16s")
# READ (2.2.19, 2.2.20)
_READ = struct.Struct("<HBBIQ16sIIIHHx")
_READ_RESP = struct.Struct("<HBBIII")
# WRITE (2.2.21, 2.2.22)
_WRITE = struct.Struct("<HHIQ16sIIHHI")
_WRITE_RESP = struct.Struct("<HHIIHH")
# QUERY_DIRECTORY (2.2.33, 2.2.34)
_QUERY_DIR = struct.Struct("<HBBI16sHHI")
_QUERY_DIR_RESP = struct.Struct("<HHI")
FILE_ID_BOTH_DIRECTORY_INFORMATION = 0x25
SMB2_RESTART_SCANS = 0x01
# FileIdBothDirectoryInformation entry ([MS-FSCC] 2.4.17)
_DIR_ENTRY = struct.Struct("<IIQQQQQQIIIBx24s2xQ")
# QUERY_INFO / SET_INFO (2.2.37 - 2.2.40)
_QUERY_INFO = struct.Struct("<HBBIHHIII16sx")
_QUERY_INFO_RESP = struct.Struct("<HHI")
_SET_INFO = struct.Struct("<HBBIHHI16s")
INFO_FILE = 0x01
INFO_FILESYSTEM = 0x02
FILE_FS_FULL_SIZE_INFORMATION = 7
_FS_FULL_SIZE = struct.Struct("<QQQII")       # [MS-FSCC] 2.5.4
FILE_BASIC_INFORMATION = 4
FILE_ALL_INFORMATION = 18
FILE_END_OF_FILE_INFORMATION = 20
FILE_RENAME_INFORMATION = 10
FILE_DISPOSITION_INFORMATION = 13
# FileAllInformation: Basic (times, attributes), Standard, Internal ([MS-FSCC] 2.4.2)
_ALL_INFO = struct.Struct("<QQQQI4xQQIBB2xQ")
_BASIC_INFO = struct.Struct("<QQQQI4x")     # times, attributes ([MS-FSCC] 2.4.7)
_RENAME = struct.Struct("<B7xQI")
_U64 = struct.Struct("<Q")
# OPLOCK_BREAK notifications and acknowledgements (2.2.23 - 2.2.25)
_OPLOCK_BREAK = struct.Struct("<HBBI16s")
_LEASE_BREAK = struct.Struct("<HHI16sIIIII")
_LEASE_ACK = struct.Struct("<HHI16sIQ")
LEASE_BREAK_ACK_REQUIRED = 0x01

_QUERY_INFO_BUFFER = 4096
# A CREATE may stop on a symbolic link: its error response says where to go.
_CREATE_OK = frozenset({0, NtStatus.STOPPED_ON_SYMLINK})
MAX_SYMLINK_HOPS = 32            # then ELOOP-like: STOPPED_ON_SYMLINK raised
_REPARSE_TAG_NOT_HANDLED = 0xC0000279     # STATUS_IO_REPARSE_TAG_NOT_HANDLED
_NOT_ERRORS_READ = frozenset({0, NtStatus.END_OF_FILE})
# NO_SUCH_FILE: the first query found nothing matching the pattern.
_NOT_ERRORS_DIR = frozenset({0, NtStatus.NO_MORE_FILES, NtStatus.NO_SUCH_FILE})


#: (tasks to send: one request or a compound, finish(replies) -> the result)
Plan = Tuple[List[SmbTask], Callable[[Sequence[Reply]], object]]


def _utf16(path: str) -> bytes:
    return path.encode("utf-16-le")


def _pad8(n: int) -> int:
    return -n % 8


def _check_size(reply: Reply, layout: struct.Struct, what: str) -> None:
    if len(reply.body) < layout.size:
        raise SmbProtocolError(f"{what} response truncated ({len(reply.body)} bytes)")


class Smb2FileOps(FileOps):
    """The SMB2/3 FileOps: see ``smblayer.fs.ops``."""

    def __init__(self, tree):
        super().__init__(tree)
        n = self.client.negotiated
        self._multi_credit = n.multi_credit
        self._leasing = bool(n.capabilities & smb2.Capabilities.LEASING) and \
            n.dialect >= Dialect.SMB2_1
        self._lease_v2 = n.dialect >= Dialect.SMB3_0
        self._durable_v2 = n.dialect >= Dialect.SMB3_0
        cap = None if self._multi_credit else 65536
        self._max_read = min(n.max_read_size, cap or n.max_read_size)
        self._max_write = min(n.max_write_size, cap or n.max_write_size)
        self._dir_buffer = min(n.max_transact_size, 262144 if self._multi_credit else 65536)

    # -- sizes --------------------------------------------------------------------

    @property
    def max_read(self) -> int:
        return self._max_read

    @property
    def max_write(self) -> int:
        return self._max_write

    def _task(self, command: int, body, path: Optional[str] = None, **kwargs) -> SmbTask:
        return SmbTask(command, body, security=self.session, tree=self.tree, path=path,
                       **kwargs)

    def _run(self, command: int, body, path: Optional[str] = None, **kwargs) -> Reply:
        return self.client.run_task(self._task(command, body, path, **kwargs))

    def run_plan(self, plan: "Plan"):
        """Run a plan with the blocking API and return its result."""
        tasks, finish = plan
        if len(tasks) == 1:
            return finish([self.client.run_task(tasks[0])])
        return finish(self.client.run_compound(tasks))

    # -- handles -------------------------------------------------------------------

    def open(self, path: str, *, access: int, disposition: int, create_options: int = 0,
             share_access: int = FILE_SHARE_ALL, oplock: int = OPLOCK_NONE,
             lease_key: Optional[bytes] = None, lease_state: int = 0,
             attributes: int = 0, durable: bool = False, contexts=()) -> Handle:
        """``contexts``: more (name, data) create contexts (e.g. timewarp)."""
        create_guid = os.urandom(16) if durable and self.durable_handles else None
        asked = path
        for _hop in range(MAX_SYMLINK_HOPS):
            task, oplock, lease_key = self._create_task(
                path, access=access, disposition=disposition, create_options=create_options,
                share_access=share_access, oplock=oplock, lease_key=lease_key,
                lease_state=lease_state, attributes=attributes, durable=create_guid,
                extra=contexts)
            task.ok_statuses = _CREATE_OK
            generation = self.client.generation
            reply = self.client.run_task(task)
            if reply.header.status != NtStatus.STOPPED_ON_SYMLINK:
                break
            path = self._follow(asked, path, reply)
        else:
            raise status_error(NtStatus.STOPPED_ON_SYMLINK, "CREATE", asked.replace("\\", "/"),
                               message=f"more than {MAX_SYMLINK_HOPS} symbolic links")
        return self._opened(reply, path, oplock, lease_key, generation, access, share_access,
                            create_options, create_guid)

    def _opened(self, reply: Reply, path: str, oplock: int, lease_key, generation: int,
                access: int, share_access: int, create_options: int, create_guid) -> Handle:
        handle = self._parse_create(reply, path, oplock, lease_key)
        handle.generation = generation
        handle.access, handle.share_access = access, share_access
        handle.create_options = create_options
        if handle.durable and self._durable_v2:
            handle.create_guid = create_guid
        return handle

    def open_plan(self, path: str, *, access: int, disposition: int, create_options: int = 0,
                  share_access: int = FILE_SHARE_ALL, oplock: int = OPLOCK_NONE,
                  lease_key: Optional[bytes] = None, lease_state: int = 0,
                  attributes: int = 0, durable: bool = False, contexts=()) -> "Plan":
        """One CREATE (arguments as for ``open``); the result is the Handle.
        A symbolic link on the way is not followed here (that takes more
        round trips): it raises STOPPED_ON_SYMLINK; ``open`` follows it."""
        create_guid = os.urandom(16) if durable and self.durable_handles else None
        task, oplock, lease_key = self._create_task(
            path, access=access, disposition=disposition, create_options=create_options,
            share_access=share_access, oplock=oplock, lease_key=lease_key,
            lease_state=lease_state, attributes=attributes, durable=create_guid,
            extra=contexts)
        task.ok_statuses = _CREATE_OK
        generation = self.client.generation

        def finish(replies: Sequence[Reply]) -> Handle:
            if replies[0].header.status == NtStatus.STOPPED_ON_SYMLINK:
                raise status_error(NtStatus.STOPPED_ON_SYMLINK, "CREATE",
                                   path.replace("\\", "/"), message="a symbolic link")
            return self._opened(replies[0], path, oplock, lease_key, generation, access,
                                share_access, create_options, create_guid)
        return [task], finish

    def _follow(self, asked: str, path: str, reply: Reply) -> str:
        """CREATE of ``path`` stopped on a symbolic link: the path to open
        next (relative targets within the share, as Windows clients do)."""
        try:
            link = fscc.parse_symlink_error(fscc.parse_error_data(reply.body),
                                            self.client.dialect >= Dialect.SMB3_1_1)
            return fscc.follow_symlink(path, link)
        except fscc.SymlinkOutsideShare as exc:
            raise status_error(NtStatus.STOPPED_ON_SYMLINK, "CREATE", asked.replace("\\", "/"),
                               message=f"{exc}; not followed") from None

    @property
    def durable_handles(self) -> bool:
        """Whether the dialect has durable handles (2.x v1, 3.x v2)."""
        return True

    def _persistent_share(self) -> bool:
        n = self.client.negotiated
        return bool(n.capabilities & smb2.Capabilities.PERSISTENT_HANDLES) and \
            bool(getattr(self.tree, "capabilities", 0) & SHARE_CAP_CONTINUOUS_AVAILABILITY)

    def reclaim(self, handle: Handle) -> Handle:
        """Reconnect the durable ``handle`` after a reconnect (DH2C with its
        CreateGuid on 3.x, DHnC on 2.x): a new Handle for the same open, its
        oplock or lease as the server grants it now."""
        if not handle.durable:
            raise ValueError(f"{handle.path!r} has no durable handle")
        task, oplock, lease_key = self._create_task(
            handle.path, access=handle.access, disposition=FILE_OPEN,
            create_options=handle.create_options, share_access=handle.share_access,
            oplock=handle.requested_oplock, lease_key=handle.lease_key,
            lease_state=handle.requested_lease, reclaim=handle)
        task.replayable = False
        generation = self.client.generation
        reply = self.client.run_task(task)
        new = self._parse_create(reply, handle.path, oplock, lease_key)
        new.generation = generation
        new.durable = True      # a reconnected handle stays durable ([MS-SMB2] 3.3.5.9.7)
        new.create_guid, new.persistent = handle.create_guid, handle.persistent
        new.access, new.share_access = handle.access, handle.share_access
        new.create_options = handle.create_options
        return new

    def _create_task(self, path: str, *, access: int, disposition: int,
                     create_options: int = 0, share_access: int = FILE_SHARE_ALL,
                     oplock: int = OPLOCK_NONE, lease_key: Optional[bytes] = None,
                     lease_state: int = 0, attributes: int = 0,
                     durable: Optional[bytes] = None, reclaim: Optional[Handle] = None,
                     extra=()):
        """(CREATE task, the oplock level asked, the lease key).  ``durable``:
        ask a durable handle with this CreateGuid; ``reclaim``: reconnect
        that durable handle (DH2C/DHnC)."""
        if oplock == OPLOCK_LEASE and not self._leasing:
            log.debug("smblayer: server/dialect without leasing; asking a batch oplock")
            oplock = OPLOCK_BATCH
        name = _utf16(self._wire_path(path))
        contexts = list(extra)
        if oplock == OPLOCK_LEASE:
            lease_key = lease_key or os.urandom(16)
            if self._lease_v2:
                data = _LEASE_V2.pack(lease_key, lease_state, 0, 0, bytes(16), 0, 0)
            else:
                data = _LEASE_V1.pack(lease_key, lease_state, 0, 0)
            contexts.append((b"RqLs", data))
        if reclaim is not None:
            if reclaim.create_guid is not None:
                flags = DH2_FLAG_PERSISTENT if reclaim.persistent else 0
                contexts.append((b"DH2C", _DH2C.pack(reclaim.fid, reclaim.create_guid,
                                                     flags)))
            else:
                contexts.append((b"DHnC", reclaim.fid))
        elif durable is not None:
            if self._durable_v2:
                flags = DH2_FLAG_PERSISTENT if self._persistent_share() else 0
                contexts.append((b"DH2Q", _DH2Q.pack(DURABLE_TIMEOUT_MS, flags, bytes(8),
                                                     durable)))
            elif oplock in (OPLOCK_BATCH, OPLOCK_LEASE):
                contexts.append((b"DHnQ", bytes(16)))
        if durable is not None:
            contexts.append((b"QFid", b""))     # the file id: proof of identity later
        if self.posix:
            contexts.append(posix.create_context(
                POSIX_DIR_MODE if create_options & FILE_DIRECTORY_FILE else POSIX_FILE_MODE))
        contexts = _pack_contexts(contexts)
        name_off = _BODY + _CREATE.size
        buffer = name or b"\0"
        ctx_off = 0
        if contexts:
            buffer += bytes(_pad8(len(buffer)))
            ctx_off = name_off + len(buffer)
        body = _CREATE.pack(57, 0, oplock, IMPERSONATION, 0, 0, access, attributes,
                            share_access, disposition, create_options, name_off, len(name),
                            ctx_off, len(contexts))
        task = self._task(Command.CREATE, (body, buffer, contexts) if contexts else (body, buffer),
                          path, on_late_reply=self._close_late_create)
        return task, oplock, lease_key

    def _parse_create(self, reply: Reply, path: str, oplock: int,
                      lease_key: Optional[bytes]) -> Handle:
        _check_size(reply, _CREATE_RESP, "CREATE")
        (_s, level, _f, _action, ctime, atime, wtime, chtime, alloc, eof, attrs, _r, fid,
         ctx_off, ctx_len) = _CREATE_RESP.unpack_from(reply.body)
        info = FileInfo(path.rpartition("\\")[2], eof, alloc, attrs, ctime, atime, wtime,
                        chtime)
        handle = Handle(bytes(fid), path, info, level)
        handle.requested_oplock = oplock
        contexts = _parse_contexts(reply.message, ctx_off, ctx_len)
        if level == OPLOCK_LEASE:
            lease = contexts.get(b"RqLs")
            if lease is not None and len(lease) >= _LEASE_V1.size:
                key, state, _flags, _dur = _LEASE_V1.unpack_from(lease)
                handle.lease_key, handle.lease_state = bytes(key), state
                handle.requested_lease = state
            else:
                handle.oplock_level = OPLOCK_NONE
        dh2q = contexts.get(b"DH2Q")
        if dh2q is not None and len(dh2q) >= _DH2Q_RESP.size:
            timeout, flags = _DH2Q_RESP.unpack_from(dh2q)
            handle.durable = True
            handle.persistent = bool(flags & DH2_FLAG_PERSISTENT)
        elif b"DHnQ" in contexts:
            handle.durable = True
        qfid = contexts.get(b"QFid")
        if qfid is not None and len(qfid) >= 8:
            info.file_index = _U64.unpack_from(qfid)[0]
        posix_cc = contexts.get(posix.POSIX_GUID)
        if posix_cc is not None:
            try:
                info.posix = posix.parse_create_response(posix_cc)[0]
                info.nlink = info.posix.nlink
            except ValueError as exc:
                raise SmbProtocolError(f"POSIX create context of {path!r}: {exc}") from None
        return handle

    def _close_late_create(self, reply: Reply) -> None:
        """A CREATE we stopped waiting for succeeded late: close the handle."""
        if reply.header.status == 0 and len(reply.body) >= _CREATE_RESP.size:
            fid = bytes(_CREATE_RESP.unpack_from(reply.body)[12])
            task = self._task(Command.CLOSE, (_CLOSE.pack(24, 0, 0, fid),))
            self.client.run_task_async(task)

    def close(self, handle: Handle) -> None:
        if handle.closed:
            return
        handle.closed = True
        self.close_done(handle, self.client.run_task(self.close_task(handle)))

    close_behind_writes = True      # Samba defers an SMB2 CLOSE until the writes are done
    compound_close = True           # a last WRITE and the CLOSE as one compound

    def close_task(self, handle: Handle) -> SmbTask:
        return self._task(Command.CLOSE, (_CLOSE.pack(24, CLOSE_FLAG_POSTQUERY_ATTRIB, 0,
                                                      handle.fid),), handle.path)

    def close_done(self, handle: Handle, reply: Reply) -> None:
        """The handle is closed; its FileInfo gets the final attributes."""
        handle.closed = True
        _check_size(reply, _CLOSE_RESP, "CLOSE")
        (_s, flags, _r, ctime, atime, wtime, chtime, alloc, eof,
         attrs) = _CLOSE_RESP.unpack_from(reply.body)
        if flags & CLOSE_FLAG_POSTQUERY_ATTRIB:
            info = handle.info
            info.creation_time, info.last_access_time = ctime, atime
            info.last_write_time, info.change_time = wtime, chtime
            info.allocation_size, info.size, info.attributes = alloc, eof, attrs

    # -- data ------------------------------------------------------------------------

    def read_task(self, handle: Handle, offset: int, length: int,
                  into: Optional[memoryview] = None) -> SmbTask:
        """``into``: a writable buffer the data may be received into directly
        (then parse_read returns a view of it)."""
        body = _READ.pack(49, 0x50, 0, length, offset, handle.fid, 0, 0, 0, 0, 0)
        task = self._task(Command.READ, (body,), handle.path, expected_response=length,
                          ok_statuses=_NOT_ERRORS_READ)
        if into is not None:
            task.recv_buffer = into
        return task

    def parse_read(self, reply: Reply) -> memoryview:
        if reply.placed is not None:
            return reply.placed
        if reply.header.status == NtStatus.END_OF_FILE:
            return memoryview(b"")
        _check_size(reply, _READ_RESP, "READ")
        _s, data_off, _r, length, _rem, _r2 = _READ_RESP.unpack_from(reply.body)
        if length == 0:
            return memoryview(b"")
        if data_off < _BODY or data_off + length > len(reply.message):
            raise SmbProtocolError(f"READ data out of bounds ({data_off}+{length})")
        return memoryview(reply.message)[data_off:data_off + length]

    def read_whole(self, path: str, limit: int) -> Optional[bytes]:
        """A small file in one round trip: CREATE + READ + CLOSE as one
        related compound.  None if the file holds more than ``limit`` bytes
        (the caller then reads it the normal way)."""
        return self.run_plan(self.read_whole_plan(path, limit))

    def read_whole_plan(self, path: str, limit: int) -> "Plan":
        tasks = self._read_compound(path, 0, limit)

        def finish(replies: Sequence[Reply]) -> Optional[bytes]:
            created, data, _closed = replies
            if created.header.status == NtStatus.STOPPED_ON_SYMLINK:
                return None                 # a link the server did not follow: open() does
            if self._parse_create(created, path, OPLOCK_NONE, None).info.size > limit:
                return None
            return bytes(self.parse_read(data))
        return tasks, finish

    def read_range_plan(self, path: str, offset: int, length: int) -> "Plan":
        """``length`` bytes (at most ``max_read``; fewer at the end of the
        file) from ``offset``: CREATE + READ + CLOSE as one compound.  None
        if the CREATE stopped on a symbolic link (open() follows it)."""
        def finish(replies: Sequence[Reply]) -> Optional[bytes]:
            if replies[0].header.status == NtStatus.STOPPED_ON_SYMLINK:
                return None
            return bytes(self.parse_read(replies[1]))
        return self._read_compound(path, offset, length), finish

    def _read_compound(self, path: str, offset: int, length: int) -> List[SmbTask]:
        create, _level, _key = self._create_task(
            path, access=FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
            disposition=FILE_OPEN, create_options=FILE_NON_DIRECTORY_FILE)
        related = Handle(_RELATED_FID, path, FileInfo())
        return [create, self.read_task(related, offset, length), self._related_close(path)]

    def write_whole(self, path: str, data) -> Optional[int]:
        """Create or overwrite ``path`` with ``data`` (at most one WRITE's
        worth) in one round trip: CREATE + WRITE + CLOSE as one compound.
        None if the CREATE stopped on a symbolic link (open() follows it)."""
        return self.run_plan(self.write_whole_plan(path, data))

    def write_whole_plan(self, path: str, data) -> "Plan":
        create, _level, _key = self._create_task(
            path, access=FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
            disposition=FILE_OVERWRITE_IF, create_options=FILE_NON_DIRECTORY_FILE)
        related = Handle(_RELATED_FID, path, FileInfo())
        tasks = [create, self._related_close(path)]
        if len(data):
            tasks.insert(1, self.write_task(related, 0, data))

        def finish(replies: Sequence[Reply]) -> Optional[int]:
            if replies[0].header.status == NtStatus.STOPPED_ON_SYMLINK:
                return None
            return self.parse_write(replies[1]) if len(data) else 0
        return tasks, finish

    def _related_close(self, path: str) -> SmbTask:
        close = self._task(Command.CLOSE, (_CLOSE.pack(24, 0, 0, _RELATED_FID),), path)
        close.ok_statuses = _ANY_STATUS
        return close

    def write_task(self, handle: Handle, offset: int, data,
                   any_status: bool = False) -> SmbTask:
        """``any_status``: the reply completes the task whatever its status
        (a compound's caller checks it)."""
        body = _WRITE.pack(49, _BODY + _WRITE.size, len(data), offset, handle.fid, 0, 0, 0,
                           0, 0)
        task = self._task(Command.WRITE, (body, data), handle.path)
        if any_status:
            task.ok_statuses = _ANY_STATUS
        return task

    def parse_write(self, reply: Reply) -> int:
        _check_size(reply, _WRITE_RESP, "WRITE")
        return _WRITE_RESP.unpack_from(reply.body)[2]

    def flush(self, handle: Handle) -> None:
        self._run(Command.FLUSH, (_FLUSH.pack(24, 0, 0, handle.fid),), handle.path)

    # -- metadata --------------------------------------------------------------------

    @property
    def posix(self) -> bool:
        """Whether opens use the SMB3 POSIX extensions (``fs.connect(posix=True)``)."""
        return getattr(self.tree, "posix", False)

    def _wire_path(self, path: str) -> str:
        """A POSIX open's separator is "/" ("\\" is a character in a name)."""
        return path.replace("\\", "/") if self.posix else path

    def _query_info_task(self, handle: Handle) -> SmbTask:
        info_class = posix.FILE_POSIX_INFORMATION if self.posix else FILE_ALL_INFORMATION
        body = _QUERY_INFO.pack(41, INFO_FILE, info_class, _QUERY_INFO_BUFFER,
                                0, 0, 0, 0, 0, handle.fid)
        return self._task(Command.QUERY_INFO, (body,), handle.path)

    def _parse_all_info(self, reply: Reply, info: FileInfo) -> FileInfo:
        """Fill ``info`` from a FileAllInformation (FILE_POSIX_INFORMATION) reply."""
        _check_size(reply, _QUERY_INFO_RESP, "QUERY_INFO")
        _s, off, length = _QUERY_INFO_RESP.unpack_from(reply.body)
        if self.posix:
            return posix_file_info(reply.message[off:off + length], info)
        if length < _ALL_INFO.size or off + _ALL_INFO.size > len(reply.message):
            raise SmbProtocolError("FileAllInformation truncated")
        (ctime, atime, wtime, chtime, attrs, alloc, eof, links, _pending, _isdir,
         index) = _ALL_INFO.unpack_from(reply.message, off)
        info.creation_time, info.last_access_time = ctime, atime
        info.last_write_time, info.change_time = wtime, chtime
        info.attributes, info.allocation_size, info.size, info.file_index = \
            attrs, alloc, eof, index
        info.nlink = links
        return info

    def query_info(self, handle: Handle) -> FileInfo:
        return self._parse_all_info(self.client.run_task(self._query_info_task(handle)),
                                    handle.info)

    def stat(self, path: str, create_options: int = 0) -> FileInfo:
        """One round trip: CREATE, a related QUERY_INFO (FileAllInformation:
        times, sizes, attributes, links, the file id) and CLOSE in one
        compound.  On a POSIX tree the server does not follow a symbolic
        link (STOPPED_ON_SYMLINK): the link itself is described (S_IFLNK)."""
        tasks, finish = self.stat_plan(path, create_options)
        try:
            replies = self.client.run_compound(tasks)
        except SmbError as exc:
            # a FIFO, socket or device (a reparse point to Samba) on a POSIX tree
            if getattr(exc, "status", 0) == _REPARSE_TAG_NOT_HANDLED and not create_options:
                return self.stat(path, FILE_OPEN_REPARSE_POINT)
            raise
        if replies[0].header.status == NtStatus.STOPPED_ON_SYMLINK and not create_options:
            return self.stat(path, FILE_OPEN_REPARSE_POINT)
        return finish(replies)

    def stat_plan(self, path: str, create_options: int = 0) -> "Plan":
        """``stat``'s compound, without its POSIX retries (AsyncTree does
        not use plans on a POSIX tree)."""
        create, _level, _key = self._create_task(
            path, access=FILE_READ_ATTRIBUTES | SYNCHRONIZE, disposition=FILE_OPEN,
            create_options=create_options)
        related = Handle(_RELATED_FID, path, FileInfo(path.rpartition("\\")[2]))
        return ([create, self._query_info_task(related), self._related_close(path)],
                lambda replies: self._parse_all_info(replies[1], related.info))

    def close_plan(self, handle: Handle) -> "Plan":
        """CLOSE (the handle's info gets the final attributes)."""
        handle.closed = True
        return [self.close_task(handle)], lambda replies: self.close_done(handle, replies[0])

    def _with_handle(self, path: str, access: int, create_options: int, middle,
                     disposition: int = FILE_OPEN, attributes: int = 0) -> "Plan":
        """CREATE, ``middle`` (tasks on the related handle) and CLOSE as one
        compound; the result is None (errors raise, the first in order)."""
        create, _level, _key = self._create_task(
            path, access=access | SYNCHRONIZE, disposition=disposition,
            create_options=create_options, attributes=attributes)
        related = Handle(_RELATED_FID, path, FileInfo())
        return [create, *middle(related), self._related_close(path)], lambda replies: None

    def mkdir_plan(self, path: str) -> "Plan":
        return self._with_handle(path, FILE_READ_ATTRIBUTES, FILE_DIRECTORY_FILE,
                                 lambda h: (), FILE_CREATE, FILE_ATTRIBUTE_DIRECTORY)

    def delete_plan(self, path: str, directory: bool = False) -> "Plan":
        """Delete on close; a directory also sets the disposition, which
        reports a non-empty one (as ``delete``)."""
        options = FILE_DELETE_ON_CLOSE | (FILE_DIRECTORY_FILE if directory
                                          else FILE_NON_DIRECTORY_FILE)
        return self._with_handle(
            path, DELETE | FILE_READ_ATTRIBUTES, options,
            lambda h: (self._set_info_task(h, FILE_DISPOSITION_INFORMATION, b"\x01", path),)
            if directory else ())

    def rename_plan(self, path: str, new_path: str, replace: bool = False) -> "Plan":
        name = _utf16(new_path)
        info = _RENAME.pack(1 if replace else 0, 0, len(name)) + name
        return self._with_handle(
            path, DELETE | FILE_READ_ATTRIBUTES, 0,
            lambda h: (self._set_info_task(h, FILE_RENAME_INFORMATION, info, new_path),))

    def set_times_plan(self, path: str, atime: int, mtime: int) -> "Plan":
        return self._with_handle(
            path, FILE_WRITE_ATTRIBUTES, 0,
            lambda h: (self._set_info_task(h, FILE_BASIC_INFORMATION,
                                           _BASIC_INFO.pack(0, atime, mtime, 0, 0), path),))

    def set_times(self, path: str, atime: int, mtime: int) -> None:
        """Set the access and write times (FILETIME; 0 leaves one as it is):
        CREATE + SET_INFO(FileBasicInformation) + CLOSE in one compound."""
        create, _level, _key = self._create_task(
            path, access=FILE_WRITE_ATTRIBUTES | SYNCHRONIZE, disposition=FILE_OPEN)
        related = Handle(_RELATED_FID, path, FileInfo())
        self.client.run_compound(
            (create, self._set_info_task(related, FILE_BASIC_INFORMATION,
                                         _BASIC_INFO.pack(0, atime, mtime, 0, 0), path),
             self._related_close(path)))

    def listdir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """Entries of ``path`` matching ``pattern`` (the server matches it:
        ``*`` and ``?``, case-insensitively)."""
        handle = self.run_plan(self.opendir_plan(path))
        entries: List[FileInfo] = []
        try:
            restart = True
            while True:
                batch = self.run_plan(self.query_dir_plan(handle, pattern, restart))
                if batch is None:
                    break
                restart = False
                entries.extend(batch)
        finally:
            self.close(handle)
        return iter(entries)

    def opendir_plan(self, path: str) -> "Plan":
        return self.open_plan(path, access=FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                              disposition=FILE_OPEN, create_options=FILE_DIRECTORY_FILE)

    def query_dir_plan(self, handle: Handle, pattern: str = "*",
                       restart: bool = False) -> "Plan":
        """One QUERY_DIRECTORY; the result is a list of FileInfo, or None at
        the end of the listing."""
        pattern_bytes = _utf16(pattern)
        body = _QUERY_DIR.pack(33, self._dir_class,
                               SMB2_RESTART_SCANS if restart else 0, 0, handle.fid,
                               _BODY + _QUERY_DIR.size, len(pattern_bytes), self._dir_buffer)
        task = self._task(Command.QUERY_DIRECTORY, (body, pattern_bytes), handle.path,
                          expected_response=self._dir_buffer, ok_statuses=_NOT_ERRORS_DIR)

        def finish(replies: Sequence[Reply]) -> Optional[List[FileInfo]]:
            reply = replies[0]
            if reply.header.status in (NtStatus.NO_MORE_FILES, NtStatus.NO_SUCH_FILE):
                return None
            _check_size(reply, _QUERY_DIR_RESP, "QUERY_DIRECTORY")
            _s, off, length = _QUERY_DIR_RESP.unpack_from(reply.body)
            if not length:
                return None
            if off < _BODY or off + length > len(reply.message):
                raise SmbProtocolError("QUERY_DIRECTORY buffer out of bounds")
            return list(self._dir_entries(reply.message, off, off + length))
        return [task], finish

    @property
    def _dir_class(self) -> int:
        return posix.FILE_POSIX_INFORMATION if self.posix else FILE_ID_BOTH_DIRECTORY_INFORMATION

    def _dir_entries(self, message, pos: int, end: int) -> Iterator[FileInfo]:
        if not self.posix:
            return _parse_dir_entries(message, pos, end)
        try:
            return iter([apply_posix_info(data, FileInfo(name))
                         for name, data in posix.parse_dir_entries(message, pos, end)])
        except ValueError as exc:
            raise SmbProtocolError(f"POSIX directory listing: {exc}") from None

    def _set_info_task(self, handle: Handle, info_class: int, data: bytes,
                       path: Optional[str] = None) -> SmbTask:
        body = _SET_INFO.pack(33, INFO_FILE, info_class, len(data), _BODY + _SET_INFO.size,
                              0, 0, handle.fid)
        return self._task(Command.SET_INFO, (body, data), path or handle.path)

    def _set_info(self, handle: Handle, info_class: int, data: bytes,
                  path: Optional[str] = None) -> None:
        self.client.run_task(self._set_info_task(handle, info_class, data, path))

    def set_end_of_file(self, handle: Handle, size: int) -> None:
        self._set_info(handle, FILE_END_OF_FILE_INFORMATION, _U64.pack(size))
        handle.info.size = size

    def rename(self, path: str, new_path: str, replace: bool = False) -> None:
        self.tree.deferred_closes.close_under(path)
        self.tree.deferred_closes.close_under(new_path)
        handle = self.open(path, access=DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_OPEN)
        try:
            name = _utf16(self._wire_path(new_path))
            self._set_info(handle, FILE_RENAME_INFORMATION,
                           _RENAME.pack(1 if replace else 0, 0, len(name)) + name, new_path)
        finally:
            self.close(handle)

    def delete(self, path: str, directory: bool = False) -> None:
        self.tree.deferred_closes.close_under(path)
        options = FILE_DELETE_ON_CLOSE | (FILE_DIRECTORY_FILE if directory
                                          else FILE_NON_DIRECTORY_FILE)
        handle = self.open(path, access=DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_OPEN, create_options=options)
        try:
            if directory:
                # Samba accepts DELETE_ON_CLOSE on a non-empty directory and
                # then keeps it; setting the disposition reports the error.
                self._set_info(handle, FILE_DISPOSITION_INFORMATION, b"\x01")
        finally:
            self.close(handle)

    def fs_size(self) -> FsSize:
        handle = self.open("", access=FILE_READ_ATTRIBUTES | SYNCHRONIZE, disposition=FILE_OPEN,
                           create_options=FILE_DIRECTORY_FILE)
        try:
            body = _QUERY_INFO.pack(41, INFO_FILESYSTEM, FILE_FS_FULL_SIZE_INFORMATION,
                                    _FS_FULL_SIZE.size, 0, 0, 0, 0, 0, handle.fid)
            reply = self._run(Command.QUERY_INFO, (body,), "")
        finally:
            self.close(handle)
        _check_size(reply, _QUERY_INFO_RESP, "QUERY_INFO")
        _s, off, length = _QUERY_INFO_RESP.unpack_from(reply.body)
        if length < _FS_FULL_SIZE.size or off + _FS_FULL_SIZE.size > len(reply.message):
            raise SmbProtocolError("FileFsFullSizeInformation truncated")
        return FsSize(*_FS_FULL_SIZE.unpack_from(reply.message, off))

    def mkdir(self, path: str) -> None:
        handle = self.open(path, access=FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_CREATE, create_options=FILE_DIRECTORY_FILE,
                           attributes=FILE_ATTRIBUTE_DIRECTORY)
        self.close(handle)

    # -- byte-range locks ------------------------------------------------------------

    def lock_task(self, handle: Handle, ranges, *, sequence: int = 0) -> SmbTask:
        """LOCK ([MS-SMB2] 2.2.26): ``ranges`` are (offset, length,
        LOCKFLAG_*); one without FAIL_IMMEDIATELY or UNLOCK may wait on the
        server (a long poll).  ``sequence``: LockSequenceNumber/Index
        (2.1+), so a replayed LOCK is not applied twice."""
        if self.client.dialect < Dialect.SMB2_1:
            sequence = 0
        task = self._task(Command.LOCK, lock_request(handle.fid, ranges, sequence=sequence),
                          handle.path)
        task.long_poll = any(not flags & (_LOCKFLAG_FAIL_IMMEDIATELY | _LOCKFLAG_UNLOCK)
                             for _o, _n, flags in ranges)
        return task

    # -- oplocks and leases --------------------------------------------------------------

    def parse_break(self, notification) -> Tuple[str, object, int]:
        body = notification.reply.body
        if len(body) >= _LEASE_BREAK.size and body[0] == 44:
            (_s, _epoch, _flags, key, _current, new_state, _reason, _am,
             _sm) = _LEASE_BREAK.unpack_from(body)
            return "lease", bytes(key), new_state
        if len(body) >= _OPLOCK_BREAK.size and body[0] == 24:
            _s, level, _r, _r2, fid = _OPLOCK_BREAK.unpack_from(body)
            return "oplock", bytes(fid), level
        raise SmbProtocolError(f"unknown OPLOCK_BREAK notification ({len(body)} bytes)")

    def ack_break(self, handle: Handle, new_level: int) -> None:
        """Acknowledge a break, unless the server expects none (level II to
        none; a lease keeping neither write nor handle caching)."""
        if handle.oplock_level == OPLOCK_LEASE:
            if not handle.lease_state & (LEASE_WRITE | LEASE_HANDLE):
                return
            body = _LEASE_ACK.pack(36, 0, 0, handle.lease_key, new_level, 0)
        else:
            if handle.oplock_level in (OPLOCK_NONE, OPLOCK_LEVEL_II):
                return
            body = _OPLOCK_BREAK.pack(24, new_level, 0, 0, handle.fid)
        try:
            self._run(Command.OPLOCK_BREAK, (body,), handle.path, priority=True)
        except SmbError:
            if not handle.closed:
                raise


def _pack_contexts(contexts) -> bytes:
    """CREATE contexts ([MS-SMB2] 2.2.13.2): (name, data) pairs chained on
    8-byte boundaries."""
    out = []
    for i, (name, data) in enumerate(contexts):
        data_off = _CONTEXT.size + len(name) + _pad8(_CONTEXT.size + len(name))
        size = data_off + len(data)
        last = i == len(contexts) - 1
        nxt = 0 if last else size + _pad8(size)
        out.append(_CONTEXT.pack(nxt, _CONTEXT.size, len(name), 0,
                                 data_off if data else 0, len(data)))
        out.append(name + bytes(data_off - _CONTEXT.size - len(name)))
        out.append(data)
        if not last:
            out.append(bytes(_pad8(size)))
    return b"".join(out)


def _parse_contexts(message, offset: int, length: int) -> dict:
    """{name: data} of a CREATE response's contexts (out-of-bounds ones ignored)."""
    found: dict = {}
    end = offset + length
    if not length or end > len(message):
        return found
    pos = offset
    while pos + _CONTEXT.size <= end:
        nxt, name_off, name_len, _r, data_off, data_len = _CONTEXT.unpack_from(message, pos)
        if pos + name_off + name_len <= end and pos + data_off + data_len <= end:
            name = bytes(message[pos + name_off:pos + name_off + name_len])
            found[name] = memoryview(message)[pos + data_off:pos + data_off + data_len]
        if not nxt:
            break
        pos += nxt
    return found


def _parse_dir_entries(message, pos: int, end: int) -> Iterator[FileInfo]:
    while True:
        if pos + _DIR_ENTRY.size > end:
            raise SmbProtocolError("directory entry truncated")
        (nxt, index, ctime, atime, wtime, chtime, eof, alloc, attrs, name_len, _ea,
         _short_len, _short, file_id) = _DIR_ENTRY.unpack_from(message, pos)
        start = pos + _DIR_ENTRY.size
        if start + name_len > end:
            raise SmbProtocolError("directory entry name out of bounds")
        name = bytes(message[start:start + name_len]).decode("utf-16-le", "replace")
        if name not in (".", ".."):
            yield FileInfo(name, eof, alloc, attrs, ctime, atime, wtime, chtime, file_id)
        if not nxt:
            return
        pos += nxt


__all__ = ["Smb2FileOps", "status_error"]
