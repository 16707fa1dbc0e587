"""Running the ``smblayer`` command line as a user does: a subprocess,
optionally on a pseudo-terminal (prompts, progress bar)."""
from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from typing import Dict, List, Optional, Sequence, Tuple


def cli_env(samba=None, password: Optional[str] = None, **extra: str) -> Dict[str, str]:
    """The environment for a CLI run: the server's credentials in
    SMB_USER/SMB_PASSWORD when ``samba`` is given, none otherwise."""
    env = dict(os.environ)
    env.pop("SMB_USER", None)
    env.pop("SMB_PASSWORD", None)
    if samba is not None:
        env["SMB_USER"] = samba.username
        env["SMB_PASSWORD"] = samba.password if password is None else password
    env.update(extra)
    return env


def run(args: Sequence[str], samba=None, input: Optional[bytes] = None,
        password: Optional[str] = None, timeout: float = 90, env=None):
    """``python -m smblayer ARGS`` with the server's credentials in the env."""
    return subprocess.run([sys.executable, "-m", "smblayer", *args], input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, env=env or cli_env(samba, password),
                          timeout=timeout)


def ok(proc) -> bytes:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def _make_controlling_tty() -> None:      # runs in the child, fd 0 is the pty
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_pty(args: Sequence[str], env: Dict[str, str], answers: Sequence[Tuple[bytes, object]] = (),
            timeout: float = 90, columns: int = 80) -> Tuple[int, bytes, bytes]:
    """Run the CLI with stdin and stderr on a pseudo-terminal of ``columns``
    columns (stdout a pipe).  ``answers``: (prompt, reply) pairs typed when
    the prompt shows.  Returns (exit status, terminal output, stdout)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, bytes(memoryview(
        (24).to_bytes(2, "little") + columns.to_bytes(2, "little") + bytes(4))))
    env = dict(env, COLUMNS=str(columns), LINES="24")
    proc = subprocess.Popen([sys.executable, "-m", "smblayer", *args], stdin=slave,
                            stdout=subprocess.PIPE, stderr=slave, env=env,
                            preexec_fn=_make_controlling_tty)
    os.close(slave)
    out: List[bytes] = []
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; terminal so far: {b''.join(out)!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the child closed its side
                break
            if not data:
                break
            out.append(data)
            if pending and pending[0][0] in b"".join(out):
                reply = pending.pop(0)[1]
                if callable(reply):
                    reply()
                else:
                    os.write(master, reply)
        stdout = proc.stdout.read()
        rc = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return rc, b"".join(out), stdout


def screen_lines(terminal: bytes) -> List[str]:
    """What a terminal shows for ``terminal`` output: each line after its
    carriage returns overwrote it (a later shorter text leaves the rest)."""
    lines = []
    for raw in terminal.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        shown: List[str] = []
        col = 0
        for ch in raw:
            if ch == "\r":
                col = 0
                continue
            if col < len(shown):
                shown[col] = ch
            else:
                shown.append(ch)
            col += 1
        lines.append("".join(shown).rstrip())
    return lines
