"""The command line's progress bar (a minimal one) and status line.

It writes one carriage-return-rewritten line to stderr, only when stderr is
a terminal, at most ~10 times a second, never wider than the terminal:

    remote.bin  12.0 MiB / 64.0 MiB  18%  [####......]  105.2 MB/s  ETA 0:03

The line belongs to a ``StatusLine``; log messages written through a
``StatusLineHandler`` on the same StatusLine first clear the bar, so a
message never shares a line with it, and the bar is drawn again below.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
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


def terminal_columns(default: int = 80) -> int:
    """Columns of the terminal ($COLUMNS first, then the tty's size)."""
    import shutil       # not at module level: it loads bz2 and lzma (cold start)
    return shutil.get_terminal_size((default, 24)).columns


class StatusLine:
    """The bottom line of a terminal stream, shared by a progress bar and
    log messages (one lock: any thread may log)."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._text = ""          # what the status line shows now ("" = nothing)

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):
            return False

    def show(self, text: str) -> None:
        """Replace the status line with ``text``."""
        with self._lock:
            pad = " " * max(len(self._text) - len(text), 0)
            self._write("\r" + text + pad)
            self._text = text

    def finish(self) -> None:
        """End the status line where it is (it stays on screen)."""
        with self._lock:
            if self._text:
                self._text = ""
                self._write("\n")

    def message(self, text: str) -> None:
        """Write a whole line above the status line."""
        with self._lock:
            status = self._text
            if status:
                self._write("\r" + " " * len(status) + "\r")
            self._write(text + "\n" + (status if status else ""))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


class StatusLineHandler(logging.Handler):
    """A logging handler writing through a StatusLine."""

    def __init__(self, line: StatusLine):
        super().__init__()
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line.message(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class Progress:
    """``update(n)`` after each chunk, ``close()`` at the end (or use ``with``).

    ``total`` may be None (unknown size: no percent, bar or ETA).  ``enabled``
    defaults to "stream is a TTY"; when disabled every method is a cheap no-op.
    ``line``: the StatusLine to draw on (log messages through the same one
    never mix with the bar); ``stream``: a stream for a line of its own.
    """

    def __init__(self, label: str, total: Optional[int] = None,
                 stream: Optional[TextIO] = None, enabled: Optional[bool] = None,
                 line: Optional[StatusLine] = None):
        self.label = label
        self.total = total
        self.line = line if line is not None else StatusLine(stream)
        self.stream = self.line.stream
        if enabled is None:
            enabled = self.line.isatty()
        self.enabled = enabled
        self.done = 0
        self.start = time.monotonic()
        self._next_draw = 0.0
        self._closed = False

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now >= self._next_draw:
                self._next_draw = now + _INTERVAL
                self.line.show(self.render(now))

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self.line.show(self.render(time.monotonic()))
            self.line.finish()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, now: float, columns: Optional[int] = None) -> str:
        """The status line for the current state, at most ``columns`` - 1
        characters (default: the terminal's width)."""
        width = (columns or terminal_columns()) - 1
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        fields = []           # (text, priority: lower goes first when short of room)
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            fields.append((f"{format_bytes(self.done)} / {format_bytes(self.total)}", 9))
            fields.append((f"{fraction * 100:3.0f}%", 8))
            fields.append(("[" + "#" * filled + "." * (_WIDTH - filled) + "]", 2))
        else:
            fields.append((format_bytes(self.done), 9))
        fields.append((f"{rate / 1e6:.1f} MB/s", 4))
        if self.total and rate > 0 and self.done < self.total:
            fields.append(("ETA " + format_duration((self.total - self.done) / rate), 6))
        elif self._closed:
            fields.append(("in " + format_duration(elapsed), 6))
        for cut in (0, 2, 4, 6, 8):
            kept = [text for text, prio in fields if prio > cut]
            rest = "  ".join(kept)
            room = width - len(rest) - 2
            if room >= min(len(self.label), 12):
                return _shorten(self.label, room) + "  " + rest
        return _shorten(self.label + "  " + "  ".join(t for t, _p in fields), width)


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters ("..." marks it)."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:max(width, 0)]
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


PROGRESS_MIN = 1024 * 1024        # no progress bar below this size


def progress_enabled(size: Optional[int], wanted: Optional[bool] = None) -> Optional[bool]:
    """Whether to draw a bar for a transfer of ``size`` bytes: ``wanted``
    if given, never below PROGRESS_MIN, else None (the bar decides: its
    stream is a terminal)."""
    if wanted is not None:
        return wanted
    if size is not None and size < PROGRESS_MIN:
        return False
    return None


def new_bar(args, label: str, size: Optional[int]) -> Progress:
    """A progress bar on the command's status line (shown on a terminal
    for transfers of 1 MiB or more, or of unknown size)."""
    return Progress(label, size, enabled=progress_enabled(size),
                    line=getattr(args, "status_line", None))
