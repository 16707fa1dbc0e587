"""FileOps for SMB 2.0.2 .. 3.1.1 ([MS-SMB2] 2.2.9 - 2.2.40).

Every request is one ``SmbTask`` whose body the ``smblayer.proto`` codecs
build (``commands``: CREATE, CLOSE, QUERY_INFO, SET_INFO, QUERY_DIRECTORY,
TREE_CONNECT; ``fileio``: READ, WRITE, FLUSH, breaks; ``contexts``: the
CREATE contexts; ``info``: the [MS-FSCC] information classes, imported as ``fileinfo``); payloads
(write data, names) stay separate buffers.  No message layout lives here:
this module decides *what* to send and what a reply means for the Tree.
READ data is a view of the reply, never copied.  A malformed reply is an
SmbProtocolError.

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
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from ..config import Dialect
from ..errors import SmbError, SmbProtocolError, SmbStatusError, status_error
from ..proto import commands, contexts, fileio, fscc, posix, smb2
from ..proto import info as fileinfo
from ..proto.commands import (FILE_ALL_INFORMATION, FILE_BASIC_INFORMATION,
                              FILE_DISPOSITION_INFORMATION, FILE_END_OF_FILE_INFORMATION,
                              FILE_FS_FULL_SIZE_INFORMATION, FILE_ID_BOTH_DIRECTORY_INFORMATION,
                              FILE_RENAME_INFORMATION, INFO_FILE, INFO_FILESYSTEM,
                              LOCKFLAG_FAIL_IMMEDIATELY, LOCKFLAG_UNLOCK, RELATED_FILE_ID,
                              RESTART_SCANS)
from ..proto.contexts import DH2_FLAG_PERSISTENT
from ..proto.status import NtStatus
from ..task import Reply, SmbTask
from .ops import (DELETE, FILE_ATTRIBUTE_DIRECTORY, FILE_CREATE, FILE_DELETE_ON_CLOSE,
                  FILE_DIRECTORY_FILE, FILE_LIST_DIRECTORY, FILE_NON_DIRECTORY_FILE, FILE_OPEN,
                  FILE_OPEN_REPARSE_POINT,
                  FILE_OVERWRITE_IF, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_WRITE_ATTRIBUTES,
                  FILE_WRITE_DATA, FILE_SHARE_ALL, LEASE_HANDLE, LEASE_WRITE, OPLOCK_BATCH,
                  OPLOCK_LEASE, OPLOCK_LEVEL_II, OPLOCK_NONE, SYNCHRONIZE, ANY_STATUS, FileInfo,
                  FileOps, FsSize, Handle)
from .dircache import NO_DIR_CACHE
from .posix import POSIX_DIR_MODE, POSIX_FILE_MODE, apply_posix_info, posix_file_info

log = logging.getLogger("smblayer")
if TYPE_CHECKING:
    R = TypeVar("R")

Command = smb2.Command
SHARE_CAP_CONTINUOUS_AVAILABILITY = 0x10
DURABLE_TIMEOUT_MS = 60000                    # what we ask for (Linux cifs' default)


_QUERY_INFO_BUFFER = 4096
# stat: a CREATE that reads attributes, QUERY_INFO and CLOSE of its handle (constant)
_STAT_ACCESS = FILE_READ_ATTRIBUTES | SYNCHRONIZE
_STAT_QUERY = commands.query_info_request(RELATED_FILE_ID, INFO_FILE, FILE_ALL_INFORMATION,
                                          output_length=_QUERY_INFO_BUFFER)
_RELATED_CLOSE = commands.close_request(RELATED_FILE_ID)
# A CREATE may stop on a symbolic link: its error response says where to go.
_CREATE_OK = frozenset({0, NtStatus.STOPPED_ON_SYMLINK})
MAX_SYMLINK_HOPS = 32            # then ELOOP-like: STOPPED_ON_SYMLINK raised
_REPARSE_TAG_NOT_HANDLED = 0xC0000279     # STATUS_IO_REPARSE_TAG_NOT_HANDLED
_NOT_ERRORS_READ = frozenset({0, NtStatus.END_OF_FILE})
# NO_SUCH_FILE: the first query found nothing matching the pattern.
_NOT_ERRORS_DIR = frozenset({0, NtStatus.NO_MORE_FILES, NtStatus.NO_SUCH_FILE})


#: (tasks to send: one request or a compound, finish(replies) -> the result)
if TYPE_CHECKING:
    Plan = Tuple[List[SmbTask], Callable[[Sequence[Reply]], object]]


def _all_information(reply: Reply, name: str) -> FileInfo:
    """The FileInfo of ``name`` from a QUERY_INFO FileAllInformation reply."""
    try:
        (ctime, atime, wtime, chtime, attributes, allocation, eof, links, _delete, _dir,
         file_id) = fileinfo.unpack_all_information(commands.query_info_output(reply))
    except smb2.MalformedMessage as exc:
        raise SmbProtocolError(str(exc)) from None
    return FileInfo(name, eof, allocation, attributes, ctime, atime, wtime, chtime, file_id,
                    links)


def _decode(parse: Callable[..., R], *args) -> R:
    """``parse(*args)`` (a proto codec); a malformed reply is an SmbProtocolError."""
    try:
        return parse(*args)
    except smb2.MalformedMessage as exc:
        raise SmbProtocolError(str(exc)) from None


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
        self._dir_buffer = min(n.max_transact_size, (1 << 20) if self._multi_credit else 65536)

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

    # -- the tree ------------------------------------------------------------------

    def tree_connect_task(self) -> SmbTask:
        return SmbTask(Command.TREE_CONNECT,
                       commands.tree_connect_request(self.session.server_name, self.tree.share),
                       security=self.session, tree=self.tree, path=self.tree.share,
                       replayable=False)

    @staticmethod
    def parse_tree_connect(reply: Reply) -> Tuple[int, int, int, int]:
        resp = _decode(commands.parse_tree_connect_response, reply)
        return reply.header.tree_id, resp.share_flags, resp.maximal_access, resp.capabilities

    def tree_disconnect_task(self) -> SmbTask:
        return self._task(Command.TREE_DISCONNECT, commands.tree_disconnect_request(),
                          replayable=False)

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
            if reply.status != NtStatus.STOPPED_ON_SYMLINK:
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
            if replies[0].status == NtStatus.STOPPED_ON_SYMLINK:
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
        if reclaim is None:
            self._dir_cache.changing(path, access, disposition)
            closes = getattr(self.tree, "deferred_closes", None)
            if closes is not None:
                closes.opening(path, access, disposition)      # fs.deferred
        if oplock == OPLOCK_LEASE and not self._leasing:
            log.debug("smblayer: server/dialect without leasing; asking a batch oplock")
            oplock = OPLOCK_BATCH
        wanted = list(extra)
        if oplock == OPLOCK_LEASE:
            lease_key = lease_key or os.urandom(16)
            wanted.append((contexts.LEASE, contexts.lease_context(lease_key, lease_state,
                                                                  self._lease_v2)))
        if reclaim is not None:
            if reclaim.create_guid is not None:
                wanted.append((contexts.DURABLE_V2_RECONNECT, contexts.durable_v2_reconnect(
                    reclaim.fid, reclaim.create_guid, reclaim.persistent)))
            else:
                wanted.append((contexts.DURABLE_V1_RECONNECT, reclaim.fid))
        elif durable is not None:
            if self._durable_v2:
                wanted.append((contexts.DURABLE_V2_REQUEST, contexts.durable_v2_request(
                    durable, DURABLE_TIMEOUT_MS, self._persistent_share())))
            elif oplock in (OPLOCK_BATCH, OPLOCK_LEASE):
                wanted.append((contexts.DURABLE_V1_REQUEST, bytes(16)))
        if durable is not None:
            # the file id: proof of identity later
            wanted.append((contexts.QUERY_ON_DISK_ID, b""))
        if self.posix:
            wanted.append(posix.create_context(
                POSIX_DIR_MODE if create_options & FILE_DIRECTORY_FILE else POSIX_FILE_MODE))
        body = commands.create_request(
            self._wire_path(path), desired_access=access, disposition=disposition,
            create_options=create_options, share_access=share_access,
            file_attributes=attributes, oplock_level=oplock,
            contexts=contexts.pack_create_contexts(wanted) if wanted else b"")
        task = self._task(Command.CREATE, body, path, on_late_reply=self._close_late_create)
        return task, oplock, lease_key

    def _parse_create(self, reply: Reply, path: str, oplock: int,
                      lease_key: Optional[bytes]) -> Handle:
        resp = _decode(commands.parse_create_response, reply)
        info = FileInfo(path.rpartition("\\")[2]).update(resp)
        handle = Handle(resp.file_id, path, info, resp.oplock_level)
        handle.requested_oplock = oplock
        found = contexts.parse_create_contexts(resp.contexts)
        if resp.oplock_level == OPLOCK_LEASE:
            lease = contexts.parse_lease(found.get(contexts.LEASE))
            if lease is not None:
                handle.lease_key, handle.lease_state = lease
                handle.requested_lease = handle.lease_state
            else:
                handle.oplock_level = OPLOCK_NONE
        durable = contexts.parse_durable_v2_response(found.get(contexts.DURABLE_V2_REQUEST))
        if durable is not None:
            handle.durable = True
            handle.persistent = bool(durable[1] & DH2_FLAG_PERSISTENT)
        elif contexts.DURABLE_V1_REQUEST in found:
            handle.durable = True
        file_id = contexts.parse_on_disk_id(found.get(contexts.QUERY_ON_DISK_ID))
        if file_id is not None:
            info.file_index = file_id
        posix_cc = found.get(posix.POSIX_GUID)
        if posix_cc is not None:
            try:
                info.posix = posix.parse_create_response(posix_cc)[0]
                info.nlink = info.posix.nlink
            except ValueError as exc:
                raise SmbProtocolError(f"POSIX create context of {path!r}: {exc}") from None
        return handle

    def _close_late_create(self, reply: Reply) -> None:
        """A CREATE we stopped waiting for succeeded late: close the handle."""
        if reply.status == 0:
            try:
                fid = commands.parse_create_response(reply).file_id
            except smb2.MalformedMessage:
                return
            self.client.run_task_async(self._task(Command.CLOSE, commands.close_request(fid)))

    def close(self, handle: Handle) -> None:
        if handle.closed:
            return
        handle.closed = True
        self.close_done(handle, self.client.run_task(self.close_task(handle)))

    close_behind_writes = True      # Samba defers an SMB2 CLOSE until the writes are done
    compound_close = True           # a last WRITE and the CLOSE as one compound

    def close_task(self, handle: Handle) -> SmbTask:
        return self._task(Command.CLOSE, commands.close_request(handle.fid, postquery=True),
                          handle.path)

    def set_write_time_task(self, handle: Handle, mtime: int) -> SmbTask:
        return self._set_info_task(handle, FILE_BASIC_INFORMATION,
                                   fileinfo.basic_information(0, 0, mtime))

    def close_done(self, handle: Handle, reply: Reply) -> None:
        """The handle is closed; its FileInfo gets the final attributes."""
        handle.closed = True
        resp = _decode(commands.parse_close_response, reply)
        if resp.flags & commands.CLOSE_FLAG_POSTQUERY_ATTRIB:
            handle.info.update(resp)

    # -- data ------------------------------------------------------------------------

    def read_task(self, handle: Handle, offset: int, length: int,
                  into: Optional[memoryview] = None) -> SmbTask:
        """``into``: a writable buffer the data may be received into directly
        (then parse_read returns a view of it)."""
        task = self._task(Command.READ, (fileio.read_request(handle.fid, offset, length),),
                          handle.path, expected_response=length,
                          ok_statuses=_NOT_ERRORS_READ)
        if into is not None:
            task.recv_buffer = into
        return task

    def parse_read(self, reply: Reply) -> memoryview:
        if reply.placed is not None:
            return reply.placed
        if reply.status == NtStatus.END_OF_FILE:
            return memoryview(b"")
        return _decode(fileio.read_response_data, reply)

    def read_whole(self, path: str, limit: int) -> Optional[bytes]:
        """A small file in one round trip: CREATE + READ + CLOSE as one
        related compound.  None if the file holds more than ``limit`` bytes
        (the caller then reads it the normal way)."""
        return self.run_plan(self.read_whole_plan(path, limit))

    def read_whole_plan(self, path: str, limit: int) -> "Plan":
        tasks = self._read_compound(path, 0, limit)

        def finish(replies: Sequence[Reply]) -> Optional[bytes]:
            created, data, _closed = replies
            if created.status == NtStatus.STOPPED_ON_SYMLINK:
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
            if replies[0].status == NtStatus.STOPPED_ON_SYMLINK:
                return None
            return bytes(self.parse_read(replies[1]))
        return self._read_compound(path, offset, length), finish

    def _read_compound(self, path: str, offset: int, length: int) -> List[SmbTask]:
        create, _level, _key = self._create_task(
            path, access=FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
            disposition=FILE_OPEN, create_options=FILE_NON_DIRECTORY_FILE)
        related = Handle(RELATED_FILE_ID, path, FileInfo())
        return [create, self.read_task(related, offset, length), self._related_close(path)]

    def write_whole(self, path: str, data) -> Optional[int]:
        """Create or overwrite ``path`` with ``data`` (at most one WRITE's
        worth) in one round trip: CREATE + WRITE + CLOSE as one compound.
        None if the CREATE stopped on a symbolic link (open() follows it)."""
        return self.run_plan(self.write_whole_plan(path, data))

    def write_whole_plan(self, path: str, data,
                         filetimes: Optional[Tuple[int, int]] = None) -> "Plan":
        """``write_whole``'s compound; ``filetimes``: (access, write)
        FILETIMEs set after the WRITE, in the same compound (SET_INFO
        FileBasicInformation on the related handle)."""
        access = FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        if filetimes is not None:
            access |= FILE_WRITE_ATTRIBUTES
        create, _level, _key = self._create_task(
            path, access=access, disposition=FILE_OVERWRITE_IF,
            create_options=FILE_NON_DIRECTORY_FILE)
        related = Handle(RELATED_FILE_ID, path, FileInfo())
        tasks = [create, self._related_close(path)]
        if filetimes is not None:
            tasks.insert(1, self._set_info_task(related, FILE_BASIC_INFORMATION,
                                                fileinfo.basic_information(0, *filetimes), path))
        if len(data):
            tasks.insert(1, self.write_task(related, 0, data))

        def finish(replies: Sequence[Reply]) -> Optional[int]:
            if replies[0].status == NtStatus.STOPPED_ON_SYMLINK:
                return None
            return self.parse_write(replies[1]) if len(data) else 0
        return tasks, finish

    def write_open_plan(self, path: str, data,
                        filetimes: Optional[Tuple[int, int]] = None) -> "Plan":
        """CREATE (overwrite) + WRITE + SET_INFO (``filetimes``: access,
        write FILETIMEs) in one compound, the handle left open (with DELETE
        access) for ``handle_rename_plan`` or ``handle_delete_plan``: a small
        upload's temporary file is renamed over its destination on the handle
        it was written through, without opening it again.  The result is
        ``(Handle, bytes written, error)``: the WRITE's or SET_INFO's error,
        or None (the handle is open either way); a failed CREATE raises."""
        access = FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES | FILE_READ_ATTRIBUTES | DELETE | \
            SYNCHRONIZE
        create, _level, _key = self._create_task(
            path, access=access, disposition=FILE_OVERWRITE_IF,
            create_options=FILE_NON_DIRECTORY_FILE)
        related = Handle(RELATED_FILE_ID, path, FileInfo())
        tasks = [create]
        if len(data):
            tasks.append(self.write_task(related, 0, data, any_status=True))
        if filetimes is not None:
            times = self._set_info_task(related, FILE_BASIC_INFORMATION,
                                        fileinfo.basic_information(0, *filetimes), path)
            times.ok_statuses = ANY_STATUS
            tasks.append(times)
        names = [smb2.Command(t.command).name for t in tasks]

        def finish(replies: Sequence[Reply]):
            handle = self._parse_create(replies[0], path, OPLOCK_NONE, None)
            for name, reply in zip(names[1:], replies[1:]):
                if reply.status != NtStatus.SUCCESS:
                    return handle, 0, status_error(reply.status, name,
                                                   path.replace("\\", "/"))
            return handle, (self.parse_write(replies[1]) if len(data) else 0), None
        return tasks, finish

    def handle_rename_plan(self, handle: Handle, new_path: str, replace: bool = False) -> "Plan":
        """SET_INFO(FileRenameInformation) + CLOSE on an open ``handle``
        (opened with DELETE access) as one related compound."""
        info = fileinfo.rename_information(self._wire_path(new_path), replace)
        return ([self._set_info_task(handle, FILE_RENAME_INFORMATION, info, new_path),
                 self._related_close(handle.path)], lambda replies: None)

    def handle_delete_plan(self, handle: Handle) -> "Plan":
        """SET_INFO(FileDispositionInformation: delete) + CLOSE on an open
        ``handle`` (opened with DELETE access) as one related compound."""
        return ([self._set_info_task(handle, FILE_DISPOSITION_INFORMATION,
                                     fileinfo.DELETE_PENDING, handle.path),
                 self._related_close(handle.path)], lambda replies: None)

    def _related_close(self, path: str) -> SmbTask:
        close = self._task(Command.CLOSE, commands.close_request(RELATED_FILE_ID), path)
        close.ok_statuses = ANY_STATUS
        return close

    def write_task(self, handle: Handle, offset: int, data,
                   any_status: bool = False) -> SmbTask:
        """``any_status``: the reply completes the task whatever its status
        (a compound's caller checks it)."""
        task = self._task(Command.WRITE,
                          (fileio.write_request(handle.fid, offset, len(data)), data),
                          handle.path)
        if any_status:
            task.ok_statuses = ANY_STATUS
        return task

    def parse_write(self, reply: Reply) -> int:
        return _decode(fileio.write_response_count, reply)

    def flush(self, handle: Handle) -> None:
        self._run(Command.FLUSH, (fileio.flush_request(handle.fid),), handle.path)

    # -- metadata --------------------------------------------------------------------

    @property
    def posix(self) -> bool:
        """Whether opens use the SMB3 POSIX extensions (``fs.connect(posix=True)``)."""
        return getattr(self.tree, "posix", False)

    @property
    def _dir_cache(self):
        """The tree's directory cache (fs.dircache)."""
        return getattr(self.tree, "dir_cache", NO_DIR_CACHE)

    def _close_deferred(self, *paths: str) -> None:
        """Close the kept handles (fs.deferred) at or below ``paths`` first."""
        closes = getattr(self.tree, "deferred_closes", None)
        if closes is not None:
            for path in paths:
                closes.close_under(path)

    def _wire_path(self, path: str) -> str:
        """A POSIX open's separator is "/" ("\\" is a character in a name)."""
        return path.replace("\\", "/") if self.posix else path

    def _query_info_task(self, handle: Handle) -> SmbTask:
        info_class = posix.FILE_POSIX_INFORMATION if self.posix else FILE_ALL_INFORMATION
        return self._task(Command.QUERY_INFO,
                          commands.query_info_request(handle.fid, INFO_FILE, info_class,
                                                      output_length=_QUERY_INFO_BUFFER),
                          handle.path)

    def _parse_all_info(self, reply: Reply, info: FileInfo) -> FileInfo:
        """Fill ``info`` from a FileAllInformation (FILE_POSIX_INFORMATION) reply."""
        buf = _decode(commands.parse_query_info_response, reply)
        if self.posix:
            return posix_file_info(buf, info)
        all_info = _decode(fileinfo.parse_all_information, buf)
        info.update(all_info)
        info.file_index, info.nlink = all_info.file_id, all_info.links
        return info

    def query_info(self, handle: Handle) -> FileInfo:
        return self._parse_all_info(self.client.run_task(self._query_info_task(handle)),
                                    handle.info)

    def stat(self, path: str, create_options: int = 0) -> FileInfo:
        """One round trip: CREATE, a related QUERY_INFO (FileAllInformation:
        times, sizes, attributes, links, the file id) and CLOSE in one
        compound.  On a POSIX tree the server does not follow a symbolic
        link (STOPPED_ON_SYMLINK): the link itself is described (S_IFLNK).
        A directory the tree caches (``fs.dircache``) answers with no round trip."""
        if not create_options:
            cached = self._dir_cache.lookup(path)
            if cached is not None:
                return cached
        tasks, finish = self.stat_plan(path, create_options)
        try:
            replies = self.client.run_compound(tasks)
        except SmbError as exc:
            # a FIFO, socket or device (a reparse point to Samba) on a POSIX tree
            if getattr(exc, "status", 0) == _REPARSE_TAG_NOT_HANDLED and not create_options:
                return self.stat(path, FILE_OPEN_REPARSE_POINT)
            raise
        if replies[0].status == NtStatus.STOPPED_ON_SYMLINK and not create_options:
            return self.stat(path, FILE_OPEN_REPARSE_POINT)
        return finish(replies)

    def stat_plan(self, path: str, create_options: int = 0) -> "Plan":
        """``stat``'s compound, without its POSIX retries (AsyncTree does
        not use plans on a POSIX tree)."""
        if self.posix:
            create, _level, _key = self._create_task(
                path, access=_STAT_ACCESS, disposition=FILE_OPEN, create_options=create_options)
            related = Handle(RELATED_FILE_ID, path, FileInfo(path.rpartition("\\")[2]))
            return ([create, self._query_info_task(related), self._related_close(path)],
                    lambda replies: self._parse_all_info(replies[1], related.info))
        # This CREATE changes nothing: the dir cache and fs.deferred need not know
        session, tree = self.session, self.tree
        create = SmbTask(Command.CREATE, commands.create_request(
            path, desired_access=_STAT_ACCESS, disposition=FILE_OPEN,
            create_options=create_options), security=session, tree=tree, path=path,
            on_late_reply=self._close_late_create)
        close = SmbTask(Command.CLOSE, _RELATED_CLOSE, security=session, tree=tree, path=path)
        close.ok_statuses = ANY_STATUS
        query = SmbTask(Command.QUERY_INFO, _STAT_QUERY, security=session, tree=tree, path=path)
        name = path.rpartition("\\")[2]
        return [create, query, close], lambda replies: _all_information(replies[1], name)

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
        related = Handle(RELATED_FILE_ID, path, FileInfo())
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
            lambda h: (self._set_info_task(h, FILE_DISPOSITION_INFORMATION,
                                           fileinfo.DELETE_PENDING, path),)
            if directory else ())

    def rename_plan(self, path: str, new_path: str, replace: bool = False,
                    filetimes: Optional[Tuple[int, int]] = None) -> "Plan":
        """CREATE + SET_INFO(rename) + CLOSE; with ``filetimes`` (access,
        write FILETIMEs) a SET_INFO of them before the rename."""
        info = fileinfo.rename_information(self._wire_path(new_path), replace)
        access = DELETE | FILE_READ_ATTRIBUTES

        def middle(h: Handle) -> Tuple[SmbTask, ...]:
            rename = self._set_info_task(h, FILE_RENAME_INFORMATION, info, new_path)
            if filetimes is None:
                return (rename,)
            times = self._set_info_task(h, FILE_BASIC_INFORMATION,
                                        fileinfo.basic_information(0, *filetimes), path)
            return times, rename
        if filetimes is not None:
            access |= FILE_WRITE_ATTRIBUTES
        return self._with_handle(path, access, 0, middle)

    def set_times_plan(self, path: str, atime: int, mtime: int) -> "Plan":
        return self._with_handle(
            path, FILE_WRITE_ATTRIBUTES, 0,
            lambda h: (self._set_info_task(h, FILE_BASIC_INFORMATION,
                                           fileinfo.basic_information(0, atime, mtime),
                                           path),))

    def set_times(self, path: str, atime: int, mtime: int) -> None:
        """Set the access and write times (FILETIME; 0 leaves one as it is):
        CREATE + SET_INFO(FileBasicInformation) + CLOSE in one compound."""
        create, _level, _key = self._create_task(
            path, access=FILE_WRITE_ATTRIBUTES | SYNCHRONIZE, disposition=FILE_OPEN)
        related = Handle(RELATED_FILE_ID, path, FileInfo())
        self.client.run_compound(
            (create, self._set_info_task(related, FILE_BASIC_INFORMATION,
                                         fileinfo.basic_information(0, atime, mtime), path),
             self._related_close(path)))

    def listdir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """Entries of ``path`` matching ``pattern`` (the server matches it:
        ``*`` and ``?``, case-insensitively)."""
        if pattern == "*":
            cached = self._dir_cache.listing(path)
            if cached is not None:
                return iter(cached)
        try:
            entries = self.run_plan(self.list_plan(path, pattern))
        except SmbStatusError as exc:
            if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                raise
            entries = None
        if entries is not None:
            return iter(entries)
        # More than one buffer's worth: step by step on one handle.
        handle = self.run_plan(self.opendir_plan(path))
        try:
            return iter(self.list_handle(handle, pattern))
        finally:
            self.close(handle)

    def list_handle(self, handle: Handle, pattern: str = "*") -> List[FileInfo]:
        """The entries of the open directory ``handle`` matching ``pattern``."""
        entries: List[FileInfo] = []
        restart = True
        while True:
            batch = self.run_plan(self.query_dir_plan(handle, pattern, restart))
            if batch is None:
                return entries
            restart = False
            entries.extend(batch)

    def list_plan(self, path: str, pattern: str = "*") -> "Plan":
        """A whole listing in one round trip: CREATE + QUERY_DIRECTORY +
        QUERY_DIRECTORY + CLOSE (related).  The second query answering "no
        more files" proves the first had everything; the result is then the
        entries, else None (a listing beyond one buffer: ``listdir`` goes
        step by step)."""
        create, _level, _key = self._create_task(
            path, access=FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
            disposition=FILE_OPEN, create_options=FILE_DIRECTORY_FILE)
        related = Handle(RELATED_FILE_ID, path, FileInfo())
        first_tasks, first = self.query_dir_plan(related, pattern, restart=True)
        second_tasks, second = self.query_dir_plan(related, pattern)

        def finish(replies: Sequence[Reply]) -> Optional[List[FileInfo]]:
            entries = first(replies[1:2])
            if entries is None:
                return []
            return entries if second(replies[2:3]) is None else None
        return [create, *first_tasks, *second_tasks, self._related_close(path)], finish

    def opendir_plan(self, path: str) -> "Plan":
        return self.open_plan(path, access=FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                              disposition=FILE_OPEN, create_options=FILE_DIRECTORY_FILE)

    def query_dir_plan(self, handle: Handle, pattern: str = "*",
                       restart: bool = False) -> "Plan":
        """One QUERY_DIRECTORY; the result is a list of FileInfo, or None at
        the end of the listing."""
        request = commands.query_directory_request(
            handle.fid, pattern, info_class=self._dir_class,
            flags=RESTART_SCANS if restart else 0, output_length=self._dir_buffer)
        task = self._task(Command.QUERY_DIRECTORY, request, handle.path,
                          expected_response=self._dir_buffer, ok_statuses=_NOT_ERRORS_DIR)

        def finish(replies: Sequence[Reply]) -> Optional[List[FileInfo]]:
            reply = replies[0]
            if reply.status in (NtStatus.NO_MORE_FILES, NtStatus.NO_SUCH_FILE):
                return None
            buf = _decode(commands.parse_query_directory_response, reply)
            return self._dir_entries(buf) if buf else None
        return [task], finish

    @property
    def _dir_class(self) -> int:
        return posix.FILE_POSIX_INFORMATION if self.posix else FILE_ID_BOTH_DIRECTORY_INFORMATION

    def _dir_entries(self, buf) -> List[FileInfo]:
        """The FileInfo of each entry of a QUERY_DIRECTORY output buffer
        ("." and ".." left out)."""
        if not self.posix:
            return [FileInfo(e.name, e.end_of_file, e.allocation_size, e.file_attributes,
                             *e.times, e.file_id)
                    for e in _decode(commands.parse_directory_entries, buf)
                    if e.name not in (".", "..")]
        try:
            return [apply_posix_info(data, FileInfo(name))
                    for name, data in posix.parse_dir_entries(buf, 0, len(buf))]
        except ValueError as exc:
            raise SmbProtocolError(f"POSIX directory listing: {exc}") from None

    def _set_info_task(self, handle: Handle, info_class: int, data: bytes,
                       path: Optional[str] = None) -> SmbTask:
        return self._task(Command.SET_INFO,
                          commands.set_info_request(handle.fid, INFO_FILE, info_class, data),
                          path or handle.path)

    def _set_info(self, handle: Handle, info_class: int, data: bytes,
                  path: Optional[str] = None) -> None:
        self.client.run_task(self._set_info_task(handle, info_class, data, path))

    def set_end_of_file(self, handle: Handle, size: int) -> None:
        self._set_info(handle, FILE_END_OF_FILE_INFORMATION,
                       fileinfo.end_of_file_information(size))
        handle.info.size = size

    def rename(self, path: str, new_path: str, replace: bool = False,
               filetimes: Optional[Tuple[int, int]] = None) -> None:
        """One compound (``rename_plan``); ``filetimes``: (access, write)
        FILETIMEs set first, on the same handle.  A symbolic link on the way
        stops the compound: then ``open`` follows it."""
        self._close_deferred(path, new_path)
        try:
            self.run_plan(self.rename_plan(path, new_path, replace, filetimes))
            return
        except SmbStatusError as exc:
            if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                raise
        access = DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        handle = self.open(path, access=access | (FILE_WRITE_ATTRIBUTES if filetimes else 0),
                           disposition=FILE_OPEN)
        try:
            if filetimes is not None:
                self._set_info(handle, FILE_BASIC_INFORMATION,
                               fileinfo.basic_information(0, *filetimes), path)
            self._set_info(handle, FILE_RENAME_INFORMATION,
                           fileinfo.rename_information(self._wire_path(new_path), replace),
                           new_path)
        finally:
            self.close(handle)

    def delete(self, path: str, directory: bool = False) -> None:
        self._close_deferred(path)
        options = FILE_DELETE_ON_CLOSE | (FILE_DIRECTORY_FILE if directory
                                          else FILE_NON_DIRECTORY_FILE)
        handle = self.open(path, access=DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                           disposition=FILE_OPEN, create_options=options)
        try:
            if directory:
                # Samba accepts DELETE_ON_CLOSE on a non-empty directory and
                # then keeps it; setting the disposition reports the error.
                self._set_info(handle, FILE_DISPOSITION_INFORMATION, fileinfo.DELETE_PENDING)
        finally:
            self.close(handle)

    def fs_size(self) -> FsSize:
        buf = self.run_plan(self.query_fs_plan(FILE_FS_FULL_SIZE_INFORMATION,
                                               fileinfo.FS_FULL_SIZE_INFORMATION_SIZE))
        return FsSize(*_decode(fileinfo.parse_fs_full_size_information, buf))

    def query_fs_plan(self, info_class: int, output_length: int) -> "Plan":
        """One round trip for a volume's information: CREATE of the share
        root, QUERY_INFO(filesystem, ``info_class``) and CLOSE as one related
        compound; the result is the information buffer."""
        create, _level, _key = self._create_task(
            "", access=FILE_READ_ATTRIBUTES | SYNCHRONIZE, disposition=FILE_OPEN,
            create_options=FILE_DIRECTORY_FILE)
        query = self._task(Command.QUERY_INFO, commands.query_info_request(
            RELATED_FILE_ID, INFO_FILESYSTEM, info_class, output_length=output_length), "")
        return ([create, query, self._related_close("")],
                lambda replies: _decode(commands.parse_query_info_response, replies[1]))

    def mkdir(self, path: str) -> None:
        try:
            return self.run_plan(self.mkdir_plan(path))       # one compound
        except SmbStatusError as exc:
            if exc.status != NtStatus.STOPPED_ON_SYMLINK:
                raise
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
        task = self._task(Command.LOCK,
                          commands.lock_request(handle.fid, ranges, sequence=sequence),
                          handle.path)
        task.long_poll = any(not flags & (LOCKFLAG_FAIL_IMMEDIATELY | LOCKFLAG_UNLOCK)
                             for _o, _n, flags in ranges)
        return task

    # -- oplocks and leases --------------------------------------------------------------

    def parse_break(self, notification) -> Tuple[str, object, int]:
        note = _decode(fileio.parse_break_notification, notification.reply)
        return note.kind, note.key, note.new_level

    def ack_break(self, handle: Handle, new_level: int) -> None:
        """Acknowledge a break, unless the server expects none (level II to
        none; a lease keeping neither write nor handle caching)."""
        if handle.oplock_level == OPLOCK_LEASE:
            if not handle.lease_state & (LEASE_WRITE | LEASE_HANDLE):
                return
            body = fileio.lease_break_ack(handle.lease_key, new_level)
        else:
            if handle.oplock_level in (OPLOCK_NONE, OPLOCK_LEVEL_II):
                return
            body = fileio.oplock_break_ack(handle.fid, new_level)
        try:
            self._run(Command.OPLOCK_BREAK, (body,), handle.path, priority=True)
        except SmbError:
            if not handle.closed:
                raise



__all__ = ["Smb2FileOps", "status_error"]
