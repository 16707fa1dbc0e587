"""The SMB3 POSIX extensions on a Tree: ``fs.connect(..., posix=True)``.

Theory of operation
-------------------
``posix=True`` makes the client offer the POSIX negotiate context
(``SmbClient(posix=True)``, so such a client is never shared with callers
that did not ask).  When the server agrees (``client.negotiated.posix``)
the Tree's ``posix`` is True and :class:`~smblayer.fs.smb2ops.Smb2FileOps`
adds the POSIX create context to every open (new files get mode
:data:`POSIX_FILE_MODE`, directories :data:`POSIX_DIR_MODE`), queries
FILE_POSIX_INFORMATION instead of FileAllInformation and lists
directories with the POSIX class.  So ``tree.stat`` gives the server's
st_mode (type and permission bits), st_nlink, st_ino, and st_uid/st_gid
(see ``FileInfo.to_stat``); names are case-sensitive (the server treats
POSIX opens so).  When the server does not agree, ``connect`` warns
(:class:`PosixUnavailableWarning`) and the tree works as without
``posix``; ``tree.chmod``/``chown`` then raise ``io.UnsupportedOperation``.

:class:`PosixMixin` (a base of Tree) adds ``chmod`` and ``chown``: a
SET_INFO of a security descriptor on a POSIX open
(``proto.posix.mode_descriptor``, ``owner_descriptor``).  Symbolic links
are Tree's ``symlink``/``readlink`` (reparse points): on a POSIX tree
their opens carry the POSIX context like every other, which is how a
POSIX client makes and reads links.
"""
from __future__ import annotations

import io
import warnings
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional

from ..errors import SmbProtocolError
from ..proto import posix as wire
from ..proto.commands import set_info_request
from ..proto.smb2 import Command
from ..task import SmbTask
from .ops import FileInfo

__all__ = ["PosixMixin", "PosixUnavailableWarning", "use_posix", "POSIX_FILE_MODE", "POSIX_DIR_MODE",
           "posix_file_info", "apply_posix_info"]

#: modes of the files and directories a POSIX tree creates
POSIX_FILE_MODE = 0o644
POSIX_DIR_MODE = 0o755

_READ_CONTROL = 0x00020000
_WRITE_DAC = 0x00040000
_WRITE_OWNER = 0x00080000
_FILE_READ_ATTRIBUTES = 0x00000080
_SYNCHRONIZE = 0x00100000
_INFO_SECURITY = 0x03
_OWNER_SECURITY_INFORMATION = 0x01
_GROUP_SECURITY_INFORMATION = 0x02
_DACL_SECURITY_INFORMATION = 0x04


class PosixUnavailableWarning(UserWarning):
    """``fs.connect(..., posix=True)`` but the server did not agree to the
    SMB3 POSIX extensions (not SMB 3.1.1, or not offered): the tree works
    without them."""


def use_posix(tree, stacklevel: int = 3) -> bool:
    """Turn the SMB3 POSIX extensions on for ``tree`` if its connection
    negotiated them (``SmbClient(posix=True)``), else warn
    (PosixUnavailableWarning).  Returns ``tree.posix``."""
    if tree.client.negotiated.posix:
        tree.posix = True
        return True
    warnings.warn(PosixUnavailableWarning(
        f"//{tree.client.host}/{tree.share}: the server did not agree to the SMB3 POSIX "
        f"extensions (dialect {tree.client.dialect.name}); going on without them"),
        stacklevel=stacklevel)
    return False


def apply_posix_info(data: wire.PosixFileInfo, info: FileInfo) -> FileInfo:
    """Fill ``info`` from parsed FILE_POSIX_INFORMATION."""
    info.creation_time, info.last_access_time = data.creation_time, data.last_access_time
    info.last_write_time, info.change_time = data.last_write_time, data.change_time
    info.size, info.allocation_size, info.attributes = data.size, data.allocation_size, \
        data.attributes
    info.file_index, info.nlink, info.posix = data.inode, data.posix.nlink, data.posix
    return info


def posix_file_info(buf, info: FileInfo) -> FileInfo:
    """Fill ``info`` from a FILE_POSIX_INFORMATION buffer."""
    try:
        data, _end = wire.parse_file_info(buf)
    except ValueError as exc:
        raise SmbProtocolError(f"FILE_POSIX_INFORMATION: {exc}") from None
    return apply_posix_info(data, info)


class PosixMixin:
    """``chmod`` and ``chown`` of a Tree (see the module docstring)."""

    #: whether this tree's opens use the SMB3 POSIX extensions
    posix: bool = False

    def _require_posix(self, what: str) -> None:
        if not self.posix:
            raise io.UnsupportedOperation(
                f"{what} needs the SMB3 POSIX extensions: fs.connect(..., posix=True) "
                "to a server that offers them (Samba >= 4.20 with 'smb3 unix extensions')")

    def _set_security(self, path, access: int, additional: int, descriptor: bytes) -> None:
        handle = self.open_handle(path, access=access | _FILE_READ_ATTRIBUTES | _SYNCHRONIZE)
        try:
            body = set_info_request(handle.fid, _INFO_SECURITY, 0, descriptor,
                                    additional_information=additional)
            self.client.run_task(SmbTask(Command.SET_INFO, body, security=self.session,
                                         tree=self, path=handle.path))
        finally:
            self.close_handle(handle)

    def chmod(self, path, mode: int) -> None:
        """Set the permission bits of ``path`` like ``os.chmod`` (POSIX trees)."""
        self._require_posix("chmod")
        self._set_security(path, _WRITE_DAC, _DACL_SECURITY_INFORMATION,
                           wire.mode_descriptor(mode))

    def chown(self, path, uid: Optional[int], gid: Optional[int] = None) -> None:
        """Set the owner and/or group of ``path`` like ``os.chown`` (-1 or
        None leaves one as it is; POSIX trees; changing the owner needs a
        privileged server account)."""
        self._require_posix("chown")
        uid = None if uid is None or uid == -1 else int(uid)
        gid = None if gid is None or gid == -1 else int(gid)
        if uid is None and gid is None:
            return
        additional = (_OWNER_SECURITY_INFORMATION if uid is not None else 0) | \
            (_GROUP_SECURITY_INFORMATION if gid is not None else 0)
        self._set_security(path, _WRITE_OWNER, additional, wire.owner_descriptor(uid, gid))

