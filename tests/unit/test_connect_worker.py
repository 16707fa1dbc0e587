"""ConnectWorker.join against a worker being started (seen in
test_sessions' tampered-reply test under load: "cannot join thread before
it is started")."""
import threading
import time
from types import SimpleNamespace

from smblayer.transport import connect

RealThread = threading.Thread


class _SlowStart(RealThread):
    """A thread whose start() comes late, after kick() has assigned it."""
    assigned = threading.Event()

    def start(self):
        _SlowStart.assigned.set()
        time.sleep(0.3)
        super().start()


def test_join_while_the_worker_is_being_started(monkeypatch):
    monkeypatch.setattr(connect.threading, "Thread", _SlowStart)
    release = threading.Event()
    worker = connect.ConnectWorker(
        SimpleNamespace(host="h", port=1), state_cond=threading.Condition(), move=None,
        inflight=None, credits=None, sender=SimpleNamespace(attach=lambda *a: None),
        liveness=None, stats=None, hooks=None, new_demux=None, wake=None, resend=None)
    worker._connect_loop = lambda first: release.wait(5)
    errors = []
    k = RealThread(target=worker.kick)
    k.start()
    assert _SlowStart.assigned.wait(5)
    try:
        worker.join(0.5)                 # must not raise on the not-yet-started thread
    except RuntimeError as exc:          # pragma: no cover - the defect
        errors.append(exc)
    finally:
        release.set()
        k.join(5)
        worker.join(5)
    assert errors == []
