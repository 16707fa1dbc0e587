"""Windows security descriptors, sans-I/O ([MS-DTYP] 2.4).

Theory of operation
-------------------
A file's security descriptor travels as one self-relative blob (QUERY_INFO /
SET_INFO with InfoType SECURITY, [MS-SMB2] 2.2.37 / 2.2.39): a 20-byte header
(revision, control flags, four offsets) followed by the owner SID, the group
SID, the SACL and the DACL wherever the offsets say.  This module turns that
blob into plain objects and back:

* :class:`Sid` -- ``S-1-5-32-544``; ``Sid.parse`` takes the string form (and
  SDDL's two-letter aliases), ``bytes(sid)`` is the wire form, ``sid.name``
  a well-known name where there is one ("BUILTIN\\Administrators").
* :class:`Ace` -- type, flags, access mask, trustee SID (object ACEs keep
  their GUIDs; an ACE type this module does not know keeps its raw body, so
  a descriptor read and written back loses nothing).
* :class:`Acl` -- a list of ACEs with its revision.
* :class:`SecurityDescriptor` -- owner, group, dacl, sacl and ``control``;
  ``from_bytes``/``to_bytes`` for the wire, ``from_sddl``/``to_sddl`` for
  SDDL text ([MS-DTYP] 2.5.1).

Every length and offset from the wire is checked: a malformed descriptor
raises :class:`MalformedSecurity` (an :class:`~smblayer.errors.SmbProtocolError`
and a ``ValueError``), never IndexError/struct.error.  Nothing here does I/O.
"""
from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

from ..errors import SmbProtocolError
from ..records import FrozenRecord, Record
from .smb2 import MalformedMessage

if TYPE_CHECKING:
    import uuid     # imported where a GUID is made: uuid loads platform (cold start)


class MalformedSecurity(SmbProtocolError, MalformedMessage):
    """A security descriptor, ACL, ACE or SID that cannot be parsed."""


# --- AdditionalInformation bits of QUERY_INFO/SET_INFO SECURITY ([MS-SMB2] 2.2.37)
OWNER_SECURITY_INFORMATION = 0x00000001
GROUP_SECURITY_INFORMATION = 0x00000002
DACL_SECURITY_INFORMATION = 0x00000004
SACL_SECURITY_INFORMATION = 0x00000008
LABEL_SECURITY_INFORMATION = 0x00000010
SECURITY_INFORMATION = {"owner": OWNER_SECURITY_INFORMATION,
                        "group": GROUP_SECURITY_INFORMATION,
                        "dacl": DACL_SECURITY_INFORMATION,
                        "sacl": SACL_SECURITY_INFORMATION,
                        "label": LABEL_SECURITY_INFORMATION}


def security_information(info) -> int:
    """The AdditionalInformation bits for ``info``: an int, or names such
    as ("owner", "group", "dacl")."""
    if isinstance(info, int):
        return info
    if isinstance(info, str):
        info = (info,)
    bits = 0
    for name in info:
        try:
            bits |= SECURITY_INFORMATION[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown security information {name!r} "
                             f"(one of {', '.join(SECURITY_INFORMATION)})") from None
    return bits


# --- control flags ([MS-DTYP] 2.4.6)
SE_OWNER_DEFAULTED = 0x0001
SE_GROUP_DEFAULTED = 0x0002
SE_DACL_PRESENT = 0x0004
SE_DACL_DEFAULTED = 0x0008
SE_SACL_PRESENT = 0x0010
SE_SACL_DEFAULTED = 0x0020
SE_DACL_TRUSTED = 0x0040
SE_SERVER_SECURITY = 0x0080
SE_DACL_AUTO_INHERIT_REQ = 0x0100
SE_SACL_AUTO_INHERIT_REQ = 0x0200
SE_DACL_AUTO_INHERITED = 0x0400
SE_SACL_AUTO_INHERITED = 0x0800
SE_DACL_PROTECTED = 0x1000
SE_SACL_PROTECTED = 0x2000
SE_RM_CONTROL_VALID = 0x4000
SE_SELF_RELATIVE = 0x8000

# --- ACE types ([MS-DTYP] 2.4.4.1)
ACCESS_ALLOWED = 0x00
ACCESS_DENIED = 0x01
SYSTEM_AUDIT = 0x02
SYSTEM_ALARM = 0x03
ACCESS_ALLOWED_OBJECT = 0x05
ACCESS_DENIED_OBJECT = 0x06
SYSTEM_AUDIT_OBJECT = 0x07
SYSTEM_ALARM_OBJECT = 0x08
ACCESS_ALLOWED_CALLBACK = 0x09
ACCESS_DENIED_CALLBACK = 0x0A
SYSTEM_MANDATORY_LABEL = 0x11
_SIMPLE_ACES = frozenset({ACCESS_ALLOWED, ACCESS_DENIED, SYSTEM_AUDIT, SYSTEM_ALARM,
                          SYSTEM_MANDATORY_LABEL})
_OBJECT_ACES = frozenset({ACCESS_ALLOWED_OBJECT, ACCESS_DENIED_OBJECT, SYSTEM_AUDIT_OBJECT,
                          SYSTEM_ALARM_OBJECT})
_CALLBACK_ACES = frozenset({ACCESS_ALLOWED_CALLBACK, ACCESS_DENIED_CALLBACK})

# --- ACE flags ([MS-DTYP] 2.4.4.1)
OBJECT_INHERIT_ACE = 0x01
CONTAINER_INHERIT_ACE = 0x02
NO_PROPAGATE_INHERIT_ACE = 0x04
INHERIT_ONLY_ACE = 0x08
INHERITED_ACE = 0x10
SUCCESSFUL_ACCESS_ACE_FLAG = 0x40
FAILED_ACCESS_ACE_FLAG = 0x80
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2

# --- access rights (file and generic, [MS-DTYP] 2.4.3, [MS-SMB2] 2.2.13.1)
FILE_ALL_ACCESS = 0x001F01FF
FILE_GENERIC_READ = 0x00120089
FILE_GENERIC_WRITE = 0x00120116
FILE_GENERIC_EXECUTE = 0x001200A0
DELETE = 0x00010000
READ_CONTROL = 0x00020000
WRITE_DAC = 0x00040000
WRITE_OWNER = 0x00080000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000

_SID_HEAD = struct.Struct("<BB6s")
_ACE_HEAD = struct.Struct("<BBH")
_ACL_HEAD = struct.Struct("<BBHHH")
_SD_HEAD = struct.Struct("<BBHIIII")
_U32 = struct.Struct("<I")
MAX_SUB_AUTHORITIES = 15
_SID_RE = re.compile(r"^S-1-(\d+)((?:-\d+){0,15})$", re.IGNORECASE)


class Sid(FrozenRecord):
    """A security identifier ([MS-DTYP] 2.4.2): ``str(sid)`` is "S-1-..."."""

    __slots__ = ("authority", "sub_authorities", "revision")

    def __init__(self, authority: int, sub_authorities: Tuple[int, ...] = (),
                 revision: int = 1) -> None:
        self._init(authority, sub_authorities, revision)

    @classmethod
    def parse(cls, text: str) -> "Sid":
        """From "S-1-5-32-544" or an SDDL alias ("BA", "WD", ...)."""
        if not isinstance(text, str):
            raise TypeError(f"a SID is a string, not {type(text).__name__}")
        alias = SDDL_ALIASES.get(text.upper())
        if alias is not None:
            text = alias
        m = _SID_RE.match(text.strip())
        if m is None:
            raise ValueError(f"not a SID: {text!r}")
        subs = tuple(int(x) for x in m.group(2).split("-")[1:])
        authority = int(m.group(1))
        if authority >= 1 << 48 or any(s >= 1 << 32 for s in subs):
            raise ValueError(f"SID value out of range: {text!r}")
        return cls(authority, subs)

    @classmethod
    def unpack_from(cls, buf, offset: int = 0) -> Tuple["Sid", int]:
        """(the SID at ``offset``, its size in bytes)."""
        end = len(buf)
        if offset < 0 or offset + _SID_HEAD.size > end:
            raise MalformedSecurity(f"SID truncated at offset {offset}")
        revision, count, authority = _SID_HEAD.unpack_from(buf, offset)
        if revision != 1:
            raise MalformedSecurity(f"SID revision {revision}")
        if count > MAX_SUB_AUTHORITIES:
            raise MalformedSecurity(f"SID with {count} sub-authorities")
        size = _SID_HEAD.size + 4 * count
        if offset + size > end:
            raise MalformedSecurity(f"SID truncated at offset {offset}")
        subs = struct.unpack_from(f"<{count}I", buf, offset + _SID_HEAD.size)
        return cls(int.from_bytes(authority, "big"), subs), size

    def __bytes__(self) -> bytes:
        return _SID_HEAD.pack(self.revision, len(self.sub_authorities),
                              self.authority.to_bytes(6, "big")) + \
            struct.pack(f"<{len(self.sub_authorities)}I", *self.sub_authorities)

    def __str__(self) -> str:
        return "S-1-" + "-".join(str(x) for x in (self.authority,) + self.sub_authorities)

    def __repr__(self) -> str:
        return f"Sid({str(self)!r})"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Sid.parse(other)
            except ValueError:
                return False
        if not isinstance(other, Sid):
            return NotImplemented
        return (self.authority, self.sub_authorities) == \
            (other.authority, other.sub_authorities)

    def __hash__(self) -> int:
        return hash((self.authority, self.sub_authorities))

    @property
    def name(self) -> Optional[str]:
        """The well-known name ("Everyone", "BUILTIN\\Administrators"), or None."""
        return WELL_KNOWN_NAMES.get(str(self))

    @property
    def rid(self) -> int:
        """The last sub-authority (the relative id of a domain account)."""
        return self.sub_authorities[-1] if self.sub_authorities else 0


# SDDL SID aliases ([MS-DTYP] 2.5.1.1) that need no domain, and well-known names.
SDDL_ALIASES: Dict[str, str] = {
    "WD": "S-1-1-0", "CO": "S-1-3-0", "CG": "S-1-3-1", "OW": "S-1-3-4",
    "NU": "S-1-5-2", "IU": "S-1-5-4", "SU": "S-1-5-6", "AN": "S-1-5-7",
    "PS": "S-1-5-10", "AU": "S-1-5-11", "RC": "S-1-5-12", "SY": "S-1-5-18",
    "LS": "S-1-5-19", "NS": "S-1-5-20", "BA": "S-1-5-32-544", "BU": "S-1-5-32-545",
    "BG": "S-1-5-32-546", "PU": "S-1-5-32-547", "AO": "S-1-5-32-548",
    "SO": "S-1-5-32-549", "PO": "S-1-5-32-550", "BO": "S-1-5-32-551",
    "RE": "S-1-5-32-552", "RU": "S-1-5-32-554", "RD": "S-1-5-32-555",
    "NO": "S-1-5-32-556", "MU": "S-1-5-32-558", "LU": "S-1-5-32-559",
    "IS": "S-1-5-32-568", "CY": "S-1-5-32-569", "ER": "S-1-5-32-573",
    "LW": "S-1-16-4096", "ME": "S-1-16-8192", "HI": "S-1-16-12288", "SI": "S-1-16-16384",
}
_ALIAS_OF = {sid: alias for alias, sid in SDDL_ALIASES.items()}
WELL_KNOWN_NAMES: Dict[str, str] = {
    "S-1-0-0": "NULL SID", "S-1-1-0": "Everyone", "S-1-2-0": "LOCAL",
    "S-1-3-0": "CREATOR OWNER", "S-1-3-1": "CREATOR GROUP", "S-1-3-4": "OWNER RIGHTS",
    "S-1-5-2": "NT AUTHORITY\\NETWORK", "S-1-5-4": "NT AUTHORITY\\INTERACTIVE",
    "S-1-5-6": "NT AUTHORITY\\SERVICE", "S-1-5-7": "NT AUTHORITY\\ANONYMOUS LOGON",
    "S-1-5-10": "NT AUTHORITY\\SELF", "S-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "S-1-5-18": "NT AUTHORITY\\SYSTEM", "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE",
    "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE",
    "S-1-5-32-544": "BUILTIN\\Administrators", "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests", "S-1-5-32-547": "BUILTIN\\Power Users",
    "S-1-5-32-548": "BUILTIN\\Account Operators", "S-1-5-32-549": "BUILTIN\\Server Operators",
    "S-1-5-32-550": "BUILTIN\\Print Operators", "S-1-5-32-551": "BUILTIN\\Backup Operators",
    "S-1-5-32-552": "BUILTIN\\Replicator",
}

# SDDL ACE types, flags and rights ([MS-DTYP] 2.5.1.1)
_SDDL_TYPES = {"A": ACCESS_ALLOWED, "D": ACCESS_DENIED, "AU": SYSTEM_AUDIT,
               "AL": SYSTEM_ALARM, "OA": ACCESS_ALLOWED_OBJECT, "OD": ACCESS_DENIED_OBJECT,
               "OU": SYSTEM_AUDIT_OBJECT, "OL": SYSTEM_ALARM_OBJECT,
               "XA": ACCESS_ALLOWED_CALLBACK, "XD": ACCESS_DENIED_CALLBACK,
               "ML": SYSTEM_MANDATORY_LABEL}
_SDDL_TYPE_OF = {v: k for k, v in _SDDL_TYPES.items()}
_SDDL_FLAGS = [("OI", OBJECT_INHERIT_ACE), ("CI", CONTAINER_INHERIT_ACE),
               ("NP", NO_PROPAGATE_INHERIT_ACE), ("IO", INHERIT_ONLY_ACE),
               ("ID", INHERITED_ACE), ("SA", SUCCESSFUL_ACCESS_ACE_FLAG),
               ("FA", FAILED_ACCESS_ACE_FLAG)]
_SDDL_MASKS = {"FA": FILE_ALL_ACCESS, "FR": FILE_GENERIC_READ, "FW": FILE_GENERIC_WRITE,
               "FX": FILE_GENERIC_EXECUTE, "GA": GENERIC_ALL, "GR": GENERIC_READ,
               "GW": GENERIC_WRITE, "GX": GENERIC_EXECUTE, "SD": DELETE, "RC": READ_CONTROL,
               "WD": WRITE_DAC, "WO": WRITE_OWNER}
_SDDL_MASK_OF = {v: k for k, v in _SDDL_MASKS.items()}
_SDDL_CONTROL = [("P", SE_DACL_PROTECTED), ("AR", SE_DACL_AUTO_INHERIT_REQ),
                 ("AI", SE_DACL_AUTO_INHERITED)]
_SDDL_SACL_CONTROL = [("P", SE_SACL_PROTECTED), ("AR", SE_SACL_AUTO_INHERIT_REQ),
                      ("AI", SE_SACL_AUTO_INHERITED)]


class Ace(Record):
    """One access control entry: ``type`` (ACCESS_ALLOWED, ...), ``flags``
    (inheritance), ``mask`` (access rights) and ``sid`` (the trustee).
    Object ACEs also carry ``object_type``/``inherited_object_type`` (UUIDs),
    callback ACEs ``application_data``; an unknown type keeps its ``raw`` body."""

    __slots__ = ("type", "flags", "mask", "sid", "object_type", "inherited_object_type",
                 "application_data", "raw")

    def __init__(self, type: int, flags: int, mask: int, sid: Optional[Sid],
                 object_type: Optional[uuid.UUID] = None,
                 inherited_object_type: Optional[uuid.UUID] = None, application_data: bytes = b"",
                 raw: Optional[bytes] = None) -> None:
        self.type = type
        self.flags = flags
        self.mask = mask
        self.sid = sid
        self.object_type = object_type
        self.inherited_object_type = inherited_object_type
        self.application_data = application_data
        self.raw = raw
        self.__post_init__()

    def __post_init__(self) -> None:
        if isinstance(self.sid, str):
            self.sid = Sid.parse(self.sid)

    @classmethod
    def unpack_from(cls, buf, offset: int, end: int) -> Tuple["Ace", int]:
        if offset + _ACE_HEAD.size > end:
            raise MalformedSecurity(f"ACE header truncated at offset {offset}")
        ace_type, flags, size = _ACE_HEAD.unpack_from(buf, offset)
        if size < _ACE_HEAD.size or size % 4 or offset + size > end:
            raise MalformedSecurity(f"ACE size {size} at offset {offset}")
        body = bytes(buf[offset + _ACE_HEAD.size:offset + size])
        if ace_type not in _SIMPLE_ACES | _OBJECT_ACES | _CALLBACK_ACES:
            return cls(ace_type, flags, 0, None, raw=body), size
        if len(body) < 4:
            raise MalformedSecurity("ACE without an access mask")
        mask = _U32.unpack_from(body)[0]
        pos = 4
        object_type = inherited = None
        if ace_type in _OBJECT_ACES:
            if len(body) < 8:
                raise MalformedSecurity("object ACE truncated")
            present = _U32.unpack_from(body, 4)[0]
            pos = 8
            for bit in (ACE_OBJECT_TYPE_PRESENT, ACE_INHERITED_OBJECT_TYPE_PRESENT):
                if present & bit:
                    if pos + 16 > len(body):
                        raise MalformedSecurity("object ACE GUID truncated")
                    import uuid
                    guid = uuid.UUID(bytes_le=body[pos:pos + 16])
                    pos += 16
                    if bit == ACE_OBJECT_TYPE_PRESENT:
                        object_type = guid
                    else:
                        inherited = guid
        sid, sid_size = Sid.unpack_from(body, pos)
        extra = body[pos + sid_size:]
        app = extra if ace_type in _CALLBACK_ACES else b""
        return cls(ace_type, flags, mask, sid, object_type, inherited, app), size

    def __bytes__(self) -> bytes:
        if self.raw is not None:
            body = self.raw
        else:
            if self.sid is None:
                raise ValueError("an ACE needs a trustee SID")
            body = _U32.pack(self.mask & 0xFFFFFFFF)
            if self.type in _OBJECT_ACES:
                present = (ACE_OBJECT_TYPE_PRESENT if self.object_type else 0) | \
                    (ACE_INHERITED_OBJECT_TYPE_PRESENT if self.inherited_object_type else 0)
                body += _U32.pack(present)
                for guid in (self.object_type, self.inherited_object_type):
                    if guid is not None:
                        body += guid.bytes_le
            body += bytes(self.sid) + self.application_data
        body += bytes(-len(body) % 4)
        size = _ACE_HEAD.size + len(body)
        if size > 0xFFFF:
            raise ValueError("ACE too large")
        return _ACE_HEAD.pack(self.type, self.flags, size) + body

    def to_sddl(self) -> str:
        if self.raw is not None:
            raise ValueError(f"ACE type 0x{self.type:02x} has no SDDL form")
        kind = _SDDL_TYPE_OF.get(self.type)
        flags = "".join(name for name, bit in _SDDL_FLAGS if self.flags & bit)
        mask = _SDDL_MASK_OF.get(self.mask, f"0x{self.mask:x}")
        guids = [str(g) if g else "" for g in (self.object_type, self.inherited_object_type)]
        return f"({kind};{flags};{mask};{guids[0]};{guids[1]};{sid_to_sddl(self.sid)})"


def sid_to_sddl(sid: Sid) -> str:
    return _ALIAS_OF.get(str(sid), str(sid))


class Acl(Record):
    """An access control list: ``aces`` in order, ``revision`` 2 (4 with
    object ACEs).  Iterable and indexable like the list."""

    __slots__ = ("aces", "revision")

    def __init__(self, aces: Optional[List[Ace]] = None, revision: int = 2) -> None:
        self.aces = [] if aces is None else aces
        self.revision = revision

    @classmethod
    def unpack_from(cls, buf, offset: int) -> "Acl":
        end = len(buf)
        if offset < 0 or offset + _ACL_HEAD.size > end:
            raise MalformedSecurity(f"ACL truncated at offset {offset}")
        revision, _sbz1, size, count, _sbz2 = _ACL_HEAD.unpack_from(buf, offset)
        if revision not in (2, 4):
            raise MalformedSecurity(f"ACL revision {revision}")
        if size < _ACL_HEAD.size or offset + size > end:
            raise MalformedSecurity(f"ACL size {size} at offset {offset}")
        stop = offset + size
        pos = offset + _ACL_HEAD.size
        aces = []
        for _ in range(count):
            ace, ace_size = Ace.unpack_from(buf, pos, stop)
            aces.append(ace)
            pos += ace_size
        return cls(aces, revision)

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(ace) for ace in self.aces)
        revision = 4 if any(a.type in _OBJECT_ACES for a in self.aces) else self.revision
        size = _ACL_HEAD.size + len(body)
        if size > 0xFFFF or len(self.aces) > 0xFFFF:
            raise ValueError("ACL too large")
        return _ACL_HEAD.pack(revision, 0, size, len(self.aces), 0) + body

    def __iter__(self) -> Iterator[Ace]:
        return iter(self.aces)

    def __len__(self) -> int:
        return len(self.aces)

    def __getitem__(self, index):
        return self.aces[index]

    def append(self, ace: Ace) -> None:
        self.aces.append(ace)

    def _sddl(self) -> str:
        return "".join(ace.to_sddl() for ace in self.aces)


class SecurityDescriptor(Record):
    """A security descriptor: ``owner``/``group`` (Sid or None), ``dacl``/
    ``sacl`` (Acl or None: not present), ``control`` (SE_* flags; the
    PRESENT and SELF_RELATIVE bits follow the fields when written)."""

    __slots__ = ("owner", "group", "dacl", "sacl", "control", "null_dacl")

    def __init__(self, owner: Optional[Sid] = None, group: Optional[Sid] = None,
                 dacl: Optional[Acl] = None, sacl: Optional[Acl] = None,
                 control: int = SE_SELF_RELATIVE, null_dacl: bool = False) -> None:
        self.owner = owner
        self.group = group
        self.dacl = dacl
        self.sacl = sacl
        self.control = control
        self.null_dacl = null_dacl    # DACL present but NULL: everyone has full access
        self.__post_init__()

    def __post_init__(self) -> None:
        if isinstance(self.owner, str):
            self.owner = Sid.parse(self.owner)
        if isinstance(self.group, str):
            self.group = Sid.parse(self.group)
        if isinstance(self.dacl, list):
            self.dacl = Acl(self.dacl)
        if isinstance(self.sacl, list):
            self.sacl = Acl(self.sacl)

    @classmethod
    def from_bytes(cls, buf) -> "SecurityDescriptor":
        """Parse a self-relative descriptor; MalformedSecurity if it is not one."""
        buf = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        if len(buf) < _SD_HEAD.size:
            raise MalformedSecurity(f"security descriptor truncated ({len(buf)} bytes)")
        revision, _sbz1, control, o_owner, o_group, o_sacl, o_dacl = _SD_HEAD.unpack_from(buf)
        if revision != 1:
            raise MalformedSecurity(f"security descriptor revision {revision}")
        if not control & SE_SELF_RELATIVE:
            raise MalformedSecurity("security descriptor is not self-relative")
        for name, off in (("owner", o_owner), ("group", o_group), ("SACL", o_sacl),
                          ("DACL", o_dacl)):
            if off and (off < _SD_HEAD.size or off >= len(buf)):
                raise MalformedSecurity(f"{name} offset {off} out of bounds")
        sd = cls(control=control)
        if o_owner:
            sd.owner = Sid.unpack_from(buf, o_owner)[0]
        if o_group:
            sd.group = Sid.unpack_from(buf, o_group)[0]
        if control & SE_SACL_PRESENT and o_sacl:
            sd.sacl = Acl.unpack_from(buf, o_sacl)
        if control & SE_DACL_PRESENT:
            if o_dacl:
                sd.dacl = Acl.unpack_from(buf, o_dacl)
            else:
                sd.null_dacl = True
        return sd

    def to_bytes(self) -> bytes:
        """The self-relative form (owner, group, SACL, DACL after the header)."""
        control = (self.control | SE_SELF_RELATIVE) & ~(SE_DACL_PRESENT | SE_SACL_PRESENT)
        parts: List[bytes] = []
        offsets = {}
        pos = _SD_HEAD.size
        for name, value in (("sacl", self.sacl), ("dacl", self.dacl), ("owner", self.owner),
                            ("group", self.group)):
            if value is None:
                offsets[name] = 0
                continue
            data = bytes(value)
            offsets[name] = pos
            parts.append(data)
            pos += len(data)
        if self.sacl is not None:
            control |= SE_SACL_PRESENT
        if self.dacl is not None or self.null_dacl:
            control |= SE_DACL_PRESENT
        return _SD_HEAD.pack(1, 0, control, offsets["owner"], offsets["group"],
                             offsets["sacl"], offsets["dacl"]) + b"".join(parts)

    __bytes__ = to_bytes

    # -- SDDL ---------------------------------------------------------------------------

    def to_sddl(self) -> str:
        """SDDL text, e.g. "O:BAG:BAD:P(A;OICI;FA;;;SY)" (ACE types without an
        SDDL form raise ValueError)."""
        out = []
        if self.owner is not None:
            out.append("O:" + sid_to_sddl(self.owner))
        if self.group is not None:
            out.append("G:" + sid_to_sddl(self.group))
        if self.dacl is not None or self.null_dacl:
            flags = "".join(n for n, bit in _SDDL_CONTROL if self.control & bit)
            out.append("D:" + flags + ("NO_ACCESS_CONTROL" if self.null_dacl and
                                       self.dacl is None else self.dacl._sddl()))
        if self.sacl is not None:
            flags = "".join(n for n, bit in _SDDL_SACL_CONTROL if self.control & bit)
            out.append("S:" + flags + self.sacl._sddl())
        return "".join(out)

    @classmethod
    def from_sddl(cls, text: str) -> "SecurityDescriptor":
        """Parse SDDL text (ValueError if it is not valid SDDL)."""
        sd = cls()
        parts = re.split(r"(?:^|(?<=[)A-Za-z0-9]))([OGDS]):", text.strip())
        if parts[0].strip():
            raise ValueError(f"SDDL: unexpected {parts[0]!r}")
        for key, value in zip(parts[1::2], parts[2::2]):
            value = value.strip()
            if key in "OG":
                setattr(sd, "owner" if key == "O" else "group", Sid.parse(value))
                continue
            m = re.match(r"^([A-Z_]*?)(\(.*\))?$", value)
            if m is None:
                raise ValueError(f"SDDL: bad ACL {value!r}")
            flags, aces = m.group(1), m.group(2) or ""
            table = _SDDL_CONTROL if key == "D" else _SDDL_SACL_CONTROL
            if flags == "NO_ACCESS_CONTROL":
                sd.null_dacl = key == "D"
                continue
            for name, bit in table:
                if name in flags:
                    sd.control |= bit
                    flags = flags.replace(name, "", 1)
            if flags:
                raise ValueError(f"SDDL: unknown ACL flags {flags!r}")
            acl = Acl([_ace_from_sddl(a) for a in re.findall(r"\(([^()]*)\)", aces)])
            if key == "D":
                sd.dacl = acl
            else:
                sd.sacl = acl
        return sd


def _ace_from_sddl(text: str) -> Ace:
    fields = text.split(";")
    if len(fields) != 6:
        raise ValueError(f"SDDL: an ACE has six fields: ({text})")
    kind, flags, rights, obj, inherited, sid = (f.strip() for f in fields)
    if kind.upper() not in _SDDL_TYPES:
        raise ValueError(f"SDDL: unknown ACE type {kind!r}")
    bits = 0
    flags = flags.upper()
    for i in range(0, len(flags), 2):
        names = dict(_SDDL_FLAGS)
        if flags[i:i + 2] not in names:
            raise ValueError(f"SDDL: unknown ACE flag {flags[i:i + 2]!r}")
        bits |= names[flags[i:i + 2]]
    if rights.lower().startswith("0x"):
        mask = int(rights, 16)
    elif rights.isdigit():
        mask = int(rights)
    else:
        mask = 0
        for i in range(0, len(rights), 2):
            name = rights[i:i + 2].upper()
            if name not in _SDDL_MASKS:
                raise ValueError(f"SDDL: unknown access right {name!r}")
            mask |= _SDDL_MASKS[name]
    import uuid
    return Ace(_SDDL_TYPES[kind.upper()], bits, mask, Sid.parse(sid),
               uuid.UUID(obj) if obj else None, uuid.UUID(inherited) if inherited else None)


# --- smbcacls' text format ("ACL:SID:ALLOWED/OI|CI/FULL") ----------------------------

_CONTROL_NAMES = ["OD", "GD", "DP", "DD", "SP", "SD", "DT", "SS", "DC", "SC", "DI", "SI",
                  "PD", "PS", "RM", "SR"]            # bit 0 .. 15 ([MS-DTYP] 2.4.6)
_CACLS_STANDARD = [("READ", 0x001200A9), ("CHANGE", 0x001301BF), ("FULL", 0x001F01FF)]
_CACLS_SPECIAL = [("R", FILE_GENERIC_READ), ("W", FILE_GENERIC_WRITE),
                  ("X", FILE_GENERIC_EXECUTE), ("D", DELETE), ("P", WRITE_DAC),
                  ("O", WRITE_OWNER)]
_CACLS_FLAGS = [("OI", OBJECT_INHERIT_ACE), ("CI", CONTAINER_INHERIT_ACE),
                ("NP", NO_PROPAGATE_INHERIT_ACE), ("IO", INHERIT_ONLY_ACE),
                ("I", INHERITED_ACE), ("SA", SUCCESSFUL_ACCESS_ACE_FLAG),
                ("FA", FAILED_ACCESS_ACE_FLAG)]
_CACLS_TYPES = {"ALLOWED": ACCESS_ALLOWED, "DENIED": ACCESS_DENIED}


def _cacls_mask(mask: int) -> str:
    for name, value in _CACLS_STANDARD:
        if mask == value:
            return name
    left = mask
    names = ""
    for name, value in _CACLS_SPECIAL:
        if mask & value == value:
            names += name
            left &= ~value
    return names if names and not left else f"0x{mask:08x}"


def ace_to_smbcacls(ace: Ace, numeric: bool = False) -> str:
    """One ACE as smbcacls prints it: "SID:ALLOWED/OI|CI/FULL" (trustees
    as SIDs, as smbcacls shows them without LSA name lookups), or with
    ``numeric`` "SID:0/0x3/0x001f01ff"."""
    if numeric:
        return f"{ace.sid}:{ace.type}/0x{ace.flags:x}/0x{ace.mask:08x}"
    kind = {ACCESS_ALLOWED: "ALLOWED", ACCESS_DENIED: "DENIED"}.get(ace.type, str(ace.type))
    flags = "|".join(name for name, bit in _CACLS_FLAGS if ace.flags & bit) or \
        f"0x{ace.flags:x}"
    return f"{ace.sid}:{kind}/{flags}/{_cacls_mask(ace.mask)}"


def to_smbcacls(sd: SecurityDescriptor, numeric: bool = False) -> str:
    """The descriptor in smbcacls' output format (REVISION, CONTROL,
    OWNER, GROUP, one ACL line per DACL entry)."""
    control = sd.control | SE_SELF_RELATIVE | \
        (SE_DACL_PRESENT if sd.dacl is not None or sd.null_dacl else 0) | \
        (SE_SACL_PRESENT if sd.sacl is not None else 0)
    lines = ["REVISION:1"]
    if numeric:
        lines.append(f"CONTROL:0x{control:04x}")
    else:
        lines.append("CONTROL:" + "|".join(_CONTROL_NAMES[bit] for bit in range(15, -1, -1)
                                           if control & (1 << bit)))
    lines.append(f"OWNER:{sd.owner if sd.owner is not None else ''}")
    lines.append(f"GROUP:{sd.group if sd.group is not None else ''}")
    lines.extend("ACL:" + ace_to_smbcacls(ace, numeric) for ace in (sd.dacl or ()))
    return "\n".join(lines) + "\n"


def _cacls_int(text: str, what: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ValueError(f"smbcacls: bad {what} {text!r}") from None


def ace_from_smbcacls(text: str) -> Ace:
    """Parse "SID:TYPE/FLAGS/MASK" (an "ACL:" prefix is allowed), in either
    of smbcacls' forms; the trustee is a SID, an SDDL alias or a well-known
    name such as "Everyone"."""
    if text.startswith("ACL:"):
        text = text[4:]
    who, sep, rest = text.rpartition(":")
    parts = rest.split("/")
    if not sep or len(parts) != 3:
        raise ValueError(f"smbcacls: an ACE is SID:TYPE/FLAGS/MASK, not {text!r}")
    kind, flags_text, mask_text = parts
    if not kind or not mask_text:
        raise ValueError(f"smbcacls: an ACE needs a type and permissions: {text!r}")
    if kind.upper() in _CACLS_TYPES:
        ace_type = _CACLS_TYPES[kind.upper()]
    else:
        ace_type = _cacls_int(kind, "ACE type")
    flags = 0
    if flags_text[:1].isdigit():
        flags = _cacls_int(flags_text, "ACE flags")
    else:
        names = dict(_CACLS_FLAGS)
        for name in filter(None, flags_text.split("|")):
            if name.upper() not in names:
                raise ValueError(f"smbcacls: unknown ACE flag {name!r}")
            flags |= names[name.upper()]
    standard = dict(_CACLS_STANDARD)
    if mask_text[:1].isdigit():
        mask = _cacls_int(mask_text, "access mask")
    elif mask_text.upper() in standard:
        mask = standard[mask_text.upper()]
    else:
        special = dict(_CACLS_SPECIAL)
        mask = 0
        for letter in mask_text.upper():
            if letter not in special:
                raise ValueError(f"smbcacls: unknown permission {letter!r} in {mask_text!r}")
            mask |= special[letter]
    return Ace(ace_type, flags, mask, _trustee(who))


_SID_OF_NAME = {name.lower(): sid for sid, name in WELL_KNOWN_NAMES.items()}


def _trustee(who: str) -> Sid:
    """A SID, an SDDL alias, or a well-known name ("Everyone",
    "BUILTIN\\Administrators"; others need the server's LSA)."""
    sid = _SID_OF_NAME.get(who.strip().lower())
    return Sid.parse(sid if sid is not None else who)


__all__ = ["Sid", "Ace", "Acl", "SecurityDescriptor", "MalformedSecurity",
           "security_information", "SDDL_ALIASES", "WELL_KNOWN_NAMES", "to_smbcacls",
           "ace_to_smbcacls", "ace_from_smbcacls"]
