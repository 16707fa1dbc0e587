"""CompoundRun: an SMB2 compound request sent without waiting.

Theory of operation.  ``client.run_compound_async(tasks)`` ties the element
tasks together in one CompoundRun, which owns:

* ``future``: the Future the caller gets (an ``SmbFuture``: its user
  callbacks run on smbiod), settled with the list of replies (or the first
  element's error, in order, as ``run_compound`` raises it) once every
  element is final.  The elements carry it as their ``future`` (they are
  async tasks) and the run as their ``group``; the client's ``_wake`` calls
  ``settle_here_or_defer()`` for each, and the whole compound is settled
  once, when its last element is final: right there in the reader, as a
  single async task is, unless settling may block (a session to renew, a
  compound to resend: then the client queues ``settle`` on smbiod);
* the unit rule: a compound is sent, and resent, whole.  The client sends
  the group when it sends its first task, parks only the first one while it
  is not ACTIVE, and fails an element that lost its connection with
  :class:`CompoundLost` instead of reissuing it alone.  ``settle`` then
  resets every element and sends the compound again (the send parks until
  the client is ACTIVE), within the client's own resend bound; an expired
  session is renewed and the compound resent, as in ``run_compound``;
* cancellation: cancelling ``future`` cancels every element (never sent if
  not yet on the wire, CANCEL otherwise, exactly as ``task.cancel()``).

``settle_here_or_defer`` runs wherever a task is woken (demux, a caller
on the fast path, a canceller, the connect worker); ``settle`` there or on
smbiod, never under a layer lock except the MID-table lock the state moves
need.

Interface: built by the client with the MID-table lock and four of its
callables: ``renewed(tasks)``, ``finish(task)``, ``send(task)`` (the async
send) and ``cancel(task)``, and the ``future`` to settle (a plain Future if
none is given).

:class:`CompoundMixin` is the client's compound API (``run_compound``,
``run_compound_async``): it uses the client's request path (``_send_all``,
``_check_task``, ``_abandon``, ``_resend_needed``, ``_renewed``, ``_finish``,
``_annotate``, ``_send_async``) and its MID table and credit gate.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence

from ..errors import SmbCancelledError, SmbConnectionError, SmbError
from ..loopcheck import check_not_in_loop
from .completion import SmbFuture, needs_iod
from .states import ClientState
from .task import Reply, SmbTask, TaskState, move

# Enum members as module constants (see task.py: the hot path's enum cost)
_ACTIVE, _DONE, _NEW = ClientState.ACTIVE, TaskState.DONE, TaskState.NEW


class CompoundLost(SmbConnectionError):
    """An element of an async compound lost its connection: the whole
    compound is sent again (never seen by a caller)."""


class CompoundRun:
    """One async compound (see the module docstring)."""

    __slots__ = ("tasks", "related", "future", "_lock", "_settled", "_table_lock",
                 "_renewed", "_finish", "_send", "_cancel")

    def __init__(self, tasks: Sequence[SmbTask], related: bool, *, table_lock,
                 renewed: Callable, finish: Callable, send: Callable, cancel: Callable,
                 future: Optional[Future] = None):
        self._table_lock = table_lock
        self._renewed = renewed
        self._finish = finish
        self._send = send
        self._cancel = cancel
        self.tasks: List[SmbTask] = list(tasks)
        self.related = related
        self.future: Future = Future() if future is None else future
        self._lock = threading.Lock()
        self._settled = False
        for task in self.tasks:
            task.group = self
            task.future = self.future
        # bookkeeping, in the cancelling thread (as a single task's is)
        getattr(self.future, "add_internal_callback", self.future.add_done_callback)(
            self._caller_done)

    def settle_here_or_defer(self) -> bool:
        """An element was woken (any thread, no layer lock held).  Once per
        send, when every element is final: settle right here if that cannot
        block (no element lost its connection, none needs its session
        renewed), else return True: the caller runs ``settle`` on smbiod."""
        tasks = self.tasks
        if not tasks[-1].state.final:
            return False            # the common early wake-ups: not all final, no lock
        with self._lock:
            if self._settled or not all(t.state.final for t in tasks):
                return False
            self._settled = True
        if any(isinstance(t.error, CompoundLost) or needs_iod(t) for t in tasks):
            return True
        self.settle()
        return False

    def settle(self) -> None:
        """Every element is final (the reader, or smbiod when it may block):
        resend, or settle the caller."""
        future, tasks = self.future, self.tasks
        if future.done():                    # cancelled by the caller
            return self._release()
        try:
            resend = any(isinstance(t.error, CompoundLost) for t in tasks) or \
                self._renewed(tasks)
            if not resend:
                replies = [self._finish(t) for t in tasks]
        except BaseException as exc:  # noqa: BLE001
            future.set_exception(exc)
            return self._release()
        if not resend:
            future.set_result(replies)
            return self._release()
        with self._table_lock:
            for task in tasks:
                if task.state.final:
                    move(task, _NEW)
                task.reply = task.error = None
        with self._lock:
            self._settled = False
        self._send(tasks[0])

    def _caller_done(self, future: Future) -> None:
        if future.cancelled():
            future.set_running_or_notify_cancel()     # wakes wait() / as_completed()
            for task in self.tasks:
                self._cancel(task)

    def _release(self) -> None:
        """No cycle keeps the tasks alive once the caller has its answer."""
        for task in self.tasks:
            task.group = None
            task.future = None


class CompoundMixin:
    """SmbClient's compound API; see the module docstring."""

    def run_compound(self, tasks: Sequence[SmbTask], related: bool = True) -> List[Reply]:
        """Send ``tasks`` as one SMB2 compound request (one frame, one round
        trip; [MS-SMB2] 3.2.4.1.4) and return their replies in order.  With
        ``related`` the later requests work on the first one's handle (their
        bodies carry FileId 0xFF..FF).  If a reconnect interrupts it, the
        whole compound is sent again.  Errors raise as in run_task."""
        check_not_in_loop()
        tasks = self._compound_tasks(tasks)
        for task in tasks:
            task.parking = threading.Lock()
            task.parking.acquire()
        try:
            while True:
                demux = self._send_all(tasks, related, fast=True)
                if demux is not None:          # the caller fast path, as in run_task
                    try:
                        for task in tasks:
                            demux.read_for(task)
                    finally:
                        demux.release_reader_role()
                for task in tasks:
                    task.parking.acquire()
                if not self._resend_needed(tasks):
                    break
                # A compound is one unit: resend the whole chain, the
                # elements that did complete too.
                with self._inflight.lock:
                    for task in tasks:
                        if task.state is _DONE:
                            move(task, _NEW)
                        task.reply = None
        except BaseException as exc:
            for task in tasks:
                self._abandon(task, SmbCancelledError("request interrupted"))
            raise self._annotate(exc, tasks[0]) if isinstance(exc, SmbError) else exc
        return [self._finish(task) for task in tasks]

    def _compound_tasks(self, tasks: Sequence[SmbTask]) -> List[SmbTask]:
        """``tasks`` as a list, checked for a compound (before anything is sent)."""
        tasks = list(tasks)
        if not tasks:
            raise ValueError("an empty compound")
        conn = self.connection
        if conn is not None and conn.wire.is_smb1:
            raise ValueError("compound requests need SMB2 or later")
        for task in tasks:
            self._check_task(task)
        return tasks

    def run_compound_async(self, tasks: Sequence[SmbTask], related: bool = True) -> Future:
        """``run_compound`` without waiting: a Future of the replies in
        order, settled by the reader (the first failing element's error, in
        order, as run_compound raises it).  Cancelling the Future cancels
        every element.  A reconnect resends the whole compound."""
        tasks = self._compound_tasks(tasks)
        conn = self.connection
        run = CompoundRun(tasks, related, table_lock=self._inflight.lock,
                          renewed=self._renewed, finish=self._finish, send=self._send_async,
                          cancel=self.cancel_task, future=SmbFuture(self._iod))
        if self.state is _ACTIVE and conn is not None and not conn.lost and \
                self._credits.available > len(tasks) + 1:
            self._send_async(tasks[0])
        else:
            self._later(self._send_async, tasks[0])
        return run.future
