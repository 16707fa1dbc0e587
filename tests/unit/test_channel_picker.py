"""The multichannel spill-over policy (smblayer.transport.picker), sans-I/O:
round trips are given as the times a request was sent and answered."""
import gc

import pytest

from smblayer.proto import smb2
from smblayer.transport.picker import INTERVAL, SPILL_DELAY, STALE, ChannelPicker
from smblayer.transport.task import SmbTask, TaskState

pytestmark = pytest.mark.timeout(10)

MS = 1e-3


def request():
    return SmbTask(smb2.Command.WRITE, (b"x",))


def send(picker, candidates, at, tasks):
    """Route a request at ``at`` and send it; returns the channel index."""
    task = request()
    index = picker.pick(task, candidates, at)
    task.sends, task.t_sent = 1, at
    tasks.append(task)
    return index


def answer(task, at):
    task.t_done = at
    task.state = TaskState.DONE


def traffic(picker, candidates, start, rtt, count, step=1 * MS):
    """``count`` requests ``step`` apart, each answered ``rtt`` later;
    returns the channel each went on and the time after the last reply."""
    tasks, went = [], []
    for n in range(count):
        at = start + n * step
        for t in tasks:
            if not t.t_done and t.t_sent + rtt <= at:
                answer(t, t.t_sent + rtt)
        went.append(send(picker, candidates, at, tasks))
    end = start + count * step + rtt
    for t in tasks:
        if not t.t_done:
            answer(t, t.t_sent + rtt)
    return went, end, tasks


def test_a_transfer_that_does_not_queue_stays_on_channel_0_however_loaded():
    """Loopback: round trips of 1-3 ms: channel 0 keeps every request even
    with a whole window in flight and idle channels beside it."""
    picker = ChannelPicker()
    loaded = [(0, 128), (1, 0), (2, 0)]
    went, _end, _ = traffic(picker, loaded, 100.0, 2 * MS, 400)
    assert set(went) == {0}


def test_a_standing_queue_spills_to_the_next_channel_then_by_load():
    """Every round trip of channel 0 over two intervals took 30 ms: it is
    congested, the next channel takes requests (not the least loaded: fill
    first); once that one queues too, the least loaded does."""
    picker = ChannelPicker()
    _went, end, _ = traffic(picker, [(0, 0)], 100.0, 30 * MS, 300)
    assert picker.pick(request(), [(0, 10), (1, 20), (2, 0)], end) == 1
    lane1 = [(1, 20), (0, 10), (2, 0)]            # channel 1 queues as well
    _went, end, _ = traffic(picker, lane1, end, 30 * MS, 300)
    assert picker.pick(request(), [(0, 10), (1, 20), (2, 0)], end) == 2
    assert picker.pick(request(), [(0, 10), (1, 20), (2, 30)], end) == 0


def test_one_quick_round_trip_in_the_interval_means_no_standing_queue():
    """A busy machine delays most replies now and then: one sample under
    spill_delay in the current or the previous interval keeps channel 0."""
    picker = ChannelPicker()
    tasks = []
    at = 100.0
    for rtt in (30 * MS, 25 * MS, 2 * MS, 40 * MS, 30 * MS):
        send(picker, [(0, 0)], at, tasks)
        answer(tasks[-1], at + rtt)
        at += 5 * MS
    assert picker.pick(request(), [(0, 0), (1, 0)], at + 50 * MS) == 0
    # two whole intervals of slow samples since: congested
    for n in range(60):
        at += 5 * MS
        send(picker, [(0, 0)], at, tasks)
        answer(tasks[-1], at + 30 * MS)
    assert picker.pick(request(), [(0, 0), (1, 0)], at + INTERVAL) == 1


def test_before_the_first_reply_the_oldest_request_in_flight_decides():
    """A transfer starting over a slow link: no sample yet, but the first
    request has waited spill_delay: spill now, not after the whole window."""
    picker = ChannelPicker()
    tasks = []
    assert send(picker, [(0, 0), (1, 0)], 100.0, tasks) == 0
    assert send(picker, [(0, 16), (1, 0)], 100.0 + SPILL_DELAY / 2, tasks) == 0
    assert send(picker, [(0, 32), (1, 0)], 100.0 + SPILL_DELAY + MS, tasks) == 1


def test_a_congested_channel_that_got_no_traffic_is_tried_again():
    picker = ChannelPicker()
    _went, end, _ = traffic(picker, [(0, 0)], 100.0, 30 * MS, 300)
    assert picker.pick(request(), [(0, 0), (1, 0)], end) == 1
    assert picker.pick(request(), [(0, 0), (1, 0)], end + STALE + MS) == 0


def test_a_resent_request_gives_no_sample_and_none_is_kept_alive():
    """Karn: a reply to a request sent twice could answer either send.  The
    picker holds the requests it times weakly."""
    picker = ChannelPicker()
    tasks = []
    send(picker, [(0, 0), (1, 0)], 100.0, tasks)
    tasks[0].sends = 2                          # failed over: sent again
    answer(tasks[0], 100.5)                     # a 500 ms "round trip"
    assert picker.pick(request(), [(0, 0), (1, 0)], 100.5) == 0
    lane = picker._lanes[0]
    assert lane.delay(100.5) == 0.0
    del tasks[:]
    gc.collect()
    assert all(ref() is None for ref in lane.timed)


def test_spill_delay_0_routes_by_load_from_the_first_request():
    picker = ChannelPicker(spill_delay=0)
    assert picker.pick(request(), [(0, 5), (1, 3), (2, 4)], 100.0) == 1
    assert picker.pick(request(), [(0, 3), (1, 3), (2, 4)], 100.0) == 0   # ties: lower


def test_keep_answers_as_pick_does_for_channel_0():
    """``keep`` (route's shortcut) keeps a request on channel 0 exactly when
    ``pick`` would choose channel 0 first, and times it there alike."""
    for spill in (SPILL_DELAY, 0.0):
        shortcut, full = ChannelPicker(spill), ChannelPicker(spill)
        candidates = [(0, 8), (1, 0)]
        at, seen, alive = 100.0, set(), []
        for rtt in (2 * MS, 40 * MS, 2 * MS):
            for _ in range(300):
                a, b = request(), request()
                alive += a, b
                kept = shortcut.keep(a, at)
                if not kept:
                    shortcut.pick(a, candidates, at)
                assert kept == (full.pick(b, candidates, at) == 0)
                seen.add(kept)
                for t in (a, b):
                    t.sends, t.t_sent = 1, at
                    answer(t, at + rtt)
                at += 2 * MS
        assert seen == ({True, False} if spill else {False})
