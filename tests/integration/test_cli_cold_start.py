"""Cold start of one-shot commands (issue 20): what a whole ``stat``,
``ls`` or ``get`` run loads, against a real server.  The unit tests
(tests/unit/test_cold_start.py) cover import and argument parsing; these
cover the rest of a run: connect, authenticate, the command, teardown.

The modules of smblayer a one-shot ``stat`` may load are listed below
by name (the core, the file client, the command's own module).  The wire
codecs, the transport and the NTLM path (smblayer.proto.*, .transport.*,
.security.*) are allowed as packages: every command needs them, and
their owners split them as they see fit.  A new module on this path is a
cost every command pays: add it here only on purpose.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from _cli_helpers import cli_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STAT_MODULES = {
    "smblayer", "smblayer.client", "smblayer.config", "smblayer.errors", "smblayer.loopcheck",
    "smblayer.namedint",
    "smblayer.records", "smblayer.registry", "smblayer.task",
    "smblayer.cli", "smblayer.cli.connections", "smblayer.cli.fastparse", "smblayer.cli.files",
    "smblayer.cli.main", "smblayer.cli.progress", "smblayer.cli.run", "smblayer.cli.words",
    "smblayer.fs", "smblayer.fs.admin", "smblayer.fs.closing", "smblayer.fs.deferred",
    "smblayer.fs.dircache", "smblayer.fs.file", "smblayer.fs.helpers", "smblayer.fs.locks",
    "smblayer.fs.ops", "smblayer.fs.posix", "smblayer.fs.readcache",
    "smblayer.fs.recovery", "smblayer.fs.session", "smblayer.fs.smb2ops", "smblayer.fs.tree",
    "smblayer.fs.window",
}
CORE_PACKAGES = ("smblayer.proto", "smblayer.transport", "smblayer.security")

# Loaded by a one-shot command before, never needed by one: each costs
# milliseconds at every start (shutil brings bz2 and lzma, uuid brings
# platform, a str host name brings the idna codec and unicodedata...;
# dataclasses brings inspect, ast and dis, and each @dataclass execs
# generated code: smblayer.records' plain classes instead; argparse brings
# gettext and locale: cli.fastparse reads the common command lines).
NOT_LOADED = ("dataclasses", "inspect", "ast", "dis", "argparse", "gettext", "smblayer.cli.args",
              "shutil", "bz2", "lzma", "uuid", "platform", "ipaddress", "getpass", "termios",
              "random", "datetime", "encodings.idna", "unicodedata", "stringprep", "mmap",
              "concurrent.futures.thread", "smblayer.fs.transfer", "smblayer.fs.many",
              "smblayer.fs.batch", "smblayer.fs.dfs",
              "smblayer.fs.watch", "smblayer.rpc", "smblayer.fsspec", "smblayer.aio",
              "smblayer.proto.security",
              "spnego", "gssapi", "krb5",
              "cryptography",     # HMAC-SHA256 signing, no encryption: no AES
              "hashlib", "hmac", "_hashlib",   # security.digests: no OpenSSL either
              "typing",           # type names are imported under TYPE_CHECKING only
              "socket",           # transport.sockets: _socket, no enum conversions
              "signal")           # cli.run: _signal for Ctrl-C, no enum conversions


def modules_of_run(samba, argv) -> set:
    """Run the command line in a fresh interpreter; the modules it loaded
    (those loaded at start-up, e.g. by an editable install's import hook,
    do not count)."""
    script = textwrap.dedent(f"""
        import sys
        at_start = set(sys.modules)
        import contextlib, io, json
        from smblayer.cli.main import main
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main({argv!r})
        print(json.dumps([rc, sorted(set(sys.modules) - at_start)]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=cli_env(samba), stdin=subprocess.DEVNULL, timeout=90)
    assert proc.returncode == 0, proc.stderr
    rc, modules = json.loads(proc.stdout.splitlines()[-1])
    assert rc == 0, proc.stderr
    return set(modules)


def loaded(modules: set, *names: str) -> list:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.fixture
def remote_file(samba):
    (samba.share_path("share") / "cold-start.txt").write_bytes(b"x" * 4096)
    return f"//{samba.host}:{samba.port}/share/cold-start.txt"


def test_stat_loads_only_the_listed_modules(samba, remote_file):
    modules = modules_of_run(samba, ["stat", remote_file])
    ours = {m for m in modules if m == "smblayer" or m.startswith("smblayer.")}
    extra = sorted(m for m in ours - STAT_MODULES
                   if not m.startswith(tuple(p + "." for p in CORE_PACKAGES))
                   and m not in CORE_PACKAGES)
    assert extra == []
    assert loaded(modules, *NOT_LOADED) == []


def test_ls_get_and_put_load_nothing_they_do_not_need(samba, remote_file, tmp_path):
    assert loaded(modules_of_run(samba, ["ls", remote_file]), *NOT_LOADED) == []
    got = modules_of_run(samba, ["get", remote_file, str(tmp_path / "got")])
    assert (tmp_path / "got").read_bytes() == b"x" * 4096
    # get needs the copy engine (and its threads' queue), nothing else more
    needed = ("smblayer.fs.transfer", "concurrent.futures.thread", "mmap")
    assert loaded(got, *(n for n in NOT_LOADED if n not in needed)) == []
    put = modules_of_run(samba, ["put", str(tmp_path / "got"), remote_file + ".put"])
    assert (samba.share_path("share") / "cold-start.txt.put").read_bytes() == b"x" * 4096
    assert loaded(put, *(n for n in NOT_LOADED if n not in needed)) == []
