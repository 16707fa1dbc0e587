"""smblayer.testing.process: bounded Python children and frozen processes."""
from __future__ import annotations

import signal

import pytest

from smblayer.testing.process import PythonChild, frozen

pytestmark = pytest.mark.timeout(60)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_child_lines_input_and_exit():
    code = "import sys; print('hello', flush=True); print(sys.stdin.readline().strip()); " \
           "sys.exit(3)"
    with PythonChild(["-c", code]) as child:
        assert child.wait_line("hello", 30) == "hello"
        child.send_line("ping")
        assert child.wait_line("ping", 10) == "ping"
        assert child.wait_exit(10) == 3


def test_wait_line_and_exit_are_bounded():
    with PythonChild(["-c", "import time, sys; print('up', flush=True); "
                            "sys.stderr.write('some diag'); sys.stderr.flush(); "
                            "time.sleep(30)"]) as child:
        child.wait_line("up", 30)
        with pytest.raises(AssertionError, match="still running"):
            child.wait_line("never", 0.3)
        assert child.wait_exit(0.2) is None
        child.signal(signal.SIGTERM)
        assert child.wait_exit(10) == -signal.SIGTERM


def test_frozen_stops_and_always_continues():
    code = "import sys\nfor line in sys.stdin:\n    print('got', line.strip(), flush=True)\n"
    with PythonChild(["-c", code]) as child:
        child.send_line("a")
        child.wait_line("got a", 30)
        with pytest.raises(RuntimeError):
            with frozen(child.pid):
                assert _state(child.pid) == "T"
                child.send_line("b")
                with pytest.raises(AssertionError):
                    child.wait_line("got b", 0.3)       # stopped: no answer
                raise RuntimeError("the block failed")
        child.wait_line("got b", 10)                    # continued after the failure



def test_samba_children_survive_a_child_exiting_while_listed(monkeypatch):
    """SambaServer.children() reads each process's /proc stat once: a child
    that exits between two reads (None the second time) killed the soak's
    fault thread with a TypeError."""
    import types

    from smblayer.testing import samba

    server = samba.SambaServer.__new__(samba.SambaServer)
    server._proc = types.SimpleNamespace(pid=4242, poll=lambda: None)
    reads = []

    def stat_then_gone(pid):
        reads.append(pid)
        return ("S", 4242) if len(reads) == 1 else None     # it exits after the first read

    monkeypatch.setattr(samba, "_descendants", lambda pid: [4243])
    monkeypatch.setattr(samba, "_proc_stat", stat_then_gone)
    assert server.children() == [4243]
