"""Compound requests on the real Samba: small-file read_bytes/write_bytes
and stat take one round trip each (CREATE + READ/WRITE + CLOSE in one
frame), signed, encrypted and plain, with the usual error mapping."""
from __future__ import annotations

import os

import pytest

from smblayer import Dialect, DialectRange, fs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CASES = [(Dialect.SMB2_0_2, "share", False, False), (Dialect.SMB2_1, "share", False, True),
         (Dialect.SMB3_0_2, "encrypted", True, False), (Dialect.SMB3_1_1, "share", False, True),
         (Dialect.SMB3_1_1, "encrypted", True, False)]


@pytest.mark.parametrize("dialect,share,encrypt,sign", CASES,
                         ids=[f"{c[0].name}-{c[1]}{'-signed' if c[3] else ''}" for c in CASES])
def test_small_files_in_one_round_trip(samba, dialect, share, encrypt, sign):
    with fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                    dialects=DialectRange(dialect, dialect), encrypt=encrypt,
                    require_signing=sign) as tree:
        client = tree.client
        limit = tree.io_write_size
        for size in (0, 1, 4096, limit):
            data = os.urandom(size)
            frames_before = client.stats()["CREATE"]["ops"] if "CREATE" in client.stats() else 0
            assert tree.write_bytes(f"small-{size}.bin", data) == size
            assert tree.read_bytes(f"small-{size}.bin") == data
            # one CREATE per call: the compound carried the data and the CLOSE
            assert client.stats()["CREATE"]["ops"] - frames_before == 2
            assert tree.stat(f"small-{size}.bin").st_size == size
        # larger than one request: falls back to the pipelined path, same result
        big = os.urandom(limit + 1)
        assert tree.write_bytes("big.bin", big) == len(big)
        assert tree.read_bytes("big.bin") == big
        with pytest.raises(FileNotFoundError):
            tree.read_bytes("no-such-file.bin")
        tree.mkdir("adir")
        with pytest.raises(IsADirectoryError):
            tree.read_bytes("adir")
        with pytest.raises(IsADirectoryError):
            tree.write_bytes("adir", b"x")
        tree.rmdir("adir")
        for name in tree.listdir(""):
            if name.startswith("small-") or name == "big.bin":
                tree.remove(name)
