"""Helpers for tests of ``Tree.watch`` against a real Samba (also for
downstream packages)."""
from __future__ import annotations

import time


def until(watch, wanted: tuple, timeout: float = 15.0) -> set:
    """Events before ``wanted`` (an (action, path) tuple, which must come
    within ``timeout`` seconds)."""
    seen = set()
    deadline = time.monotonic() + timeout
    while True:
        event = watch.next(max(0.0, deadline - time.monotonic()))
        assert event is not None, f"no {wanted} after {seen}"
        if tuple(event) == wanted:
            return seen
        seen.add(tuple(event))


def armed(tree, watch, d: str) -> None:
    """Samba registers a watch with its notifyd asynchronously, so a change
    made right after the request was accepted can go unreported.  Touch a
    marker until its event arrives (the watch is then live), then remove it
    and consume the removal."""
    marker = d + "/.armed"
    for _ in range(100):
        tree.write_bytes(marker, b"")
        if watch.next(0.1) is not None:
            break
    else:
        raise AssertionError(f"watch on {d!r} never reported a change")
    tree.remove(marker)
    until(watch, ("removed", marker))
