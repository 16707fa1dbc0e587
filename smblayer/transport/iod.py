"""smbiod: the bounded worker pool that runs async completions, break
callbacks, keepalives and echo probes.  Recovery (reconnect handlers) never
runs here: user work could fill the pool (see connect.py).

Like ``concurrent.futures.ThreadPoolExecutor`` but with two properties the
layer needs: the queue is bounded (a flood of callbacks applies back-pressure
instead of growing memory), and idle workers exit after ``idle_timeout`` so an
idle client costs no pool threads.  Work items never run under a layer lock.

The bound is far above what a connection can have outstanding (the server's
credit window, 8192 for Samba): the demux thread queues completions here, and
it must never wait for room while the workers wait for replies it delivers.
"""
from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Deque, Optional, Tuple

log = logging.getLogger("smblayer")

if TYPE_CHECKING:
    _Item = Tuple[Optional[Future], Callable, tuple]


class SmbIod:
    """A small bounded pool; ``submit(fn, *args)`` returns a Future."""

    def __init__(self, name: str = "smbiod", max_workers: int = 4,
                 max_queue: int = 65536, idle_timeout: float = 5.0):
        self._name = name
        self._max_workers = max_workers
        self._max_queue = max_queue
        self._idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._space = threading.Condition(self._cond)
        self._queue: Deque[_Item] = collections.deque()
        self._workers = 0
        self._idle = 0
        self._shutdown = False

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._put((future, fn, args))
        return future

    def call_soon(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the pool without a Future; errors are logged."""
        self._put((None, fn, args))

    def _put(self, item: _Item) -> None:
        with self._cond:
            if self._shutdown:
                raise RuntimeError("smbiod is shut down")
            while len(self._queue) >= self._max_queue and not self._shutdown:
                self._space.wait()
            self._queue.append(item)
            if self._idle:
                self._cond.notify()
            # A notified worker counts as idle until it wakes: start another
            # one whenever the queue outgrows the idle workers, or an item
            # can wait forever behind a blocked one.
            if len(self._queue) > self._idle and self._workers < self._max_workers:
                self._workers += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._workers}",
                                 daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._shutdown:
                        self._workers -= 1
                        self._cond.notify_all()
                        return
                    self._idle += 1
                    woke = self._cond.wait(self._idle_timeout)
                    self._idle -= 1
                    if not woke and not self._queue:
                        self._workers -= 1
                        self._cond.notify_all()
                        return
                future, fn, args = self._queue.popleft()
                self._space.notify()
            if future is None:
                try:
                    fn(*args)
                except BaseException:  # noqa: BLE001 - a callback must not kill the pool
                    log.exception("smbiod: callback %r failed", fn)
            elif future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # noqa: BLE001
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args

    @property
    def threads(self) -> int:
        return self._workers

    def shutdown(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Stop accepting work; queued items still run.  Never joins the
        calling thread itself (a callback may close its own client)."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            self._space.notify_all()
            if wait and not threading.current_thread().name.startswith(self._name + "-"):
                self._cond.wait_for(lambda: self._workers == 0, timeout)
