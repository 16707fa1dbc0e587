"""The credit gate: requests wait here, first come first served, until the
server has granted enough credits ([MS-SMB2] 3.2.4.1.5).  SMB1 uses the same
gate with the server's MaxMpxCount as a fixed pool.

While requests are in flight (their replies will grant more), one credit
is kept back for priority requests (echo probes, break acknowledgements),
which also skip the queue, so a client that has spent its window can still
prove the server alive and answer a break.  With nothing in flight the last
credit may go to anyone: right after NEGOTIATE the server grants just one.

Starved: the first waiter needs more than is left and nothing is in flight,
so no reply is coming to grant more ([MS-SMB2] 3.3.1.2 tells a server never
to leave a client so, but an error reply granting nothing after a few
one-credit requests does: a failed SESSION_SETUP of a reconnect left one
credit for a three-credit compound).  The waiter then calls ``starved(left)``
(outside the lock), once per wake-up: the client asks the server for
credits with an ECHO, or reconnects when none is left (cifs.ko: EDEADLK).
"""
from __future__ import annotations

import collections
import threading
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, Deque, Optional


class CreditsAborted(Exception):
    """The wait was abandoned (connection lost, task cancelled, client closed)."""


class CreditGate:
    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        #: credits at hand, and taken by requests still waiting for their
        #: replies (plain attributes, read without the lock; only the gate
        #: writes them)
        self.available = 0
        self.in_flight = 0
        self._queue: Deque[object] = collections.deque()

    def take(self, need: int, priority: bool, abort: Callable[[], bool],
             before_wait: Optional[Callable[[], None]] = None,
             starved: Optional[Callable[[int], None]] = None) -> None:
        """Take ``need`` credits, waiting FIFO; ``abort()`` is checked on
        every wake-up and raises CreditsAborted when true.  ``before_wait()``
        runs (no lock held) when the caller must wait: e.g. to write the
        requests it queued, whose replies grant the credits.
        ``starved(left)`` runs (no lock held) when the gate is starved (see
        the module's docstring)."""
        if self.take_now(need, priority):
            return
        if before_wait is not None:
            before_wait()
        with self._cond:
            me = object()
            self._queue.append(me)
            asked = False
            try:
                while True:
                    if abort():
                        raise CreditsAborted()
                    if (priority or self._queue[0] is me) and \
                            self.available - self._reserve(priority) >= need:
                        self.available -= need
                        self.in_flight += need
                        return
                    if starved is not None and not asked and not self.in_flight and \
                            self._queue[0] is me:
                        asked = True
                        left = self.available
                        self._lock.release()
                        try:
                            starved(left)
                        finally:
                            self._lock.acquire()
                        continue        # a grant may have come meanwhile
                    self._cond.wait()
                    asked = False
            finally:
                self._queue.remove(me)
                if self._queue:
                    self._cond.notify_all()

    def take_now(self, need: int, priority: bool) -> bool:
        """Take ``need`` credits if ``take`` would without waiting (first
        come first served, the reserve kept); False, nothing taken, if not."""
        with self._lock:
            if (priority or not self._queue) and \
                    self.available - (0 if priority or not self.in_flight else 1) >= need:
                self.available -= need
                self.in_flight += need
                return True
        return False

    def try_take(self, need: int) -> bool:
        """Take ``need`` credits now (priority: may use the reserve) or not at all."""
        with self._lock:
            if self.available >= need:
                self.available -= need
                self.in_flight += need
                return True
            return False

    def _reserve(self, priority: bool) -> int:
        return 0 if priority or not self.in_flight else 1

    def grant(self, count: int, retired: int = 0) -> None:
        """A reply granted ``count`` credits and completed a request that had
        taken ``retired``."""
        with self._lock:
            self.available += count
            left = self.in_flight - retired
            self.in_flight = left if left > 0 else 0      # (no max(): a C call)
            if self._queue:
                self._cond.notify_all()

    def reset(self, count: int) -> None:
        """A new connection generation starts with what NEGOTIATE granted."""
        with self._cond:
            self.available = count
            self.in_flight = 0
            self._cond.notify_all()

    def wake_all(self) -> None:
        """Make every waiter re-check its abort condition."""
        with self._cond:
            self._cond.notify_all()
