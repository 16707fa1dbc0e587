"""A minimal transfer progress bar for the command line.

It writes one carriage-return-rewritten line to stderr, only when stderr is
a terminal, at most ~10 times a second:

    remote.bin  12.0 MiB / 64.0 MiB  18%  [####......]  105.2 MB/s  ETA 0:03
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

_WIDTH = 20          # characters of the bar itself
_INTERVAL = 0.1      # seconds between redraws


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def format_duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(n)`` after each chunk, ``close()`` at the end (or use ``with``).

    ``total`` may be None (unknown size: no percent, bar or ETA).  ``enabled``
    defaults to "stream is a TTY"; when disabled every method is a cheap no-op.
    """

    def __init__(self, label: str, total: Optional[int] = None,
                 stream: Optional[TextIO] = None, enabled: Optional[bool] = None):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.done = 0
        self.start = time.monotonic()
        self._next_draw = 0.0
        self._line_len = 0
        self._closed = False

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now >= self._next_draw:
                self._next_draw = now + _INTERVAL
                self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, now: float) -> str:
        """The status line for the current state."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            parts.append(f"{format_bytes(self.done)} / {format_bytes(self.total)}")
            parts.append(f"{fraction * 100:3.0f}%")
            parts.append("[" + "#" * filled + "." * (_WIDTH - filled) + "]")
        else:
            parts.append(format_bytes(self.done))
        parts.append(f"{rate / 1e6:.1f} MB/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append("ETA " + format_duration((self.total - self.done) / rate))
        elif self._closed:
            parts.append("in " + format_duration(elapsed))
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        line = self.render(now)
        pad = " " * max(self._line_len - len(line), 0)
        self._line_len = len(line)
        try:
            self.stream.write("\r" + line + pad)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False
