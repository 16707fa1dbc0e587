"""A private Samba that answers bad credentials with guest sessions.

Theory of operation
-------------------
``map to guest`` makes smbd turn a failed logon into a guest session
("Bad User": unknown users; "Bad Password": wrong passwords too) instead of
an error.  A guest runs as the guest account (``nobody``), so the share it
reads, "public" (read-only, ``guest ok``), lives in a world-readable
temporary directory holding ``hello.txt`` (b"hi"); it is removed when the
server stops.
"""
from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
from typing import Iterator

from .samba import SambaServer

PUBLIC_FILE = ("hello.txt", b"hi")


@contextlib.contextmanager
def guest_server(map_to_guest: str = "Bad User", **kwargs) -> Iterator[SambaServer]:
    """A started SambaServer mapping bad logons to guest (``map_to_guest``)
    with the guest-readable share "public"; other arguments go to
    SambaServer (``extra_global`` is merged)."""
    public = pathlib.Path(tempfile.mkdtemp(prefix="smbl-public-"))
    try:
        public.chmod(0o755)
        name, data = PUBLIC_FILE
        (public / name).write_bytes(data)
        (public / name).chmod(0o644)
        extra = {"map to guest": map_to_guest, "restrict anonymous": "0",
                 **kwargs.pop("extra_global", {})}
        shares = {"public": {"path": str(public), "guest ok": "yes", "read only": "yes"},
                  **kwargs.pop("extra_shares", {})}
        with SambaServer(extra_global=extra, extra_shares=shares, **kwargs) as server:
            yield server
    finally:
        shutil.rmtree(public, ignore_errors=True)
