"""IoWindow: the per-file in-flight count grows while round trips stay at
their minimum, stops and shrinks when they show queueing (sans-I/O)."""
import pytest

from smblayer.fs.window import IoWindow


def test_grows_on_a_link_with_latency_up_to_the_ceiling():
    w = IoWindow(8, 64)
    for _ in range(200):
        w.sample(0.040)          # 40 ms, no queueing: every reply a minimum
    assert w.count == 64


def test_stays_at_the_floor_when_replies_queue():
    w = IoWindow(8, 64)
    w.sample(0.001)              # the first of a burst: nothing ahead of it
    for i in range(200):
        w.sample(0.001 * (2 + i % 8))   # queued behind the others (loopback)
    assert w.count <= 9


def test_never_grows_on_a_lan_or_loopback():
    w = IoWindow(8, 64)
    for _ in range(200):
        w.sample(0.002)          # 2 ms, no queueing: the floor covers the BDP
    assert w.count == 8


def test_shrinks_back_to_the_floor_when_queueing_starts():
    w = IoWindow(8, 64)
    for _ in range(40):
        w.sample(0.010)
    grown = w.count
    assert grown > 8
    for _ in range(100):
        w.sample(0.050)          # the server saturated: 5x the minimum
    assert w.count == 8


def test_memory_bound_and_validation():
    assert IoWindow.for_chunk(8, 1 << 20).ceiling == 64
    assert IoWindow.for_chunk(8, 16 << 20).ceiling == 8      # never below the floor
    w = IoWindow(2, 4)
    w.sample(0.0)
    w.sample(-1.0)               # no sample (a reply without timestamps)
    assert w.count == 2 and w.min_rtt == float("inf")
    with pytest.raises(ValueError):
        IoWindow(0, 4)
