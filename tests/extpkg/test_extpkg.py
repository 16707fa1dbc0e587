"""An outside protocol package (tests/extpkg/smbdemo) built on the public
extension API only: it works against the real Samba, and its imports name
no private (underscore) module or object."""
from __future__ import annotations

import ast
import os
import pathlib
import sys

import pytest

from smblayer import SmbStatusError

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import smbdemo  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_package_imports_only_public_names():
    files = sorted((HERE / "smbdemo").rglob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 or node.module is None or \
                    not node.module.startswith("smblayer"), path
                parts = (node.module or "").split(".")
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                parts = [p for a in node.names for p in a.name.split(".")]
                names = []
            else:
                continue
            private = [n for n in parts + names if n.startswith("_") and n != "__future__"]
            assert not private, f"{path.name}: imports private {private}"
        # and no attribute access to a private name of smblayer objects
        source = path.read_text()
        for token in ("._conn", "._pending", "._send", "._ops", "._charge", "._reconnect",
                      "._on_reconnect", "._registry"):
            assert token not in source, f"{path.name} reaches into {token}"


def test_package_works_against_samba(samba):
    with smbdemo.connect(samba.host, "share", samba.username, samba.password,
                         port=samba.port, require_signing=True) as tree:
        assert type(tree.client) is smbdemo.DemoClient
        total, free = tree.disk_usage()
        st = os.statvfs(samba.share_path("share"))
        assert total == pytest.approx(st.f_blocks * st.f_frsize, rel=0.05)
        assert 0 < free <= total
        tree.write_bytes("locked.bin", bytes(100))
        a = tree.open_handle("locked.bin")
        b = tree.open_handle("locked.bin")
        try:
            tree.lock(a, 0, 10)
            with pytest.raises(SmbStatusError):
                tree.lock(b, 5, 10)
            tree.unlock(a, 0, 10)
            tree.lock(b, 5, 10)
        finally:
            tree.close_handle(a)
            tree.close_handle(b)


def test_readme_protocol_package_example_runs(samba, capsys):
    """README's "Writing a protocol package" example, run as printed
    (only the server address and credentials substituted)."""
    readme = (HERE.parents[1] / "README.rst").read_text()
    block = readme.split("A complete small package")[1].split(".. code-block:: python")[1]
    block = block.split("smblayer's own extras")[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    assert "import _" not in code and "from smblayer._" not in code
    code = code.replace('fs.connect("127.0.0.1", "share", "user", "pw",',
                        f'fs.connect("127.0.0.1", "share", {samba.username!r}, '
                        f'{samba.password!r}, port={samba.port},')
    exec(compile(code, "README.rst", "exec"), {})
    total, free = eval(capsys.readouterr().out)
    assert 0 < free <= total
