"""The command line's arguments: the argparse parser and its types.

This module is all a run needs before its command is known, so it imports
no command code and nothing of the SMB layer: ``--version``, ``--help`` and
usage errors are answered from here alone.  Each subcommand names its
handler as ``"module:function"`` (a module of :mod:`smblayer.cli`), which
:func:`smblayer.cli.main.main` imports once the arguments are parsed.
"""
from __future__ import annotations

import argparse
import re

from .. import __version__
from .words import PROG, WILDCARD_COMMANDS, UsageError, has_wildcard, is_url

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Optional, Sequence, Tuple

    from ..config import Dialect

__all__ = ["PROG", "WILDCARD_COMMANDS", "UsageError", "has_wildcard", "is_url", "build_parser",
           "parse", "parse_dialect", "parse_size", "guess_command", "VALUE_OPTIONS"]


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, given the terminal width: argparse makes one for
    every add_argument, and without a width it imports shutil (and with it
    bz2, lzma) to find it, which a one-shot command does not need."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """shutil.get_terminal_size((80, 24)).columns, without shutil."""
    import os
    import sys
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def parse_dialect(text: str) -> "Dialect":
    """'3.1.1', '2.0.2', 'NT1', 'SMB3_11', 'SMB2_1' ... -> Dialect (argparse type)."""
    from ..config import Dialect
    try:
        return Dialect.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(kind: type, minimum: float, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number at least (or above) ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < minimum or (value == minimum and not inclusive) or \
                value == float("inf"):
            bound = f"at least {minimum}" if inclusive else f"above {minimum}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value
    parse.__name__ = kind.__name__          # argparse names the type in messages
    return parse


positive_int = _number(int, 1)
positive_float = _number(float, 0, inclusive=False)
non_negative_float = _number(float, 0)


def parse_dfs_host(text: str) -> Tuple[str, str]:
    """'NAME=ADDRESS' -> (name, address) (argparse type of --dfs-host)."""
    name, sep, address = text.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=ADDRESS, got {text!r}")
    return name.strip(), address.strip()


def parse_dfs_port(text: str) -> Tuple[str, int]:
    """'HOST=PORT' -> (host, port) (argparse type of --dfs-port)."""
    host, port = parse_dfs_host(text)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST=PORT with a port 1-65535, got {text!r}")
    return host, int(port)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '4k', '1GiB', '1000' -> bytes (binary units; argparse type)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 4K, 64M, 1G)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be above 0")
    return value


def add_common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The connection options, accepted before and after the subcommand (the
    subcommand's copy has SUPPRESS defaults so it never hides the first)."""
    def d(value):
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("connection options")
    g.add_argument("-U", "--user", default=d(None), metavar="[DOMAIN\\]USER[%PASS]",
                   help="user name, optionally with a domain and a password as with "
                        "smbclient (default: $SMB_USER, then the login name)")
    g.add_argument("--password", default=d(None),
                   help="password (default: $SMB_PASSWORD, else asked on a terminal)")
    g.add_argument("-A", "--authentication-file", dest="auth_file", default=d(None),
                   metavar="FILE", help="smbclient's authentication file: lines "
                   "username = ..., password = ..., domain = ...")
    g.add_argument("-N", "--no-pass", action="store_true", default=d(False),
                   help="no password (anonymous when no user is given)")
    g.add_argument("-k", "--kerberos", action="store_true", default=d(False),
                   help="Kerberos with the ticket cache ($KRB5CCNAME)")
    g.add_argument("--auth", choices=("negotiate", "ntlm", "kerberos"), default=d(None),
                   help="authentication protocol (default negotiate)")
    g.add_argument("--dialect-min", type=parse_dialect, default=d(None), metavar="D",
                   help="lowest dialect: NT1, 2.0.2, 2.1, 3.0, 3.0.2, 3.1.1 (default 2.0.2)")
    g.add_argument("--dialect-max", type=parse_dialect, default=d(None), metavar="D",
                   help="highest dialect (default 3.1.1)")
    g.add_argument("--encrypt", action="store_true", default=d(False),
                   help="encrypt the session (SMB 3.x)")
    g.add_argument("--sign", action="store_true", default=d(False),
                   help="require signing")
    g.add_argument("--no-guest", action="store_true", default=d(False),
                   help="refuse a guest session the server gives instead of logging on "
                        "the user (e.g. after a wrong password)")
    g.add_argument("--timeout", type=positive_float, default=d(None), metavar="S",
                   help="seconds before a silent server is probed / given up (soft)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--hard", action="store_true", default=d(False),
                      help="hard mode: wait for an unresponsive server forever")
    mode.add_argument("--soft", dest="hard", action="store_false", default=d(False),
                      help="soft mode (default): give up with an error")
    g.add_argument("--dfs-port", action="append", type=parse_dfs_port, default=d(None),
                   metavar="HOST=PORT", help="port of a DFS link target host (a referral "
                   "names none: default the connection's port for its host, else 445); "
                   "repeatable")
    g.add_argument("--dfs-host", action="append", type=parse_dfs_host, default=d(None),
                   metavar="NAME=ADDRESS", help="address to connect to for a host a DFS "
                   "referral names; repeatable")
    g.add_argument("--posix", action="store_true", default=d(False),
                   help="use the SMB3 POSIX extensions where the server offers them "
                        "(ls -l then shows modes and owners)")
    g.add_argument("-v", "--verbose", action="count", default=d(0),
                   help="log to stderr (-vv for debug)")


def _add_transfer_options(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("-r", "-R", "--recursive", action="store_true",
                   help="copy directories and what they hold")
    p.add_argument("-c", "--continue", dest="resume", action="store_true",
                   help="resume an interrupted transfer by size (the partial file is kept "
                        "as .NAME.smblayer-partial); files complete already are skipped")
    p.add_argument("--verify", action="store_true",
                   help="read the destination back and compare SHA-256 checksums before "
                        "it replaces the old file")


class _WrongGuess(Exception):
    """The parser built for one subcommand cannot parse the command line."""


class _GuessParser(argparse.ArgumentParser):
    """A parser that raises _WrongGuess instead of printing an error and
    exiting: :func:`parse` then asks the whole parser, which says it right."""

    def error(self, message: str):
        raise _WrongGuess(message)


def build_parser(only: Optional[str] = None, _alone: bool = False) -> argparse.ArgumentParser:
    """The parser.  ``only``: build that subcommand's arguments alone; the
    others get a stand-in (listed with their help, taking any arguments,
    handler None) -- see :func:`parse`.  ``_alone`` (with ``only``): no
    stand-ins either, and errors raise _WrongGuess: each parser argparse
    makes costs a gettext look-up on the disk or two (cold start)."""
    parser = (_GuessParser if _alone else argparse.ArgumentParser)(
        prog=PROG, description="SMB command-line client built on smblayer.",
        formatter_class=_Formatter,
        epilog="Paths are //host[:port]/share/path or smb://host[:port]/share/path.")
    add_common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # A command's handler is "module:function" in smblayer.cli, imported
    # only once the command line is parsed (so --help stays fast).
    def add(name: str, handler: str, help: str, epilog: Optional[str] = None,
            **kwargs) -> argparse.ArgumentParser:
        if only is not None and name != only:
            if _alone:
                return _NotBuilt()
            stand_in = sub.add_parser(name, help=help, add_help=False,
                                      formatter_class=_Formatter)
            stand_in.add_argument("rest", nargs=argparse.REMAINDER)
            stand_in.set_defaults(handler=None)
            return _NotBuilt()
        p = sub.add_parser(name, help=help, description=help, epilog=epilog,
                           formatter_class=_Formatter, **kwargs)
        add_common(p, suppress=True)
        p.set_defaults(handler=handler)
        return p

    p = add("echo", "files:cmd_echo", "send SMB ECHO requests and print the round-trip times")
    p.add_argument("url", metavar="//host[:port]")
    p.add_argument("-c", "--count", type=positive_int, default=1, help="number of echoes (default 1)")
    p.add_argument("-i", "--interval", type=non_negative_float, default=0.0, help="seconds between echoes")

    p = add("ls", "files:cmd_ls", "list a directory (//host[:port] alone: the shares)")
    p.add_argument("url", metavar="//host[:port][/share[/path]]")
    p.add_argument("-l", "--long", action="store_true", help="type, size and mtime")
    p.add_argument("-a", "--all", action="store_true", help="include dot files")

    p = add("get", "transfers:cmd_get", "copy remote files to local ones (- = stdout)",
            epilog="Each file is written to a temporary name beside its destination and "
                   "renamed over it when complete, so a failed get leaves an existing file "
                   "as it was.  Wildcards (* and ?) select remote files; the modification "
                   "times are kept.")
    p.add_argument("paths", nargs="+", metavar="//host[:port]/share/path [... LOCAL]",
                   help="remote files (wildcards allowed), then a local file or directory "
                        "(default: the remote base name, or . for several files)")
    _add_transfer_options(p, "get")
    p.add_argument("--snapshot", metavar="@GMT-YYYY.MM.DD-HH.MM.SS",
                   help="get one file as it was in this previous version (acl --snapshots "
                        "lists them)")

    p = add("put", "transfers:cmd_put", "copy local files (- = stdin) to remote ones",
            epilog="The data goes to a temporary file in the destination folder, renamed "
                   "over the destination when complete; after an error or Ctrl-C the "
                   "temporary file is deleted and the destination is left as it was "
                   "(with --continue it is kept, to be resumed).  The modification times "
                   "are kept.")
    p.add_argument("paths", nargs="+", metavar="LOCAL [...] //host[:port]/share/path",
                   help="local files (wildcards allowed), then the remote file or directory")
    _add_transfer_options(p, "put")

    p = add("cat", "files:cmd_cat", "write remote files to stdout")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("stat", "files:cmd_stat", "show a remote file's size, type and times")
    p.add_argument("url", metavar="//host[:port]/share/path")

    p = add("rm", "files:cmd_rm", "remove remote files (wildcards allowed)")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-r", "-R", "--recursive", action="store_true",
                   help="remove directories and what they hold")
    p.add_argument("-f", "--force", action="store_true", help="no error for missing files")

    p = add("df", "files:cmd_df", "size and free space of remote shares", conflict_handler="resolve")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="sizes in KiB, MiB, ...")

    p = add("du", "files:cmd_du", "bytes used under remote directories", conflict_handler="resolve")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-s", "--summarize", action="store_true", help="only a total per argument")
    p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                   help="sizes in KiB, MiB, ...")

    p = add("mkdir", "files:cmd_mkdir", "create remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")
    p.add_argument("-p", "--parents", action="store_true", help="create parents, no error "
                   "if it exists")

    p = add("rmdir", "files:cmd_rmdir", "remove empty remote directories")
    p.add_argument("urls", nargs="+", metavar="//host[:port]/share/path")

    p = add("mv", "files:cmd_mv", "rename a remote file or directory within its share")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="NEWPATH", help="a URL on the same share or a share path "
                   "(an existing directory: move into it)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing file")

    p = add("bench", "bench:cmd_bench", "echo latency/throughput, bulk and small-file I/O")
    p.add_argument("url", metavar="//host[:port]/share[/dir]")
    p.add_argument("--size", type=parse_size, default=64 * 1024 * 1024,
                   help="bulk file size (default 64M)")
    p.add_argument("--count", type=positive_int, default=2000, help="sequential echoes (default 2000)")
    p.add_argument("--threads", type=positive_int, default=16, help="echo threads (default 16)")
    p.add_argument("--duration", type=positive_float, default=2.0,
                   help="seconds per echo throughput test (default 2)")
    p.add_argument("--files", type=positive_int, default=200, help="small files (default 200)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_ext_commands(add)
    add_admin_commands(add)
    return parser


def add_ext_commands(add: Callable) -> None:
    p = add("watch", "files:cmd_watch", "print change notifications of a remote directory")
    p.add_argument("url", metavar="//host[:port]/share[/dir]")
    p.add_argument("-r", "--recursive", action="store_true", help="include subdirectories")
    p.add_argument("-n", "--count", type=int, help="stop after this many events")
    p.add_argument("--idle", type=float, metavar="SECONDS",
                   help="stop after this many seconds without an event")

    p = add("cp", "files:cmd_cp", "copy a remote file to a remote path (server-side on one server)")
    p.add_argument("source", metavar="//host[:port]/share/path")
    p.add_argument("dest", metavar="//host[:port]/share/path")


def add_admin_commands(add) -> None:
    """The ``acl`` command's parser (``add`` is build_parser's)."""
    p = add("acl", "admin:cmd_acl", "show or change a remote file's ACL (smbcacls' format)",
            epilog="ACEs are SID:TYPE/FLAGS/MASK as smbcacls writes them, e.g. "
                   "ACL:S-1-1-0:ALLOWED/OI|CI/READ (the ACL: prefix is optional; "
                   "several may be given comma separated).")
    p.add_argument("url", metavar="//host[:port]/share/path")
    p.add_argument("--numeric", action="store_true", help="numeric types, flags and masks")
    p.add_argument("--sddl", action="store_true", help="print the descriptor as SDDL")
    p.add_argument("-a", "--add", action="append", default=[], metavar="ACE",
                   help="add ACEs")
    p.add_argument("-D", "--delete", action="append", default=[], metavar="ACE",
                   help="delete ACEs (exact matches)")
    p.add_argument("-M", "--modify", action="append", default=[], metavar="ACE",
                   help="replace the ACE of that SID and type")
    p.add_argument("-S", "--set", metavar="ACES", help="replace the whole DACL")
    p.add_argument("--snapshots", action="store_true",
                   help="list the path's previous versions (@GMT tokens) instead")


class _NotBuilt:
    """Stands for the parser of a subcommand this run does not build: every
    call (add_argument, add_argument_group, set_defaults...) does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


# The common options that take a value (``-U USER``...): what
# _value_options() finds, written out so that a run builds no parser for it
# (tests/unit/test_cold_start.py checks that the two agree).
VALUE_OPTIONS = frozenset({"--auth", "--authentication-file", "--dfs-host", "--dfs-port",
                           "--dialect-max", "--dialect-min", "--password", "--timeout",
                           "--user", "-A", "-U"})


def _value_options() -> frozenset:
    """The common options that take a value, from a parser of them."""
    p = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    add_common(p, suppress=False)
    return frozenset(option for action in p._actions if action.nargs != 0
                     for option in action.option_strings)


def guess_command(argv: Sequence[str]) -> str:
    """The subcommand ``argv`` names, as far as a scan without parsing can
    tell ("" if none): the first word that is neither an option nor the
    value of one."""
    takes_value = VALUE_OPTIONS
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, "")
        if word.startswith("-"):
            if word in takes_value:
                next(words, None)
            continue
        return word
    return ""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line, building the parser for its subcommand only
    (most of the parser's cost; ``--help`` and ``--version`` build none).
    Where the scan guessed wrong (an abbreviated option, a cluster such as
    ``-vU``) the command line is parsed again by the whole parser."""
    guess = guess_command(argv)
    try:
        args, extra = build_parser(only=guess, _alone=_alone_will_do(argv, guess)
                                   ).parse_known_args(argv)
    except _WrongGuess:
        args, extra = None, True
    if extra or args.command != guess or args.handler is None:
        args = build_parser().parse_args(argv)
    return args


def _alone_will_do(argv: Sequence[str], guess: str) -> bool:
    """Whether the guessed subcommand's parser alone (no stand-ins for the
    others) answers ``argv`` as the whole parser would: not for a help
    option ahead of the subcommand (-h, --help or an abbreviation of it,
    -vh...), whose text lists every subcommand."""
    if guess not in argv:
        return False
    last = len(argv) - 1 - list(reversed(argv)).index(guess)
    return not any(word.startswith("-") and "h" in word for word in argv[:last])
