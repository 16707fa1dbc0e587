"""The public API of ../shared/DESIGN.md, checked by name with the shared
api-check tool (code outside this repository uses these names)."""
import pathlib
import subprocess
import sys

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[3] / "shared" / "tools" / "api-check"


def test_design_public_api_names():
    if not TOOL.exists():
        pytest.skip(f"external API-contract tool {TOOL} is not beside this clone")
    result = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True,
                            timeout=60, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and "api-check: ok" in result.stdout, \
        result.stdout + result.stderr
