"""The in-tree NTLMv2 against Samba: every dialect, signed and encrypted,
a wrong password refused, and pyspnego (with gssapi and krb5) never
imported on the way (the point of having it: cold start)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from smblayer import Dialect, DialectRange, NtStatus, SmbAuthError, fs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("dialect, encrypt",
                         [(d, False) for d in Dialect] +
                         [(d, True) for d in Dialect if d >= Dialect.SMB3_0])
def test_every_dialect_signed_and_encrypted(samba, dialect, encrypt):
    with fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                    dialects=DialectRange(dialect, dialect), encrypt=encrypt,
                    require_signing=not encrypt, auth_protocol="ntlm") as tree:
        assert tree.session.mechanism == "ntlm"
        assert tree.session.signing or encrypt       # keys from our exported session key
        tree.write_bytes(f"ntlm-{dialect.name}-{encrypt}.bin", b"x" * 70000)
        assert tree.read_bytes(f"ntlm-{dialect.name}-{encrypt}.bin") == b"x" * 70000


@pytest.mark.parametrize("protocol", ["ntlm", "negotiate"])
def test_wrong_password_is_refused(samba, protocol):
    with pytest.raises(SmbAuthError) as info:
        fs.connect(samba.host, "share", samba.username, "not-the-password", port=samba.port,
                   auth_protocol=protocol).close()
    assert info.value.status == NtStatus.LOGON_FAILURE


def test_ntlm_to_an_address_never_imports_pyspnego(samba):
    code = textwrap.dedent(f"""
        import sys
        from smblayer import fs
        with fs.connect({samba.host!r}, "share", {samba.username!r}, {samba.password!r},
                        port={samba.port}) as tree:
            tree.listdir("")
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("spnego", "gssapi", "krb5"))
        print(" ".join(loaded) or "none")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"
