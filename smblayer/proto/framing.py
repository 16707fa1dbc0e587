"""Direct-TCP framing ([MS-SMB2] 2.1): a 4-byte big-endian length, then
the SMB message.  The first byte is zero; the next three are the length, so a
frame is at most 0xFFFFFF bytes.

Theory of operation
-------------------
``FrameReader`` is an incremental, sans-I/O parser built for ``recv_into``:
the caller asks for a buffer to fill (``buffer()``), reads into it, and
reports how much arrived (``feed(n)``), which returns the frames completed.
Small frames are parsed out of one reusable buffer (several per read); a
frame too large for it gets a buffer of its own that the socket fills
directly, so a multi-megabyte READ response is never copied.

Placement: for a large frame the reader first offers its head (the first
``claim_head`` bytes) to ``claim(head, length)``.  If that returns a
writable memoryview for the rest of the frame (the READ payload, say, into
the caller's own buffer), the socket fills it directly and the frame comes
out as a ``PlacedFrame``: no allocation, no copy.
"""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Union

MAX_FRAME = 0xFFFFFF
_LENGTH = struct.Struct(">I")
_LENGTH_AT = _LENGTH.unpack_from
#: the prefix of a length known to be in 1..MAX_FRAME (no check: see frame_prefix)
pack_length = _LENGTH.pack

if TYPE_CHECKING:
    Buffer = Union[bytes, bytearray, memoryview]


class FramingError(ValueError):
    """The byte stream is not a valid direct-TCP frame sequence."""


def frame_prefix(length: int) -> bytes:
    """The 4-byte direct-TCP prefix for a message of ``length`` bytes."""
    if not 0 < length <= MAX_FRAME:
        raise FramingError(f"frame length {length} outside 1..{MAX_FRAME}")
    return _LENGTH.pack(length)


class PlacedFrame:
    """A frame whose tail went straight into a claimed buffer: ``head`` is
    the first bytes (bytes), ``tail`` the memoryview that holds the rest."""

    __slots__ = ("head", "tail")

    def __init__(self, head: bytes, tail: memoryview):
        self.head = head
        self.tail = tail

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)


class FrameReader:
    """Incremental frame parser; see the module docstring."""

    def __init__(self, buffer_size: int = 256 * 1024, claim=None, claim_head: int = 80):
        self._claim = claim
        self._claim_head = claim_head
        self._placed_head = b""
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0          # first unparsed byte in _buf
        self._end = 0            # one past the last received byte in _buf
        self._big: Union[bytearray, None] = None   # a frame that has its own buffer
        self._big_filled = 0

    def buffer(self) -> memoryview:
        """The writable memoryview to receive into next."""
        if self._big is not None:
            return memoryview(self._big)[self._big_filled:]
        if self._end == len(self._buf):
            self._compact()
        return self._view[self._end:]

    def feed(self, nbytes: int) -> List[Buffer]:
        """Account ``nbytes`` received into ``buffer()``; return complete frames
        (SMB messages without the length prefix)."""
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled < len(self._big):
                return []
            frame, self._big = self._big, None
            if self._placed_head:
                head, self._placed_head = self._placed_head, b""
                return [PlacedFrame(head, frame)]
            return [frame]
        # (the parse, in here: one call per read, not two)
        self._end = end = self._end + nbytes
        frames: List[Buffer] = []
        buf = self._buf
        view = self._view
        start = self._start
        while end - start >= 4:
            if buf[start] != 0:
                self._start = start
                raise FramingError(f"bad direct-TCP frame type 0x{buf[start]:02x}")
            length = _LENGTH_AT(buf, start)[0]
            body = start + 4
            if body + length <= end:
                if length == 0:
                    self._start = start
                    raise FramingError("zero-length frame")
                frames.append(bytes(view[body:body + length]))
                start = body + length
                continue
            self._start = start
            if length > len(buf) // 2:
                have = self._end - body
                head = self._claim_head
                if self._claim is not None and have >= head:
                    tail = self._claim(self._view[body:body + head], length)
                    if tail is not None and len(tail) == length - head:
                        # Placement: the rest lands in the claimed buffer.
                        tail[:have - head] = self._view[body + head:self._end]
                        self._placed_head = bytes(self._view[body:body + head])
                        self._big = tail
                        self._big_filled = have - head
                        self._start = self._end = 0
                        return frames
                elif self._claim is not None and have < head:
                    return frames     # wait for the head before deciding
                # Large frame: give it its own buffer and move what we have.
                self._big = bytearray(length)
                self._big[:have] = self._view[body:self._end]
                self._big_filled = have
                self._start = self._end = 0
            return frames
        if start == end:
            self._start = self._end = 0
        else:
            self._start = start
        return frames

    def redirect(self, tail: memoryview) -> bool:
        """If the frame being received goes into ``tail`` (a placement),
        receive the rest of it into a private buffer instead: its owner
        withdrew it.  True if it did."""
        if self._big is None or self._big is not tail:
            return False
        self._big = bytearray(len(tail))
        return True

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (0 at a frame boundary)."""
        if self._big is not None:
            return 4 + self._big_filled
        return self._end - self._start

    def _compact(self) -> None:
        live = self._end - self._start
        self._buf[:live] = self._view[self._start:self._end]
        self._start, self._end = 0, live
