"""Defects the chaos soak (tools/soak.py, issue 26) found, pinned down."""
from __future__ import annotations

import sys
import types

import pytest

from smblayer import loopcheck

pytestmark = pytest.mark.timeout(30)


def test_blocking_call_while_another_thread_imports_asyncio(monkeypatch):
    """While one thread runs the first ``import asyncio``, sys.modules holds
    the module half initialised (no _get_running_loop yet); a blocking call
    on another thread must not fail with AttributeError (the soak's aio
    worker made every other worker's call fail so)."""
    monkeypatch.setitem(sys.modules, "asyncio", types.ModuleType("asyncio"))
    loopcheck.check_not_in_loop()
