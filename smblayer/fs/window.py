"""How many READs or WRITEs one open file keeps in flight.

Theory of operation
-------------------
A fixed number of requests in flight caps a transfer at that many requests
per round trip: 8 x 1 MiB is plenty on loopback, but only 200 MiB/s over a
40 ms link.  ``IoWindow`` lets the count grow to the bandwidth-delay product
the way TCP Vegas finds it, from the replies alone:

* every reply gives a round-trip sample (request sent to reply in);
* while samples stay near the smallest seen, nothing queues on the way, so
  one more request in flight is one more request's worth of throughput:
  the window grows by one per such reply (it doubles about once per round
  trip, like a slow start);
* when samples rise well above the minimum, requests queue at the server,
  on the link or in our own receive path, and more in flight would only add
  delay and memory: growth stops, and the window shrinks back toward the
  floor while the queueing lasts.

Below ``GROW_ABOVE_RTT`` (a LAN, loopback) the floor already covers the
bandwidth-delay product (8 MiB in 4 ms is 2 GB/s) and the window never
grows: measured on loopback, a larger window only cost cache misses
(15-25 % of file-object throughput).

Bounds: never below ``floor``, never above ``ceiling`` (the file sets it
from a memory budget; the client's credit gate limits further by making
senders wait).

Sans-I/O: the caller passes the samples; nothing here reads a clock.
"""
from __future__ import annotations

#: data in flight for one file at most (read-ahead buffers, write-behind copies)
MAX_WINDOW_BYTES = 64 << 20

_GROW_SLACK = 1.5        # a sample within 1.5 x the minimum (+ _JITTER) is "not queueing"
_SHRINK_AT = 3.0         # a sample above 3 x the minimum (+ _JITTER) is queueing
_JITTER = 0.0005         # seconds: scheduling noise on a quiet link
#: round trips below this never grow the window (the floor covers the BDP)
GROW_ABOVE_RTT = 0.004


class IoWindow:
    """The in-flight request count of one file's pipelined I/O."""

    __slots__ = ("floor", "ceiling", "count", "min_rtt")

    def __init__(self, floor: int, ceiling: int) -> None:
        if floor < 1:
            raise ValueError("floor must be >= 1")
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self.count = floor
        self.min_rtt = float("inf")

    @classmethod
    def for_chunk(cls, floor: int, chunk: int,
                  max_bytes: int = MAX_WINDOW_BYTES) -> "IoWindow":
        """A window of at least ``floor`` requests of ``chunk`` bytes and at
        most ``max_bytes`` in flight."""
        return cls(floor, max_bytes // max(chunk, 1))

    def sample(self, rtt: float) -> None:
        """One reply's round trip (seconds, send to reply)."""
        if rtt <= 0.0:
            return
        if rtt < self.min_rtt:
            self.min_rtt = rtt
        base = self.min_rtt
        if base < GROW_ABOVE_RTT:
            return
        if rtt <= base * _GROW_SLACK + _JITTER:
            if self.count < self.ceiling:
                self.count += 1
        elif rtt > base * _SHRINK_AT + _JITTER and self.count > self.floor:
            self.count -= 1

    def __repr__(self) -> str:
        return (f"IoWindow(count={self.count}, floor={self.floor}, ceiling={self.ceiling}, "
                f"min_rtt={self.min_rtt * 1e3:.2f} ms)")
