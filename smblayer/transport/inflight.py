"""The in-flight table: MessageIds, the requests waiting for replies, and
their timers.  No sockets, no threads of its own: unit-testable.

Theory of operation
-------------------
One lock (``lock``, the MID-table lock of DESIGN.md's lock order) guards
everything here.  A request that goes on the wire gets its MessageId from
:meth:`allocate` (SMB2: consecutive, CreditCharge ids per request; SMB1: a
16-bit MID that wraps and skips the ones still pending and 0xFFFF), is
entered with :meth:`register` and leaves with :meth:`retire` (its reply
came), :meth:`take_generation` (its connection died) or :meth:`take_all`.

Timers are one heap of ``[deadline, seq, task]`` entries.  A task has at most
one live entry (``task.timer``); re-arming or retiring a task kills its entry
by clearing the task slot, so a finished request is never kept alive by its
timer (its payload and reply are freed at once).  Dead entries are dropped
when they reach the top, and the heap is rebuilt when they outnumber the live
ones, so memory stays proportional to what is in flight.

``wake_at`` is when the timer driver (the demux) plans to look next; arming
an earlier deadline returns True so the caller can wake it.
"""
from __future__ import annotations

import heapq
import itertools
import threading
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from .task import IllegalTransition, SmbTask, TaskState

# Enum members as module constants (see task.py: the hot path's enum cost)
_INTERIM, _SENT = TaskState.INTERIM, TaskState.SENT
_SENT_BIT = _SENT.bit

NEVER = float("inf")
_COMPACT_MIN = 256


class InFlight:
    def __init__(self, lock: Optional[threading.Lock] = None) -> None:
        # Multichannel: every channel has its own table (its own MessageIds)
        # but they share the client's lock, the one that guards task states.
        self.lock = lock if lock is not None else threading.Lock()
        self.pending: Dict[int, SmbTask] = {}
        self.wake_at = NEVER
        self._next_mid = 0
        self._heap: list = []
        self._seq = itertools.count()
        self._dead = 0

    # -- MessageIds (under lock) ------------------------------------------------

    def reset(self, next_mid: int) -> None:
        """A new connection generation: numbering restarts, timers go."""
        self._next_mid = next_mid
        for entry in self._heap:
            task = entry[2]
            if task is not None:
                task.timer = None
        self._heap = []
        self._dead = 0
        self.wake_at = NEVER

    def allocate(self, smb1: bool, count: int) -> int:
        mid = self._next_mid
        if smb1:
            while mid in self.pending or mid == 0xFFFF:
                mid = (mid + 1) & 0xFFFF
            self._next_mid = (mid + 1) & 0xFFFF
            return mid
        self._next_mid = mid + count
        return mid

    def register(self, task: SmbTask, mid: int, generation: int, now: float) -> None:
        """Enter ``task`` as sent with ``mid``; raises IllegalTransition when
        it may not be sent (cancelled meanwhile)."""
        old = task.state
        if not old.allowed & _SENT_BIT:         # move(task, _SENT), without the call
            raise IllegalTransition("task", old, _SENT)
        task.state = _SENT
        task.message_id = mid
        task.generation = generation
        task.async_id = None
        task.timed_out = False
        task.sends += 1
        task.t_sent = now
        if task.sends == 1:
            task.t_first_sent = now
            task.t_pending = 0.0
        self.pending[mid] = task

    def retire(self, mid: int, generation: int) -> Optional[SmbTask]:
        """The final reply for ``mid`` came: remove and return its task
        (None if unknown or from another connection generation)."""
        task = self.pending.get(mid)
        if task is None or task.generation != generation:
            return None
        del self.pending[mid]
        entry = task.timer
        if entry is not None:           # disarm(task), without the call
            entry[2] = None
            task.timer = None
            self._dead += 1
            if self._dead > _COMPACT_MIN and self._dead * 2 > len(self._heap):
                self._compact()
        return task

    def find(self, mid: int, generation: int) -> Optional[SmbTask]:
        task = self.pending.get(mid)
        if task is None or task.generation != generation:
            return None
        return task

    def take_generation(self, generation: int) -> List[SmbTask]:
        """Remove and return every task sent on connection ``generation``."""
        taken = []
        for mid, task in list(self.pending.items()):
            if task.generation == generation:
                del self.pending[mid]
                self.disarm(task)
                taken.append(task)
        return taken

    def take_all(self) -> List[SmbTask]:
        tasks = list(self.pending.values())
        self.pending.clear()
        for task in tasks:
            self.disarm(task)
        return tasks

    # -- timers (under lock) ----------------------------------------------------

    def arm(self, task: SmbTask, deadline: float) -> bool:
        """(Re)start ``task``'s timer; True if ``wake_at`` moved earlier."""
        if task.timer is not None:
            self.disarm(task)
        task.deadline = deadline
        entry = [deadline, next(self._seq), task]
        task.timer = entry
        heapq.heappush(self._heap, entry)
        if deadline < self.wake_at:
            self.wake_at = deadline
            return True
        return False

    def disarm(self, task: SmbTask) -> None:
        entry = task.timer
        if entry is not None:
            entry[2] = None
            task.timer = None
            self._dead += 1
            if self._dead > _COMPACT_MIN and self._dead * 2 > len(self._heap):
                self._compact()

    def _compact(self) -> None:
        """Drop the dead timer entries (they outnumber the live ones)."""
        self._heap = [e for e in self._heap if e[2] is not None]
        heapq.heapify(self._heap)
        self._dead = 0

    def expire(self, now: float) -> Tuple[List[SmbTask], float]:
        """Pop every timer due at ``now``; return their tasks and the next
        deadline (NEVER if none).  Sets ``wake_at`` to that deadline."""
        heap = self._heap
        fired = []
        while heap:
            entry = heap[0]
            task = entry[2]
            if task is None:
                heapq.heappop(heap)
                self._dead -= 1
                continue
            if entry[0] > now:
                break
            heapq.heappop(heap)
            task.timer = None
            fired.append(task)
        self.wake_at = heap[0][0] if heap else NEVER
        return fired, self.wake_at

    @property
    def timers(self) -> int:
        """Live timers (for tests and stats)."""
        return len(self._heap) - self._dead

    def in_flight(self) -> List[SmbTask]:
        return [t for t in self.pending.values()
                if t.state in (_SENT, _INTERIM)]
