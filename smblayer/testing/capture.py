"""Recording the SMB messages that pass a :class:`FaultProxy`.

``FrameLog`` is a proxy tap (``proxy.tap(log)``): it follows the direct-TCP
framing (4-byte length prefix) of every proxied connection in each direction
and records the header of every SMB2 message it sees, the elements of a
compound included.  Payloads are skipped, not stored, so a long transfer
costs no memory.  Encrypted (transform) and SMB1 frames are recorded with
``header=None`` and their protocol id in ``kind``.

    log = FrameLog()
    proxy.tap(log)
    ...
    echoes = log.messages("c2s", smb2.Command.ECHO)
    assert all(m.header.session_id == session.session_id for m in echoes)
"""
from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..proto import smb2

__all__ = ["FrameLog", "Captured"]

_PREFIX = struct.Struct(">I")
_KEEP = 4096          # bytes kept of each frame: room for the headers of a compound


@dataclass(frozen=True)
class Captured:
    """One SMB message seen by the proxy."""

    connection: int            # the proxy's connection number (0 = first accepted)
    direction: str             # "c2s" or "s2c"
    time: float                # time.monotonic() when its frame was complete
    kind: bytes                # b"\xfeSMB", b"\xfdSMB" (encrypted), b"\xffSMB" (SMB1)...
    header: Optional[smb2.Header]   # the SMB2 header; None for other kinds


class _Stream:
    """Framing state of one direction of one connection."""

    __slots__ = ("head", "length", "skip")

    def __init__(self):
        self.head = bytearray()    # the prefix, then up to _KEEP bytes of the frame
        self.length = -1           # frame length once the prefix is in
        self.skip = 0              # frame bytes beyond _KEEP still to pass over


class FrameLog:
    """A FaultProxy tap recording SMB2 message headers (see the module doc)."""

    def __init__(self, directions: Tuple[str, ...] = ("c2s", "s2c")):
        self.directions = frozenset(directions)
        self._lock = threading.Lock()
        self._streams: Dict[Tuple[int, str], _Stream] = {}
        self._messages: List[Captured] = []

    def __call__(self, connection: int, direction: str, data: bytes) -> None:
        if direction not in self.directions:
            return
        stream = self._streams.get((connection, direction))
        if stream is None:
            stream = self._streams[(connection, direction)] = _Stream()
        view = memoryview(data)
        while view:
            if stream.skip:
                n = min(stream.skip, len(view))
                stream.skip -= n
                view = view[n:]
                continue
            if stream.length < 0:
                need = 4 - len(stream.head)
                stream.head += view[:need]
                view = view[need:]
                if len(stream.head) == 4:
                    stream.length = _PREFIX.unpack(stream.head)[0]
                    stream.head.clear()
                continue
            keep = min(stream.length, _KEEP)
            need = keep - len(stream.head)
            stream.head += view[:need]
            view = view[need:]
            if len(stream.head) == keep:
                self._record(connection, direction, bytes(stream.head))
                stream.skip = stream.length - keep
                stream.length = -1
                stream.head.clear()

    def _record(self, connection: int, direction: str, frame: bytes) -> None:
        now = time.monotonic()
        kind = frame[:4]
        found = []
        if kind == smb2.PROTOCOL_ID:
            offset = 0
            while offset + smb2.HEADER_SIZE <= len(frame):
                try:
                    header = smb2.parse_header(frame, offset)
                except smb2.MalformedMessage:
                    break
                found.append(Captured(connection, direction, now, kind, header))
                if not header.next_command:
                    break
                offset += header.next_command
        if not found:
            found.append(Captured(connection, direction, now, kind, None))
        with self._lock:
            self._messages.extend(found)

    def messages(self, direction: Optional[str] = None,
                 command: Optional[int] = None) -> List[Captured]:
        """The messages recorded so far, oldest first; ``command`` keeps the
        SMB2 messages of that command only."""
        with self._lock:
            found = list(self._messages)
        return [m for m in found
                if (direction is None or m.direction == direction)
                and (command is None or (m.header is not None and m.header.command == command))]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
