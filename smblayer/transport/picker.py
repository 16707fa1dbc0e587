"""Which channel a READ or WRITE goes on (multichannel): spill over.

Theory of operation
-------------------
More channels help only where a channel is the bottleneck (one NIC, one
TCP connection's window over a long link).  Where the CPUs are -- on a
2-core loopback one GIL drives the client and one smbd process serves
every channel of a session -- spreading a transfer over N channels gives
nothing and costs: N demux threads woken for the replies instead of one
(voluntary context switches per MiB 1.2 -> 1.9 with 4 channels, client
CPU per GB up 5-20 %; Samba's writes to one file, coming in on N
connections at once, spin on its inode lock twice as long).  Measured with a file's
whole window on one channel: data round trips of 1-2 ms on loopback
(p10 0.5-1.3 ms, p90 3.5-11 ms on a machine busy with other work), of
115-150 ms (never under 26 ms) over one 40 MB/s link.  So:

* **Fill first.**  A READ or WRITE goes on the first channel (channel 0,
  then the extra channels in order) that is not *congested*: a transfer
  uses as few channels as carry it.
* **Congested**: the channel holds a standing queue -- its round trips
  all stayed at or above ``spill_delay`` (20 ms) over the last
  ``INTERVAL`` (100 ms).  The estimate is the smallest sample of the
  current and the previous interval (CoDel's measure of a standing
  queue): the head of a burst the client queued itself, or one request
  between two scheduling stalls of a busy machine, is enough to show
  there is none.  20 ms, not CoDel's 5: the samples include our own
  scheduling delays, which on this 2-core machine at load 4 stay above
  10 ms for 200 ms at a time.  Yet below what any link that a second
  channel helps shows: one 1 MiB request over 40 MB/s takes 26 ms, a
  file's 8 MiB window queued on a 1 GbE NIC 67 ms.
* **No estimate** (no sample for ``STALE``: a transfer starting, a pause,
  a channel skipped because it was congested): the age of the channel's
  oldest timed request in flight stands in (0 when idle), so a transfer
  over a slow link spills once its first request has waited
  ``spill_delay``, not after its whole first window queued on channel 0,
  and a congested channel that drained is tried again.
* **Every channel congested**: the one with the fewest credits in flight
  (cifs.ko: fewest requests in flight; ties to the lower index), so a
  transfer over slow links loads them evenly.
* ``spill_delay`` 0 (``ChannelSet.spill_delay``): every channel counts as
  congested, every request goes by load (spread from the first request).

Samples: every READ and WRITE routed here is timed (``t_sent`` to
``t_done``), held by a weak reference (a finished request is not kept
alive for its sample); a request sent more than once gives none (Karn:
which send did the reply answer?).  Samples are taken when the channels
are next considered.  The caller passes the time: nothing here reads a
clock or a socket.

State: one :class:`Lane` per channel index, owned by the picker, under its
lock (a leaf); requests are routed from many threads.
"""
from __future__ import annotations

import collections
import threading
import weakref
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Deque, Dict, Sequence, Tuple

#: a standing queue of this many seconds makes a channel congested
SPILL_DELAY = 0.020
#: seconds over which the smallest round trip is the estimate (CoDel: 100 ms)
INTERVAL = 0.1
#: an estimate with no sample for this many seconds is forgotten
STALE = 0.5
#: requests timed per channel at most (the oldest are dropped unsampled)
TIMED = 64

_INF = float("inf")


class Lane:
    """One channel's round-trip estimate and the requests it times."""

    __slots__ = ("timed", "opened", "current", "previous", "last")

    def __init__(self) -> None:
        self.timed: Deque[weakref.ref] = collections.deque(maxlen=TIMED)
        self.opened = -_INF          # when the current interval began
        self.current = _INF          # smallest sample of the current interval
        self.previous = _INF         # ... of the previous one
        self.last = -_INF            # when the last sample came

    def time(self, task) -> None:
        """Take a sample of ``task`` when its reply has come."""
        if task.sends == 0:           # a resend gives none (Karn)
            self.timed.append(weakref.ref(task))

    def sample(self, rtt: float, at: float) -> None:
        """A round trip of ``rtt`` seconds that ended at ``at``."""
        if at - self.opened >= INTERVAL:
            # a new interval; the one before counts only if it was the last
            self.previous = self.current if at - self.opened < 2 * INTERVAL else _INF
            self.opened, self.current = at, rtt
        elif rtt < self.current:
            self.current = rtt
        if at > self.last:
            self.last = at

    def delay(self, now: float) -> float:
        """The standing delay; with no recent sample, how long the oldest
        timed request has been in flight (0.0 if none: idle)."""
        if now - self.last <= STALE:
            return min(self.current, self.previous)
        if self.timed:
            task = self.timed[0]()
            if task is not None and task.t_sent:
                return now - task.t_sent
        return 0.0

    def harvest(self) -> None:
        """Sample the timed requests whose replies came, oldest first (a
        channel answers in about the order it was asked), up to the first
        still in flight."""
        timed = self.timed
        while timed:
            task = timed[0]()
            if task is not None:
                done = task.t_done
                if not done:
                    if not task.state.final:
                        return            # still in flight
                elif task.sends == 1:
                    self.sample(done - task.t_sent, done)
            timed.popleft()


class ChannelPicker:
    """Fill first, spill over when congested (see the module docstring)."""

    def __init__(self, spill_delay: float = SPILL_DELAY) -> None:
        self.spill_delay = spill_delay
        self._lanes: Dict[int, Lane] = {}
        self._lock = threading.Lock()

    def keep(self, task, now: float) -> bool:
        """Fill first, the common case: True (``task`` timed on channel 0)
        when channel 0 is not congested; else False and nothing done
        (``pick`` decides).  The same answer as ``pick`` with channel 0
        first, without building the candidates."""
        spill = self.spill_delay
        if spill <= 0:
            return False
        with self._lock:
            lane = self._harvested(0)
            if lane.delay(now) >= spill:
                return False
            lane.time(task)
        return True

    def pick(self, task, candidates: Sequence[Tuple[int, int]], now: float) -> int:
        """The index of the channel ``task`` goes on, from ``candidates``:
        (index, credits in flight) of each channel that can take it, in
        order of preference (channel 0 first); ``now``: time.monotonic()."""
        spill = self.spill_delay
        with self._lock:
            chosen = least = None
            for index, in_flight in candidates:
                lane = self._harvested(index)
                if spill > 0 and lane.delay(now) < spill:
                    chosen = index, lane        # the first one not congested
                    break
                if least is None or in_flight < least:
                    chosen, least = (index, lane), in_flight
            index, lane = chosen
            lane.time(task)
        return index

    def _harvested(self, index: int) -> Lane:
        """Under _lock: channel ``index``'s lane, its answered requests sampled."""
        lane = self._lanes.get(index)
        if lane is None:
            lane = self._lanes[index] = Lane()
        lane.harvest()
        return lane
