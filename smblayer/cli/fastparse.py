"""The common one-shot command lines, parsed without argparse.

Theory of operation.  ``import argparse`` (with gettext, locale and
textwrap) and building even one subcommand's parser cost a one-shot
command about a tenth of its instructions (issue 20).  Most command lines
are plain: ``stat URL``, ``get -r URL LOCAL``, ``-U user%pw ls -l URL``.
:func:`parse` reads those from the tables below and returns what the
argparse parser (:mod:`.args`) would: the same names with the same values.
It answers only what it is sure of.  Anything else -- a help or version
option, an abbreviated or clustered option (``--rec``, ``-vU``), an
``--opt=value``, ``--``, an option whose value needs a type check
(``--dialect-max``, ``--dfs-host``), a value starting with "-", a usage
error, a command not in the tables -- gives None, and the caller asks the
argparse parser, which parses it or says what is wrong exactly as before.

The tables repeat the parser's options, destinations and defaults;
tests/unit/test_cold_start.py checks them against the parser on every
option in every position.
"""
from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence

# The connection options (before or after the command), by option string:
# flags -> (dest, value), options with a value -> dest.
COMMON_FLAGS = {
    "-N": ("no_pass", True), "--no-pass": ("no_pass", True),
    "-k": ("kerberos", True), "--kerberos": ("kerberos", True),
    "--encrypt": ("encrypt", True), "--sign": ("sign", True),
    "--no-guest": ("no_guest", True), "--posix": ("posix", True),
    "--hard": ("hard", True), "--soft": ("hard", False),
}
COMMON_VALUES = {"-U": "user", "--user": "user", "--password": "password",
                 "-A": "auth_file", "--authentication-file": "auth_file", "--auth": "auth",
                 "--timeout": "timeout"}
VERBOSE = ("-v", "--verbose")
COMMON_DEFAULTS = {
    "user": None, "password": None, "auth_file": None, "no_pass": False, "kerberos": False,
    "auth": None, "dialect_min": None, "dialect_max": None, "encrypt": False, "sign": False,
    "no_guest": False, "timeout": None, "hard": False, "dfs_port": None, "dfs_host": None,
    "posix": False, "verbose": 0,
}
AUTH_CHOICES = ("negotiate", "ntlm", "kerberos")

_TRANSFER_FLAGS = {"-r": "recursive", "-R": "recursive", "--recursive": "recursive",
                   "-c": "resume", "--continue": "resume", "--verify": "verify"}

# command -> (handler, positional dest, one or several, flags {option: dest},
#             options with a value {option: dest}, defaults of its own options)
COMMANDS = {
    "stat": ("files:cmd_stat", "url", False, {}, {}, {}),
    "ls": ("files:cmd_ls", "url", False,
           {"-l": "long", "--long": "long", "-a": "all", "--all": "all"}, {},
           {"long": False, "all": False}),
    "get": ("transfers:cmd_get", "paths", True, _TRANSFER_FLAGS, {"--snapshot": "snapshot"},
            {"recursive": False, "resume": False, "verify": False, "snapshot": None}),
    "put": ("transfers:cmd_put", "paths", True, _TRANSFER_FLAGS, {},
            {"recursive": False, "resume": False, "verify": False}),
    "cat": ("files:cmd_cat", "urls", True, {}, {}, {}),
    "rm": ("files:cmd_rm", "urls", True,
           {"-r": "recursive", "-R": "recursive", "--recursive": "recursive",
            "-f": "force", "--force": "force"}, {}, {"recursive": False, "force": False}),
    "mkdir": ("files:cmd_mkdir", "urls", True, {"-p": "parents", "--parents": "parents"}, {},
              {"parents": False}),
    "rmdir": ("files:cmd_rmdir", "urls", True, {}, {}, {}),
    "echo": ("files:cmd_echo", "url", False, {}, {}, {"count": 1, "interval": 0.0}),
}


class _Unsure(Exception):
    """Not a command line this module answers: ask argparse."""


def parse(argv: Sequence[str]) -> Optional[SimpleNamespace]:
    """``argv`` parsed as the argparse parser would parse it, or None where
    this module is not sure (the caller then asks that parser)."""
    try:
        return _parse(list(argv))
    except _Unsure:
        return None


def _parse(argv: List[str]) -> SimpleNamespace:
    top: Dict[str, object] = {}
    words = iter(argv)
    for word in words:
        if not _common(word, words, top):
            command = word
            break
    else:
        raise _Unsure                       # no command: a usage error
    spec = COMMANDS.get(command)
    if spec is None:
        raise _Unsure
    handler, dest, several, flags, values, defaults = spec
    sub: Dict[str, object] = {}
    positionals: List[str] = []
    run_ended = False                       # positionals are one run, as argparse takes them
    for word in words:
        if word.startswith("-") and word != "-":
            if positionals:
                run_ended = True
            if word in flags:
                sub[flags[word]] = True
            elif word in values:
                sub[values[word]] = _value(words)
            elif not _common(word, words, sub):
                raise _Unsure
        elif run_ended:
            raise _Unsure
        else:
            positionals.append(word)
    if not positionals or (len(positionals) > 1 and not several):
        raise _Unsure
    if "--hard" in argv and "--soft" in argv:     # mutually exclusive: argparse says so
        raise _Unsure
    result = dict(COMMON_DEFAULTS)
    result.update(top)
    result["command"] = command
    result.update(defaults)
    result[dest] = positionals if several else positionals[0]
    result.update(sub)                      # the command's copy wins, as in argparse
    result["handler"] = handler
    return SimpleNamespace(**result)


def _common(word: str, words, into: Dict[str, object]) -> bool:
    """Take a connection option (and its value from ``words``) into
    ``into``; False if ``word`` is no option at all (the command)."""
    if not word.startswith("-") or word == "-":
        return False
    if word in COMMON_FLAGS:
        dest, value = COMMON_FLAGS[word]
        into[dest] = value
    elif word in VERBOSE:
        into["verbose"] = into.get("verbose", 0) + 1
    elif word in COMMON_VALUES:
        dest = COMMON_VALUES[word]
        value = _value(words)
        if dest == "auth" and value not in AUTH_CHOICES:
            raise _Unsure
        into[dest] = _seconds(value) if dest == "timeout" else value
    else:
        raise _Unsure
    return True


def _value(words) -> str:
    value = next(words, None)
    if value is None or value.startswith("-"):
        raise _Unsure                       # missing, or argparse's call to make
    return value


def _seconds(text: str) -> float:
    """--timeout's value as args.positive_float gives it (else unsure)."""
    try:
        value = float(text)
    except ValueError:
        raise _Unsure from None
    if not 0 < value < float("inf"):        # also NaN
        raise _Unsure
    return value
