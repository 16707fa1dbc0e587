"""Helpers for tests that wait for a server's asynchronous doing (a lease
break arriving, a reaper closing a handle) and count a client's requests."""
from __future__ import annotations

import time
from typing import Callable


def eventually(predicate: Callable[[], object], timeout: float = 10.0,
               interval: float = 0.02) -> None:
    """Wait until ``predicate()`` is true; AssertionError after ``timeout``
    seconds.  For state that has no event to wait on (another process's)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true within {timeout} s: {predicate}"
        time.sleep(interval)


def requests(tree, *commands: str) -> int:
    """How many requests of ``commands`` (e.g. "CREATE") ``tree``'s client sent."""
    stats = tree.client.stats()
    return sum(stats.get(c, {}).get("ops", 0) for c in commands)
