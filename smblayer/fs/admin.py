"""Files as administrators see them: the Tree methods for security
descriptors, streams, previous versions, symbolic links and file identity.

Theory of operation
-------------------
``AdminMixin`` is a base class of :class:`~smblayer.fs.tree.Tree`; it adds
calls that each open the path with just the access they need, send one
request on the handle and close it:

* ``get_security``/``set_security``: QUERY_INFO/SET_INFO with InfoType
  SECURITY and the AdditionalInformation bits for the parts asked
  ([MS-SMB2] 2.2.37, 2.2.39; SMB1: NT_TRANSACT_QUERY/SET_SECURITY_DESC);
  the blob is parsed and built by :mod:`smblayer.proto.security`.
* ``list_streams``: FileStreamInformation (SMB1: the TRANSACTION2 query
  level SMB_QUERY_FILE_STREAM_INFO, same layout).  A stream itself is
  opened as "path:name" with ``Tree.open``: the server parses the name.
* ``snapshots``: FSCTL_SRV_ENUMERATE_SNAPSHOTS, asked twice when the first
  answer says the list is longer than the buffer.  ``Tree.open(...,
  snapshot=token)`` sends the token as the timewarp create context ("TWrp");
  ``snapshot_contexts`` builds it.
* ``symlink``/``readlink``: FSCTL_SET/GET_REPARSE_POINT with a symbolic
  link's reparse data; ``lstat`` opens the link itself
  (FILE_OPEN_REPARSE_POINT) where ``stat`` follows it.
* ``volume_serial``: FileFsVolumeInformation's serial, asked once per tree;
  ``Tree.stat`` reports it as ``st_dev`` next to the file id as ``st_ino``,
  so ``os.path.samestat`` works across trees of one server.

Snapshots and reparse points need SMB 2.0.2 or later;
on SMB1 they raise :class:`io.UnsupportedOperation` saying so.
"""
from __future__ import annotations

import io
import logging
import os
import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence, Tuple, Union

from ..errors import SmbProtocolError, SmbStatusError
from ..proto.commands import (INFO_FILESYSTEM, INFO_SECURITY, parse_query_info_response,
                              query_info_request, set_info_request)
from ..proto.fscc import (FILE_FS_VOLUME_INFORMATION, FILE_STREAM_INFORMATION,
                          FSCTL_GET_REPARSE_POINT, FSCTL_SET_REPARSE_POINT,
                          FSCTL_SRV_ENUMERATE_SNAPSHOTS, StreamInfo, is_snapshot_token,
                          parse_reparse_data, parse_snapshots, parse_stream_information,
                          parse_volume_serial, snapshot_filetime, symlink_reparse_data)
from ..proto.smb2 import Command, MalformedMessage
from ..proto.status import NtStatus
from ..task import SmbTask
from .ops import (FILE_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE,
                  FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_WRITE_ATTRIBUTES, READ_CONTROL,
                  SYNCHRONIZE, FileInfo)

if TYPE_CHECKING:
    from ..proto.security import SecurityDescriptor

# proto.security (descriptors, ACLs, SDDL) loads with the first get/set_security:
# every Tree has these methods, few runs call them (issue 20, cold start).

log = logging.getLogger("smblayer")

WRITE_DAC = 0x00040000
WRITE_OWNER = 0x00080000
ACCESS_SYSTEM_SECURITY = 0x01000000
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
FILE_WRITE_DATA = 0x00000002
FILE_CREATE = 2
_SECURITY_BUFFER = 65536
# What servers that cannot make a reparse point answer (Samba 4.17: NOT_A_REPARSE_POINT).
_NO_REPARSE = frozenset({NtStatus.NOT_SUPPORTED, NtStatus.NOT_A_REPARSE_POINT,
                         NtStatus.INVALID_DEVICE_REQUEST, NtStatus.NOT_IMPLEMENTED})
_SNAPSHOT_PROBE = 16            # enough for the header: how big is the list?
SMB_QUERY_FILE_STREAM_INFO = 0x0109
SMB_QUERY_FS_VOLUME_INFO = 0x0102

#: The share modes ``Tree.open`` asks when not told: others may read, write
#: and delete (rename) the file while it is open, as POSIX programs expect.
DEFAULT_SHARE = "rwd"
_SHARE_BITS = {"r": FILE_SHARE_READ, "w": FILE_SHARE_WRITE, "d": FILE_SHARE_DELETE}


def share_access(share: Union[str, int, None]) -> int:
    """ShareAccess bits for ``share``: letters "r" (read), "w" (write), "d"
    (delete/rename), "" for exclusive, or the bits as an int."""
    if share is None:
        share = DEFAULT_SHARE
    if isinstance(share, int) and not isinstance(share, bool):
        if share & ~7:
            raise ValueError(f"share: unknown ShareAccess bits 0x{share:x}")
        return share
    if not isinstance(share, str) or set(share) - set(_SHARE_BITS) or \
            len(set(share)) != len(share):
        raise ValueError(f"share must be letters from 'rwd' (got {share!r})")
    bits = 0
    for letter in share:
        bits |= _SHARE_BITS[letter]
    return bits


def snapshot_contexts(snapshot: Optional[str]) -> Tuple[Tuple[bytes, bytes], ...]:
    """The timewarp create context ([MS-SMB2] 2.2.13.2.7) for a @GMT token."""
    if snapshot is None:
        return ()
    return ((b"TWrp", struct.pack("<Q", snapshot_filetime(snapshot))),)


def require_smb2(tree, what: str) -> None:
    if tree.client.dialect.is_smb1:
        raise io.UnsupportedOperation(
            f"{what} needs SMB 2.0.2 or later (this tree speaks {tree.client.dialect.name})")


def _security_access(bits: int, write: bool) -> int:
    from ..proto.security import (DACL_SECURITY_INFORMATION, GROUP_SECURITY_INFORMATION,
                                  OWNER_SECURITY_INFORMATION, SACL_SECURITY_INFORMATION)
    access = SYNCHRONIZE
    if write:
        if bits & DACL_SECURITY_INFORMATION:
            access |= WRITE_DAC
        if bits & (OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION):
            access |= WRITE_OWNER
    else:
        access |= READ_CONTROL
    if bits & SACL_SECURITY_INFORMATION:
        access |= ACCESS_SYSTEM_SECURITY
    return access


class AdminMixin:
    """The administrators' calls of a Tree (see the module docstring)."""

    _volume_serial: Optional[int] = None
    _volume_pending = None       # (Future, finish) of its compound while in flight

    # -- open() options -------------------------------------------------------------

    def _open_options(self, share, snapshot, writable: bool) -> dict:
        """``Tree.open``'s ``share`` and ``snapshot``, as ops.open arguments.

        ``share``: what other opens may do while this one is open, letters
        of "rwd" (read, write, delete/rename; default "rwd": everything, as
        POSIX programs expect).  An open that conflicts with another's share
        mode raises SmbStatusError SHARING_VIOLATION with errno EBUSY and
        the path.  ``snapshot``: a @GMT token from ``snapshots(path)`` opens
        that previous version (read-only, not durable; SMB 2.0.2 or later)."""
        options = {"share_access": share_access(share)}
        if snapshot is not None:
            check_snapshot(snapshot)
            if writable:
                raise ValueError("a snapshot is read-only: open it with 'rb'")
            require_smb2(self, "open(snapshot=...)")
            options["contexts"] = snapshot_contexts(snapshot)
        return options

    # -- plumbing ---------------------------------------------------------------------

    def _on_handle(self, path, access: int, fn, *, create_options: int = 0):
        """Open ``path`` with ``access`` and every share mode, run
        ``fn(handle)``, close it."""
        handle = self.open_handle(path, access=access, create_options=create_options)
        try:
            return fn(handle)
        finally:
            self.close_handle(handle)

    def _query(self, handle, info_type: int, info_class: int, additional: int = 0,
               output_length: int = 4096) -> bytes:
        body = query_info_request(handle.fid, info_type, info_class,
                                  output_length=output_length,
                                  additional_information=additional)
        task = SmbTask(Command.QUERY_INFO, body, security=self.session, tree=self,
                       path=handle.path)
        try:
            return parse_query_info_response(self.client.run_task(task))
        except MalformedMessage as exc:
            raise SmbProtocolError(f"QUERY_INFO of {handle.path!r}: {exc}") from None

    # -- security descriptors ----------------------------------------------------------

    def get_security(self, path="", info: Union[Sequence[str], int] = ("owner", "group", "dacl")
                     ) -> SecurityDescriptor:
        """The security descriptor of ``path`` (file or directory): the parts
        named in ``info`` ("owner", "group", "dacl", "sacl"; the SACL needs
        the SeSecurityPrivilege on the server).  QUERY_INFO (SMB1:
        NT_TRANSACT_QUERY_SECURITY_DESC)."""
        from ..proto.security import SecurityDescriptor, security_information
        bits = security_information(info)
        self._check_connected()

        def query(handle) -> bytes:
            if self.client.dialect.is_smb1:
                return self.ops.query_security(handle, bits)
            try:
                return self._query(handle, INFO_SECURITY, 0, bits, _SECURITY_BUFFER)
            except SmbStatusError as exc:
                if exc.status != NtStatus.BUFFER_TOO_SMALL:
                    raise
                limit = self.client.negotiated.max_transact_size
                return self._query(handle, INFO_SECURITY, 0, bits, limit)

        blob = self._on_handle(path, _security_access(bits, write=False), query)
        return SecurityDescriptor.from_bytes(blob)

    def set_security(self, path, sd: Union[SecurityDescriptor, str, bytes],
                     info: Union[Sequence[str], int] = ("dacl",)) -> None:
        """Write the parts of ``sd`` named in ``info`` (default the DACL) to
        ``path``.  ``sd`` may be a SecurityDescriptor, SDDL text or the
        self-relative bytes.  SET_INFO (SMB1: NT_TRANSACT_SET_SECURITY_DESC)."""
        from ..proto.security import SecurityDescriptor, security_information
        bits = security_information(info)
        if isinstance(sd, str):
            sd = SecurityDescriptor.from_sddl(sd)
        elif isinstance(sd, (bytes, bytearray, memoryview)):
            sd = SecurityDescriptor.from_bytes(sd)
        if not isinstance(sd, SecurityDescriptor):
            raise TypeError(f"set_security takes a SecurityDescriptor, not {type(sd).__name__}")
        blob = sd.to_bytes()
        self._check_connected()

        def apply(handle) -> None:
            if self.client.dialect.is_smb1:
                self.ops.set_security(handle, bits, blob)
                return
            body = set_info_request(handle.fid, INFO_SECURITY, 0, blob,
                                    additional_information=bits)
            self.client.run_task(SmbTask(Command.SET_INFO, body, security=self.session,
                                         tree=self, path=handle.path))

        self._on_handle(path, _security_access(bits, write=True), apply)

    # -- streams ---------------------------------------------------------------------------

    def list_streams(self, path) -> List[StreamInfo]:
        """The data streams of ``path`` (FileStreamInformation): the main
        stream "::$DATA" and named ones ":name:$DATA" with their sizes.
        Open one as ``tree.open("path:name", ...)``."""
        self._check_connected()
        if self.client.dialect.is_smb1:
            data = self.ops.query_path(self._norm(path), SMB_QUERY_FILE_STREAM_INFO)
        else:
            data = self._on_handle(
                path, FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                lambda h: self._query(h, 1, FILE_STREAM_INFORMATION, 0, 65536))
        return parse_stream_information(data)

    # -- previous versions -----------------------------------------------------------------

    def snapshots(self, path="") -> List[str]:
        """The @GMT tokens of the previous versions of ``path`` (a file or
        directory) the server has (FSCTL_SRV_ENUMERATE_SNAPSHOTS), newest
        first as the server orders them.  Open one with ``open(path, "rb",
        snapshot=token)``.  SMB 2.0.2 or later."""
        self._check_connected()
        require_smb2(self, "snapshots")

        def enumerate_(handle) -> List[str]:
            out = self.ioctl(handle, FSCTL_SRV_ENUMERATE_SNAPSHOTS, max_output=_SNAPSHOT_PROBE)
            total, names, size = parse_snapshots(out)
            if len(names) < total:
                limit = min(16 + size, self.client.negotiated.max_transact_size)
                total, names, size = parse_snapshots(
                    self.ioctl(handle, FSCTL_SRV_ENUMERATE_SNAPSHOTS, max_output=limit))
            return names

        return self._on_handle(path, FILE_READ_ATTRIBUTES | SYNCHRONIZE, enumerate_)

    # -- symbolic links ----------------------------------------------------------------------

    def readlink(self, path) -> str:
        """The target of the symbolic link ``path`` (FSCTL_GET_REPARSE_POINT),
        with "/" separators.  OSError (EINVAL) when it is no link."""
        self._check_connected()
        require_smb2(self, "readlink")

        def get(handle) -> str:
            try:
                out = self.ioctl(handle, FSCTL_GET_REPARSE_POINT, max_output=16384)
            except SmbStatusError as exc:
                if exc.status == NtStatus.NOT_A_REPARSE_POINT:
                    raise OSError(22, "not a symbolic link", self._out(path)) from None
                raise
            return parse_reparse_data(out).substitute.replace("\\", "/")

        return self._on_handle(path, FILE_READ_ATTRIBUTES | SYNCHRONIZE, get,
                               create_options=FILE_OPEN_REPARSE_POINT)

    def symlink(self, target, path) -> None:
        """Make ``path`` a symbolic link to ``target`` (relative to the link's
        directory unless it starts with "/" or a drive): a new file turned
        into a reparse point with FSCTL_SET_REPARSE_POINT.  Servers that do
        not allow it answer NOT_SUPPORTED or ACCESS_DENIED (raised as
        OSError); Samba 4.17 does not."""
        self._check_connected()
        require_smb2(self, "symlink")
        target = os.fspath(target)
        relative = not (target.startswith(("/", "\\")) or target[1:2] == ":")
        data = symlink_reparse_data(target.replace("/", "\\"), relative)
        handle = self.open_handle(path, access=FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES |
                                  FILE_READ_ATTRIBUTES | SYNCHRONIZE | 0x00010000,
                                  disposition=FILE_CREATE,
                                  create_options=FILE_OPEN_REPARSE_POINT)
        made = False
        try:
            try:
                self.ioctl(handle, FSCTL_SET_REPARSE_POINT, data, max_output=0)
            except SmbStatusError as exc:
                if exc.status not in _NO_REPARSE:
                    raise
                raise io.UnsupportedOperation(
                    f"symlink {self._out(path)!r}: the server does not allow making "
                    f"symbolic links over SMB ({exc})") from None
            made = True
        finally:
            self.close_handle(handle)
            if not made:
                try:
                    self.remove(path)
                except SmbStatusError as exc:
                    log.debug("smblayer: removing the half-made link %r: %s", path, exc)

    def lstat(self, path="") -> os.stat_result:
        """Like ``stat`` but a symbolic link is described itself (S_IFLNK),
        not followed."""
        self._check_connected()
        info = self._on_handle(path, FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                               self.ops.query_info, create_options=FILE_OPEN_REPARSE_POINT)
        return _with_link(info).to_stat(dev=self.volume_serial)

    def islink(self, path) -> bool:
        try:
            return bool(self.file_info_nofollow(path).attributes & FILE_ATTRIBUTE_REPARSE_POINT)
        except (SmbStatusError, ValueError):
            return False

    def file_info_nofollow(self, path) -> FileInfo:
        self._check_connected()
        return self._on_handle(path, FILE_READ_ATTRIBUTES | SYNCHRONIZE, self.ops.query_info,
                               create_options=FILE_OPEN_REPARSE_POINT)

    # -- identity ----------------------------------------------------------------------------

    @property
    def volume_serial(self) -> int:
        """The share's volume serial number (``st_dev`` of ``stat``), asked
        once (FileFsVolumeInformation); 0 if the server does not say."""
        return self._volume_serial_later()()

    def _volume_serial_later(self) -> Callable[[], int]:
        """A function giving ``volume_serial``.  On SMB 2+, while it is not
        known, its compound is sent now and its reply awaited when the
        function is called: ``stat`` sends its own compound in between, so
        the first stat of a tree costs one round trip, not two."""
        serial = self._volume_serial
        if serial is not None:
            return lambda: serial
        if self.client.dialect.is_smb1:
            return lambda: self._settle_serial(
                lambda: self.ops.query_fs(SMB_QUERY_FS_VOLUME_INFO))
        pending = self._volume_pending
        if pending is None:
            tasks, finish = self.ops.query_fs_plan(FILE_FS_VOLUME_INFORMATION, 1024)
            pending = self._volume_pending = (self.client.run_compound_async(tasks), finish)
        future, finish = pending
        return lambda: self._settle_serial(lambda: finish(future.result()))

    def _settle_serial(self, ask: Callable[[], bytes]) -> int:
        """The serial from ``ask()`` (the FileFsVolumeInformation), kept."""
        try:
            serial = parse_volume_serial(ask())
        except (SmbStatusError, SmbProtocolError) as exc:
            log.debug("smblayer: no volume serial for %r: %s", self, exc)
            serial = 0
        except BaseException:
            self._volume_pending = None      # (a lost connection): asked again next time
            raise
        self._volume_serial, self._volume_pending = serial, None
        return serial

    @staticmethod
    def _norm(path) -> str:
        return os.fspath(path).replace("/", "\\").strip("\\")

    @staticmethod
    def _out(path) -> str:
        return os.fspath(path).replace("\\", "/").strip("/")


def _with_link(info: FileInfo) -> FileInfo:
    if info.attributes & FILE_ATTRIBUTE_REPARSE_POINT:
        info.link = True
    return info


def check_snapshot(snapshot) -> None:
    if snapshot is not None and not is_snapshot_token(snapshot):
        raise ValueError(f"snapshot must be a @GMT-YYYY.MM.DD-HH.MM.SS token, not {snapshot!r}")


__all__ = ["AdminMixin", "DEFAULT_SHARE", "share_access", "snapshot_contexts",
           "check_snapshot", "require_smb2"]
