"""256 MiB through smblayer on every dialect the file client promises (SMB1,
2.0.2, 2.1, 3.0.2 and 3.1.1; the encrypted share for 3.x), cross-checked
with Samba's C smbclient in both directions: it reads what we wrote, we
read what it wrote."""
from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from smblayer import Dialect, DialectRange, fs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SIZE = 256 << 20
BLOCK = 16 << 20
CASES = [
    (Dialect.SMB1, "share", False, ["-m", "NT1", "--option=client min protocol=NT1"]),
    (Dialect.SMB2_0_2, "share", False, ["-m", "SMB2_02"]),
    (Dialect.SMB2_1, "share", False, ["-m", "SMB2_10"]),
    (Dialect.SMB3_0_2, "encrypted", True, ["-m", "SMB3_02", "--client-protection=encrypt"]),
    (Dialect.SMB3_1_1, "encrypted", True, ["-m", "SMB3_11", "--client-protection=encrypt"]),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 256 MiB local file of random blocks, and its SHA-256."""
    path = tmp_path_factory.mktemp("bulk") / "source.bin"
    digest = hashlib.sha256()
    block = bytearray(os.urandom(BLOCK))
    with open(path, "wb") as f:
        for i in range(SIZE // BLOCK):
            block[:8] = i.to_bytes(8, "little")
            digest.update(block)
            f.write(block)
    return path, digest.hexdigest()


def _sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.parametrize("dialect,share,encrypt,smbclient_args", CASES,
                         ids=[c[0].name for c in CASES])
def test_256mib_round_trip_with_smbclient(samba, source, tmp_path, dialect, share, encrypt,
                                          smbclient_args):
    local, digest = source
    ours, theirs = f"ours-{uuid.uuid4().hex[:8]}.bin", f"theirs-{uuid.uuid4().hex[:8]}.bin"
    with fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                    encrypt=encrypt, dialects=DialectRange(dialect, dialect)) as tree:
        assert tree.client.dialect is dialect
        # smblayer writes; smbclient reads it back.
        with open(local, "rb") as src, tree.open(ours, "wb") as dst:
            while True:
                block = src.read(BLOCK)
                if not block:
                    break
                dst.write(block)
        assert tree.stat(ours).st_size == SIZE
        fetched = tmp_path / "fetched.bin"
        result = samba.smbclient(smbclient_args + ["-c", f"get {ours} {fetched}"],
                                 share=share, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _sha256_file(fetched) == digest
        fetched.unlink()
        # smbclient writes; smblayer reads it back.
        result = samba.smbclient(smbclient_args + ["-c", f"put {local} {theirs}"],
                                 share=share, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        got = hashlib.sha256()
        buf = bytearray(BLOCK)
        total = 0
        with tree.open(theirs, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                got.update(memoryview(buf)[:n])
                total += n
        assert total == SIZE and got.hexdigest() == digest
        tree.remove(ours)
        tree.remove(theirs)
