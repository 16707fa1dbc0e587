"""The smblayer exception hierarchy.

Every error the layer raises derives from :class:`SmbError`.  Errors carry
context (server, command, NTSTATUS) as attributes so callers never have to
parse messages.  File errors also derive from the matching builtin, so
``except FileNotFoundError`` works on an SMB path.
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional

from .proto.status import NtStatus, status_name


class SmbError(Exception):
    """Base class of every smblayer error.

    Context attributes, set where known (None otherwise): ``host`` and
    ``port`` of the server, ``command`` (the SMB command name), ``path`` (the
    file path), ``sends`` (how often the request went out)."""

    host: Optional[str] = None
    port: Optional[int] = None
    command: Optional[str] = None
    path: Optional[str] = None
    sends: Optional[int] = None


class SmbConnectionError(SmbError, ConnectionError):
    """The transport failed: refused, reset, unreachable or closed by the peer."""


class SmbTimeoutError(SmbError, TimeoutError):
    """A soft-mode request timed out and the server could not be reached again."""


class SmbCancelledError(SmbError):
    """The request was cancelled by the caller (task.cancel(), future.cancel())."""


class SmbClosedError(SmbError):
    """The client was closed while the request was waiting or before it started."""


class SmbNegotiateError(SmbError):
    """No dialect within the caller's bounds could be agreed with the server."""


class SmbNegotiateRefusedError(SmbNegotiateError, SmbConnectionError):
    """The server closed the connection in answer to NEGOTIATE: it speaks
    none of the offered dialects (e.g. an SMB1-only server asked for SMB2)."""


class SmbProtocolError(SmbError):
    """The server sent something malformed, hostile or out of protocol."""


class SmbMultichannelError(SmbError):
    """A channel cannot be added to a session (multichannel, SMB 3.x):
    ``reason`` says why ("dialect", "capability", "guest", "anonymous",
    "address", "signing"), ``dialect`` is the connection's dialect name and
    ``address`` the channel's address where one was chosen."""

    def __init__(self, message: str, *, reason: str, dialect: Optional[str] = None,
                 address: Optional[str] = None):
        super().__init__(message)
        self.reason = reason
        self.dialect = dialect
        self.address = address


class SmbStatusError(SmbError, OSError):
    """The server answered with an error NTSTATUS.

    ``status`` is the NTSTATUS value (an :class:`NtStatus` member when known),
    ``command`` the SMB command name, ``path`` the file path if any (with
    "/" separators).  As an ``OSError`` it also has ``errno`` (the POSIX
    error the status maps to, None where none does), ``strerror`` and
    ``filename`` (the path).
    """

    def __init__(self, status: int, command: str = "", path: Optional[str] = None,
                 message: str = ""):
        status = NtStatus.coerce(status)
        OSError.__init__(self, _ERRNO.get(status), message or status_name(status))
        self.status = status
        self.command = command
        self.path = path
        path = self.path
        text = f"{status_name(status)} (0x{int(status):08x})"
        if command:
            text = f"{command}: {text}"
        if path:
            text = f"{text}: {path!r}"
        if message:
            text = f"{text}: {message}"
        self._text = text
        self._message = message

    @property
    def path(self) -> Optional[str]:
        """The file path ("/" separators); the same as ``filename``."""
        return self.filename

    @path.setter
    def path(self, value: Optional[str]) -> None:
        self.filename = value.replace("\\", "/") if isinstance(value, str) else value

    def __str__(self) -> str:
        return self._text

    def __reduce__(self):
        return (type(self), (int(self.status), self.command, self.path, self._message))


class SmbAuthError(SmbStatusError):
    """Authentication failed (wrong password, unknown user, account locked...).

    ``cause`` names the reason when the client knows it, e.g. for Kerberos
    ``"kdc_unreachable"``, ``"wrong_password"``, ``"clock_skew"``,
    ``"unknown_principal"`` (no such service principal), ``"unknown_user"``,
    ``"expired"`` (ticket or cache), ``"password_expired"``,
    ``"no_credentials"``, ``"mutual_auth"``, ``"unavailable"`` (no Kerberos
    support installed), ``"failed"`` (another client-side failure); empty
    when only the server's status is known.
    """

    def __init__(self, status: int, command: str = "", path: Optional[str] = None,
                 message: str = "", cause: str = ""):
        super().__init__(status, command, path, message)
        self.cause = cause


class SmbFileNotFoundError(SmbStatusError, FileNotFoundError):
    pass


class SmbFileExistsError(SmbStatusError, FileExistsError):
    pass


class SmbPermissionError(SmbStatusError, PermissionError):
    pass


class SmbIsADirectoryError(SmbStatusError, IsADirectoryError):
    pass


class SmbNotADirectoryError(SmbStatusError, NotADirectoryError):
    pass


class SmbDirectoryNotEmptyError(SmbStatusError, OSError):
    pass


_BY_STATUS = {
    NtStatus.OBJECT_NAME_NOT_FOUND: SmbFileNotFoundError,
    NtStatus.OBJECT_PATH_NOT_FOUND: SmbFileNotFoundError,
    NtStatus.NO_SUCH_FILE: SmbFileNotFoundError,
    NtStatus.NOT_FOUND: SmbFileNotFoundError,
    NtStatus.BAD_NETWORK_NAME: SmbFileNotFoundError,
    NtStatus.OBJECT_NAME_COLLISION: SmbFileExistsError,
    NtStatus.ACCESS_DENIED: SmbPermissionError,
    NtStatus.CANNOT_DELETE: SmbPermissionError,
    NtStatus.DELETE_PENDING: SmbPermissionError,
    NtStatus.FILE_IS_A_DIRECTORY: SmbIsADirectoryError,
    NtStatus.NOT_A_DIRECTORY: SmbNotADirectoryError,
    NtStatus.DIRECTORY_NOT_EMPTY: SmbDirectoryNotEmptyError,
    NtStatus.LOGON_FAILURE: SmbAuthError,
    NtStatus.ACCOUNT_DISABLED: SmbAuthError,
    NtStatus.ACCOUNT_RESTRICTION: SmbAuthError,
    NtStatus.PASSWORD_EXPIRED: SmbAuthError,
    NtStatus.WRONG_PASSWORD: SmbAuthError,
    NtStatus.NO_SUCH_USER: SmbAuthError,
}


# The POSIX errno of a status (what Linux cifs and Python on Windows report).
_ERRNO = {
    NtStatus.OBJECT_NAME_NOT_FOUND: errno.ENOENT,
    NtStatus.OBJECT_PATH_NOT_FOUND: errno.ENOENT,
    NtStatus.NO_SUCH_FILE: errno.ENOENT,
    NtStatus.NOT_FOUND: errno.ENOENT,
    NtStatus.BAD_NETWORK_NAME: errno.ENOENT,
    NtStatus.OBJECT_NAME_COLLISION: errno.EEXIST,
    NtStatus.ACCESS_DENIED: errno.EACCES,
    NtStatus.NETWORK_ACCESS_DENIED: errno.EACCES,
    NtStatus.STOPPED_ON_SYMLINK: errno.ELOOP,     # a link we do not (or cannot) follow
    NtStatus.SHARING_VIOLATION: errno.EBUSY,     # as Linux cifs: another open's share mode
    NtStatus.CANNOT_DELETE: errno.EACCES,
    NtStatus.DELETE_PENDING: errno.EACCES,
    NtStatus.PRIVILEGE_NOT_HELD: errno.EPERM,
    NtStatus.FILE_IS_A_DIRECTORY: errno.EISDIR,
    NtStatus.NOT_A_DIRECTORY: errno.ENOTDIR,
    NtStatus.DIRECTORY_NOT_EMPTY: errno.ENOTEMPTY,
    NtStatus.OBJECT_NAME_INVALID: errno.EINVAL,
    NtStatus.OBJECT_PATH_INVALID: errno.EINVAL,
    NtStatus.OBJECT_PATH_SYNTAX_BAD: errno.EINVAL,
    NtStatus.INVALID_PARAMETER: errno.EINVAL,
    NtStatus.DISK_FULL: errno.ENOSPC,
    NtStatus.FILE_LOCK_CONFLICT: errno.EACCES,
    NtStatus.LOCK_NOT_GRANTED: errno.EACCES,
    NtStatus.INVALID_HANDLE: errno.EBADF,
    NtStatus.FILE_CLOSED: errno.EBADF,
    NtStatus.NOT_SUPPORTED: errno.EOPNOTSUPP,
    NtStatus.NOT_IMPLEMENTED: errno.ENOSYS,
    NtStatus.NO_SUCH_DEVICE: errno.ENODEV,
    NtStatus.INSUFFICIENT_RESOURCES: errno.ENOMEM,
    NtStatus.NO_MEMORY: errno.ENOMEM,
    NtStatus.LOGON_FAILURE: errno.EACCES,
    NtStatus.WRONG_PASSWORD: errno.EACCES,
    NtStatus.NO_SUCH_USER: errno.EACCES,
    NtStatus.ACCOUNT_DISABLED: errno.EACCES,
    NtStatus.ACCOUNT_RESTRICTION: errno.EACCES,
    NtStatus.PASSWORD_EXPIRED: errno.EACCES,
}


def status_error(status: int, command: str = "", path: Optional[str] = None,
                 message: str = "") -> SmbStatusError:
    """Build the most specific :class:`SmbStatusError` subclass for ``status``."""
    cls = _BY_STATUS.get(status, SmbStatusError)
    return cls(status, command, path, message)
