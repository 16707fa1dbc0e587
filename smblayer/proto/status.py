"""NTSTATUS values with readable names ([MS-ERREF] 2.3).

Theory of operation: :class:`NtStatus` behaves as the ``enum.IntEnum`` it
used to be where the layer and its users touch it -- ``NtStatus.ACCESS_DENIED``
is an int with ``.name`` and ``.value``, ``NtStatus(0xC0000022)`` gives that
same object (ValueError for an unknown value), ``NtStatus["ACCESS_DENIED"]``,
iteration, ``len``, ``in`` and ``__members__`` work, repr and str are the
IntEnum's -- but it is a plain ``int`` subclass whose members are made by one
loop below the class.  Building a 150-member IntEnum cost every start of the
command line ~15 M instructions (about 7 % of a one-shot ``ls``); this costs
a tenth of that.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Iterator


class _NtStatusType(type):
    """The class-level protocol of an enum: iteration, len, ``in``, ``[name]``."""

    def __iter__(cls) -> Iterator[NtStatus]:
        return iter(_BY_VALUE.values())

    def __len__(cls) -> int:
        return len(_BY_VALUE)

    def __contains__(cls, value) -> bool:
        return isinstance(value, NtStatus) or value in _BY_VALUE

    def __getitem__(cls, name: str) -> NtStatus:
        member = _BY_NAME.get(name)
        if member is None:
            raise KeyError(name)
        return member

    @property
    def __members__(cls) -> Dict[str, NtStatus]:
        return dict(_BY_NAME)


class NtStatus(int, metaclass=_NtStatusType):
    """An NTSTATUS value; the members below are NtStatus instances (see the
    module's doc)."""

    SUCCESS = 0x00000000
    PENDING = 0x00000103
    NOTIFY_CLEANUP = 0x0000010B
    NOTIFY_ENUM_DIR = 0x0000010C
    BUFFER_OVERFLOW = 0x80000005
    NO_MORE_FILES = 0x80000006
    STOPPED_ON_SYMLINK = 0x8000002D
    UNSUCCESSFUL = 0xC0000001
    NOT_IMPLEMENTED = 0xC0000002
    INVALID_INFO_CLASS = 0xC0000003
    INFO_LENGTH_MISMATCH = 0xC0000004
    INVALID_HANDLE = 0xC0000008
    INVALID_PARAMETER = 0xC000000D
    NO_SUCH_DEVICE = 0xC000000E
    NO_SUCH_FILE = 0xC000000F
    INVALID_DEVICE_REQUEST = 0xC0000010
    END_OF_FILE = 0xC0000011
    MORE_PROCESSING_REQUIRED = 0xC0000016
    NO_MEMORY = 0xC0000017
    ACCESS_DENIED = 0xC0000022
    BUFFER_TOO_SMALL = 0xC0000023
    OBJECT_TYPE_MISMATCH = 0xC0000024
    OBJECT_NAME_INVALID = 0xC0000033
    OBJECT_NAME_NOT_FOUND = 0xC0000034
    OBJECT_NAME_COLLISION = 0xC0000035
    OBJECT_PATH_INVALID = 0xC0000039
    OBJECT_PATH_NOT_FOUND = 0xC000003A
    OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    SHARING_VIOLATION = 0xC0000043
    FILE_LOCK_CONFLICT = 0xC0000054
    LOCK_NOT_GRANTED = 0xC0000055
    DELETE_PENDING = 0xC0000056
    PRIVILEGE_NOT_HELD = 0xC0000061
    WRONG_PASSWORD = 0xC000006A
    LOGON_FAILURE = 0xC000006D
    ACCOUNT_RESTRICTION = 0xC000006E
    INVALID_LOGON_HOURS = 0xC000006F
    PASSWORD_EXPIRED = 0xC0000071
    ACCOUNT_DISABLED = 0xC0000072
    NONE_MAPPED = 0xC0000073
    DISK_FULL = 0xC000007F
    INSUFFICIENT_RESOURCES = 0xC000009A
    FILE_IS_A_DIRECTORY = 0xC00000BA
    NOT_SUPPORTED = 0xC00000BB
    NETWORK_NAME_DELETED = 0xC00000C9
    NETWORK_ACCESS_DENIED = 0xC00000CA
    BAD_NETWORK_NAME = 0xC00000CC
    REQUEST_NOT_ACCEPTED = 0xC00000D0
    INTERNAL_ERROR = 0xC00000E5
    DIRECTORY_NOT_EMPTY = 0xC0000101
    NOT_A_DIRECTORY = 0xC0000103
    CANCELLED = 0xC0000120
    CANNOT_DELETE = 0xC0000121
    FILE_CLOSED = 0xC0000128
    INVALID_LEVEL = 0xC0000148
    PIPE_BROKEN = 0xC000014B
    CONNECTION_RESET = 0xC000020D
    NOT_FOUND = 0xC0000225
    NO_SUCH_USER = 0xC0000064
    NETWORK_SESSION_EXPIRED = 0xC000035C
    TIME_DIFFERENCE_AT_DC = 0xC0000133
    FS_DRIVER_REQUIRED = 0xC000019C
    DFS_UNAVAILABLE = 0xC000026D
    MUTUAL_AUTHENTICATION_FAILED = 0xC00002C3
    USER_SESSION_DELETED = 0xC0000203
    INVALID_NETWORK_RESPONSE = 0xC00000C3
    FILE_NOT_AVAILABLE = 0xC0000467
    # More names, so a message shows a name rather than a number ([MS-ERREF] 2.3.1).
    MORE_ENTRIES = 0x00000105
    NO_MORE_ENTRIES = 0x8000001A
    ACCESS_VIOLATION = 0xC0000005
    WRONG_VOLUME = 0xC0000012
    NO_MEDIA_IN_DEVICE = 0xC0000013
    UNRECOGNIZED_MEDIA = 0xC0000014
    ALREADY_COMMITTED = 0xC0000021
    NOT_LOCKED = 0xC000002A
    DATA_OVERRUN = 0xC000003C
    QUOTA_EXCEEDED = 0xC0000044
    EAS_NOT_SUPPORTED = 0xC000004F
    NO_LOGON_SERVERS = 0xC000005E
    NO_SUCH_LOGON_SESSION = 0xC000005F
    NO_SUCH_PRIVILEGE = 0xC0000060
    INVALID_ACCOUNT_NAME = 0xC0000062
    PASSWORD_RESTRICTION = 0xC000006C
    INVALID_WORKSTATION = 0xC0000070
    NO_TOKEN = 0xC000007C
    RANGE_NOT_LOCKED = 0xC000007E
    FILE_INVALID = 0xC0000098
    DEVICE_NOT_CONNECTED = 0xC000009D
    MEDIA_WRITE_PROTECTED = 0xC00000A2
    DEVICE_NOT_READY = 0xC00000A3
    PIPE_NOT_AVAILABLE = 0xC00000AC
    INVALID_PIPE_STATE = 0xC00000AD
    PIPE_BUSY = 0xC00000AE
    PIPE_DISCONNECTED = 0xC00000B0
    PIPE_CLOSING = 0xC00000B1
    IO_TIMEOUT = 0xC00000B5
    FILE_FORCED_CLOSED = 0xC00000B6
    DUPLICATE_NAME = 0xC00000BD
    BAD_NETWORK_PATH = 0xC00000BE
    NETWORK_BUSY = 0xC00000BF
    DEVICE_DOES_NOT_EXIST = 0xC00000C0
    UNEXPECTED_NETWORK_ERROR = 0xC00000C4
    BAD_DEVICE_TYPE = 0xC00000CB
    TOO_MANY_NAMES = 0xC00000CD
    TOO_MANY_SESSIONS = 0xC00000CE
    SHARING_PAUSED = 0xC00000CF
    NOT_SAME_DEVICE = 0xC00000D4
    FILE_RENAMED = 0xC00000D5
    PIPE_EMPTY = 0xC00000D9
    UNEXPECTED_IO_ERROR = 0xC00000E9
    FILE_CORRUPT_ERROR = 0xC0000102
    TOO_MANY_OPENED_FILES = 0xC000011F
    INVALID_COMPUTER_NAME = 0xC0000122
    FILE_DELETED = 0xC0000123
    LOCAL_DISCONNECT = 0xC000013B
    REMOTE_DISCONNECT = 0xC000013C
    REMOTE_RESOURCES = 0xC000013D
    LINK_FAILED = 0xC000013E
    LINK_TIMEOUT = 0xC000013F
    INVALID_CONNECTION = 0xC0000140
    INVALID_ADDRESS = 0xC0000141
    LOGON_TYPE_NOT_GRANTED = 0xC000015B
    INVALID_DEVICE_STATE = 0xC0000184
    NETLOGON_NOT_STARTED = 0xC0000192
    ACCOUNT_EXPIRED = 0xC0000193
    INSUFF_SERVER_RESOURCES = 0xC0000205
    INVALID_BUFFER_SIZE = 0xC0000206
    INVALID_ADDRESS_COMPONENT = 0xC0000207
    CONNECTION_DISCONNECTED = 0xC000020C
    PASSWORD_MUST_CHANGE = 0xC0000224
    RETRY = 0xC000022D
    DOMAIN_CONTROLLER_NOT_FOUND = 0xC0000233
    ACCOUNT_LOCKED_OUT = 0xC0000234
    CONNECTION_REFUSED = 0xC0000236
    GRACEFUL_DISCONNECT = 0xC0000237
    CONNECTION_INVALID = 0xC000023A
    NETWORK_UNREACHABLE = 0xC000023C
    HOST_UNREACHABLE = 0xC000023D
    PROTOCOL_UNREACHABLE = 0xC000023E
    PORT_UNREACHABLE = 0xC000023F
    REQUEST_ABORTED = 0xC0000240
    CONNECTION_ABORTED = 0xC0000241
    PATH_NOT_COVERED = 0xC0000257
    VOLUME_DISMOUNTED = 0xC000026E
    NOT_A_REPARSE_POINT = 0xC0000275
    DIRECTORY_IS_A_REPARSE_POINT = 0xC0000281
    DOWNGRADE_DETECTED = 0xC0000388
    SERVER_UNAVAILABLE = 0xC0000466
    SMB_BAD_COMMAND = 0x00160002  # DOS error class ERRSRV/ERRbadcmd mapped by some servers
    ACCESS_DENIED_DOS = 0x00050001

    def __new__(cls, value: int) -> NtStatus:
        """The member whose value is ``value`` (ValueError if none is)."""
        member = _BY_VALUE.get(value)
        if member is None:
            raise ValueError(f"{value!r} is not a valid NtStatus")
        return member

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<NtStatus.{self.name}: {int(self)}>"

    __str__ = int.__repr__
    __format__ = int.__format__

    def __reduce__(self):
        return NtStatus, (int(self),)

    def __copy__(self) -> NtStatus:
        return self

    def __deepcopy__(self, memo) -> NtStatus:
        return self

    @classmethod
    def coerce(cls, value: int):
        """The member for ``value`` if known, else the plain int."""
        member = _BY_VALUE.get(value)
        return int(value) if member is None else member


_BY_VALUE: Dict[int, NtStatus] = {}
_BY_NAME: Dict[str, NtStatus] = {}


def _make_members() -> None:
    """Turn the class's ``NAME = value`` ints into NtStatus members (the
    first name of a value wins, as an enum's aliases)."""
    for name, value in list(vars(NtStatus).items()):
        if type(value) is not int or not name.isupper():
            continue
        member = _BY_VALUE.get(value)
        if member is None:
            member = int.__new__(NtStatus, value)
            member.name = name
            _BY_VALUE[value] = member
        _BY_NAME[name] = member
        setattr(NtStatus, name, member)


_make_members()


def status_name(value: int) -> str:
    """``STATUS_OBJECT_NAME_NOT_FOUND`` for a known value, hex otherwise."""
    try:
        return "STATUS_" + NtStatus(value).name
    except ValueError:
        return f"NTSTATUS 0x{int(value) & 0xFFFFFFFF:08x}"


def is_error(value: int) -> bool:
    """Severity bits 11: an error (warnings like BUFFER_OVERFLOW are not)."""
    return (value >> 30) == 0x3
