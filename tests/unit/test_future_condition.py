"""SmbFuture builds Future's fields itself (with a cheaper Condition):
these tests fail when concurrent.futures.Future grows or renames a field,
and check the Condition behaves as threading.Condition does."""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait

from smblayer.transport.completion import SmbFuture, _FutureCondition


class _Iod:
    def call_soon(self, fn, *args):
        fn(*args)


def test_smbfuture_has_every_field_future_init_sets():
    plain = vars(Future())
    ours = vars(SmbFuture(_Iod()))
    assert set(plain) <= set(ours)
    for name, value in plain.items():
        if name != "_condition":
            assert ours[name] == value and type(ours[name]) is type(value), name


def test_condition_waits_notifies_and_is_reentrant():
    cond = _FutureCondition()
    got = []

    def waiter():
        with cond:
            got.append(cond.wait(timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 10
    while not cond._waiters and time.monotonic() < deadline:
        time.sleep(0.001)
    with cond:
        with cond:                      # an RLock: a Future re-enters it
            cond.notify_all()
    t.join(10)
    assert got == [True]
    assert cond.acquire(False) and cond._is_owned()
    cond.release()
    assert not cond._is_owned()


def test_wait_and_result_across_threads():
    futures = [SmbFuture(_Iod()) for _ in range(4)]
    threading.Timer(0.05, futures[2].set_result, (7,)).start()
    done, pending = wait(futures, timeout=10, return_when=FIRST_COMPLETED)
    assert done == {futures[2]} and futures[2].result() == 7
    threading.Timer(0.05, futures[0].set_exception, (ValueError("x"),)).start()
    try:
        futures[0].result(timeout=10)
    except ValueError as exc:
        assert str(exc) == "x"
    else:
        raise AssertionError("no exception")
    assert futures[1].cancel() and futures[1].cancelled()
