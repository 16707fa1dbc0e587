"""The little NDR (DCE 1.1 transfer syntax, NDR20, little-endian) that
srvsvc needs: aligned integers, unique pointers, conformant varying
strings and conformant arrays.  Sans-I/O; a bad buffer raises
:class:`NdrError` (a ``ValueError``)."""
from __future__ import annotations

import struct
from typing import Optional

NDR_UUID = "8a885d04-1ceb-11c9-9fe8-08002b104860"
NDR_VERSION = 2

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class NdrError(ValueError):
    """A stub that cannot be decoded."""


class NdrWriter:
    def __init__(self):
        self.buf = bytearray()
        self._next_ref = 0x00020000

    def align(self, n: int) -> None:
        self.buf += bytes(-len(self.buf) % n)

    def u16(self, value: int) -> None:
        self.align(2)
        self.buf += _U16.pack(value)

    def u32(self, value: int) -> None:
        self.align(4)
        self.buf += _U32.pack(value & 0xFFFFFFFF)

    def pointer(self, present: bool) -> None:
        """A unique/full pointer's referent id (0 for NULL)."""
        if present:
            self.u32(self._next_ref)
            self._next_ref += 4
        else:
            self.u32(0)

    def wstring(self, text: str) -> None:
        """A conformant varying, NUL-terminated UTF-16 string."""
        data = (text + "\0").encode("utf-16-le")
        count = len(data) // 2
        self.u32(count)
        self.u32(0)
        self.u32(count)
        self.buf += data
        self.align(4)

    def unique_wstring(self, text: Optional[str]) -> None:
        self.pointer(text is not None)
        if text is not None:
            self.wstring(text)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class NdrReader:
    def __init__(self, data):
        self.data = memoryview(data)
        self.pos = 0

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise NdrError(f"NDR stub truncated at {self.pos} (+{n} of {len(self.data)})")
        view = self.data[self.pos:self.pos + n]
        self.pos += n
        return view

    def u16(self) -> int:
        self.align(2)
        return _U16.unpack(self._take(2))[0]

    def u32(self) -> int:
        self.align(4)
        return _U32.unpack(self._take(4))[0]

    def pointer(self) -> int:
        return self.u32()

    def count(self, limit: int) -> int:
        """An array/string size, bounded by what the stub could hold."""
        n = self.u32()
        if n > limit:
            raise NdrError(f"NDR count {n} exceeds the stub size")
        return n

    def wstring(self) -> str:
        room = len(self.data)
        _max = self.count(room)
        offset = self.count(room)
        actual = self.count(room)
        if offset > _max or actual > _max - offset:
            raise NdrError("NDR string offset/length inconsistent")
        text = bytes(self._take(2 * actual)).decode("utf-16-le", "replace")
        self.align(4)
        return text.rstrip("\0")
