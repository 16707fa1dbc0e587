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


def test_client_class_names_without_the_tool():
    """DESIGN.md's client names on the class itself (a clone has no tool
    beside it): a hot-path cut once made ``state`` an instance attribute
    only, and the class lost the name."""
    from smblayer.transport.client import SmbClient
    names = ["dialect", "negotiated", "state", "refcount", "echo", "echo_async", "run_task",
             "run_task_async", "add_reconnect_handler", "add_break_handler", "stats",
             "release", "close", "__enter__", "__exit__"]
    assert [n for n in names if not hasattr(SmbClient, n)] == []
