#!/usr/bin/env python3
"""Copy a file through a private Samba server with the smblayer command line.

Starts a throw-away smbd on 127.0.0.1 (smblayer.testing.samba.SambaServer),
writes an ~8 MiB random local file, runs ``python3 -m smblayer put``, ``get``
and ``ls`` as subprocesses (credentials in SMB_USER/SMB_PASSWORD), compares
SHA-256 hashes and prints "demo OK".  Exit status 1 on any mismatch or failure.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from smblayer.testing.samba import SambaServer, find_smbd  # noqa: E402

SIZE = 8 * 1024 * 1024 + 12345


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_cli(args: list, env: dict) -> str:
    """Run ``python3 -m smblayer ARGS``; print it and its output; fail loudly."""
    argv = [sys.executable, "-m", "smblayer", *args]
    print("$ smblayer " + " ".join(args))
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, cwd=os.path.join(HERE, ".."))
    elapsed = time.perf_counter() - t0
    for line in (proc.stdout + proc.stderr).splitlines():
        print("  " + line)
    if proc.returncode != 0:
        raise SystemExit(f"demo FAILED: smblayer {args[0]} exited with {proc.returncode}")
    print(f"  (exit 0, {elapsed:.2f} s)")
    return proc.stdout


def main() -> int:
    if find_smbd() is None:
        print("demo FAILED: Samba's smbd is not installed "
              "(Debian: apt-get install -y samba smbclient)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="smblayer-demo-") as tmp, SambaServer() as srv:
        print(f"started a private Samba {srv.host}:{srv.port} (user {srv.username}, "
              f"files in {srv.tempdir})")
        local = os.path.join(tmp, "local.bin")
        copy = os.path.join(tmp, "copy.bin")
        with open(local, "wb") as f:
            f.write(os.urandom(SIZE))
        print(f"wrote {SIZE} random bytes to {local}")

        env = dict(os.environ, SMB_USER=srv.username, SMB_PASSWORD=srv.password)
        base = f"//{srv.host}:{srv.port}/share"
        run_cli(["mkdir", "-p", f"{base}/demo"], env)
        run_cli(["put", local, f"{base}/demo/remote.bin"], env)
        run_cli(["get", f"{base}/demo/remote.bin", copy], env)
        listing = run_cli(["ls", "-l", f"{base}/demo"], env)

        ok = True
        if "remote.bin" not in listing:
            print("demo FAILED: ls does not show remote.bin")
            ok = False
        on_server = srv.share_path("share") / "demo" / "remote.bin"
        hashes = {"local file": sha256(local), "on the server": sha256(str(on_server)),
                  "downloaded copy": sha256(copy)}
        for what, digest in hashes.items():
            print(f"sha256 {digest}  {what}")
        if len(set(hashes.values())) != 1:
            print("demo FAILED: the hashes differ")
            ok = False
        print("stopping the private Samba")
    if not ok:
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
