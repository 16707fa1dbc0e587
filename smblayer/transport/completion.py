"""Completing requests without hand-offs.

Theory of operation
-------------------
A reply is read by the demux thread (or by a caller on the fast path).  The
cheapest completion is the one made right there: no queue, no thread hop.
Two things used to force a hop to smbiod for an async task: settling a
``concurrent.futures.Future`` runs its done-callbacks in the settling
thread, and the demux must never run user code; and a reply may need a
blocking step (a session re-authenticating after
STATUS_NETWORK_SESSION_EXPIRED).

:class:`SmbFuture` removes the first: every callback a user adds goes to
smbiod (a callback added after the Future is done runs at once in the
adding thread, as concurrent.futures does).  The layer's own bookkeeping
callback (:meth:`SmbFuture.add_internal_callback`) runs in the settling
thread: it takes no lock and runs no user code.  So the demux settles a
Future itself, and only a reply that needs a blocking step still goes to
smbiod (``needs_iod``).  Cancelling the Future cancels its request through
the client and task it was built with, in the cancelling thread: no
bookkeeping callback is added to every Future and run at every settle.

:class:`Batch` is the drain-many half: the frames of one ``recv`` complete
their tasks into a batch, and only when every frame of that read is
dispatched is each completed task woken, once, in arrival order.  A waiter
so never runs (and takes the GIL) while the reader still has replies to
place, and a reader that fails mid-read still wakes what it completed.
"""
from __future__ import annotations

import collections
import logging
import threading
from _thread import RLock as _RLock
from concurrent.futures import Future
from concurrent.futures._base import PENDING as _PENDING
from operator import attrgetter
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, List

from ..proto.status import NtStatus

log = logging.getLogger("smblayer")

#: statuses whose completion blocks (re-authentication): settled on smbiod
BLOCKING_STATUSES = frozenset({NtStatus.NETWORK_SESSION_EXPIRED})


class _FutureCondition(threading.Condition):
    """A Future's Condition built for the cost of an RLock and a deque:
    ``threading.Condition.__init__`` binds five of the lock's methods into
    the instance dict, 7 k instructions, the largest part of making a
    Future.  Here they are read through the lock when used (C getters, no
    Python frame)."""

    def __init__(self) -> None:          # (no Condition.__init__: see above)
        self._lock = _RLock()
        self._waiters = collections.deque()

    acquire = property(attrgetter("_lock.acquire"))
    release = property(attrgetter("_lock.release"))
    _release_save = property(attrgetter("_lock._release_save"))
    _acquire_restore = property(attrgetter("_lock._acquire_restore"))
    _is_owned = property(attrgetter("_lock._is_owned"))
    # ``with`` looks these up on the type and binds them: the RLock's own C
    # methods, not Condition's Python __enter__/__exit__ (two frames a ``with``,
    # two ``with`` blocks an async request: set_result() and result())
    __enter__ = property(attrgetter("_lock.__enter__"))
    __exit__ = property(attrgetter("_lock.__exit__"))

    def notify_all(self) -> None:
        """Condition.notify_all, at no cost when nobody waits (a Future's
        waiters are usually ``wait()``'s, not this Condition's)."""
        if self._waiters:
            self.notify(len(self._waiters))


class SmbFuture(Future):
    """A Future whose user callbacks run on smbiod, never in the thread that
    settles it (the demux).  ``iod`` is the client's smbiod pool; cancelling
    it cancels ``task`` on ``client`` (when given: an async request)."""

    def __init__(self, iod, client=None, task=None) -> None:
        # Future.__init__'s fields (tests/unit checks they are all of them),
        # with a cheaper Condition
        self._condition = _FutureCondition()
        self._state = _PENDING
        self._result = self._exception = None
        self._waiters: list = []
        self._done_callbacks: list = []
        self._iod = iod
        self._client, self._task = client, task

    def cancel(self) -> bool:
        """Cancel as concurrent.futures does; the call that cancels a pending
        Future also marks it notified (``wait()`` and ``as_completed()`` see
        it at once) and cancels the request (never sent, or CANCEL sent and
        its MessageId kept): in the cancelling thread, no lock held, once."""
        if not super().cancel():
            return False
        with self._condition:
            client, self._client = self._client, None
            task, self._task = self._task, None
        if client is not None:
            self.set_running_or_notify_cancel()
            client.cancel_task(task)
            task.future = None          # no cycle keeps the task alive
        return True

    def forget_cancel(self) -> None:
        """The request is over: drop the client and task a cancel would use."""
        self._client = self._task = None

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        with self._condition:          # an RLock: done() may take it again
            if not self.done():
                self._done_callbacks.append(_OnIod(self._iod, fn))
                return
        try:
            fn(self)
        except Exception:  # noqa: BLE001 - as concurrent.futures does
            log.exception("exception calling callback for %r", self)

    def add_internal_callback(self, fn: Callable[[Future], object]) -> None:
        """A layer callback that runs in the settling thread (no lock, no
        user code, no blocking)."""
        super().add_done_callback(fn)


class _OnIod:
    """A user callback of an SmbFuture, rerouted to smbiod when it fires."""

    __slots__ = ("iod", "fn")

    def __init__(self, iod, fn) -> None:
        self.iod, self.fn = iod, fn

    def __call__(self, future: Future) -> None:
        try:
            self.iod.call_soon(self.fn, future)
        except RuntimeError:           # smbiod is shut down: the client closed
            self.fn(future)


def needs_iod(task) -> bool:
    """True when settling ``task``'s Future may block: hand it to smbiod."""
    reply = task.reply
    return reply is not None and reply.status in BLOCKING_STATUSES


class Batch:
    """Tasks completed by one read, woken together after it (see above)."""

    __slots__ = ("_tasks", "add")

    def __init__(self) -> None:
        self._tasks: List[object] = []
        #: add(task): collect a completed task (a bound list.append: no call frame)
        self.add = self._tasks.append

    def flush(self, wake: Callable[[object], None]) -> None:
        """``wake`` every task collected, each once (no lock held)."""
        tasks = self._tasks
        if not tasks:
            return
        if len(tasks) == 1:
            task = tasks.pop()
            wake(task)
            return
        done = tasks[:]
        tasks.clear()
        for task in done:
            wake(task)
