"""CompoundRun: an SMB2 compound request sent without waiting.

Theory of operation.  ``client.run_compound_async(tasks)`` gives every
element task its own Future (so the demux and smbiod settle each one exactly
as they settle a ``run_task_async`` task) and ties them together in one
CompoundRun, which owns:

* ``future``: the Future the caller gets, settled with the list of replies
  (or the first element's error, in order, as ``run_compound`` raises it)
  when every element is final;
* the unit rule: a compound is sent, and resent, whole.  The client sends
  the group when it sends its first task (``task.group``), parks only the
  first one while it is not ACTIVE, and fails an element that lost its
  connection with :class:`CompoundLost` instead of reissuing it alone.
  When the last element settles and one of them was lost, the run resets
  all of them and sends the compound again (after the reconnect: the send
  parks until the client is ACTIVE), within the client's own resend bound;
  an expired session is renewed and the compound resent, as in
  ``run_compound``;
* cancellation: cancelling ``future`` cancels every element (never sent if
  not yet on the wire, CANCEL otherwise, exactly as ``task.cancel()``).

Everything here runs on smbiod (element settlement) or in the caller's
thread (cancel), never under a layer lock except the MID-table lock the
state moves need.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import List, Optional, Sequence

from ..errors import SmbCancelledError, SmbConnectionError
from .task import SmbTask, TaskState, move


class CompoundLost(SmbConnectionError):
    """An element of an async compound lost its connection: the whole
    compound is sent again (never seen by a caller)."""


class CompoundRun:
    """One async compound (see the module docstring)."""

    __slots__ = ("client", "tasks", "related", "future", "_lock", "_pending", "_outcome")

    def __init__(self, client, tasks: Sequence[SmbTask], related: bool):
        self.client = client
        self.tasks: List[SmbTask] = list(tasks)
        self.related = related
        self.future: Future = Future()
        self._lock = threading.Lock()
        self._pending = 0
        self._outcome: List[Optional[Future]] = []
        for task in self.tasks:
            task.group = self
        self._arm()
        self.future.add_done_callback(self._caller_done)

    def _arm(self) -> None:
        """A fresh Future per element (each send of the compound)."""
        self._pending = len(self.tasks)
        self._outcome = [None] * len(self.tasks)
        for index, task in enumerate(self.tasks):
            element: Future = Future()
            task.future = element
            element.add_done_callback(lambda f, i=index: self._element_done(i, f))

    def _element_done(self, index: int, element: Future) -> None:
        with self._lock:
            self._outcome[index] = element
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._settle()

    def _settle(self) -> None:
        """Every element is final (smbiod): resend, or settle the caller."""
        if self.future.done():               # cancelled by the caller
            return self._release()
        client = self.client
        lost = any(not f.cancelled() and isinstance(f.exception(), CompoundLost)
                   for f in self._outcome)
        try:
            resend = lost or client._renewed(self.tasks)
        except BaseException as exc:  # noqa: BLE001  (renewing the session failed)
            self.future.set_exception(exc)
            return self._release()
        if resend:
            with client._inflight.lock:
                for task in self.tasks:
                    if task.state.final:
                        move(task, TaskState.NEW)
                    task.reply = task.error = None
            self._arm()
            client._send_async(self.tasks[0])
            return
        for element in self._outcome:
            exc = SmbCancelledError("request cancelled") if element.cancelled() \
                else element.exception()
            if exc is not None:
                self.future.set_exception(exc)
                return self._release()
        self.future.set_result([f.result() for f in self._outcome])
        self._release()

    def _caller_done(self, future: Future) -> None:
        if future.cancelled():
            future.set_running_or_notify_cancel()     # wakes wait() / as_completed()
            for task in self.tasks:
                self.client.cancel_task(task)

    def _release(self) -> None:
        """No cycle keeps the tasks alive once the caller has its answer."""
        for task in self.tasks:
            task.group = None
            task.future = None
