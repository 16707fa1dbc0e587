"""What every part of the command line shares, importing nothing: the
program name, the usage error, and how a path argument reads (remote or
local, with wildcards or not).  The argparse parser (:mod:`.args`), the
parser of common command lines (:mod:`.fastparse`) and the commands all
use these; none of them needs argparse for it.
"""
from __future__ import annotations

PROG = "smblayer"

# The commands whose remote paths may hold wildcards.
WILDCARD_COMMANDS = ("get", "put", "ls", "rm")


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


def has_wildcard(text: str) -> bool:
    """Whether ``text`` holds ``*`` or ``?``."""
    return "*" in text or "?" in text


def is_url(text: str) -> bool:
    """Whether a path argument is remote (``//``, ``smb:`` or ``\\\\``)."""
    return text.startswith(("//", "smb:", "\\\\"))
