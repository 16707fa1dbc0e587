"""A short run of tools/soak.py (issue 26): the chaos soak itself works --
load, faults (a Samba restart included), the ledger read back, the verdict.
The 60-minute run is a command, not a test (CI time)."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(120)]

SOAK = pathlib.Path(__file__).resolve().parents[2] / "tools" / "soak.py"


def test_soak_smoke(tmp_path):
    from smblayer.testing.pytest_plugin import require_smbd
    require_smbd()
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(SOAK), "--minutes", "0.15", "--threads", "2",
                           "--processes", "1", "--child-threads", "2", "--fault-gap", "2",
                           "--op-bound", "60", "--sample", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["passed"] and not result["lost"]
    assert result["total_ops"] > 0
    assert result["faults"].get("samba_restart") == 1
    assert result["verified_bytes"] > 0
    # plain and signed in this process, encrypted and multichannel in the worker process
    assert set(result["modes"]) == {"plain", "signed", "encrypted", "multichannel"}
    assert result["modes"]["multichannel"].get("ok", 0) > 0
