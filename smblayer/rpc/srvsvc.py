"""srvsvc ([MS-SRVS]) NetrShareEnum at level 1: the share list that
``smbclient -L`` prints."""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..records import FrozenRecord
from .dcerpc import RpcError, RpcPipe
from .ndr import NdrError, NdrReader, NdrWriter

SRVSVC_UUID = "4b324fc8-1670-01d3-1278-5a47bf6ee188"
SRVSVC_VERSION = (3, 0)
SRVSVC_PIPE = "srvsvc"
OPNUM_NETR_SHARE_ENUM = 15

STYPE_DISKTREE = 0x00000000
STYPE_PRINTQ = 0x00000001
STYPE_DEVICE = 0x00000002
STYPE_IPC = 0x00000003
STYPE_MASK = 0x000000FF
STYPE_TEMPORARY = 0x40000000
STYPE_SPECIAL = 0x80000000
_KINDS = {STYPE_DISKTREE: "Disk", STYPE_PRINTQ: "Printer", STYPE_DEVICE: "Device",
          STYPE_IPC: "IPC"}


class ShareInfo(FrozenRecord):
    """One share: ``name``, ``type`` (STYPE_* bits), ``comment``."""

    __slots__ = ("name", "type", "comment")

    def __init__(self, name: str, type: int, comment: str) -> None:
        self._init(name, type, comment)

    @property
    def kind(self) -> str:
        """"Disk", "Printer", "Device" or "IPC" (as smbclient -L prints)."""
        return _KINDS.get(self.type & STYPE_MASK, f"0x{self.type:x}")

    @property
    def special(self) -> bool:
        """An administrative share (IPC$, C$, ...)."""
        return bool(self.type & STYPE_SPECIAL)


def share_enum_request(server: str, resume: int = 0, level: int = 1) -> bytes:
    """NetrShareEnum request stub ([MS-SRVS] 3.1.4.8), level 1."""
    w = NdrWriter()
    w.unique_wstring(server)                   # ServerName
    w.u32(level)                               # InfoStruct.Level
    w.u32(level)                               # union switch
    w.pointer(True)                            # -> SHARE_INFO_1_CONTAINER
    w.u32(0)                                   #    EntriesRead
    w.pointer(False)                           #    Buffer (NULL)
    w.u32(0xFFFFFFFF)                          # PreferedMaximumLength
    w.pointer(True)                            # ResumeHandle
    w.u32(resume)
    return w.getvalue()


def parse_share_enum_response(stub: bytes) -> Tuple[List[ShareInfo], int, Optional[int]]:
    """(shares, total entries, resume handle or None); RpcError for a
    WERROR other than success / ERROR_MORE_DATA."""
    r = NdrReader(stub)
    try:
        level = r.u32()
        switch = r.u32()
        if level != 1 or switch != 1:
            raise RpcError(f"NetrShareEnum answered level {level}/{switch}, not 1")
        shares: List[ShareInfo] = []
        if r.pointer():
            count = r.count(len(stub))
            buffer = r.pointer()
            if buffer:
                n = r.count(len(stub) // 12)
                if n != count:
                    raise RpcError(f"NetrShareEnum: {n} entries in the array, {count} read")
                fixed = [(r.pointer(), r.u32(), r.pointer()) for _ in range(n)]
                for name_ptr, stype, remark_ptr in fixed:
                    name = r.wstring() if name_ptr else ""
                    remark = r.wstring() if remark_ptr else ""
                    shares.append(ShareInfo(name, stype, remark))
        total = r.u32()
        resume = r.u32() if r.pointer() else None
        werror = r.u32()
    except NdrError as exc:
        raise RpcError(f"malformed NetrShareEnum response: {exc}") from None
    if werror not in (0, 234):            # ERROR_MORE_DATA: call again with the resume handle
        raise RpcError(f"NetrShareEnum failed: WERROR 0x{werror:08x}", werror)
    return shares, total, resume if werror == 234 else None


def share_enum(pipe: RpcPipe, server: str) -> List[ShareInfo]:
    """Every share, in the server's order (one call unless it has more
    than fits the server's answer)."""
    shares: List[ShareInfo] = []
    resume = 0
    for _ in range(1024):
        got, _total, more = parse_share_enum_response(
            pipe.call(OPNUM_NETR_SHARE_ENUM, share_enum_request(server, resume)))
        shares.extend(got)
        if more is None or not got:
            return shares
        resume = more
    raise RpcError("NetrShareEnum did not finish")


def open_srvsvc(ipc_tree) -> RpcPipe:
    """Bind srvsvc on an IPC$ tree."""
    return RpcPipe.open(ipc_tree, SRVSVC_PIPE, SRVSVC_UUID, SRVSVC_VERSION)
