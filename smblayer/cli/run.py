"""Running a parsed command line: the command's connections, logging to
the status line, Ctrl-C, and the error mapping.  Every failure is one line
on stderr, ``smblayer: <command>: <what failed>: <why>``, and an exit
status: 0 success, 1 an SMB or I/O error, 2 a usage error, 130 interrupted.
"""
from __future__ import annotations

import _signal                 # signal.py's enum conversions cost every start ~4 M instructions
import contextlib
import importlib
import logging
import os
import sys
import threading
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Iterator, Optional

from ..errors import SmbAuthError, SmbError, SmbStatusError
from ..proto.status import NtStatus, status_name
from .connections import Connections, NoPasswordError
from .progress import StatusLine, StatusLineHandler
from .words import PROG, WILDCARD_COMMANDS, UsageError, has_wildcard, is_url

log = logging.getLogger("smblayer")


# Builtin class of an SmbStatusError -> the words a shell user expects.
_ERROR_TEXT = ((FileNotFoundError, "No such file or directory"),
               (FileExistsError, "File exists"),
               (PermissionError, "Permission denied"),
               (IsADirectoryError, "Is a directory"),
               (NotADirectoryError, "Not a directory"))


def describe_error(exc: BaseException, url: Optional[str] = None) -> str:
    """A one-line message for an error raised by a command."""
    if isinstance(exc, SmbStatusError):
        status = status_name(exc.status)
        where = url or exc.path or ""
        if isinstance(exc, NoPasswordError):
            return f"authentication failed ({status}): {exc.strerror}"
        if isinstance(exc, SmbAuthError):
            why = exc.strerror if exc.strerror != status else ""
            return f"authentication failed ({status}){': ' + why if why else ''}"
        hint = getattr(exc, "hint", None)
        if not hint and exc.status == NtStatus.OBJECT_NAME_INVALID and has_wildcard(where):
            hint = f"wildcards work with {', '.join(WILDCARD_COMMANDS)} only"
        hint = f"; {hint}" if hint else ""
        if exc.status == NtStatus.BAD_NETWORK_NAME:
            return f"no such share: {where} ({status})"
        for kind, text in _ERROR_TEXT:
            if isinstance(exc, kind):
                return f"{text}: {where} ({status}){hint}"
        return f"{where + ': ' if where else ''}{status}{hint}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, SmbError):
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    text = " ".join(str(exc).split())
    if isinstance(exc, SmbError) or not text:
        return text or "failed"
    if isinstance(exc, ValueError):
        return f"invalid request: {text}"
    return f"internal error: {text} (-vv shows the details)"


def _url_of(args) -> Optional[str]:
    """The URL a failed command was working on, for its error message."""
    for name in ("current_url", "url", "source", "dest"):
        value = getattr(args, name, None)
        if isinstance(value, str) and is_url(value):
            return value
    urls = [u for u in getattr(args, "urls", None) or getattr(args, "paths", None) or ()
            if is_url(u)]
    return urls[0] if len(urls) == 1 else None


@contextlib.contextmanager
def _logging_to(line: StatusLine, verbosity: int) -> Iterator[None]:
    """Log records of the "smblayer" logger go to stderr through ``line``
    (above the progress bar, never on its line): warnings always, and with
    -v / -vv info / debug."""
    handler = StatusLineHandler(line)
    logger = logging.getLogger("smblayer")
    previous = logger.level
    if verbosity:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(threadName)s %(levelname)s %(message)s"))
        logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    else:
        handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextlib.contextmanager
def _watch_interrupts() -> Iterator[threading.Event]:
    """Ctrl-C raises KeyboardInterrupt as usual, and the returned event
    records that it happened: a layer below may turn the interrupt into an
    error of some request, and it is still reported as an interrupt."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    previous = _signal.signal(_signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        _signal.signal(_signal.SIGINT, previous)


def handler_of(args):
    """The function a parsed command line names (``"module:function"`` in
    smblayer.cli): its module is imported now, not before."""
    module, _, name = args.handler.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def run(args) -> int:
    """Run the command of the parsed ``args``; returns the exit status."""
    command = args.command
    args.status_line = StatusLine(sys.stderr)
    with _watch_interrupts() as interrupted, _logging_to(args.status_line, args.verbose):
        try:
            with Connections(args) as args.connections:
                return handler_of(args)(args)
        except UsageError as exc:
            print(f"{PROG}: {command}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"\n{PROG}: {command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # The reader went away (e.g. `smblayer cat ... | head`): not an error.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as exc:  # noqa: BLE001 - one line for the user, whatever it is
            log.debug("%s failed", command, exc_info=True)
            if interrupted.is_set():
                print(f"\n{PROG}: {command}: interrupted", file=sys.stderr)
                return 130
            print(f"{PROG}: {command}: {describe_error(exc, _url_of(args))}", file=sys.stderr)
            return 1
