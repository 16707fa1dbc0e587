"""The core's tables driven directly, without sockets: the task and client
transition tables, the in-flight table (MessageIds, SMB1 wrap, timers and
what they keep alive) and the credit gate."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest

from smblayer.transport.credits import CreditGate, CreditsAborted
from smblayer.transport.inflight import NEVER, InFlight
from smblayer.client import CLIENT_TRANSITIONS, ClientState
from smblayer.task import (FINAL_STATES, TRANSITIONS, IllegalTransition, SmbTask, TaskState,
                           can_move, move)

S = TaskState


def task_in(state: TaskState) -> SmbTask:
    t = SmbTask(0x0D, (b"\x04\x00\x00\x00",))
    t.state = state
    return t


# -- task table --------------------------------------------------------------------

LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]
ILLEGAL = [(a, b) for a in TaskState for b in TaskState if b not in TRANSITIONS[a]]


@pytest.mark.parametrize("old,new", LEGAL, ids=[f"{a.name}->{b.name}" for a, b in LEGAL])
def test_legal_task_moves(old, new):
    t = task_in(old)
    move(t, new)
    assert t.state is new


@pytest.mark.parametrize("old,new", ILLEGAL, ids=[f"{a.name}->{b.name}" for a, b in ILLEGAL])
def test_illegal_task_moves_raise_and_leave_the_state(old, new):
    t = task_in(old)
    with pytest.raises(IllegalTransition):
        move(t, new)
    assert t.state is old and not can_move(t, new)


def test_a_cancelled_task_can_never_be_sent():
    for state in (S.CANCELLED, S.FAILED, S.DONE):
        assert not can_move(task_in(state), S.SENT)
    assert all(S.CANCELLED in TRANSITIONS[s] for s in TaskState if s not in FINAL_STATES)


def test_every_state_is_reachable_from_new():
    seen, todo = {S.NEW}, [S.NEW]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(TaskState)


def test_client_table():
    C = ClientState
    assert CLIENT_TRANSITIONS[C.CLOSED] == frozenset()
    assert all(C.CLOSED in CLIENT_TRANSITIONS[s] for s in C if s is not C.CLOSED)
    assert C.ACTIVE not in CLIENT_TRANSITIONS[C.ACTIVE]
    assert C.CONNECTING not in {t for ts in CLIENT_TRANSITIONS.values() for t in ts}


# -- in-flight table ---------------------------------------------------------------

def queued() -> SmbTask:
    return task_in(S.QUEUED)


def test_smb2_message_ids_advance_by_credit_charge():
    table = InFlight()
    table.reset(1)
    assert [table.allocate(False, n) for n in (1, 16, 1)] == [1, 2, 18]


def test_smb1_mids_wrap_and_skip_pending_and_ffff():
    table = InFlight()
    table.reset(0xFFFD)
    busy = queued()
    table.register(busy, 0, generation=1, now=0.0)      # MID 0 still pending
    assert table.allocate(True, 1) == 0xFFFD
    assert table.allocate(True, 1) == 0xFFFE
    assert table.allocate(True, 1) == 1                 # 0xFFFF and busy 0 skipped


def test_register_retire_and_generation():
    table = InFlight()
    t = queued()
    table.register(t, 7, generation=3, now=1.0)
    assert t.state is S.SENT and t.sends == 1 and t.t_first_sent == 1.0
    assert table.retire(7, generation=2) is None          # a reply from an old socket
    assert table.retire(7, generation=3) is t
    assert table.retire(7, generation=3) is None


def test_register_refuses_a_cancelled_task():
    table = InFlight()
    t = task_in(S.CANCELLED)
    with pytest.raises(IllegalTransition):
        table.register(t, 1, generation=1, now=0.0)
    assert not table.pending


def test_timers_fire_in_deadline_order_and_rearm_replaces():
    table = InFlight()
    a, b, c = queued(), queued(), queued()
    for mid, t in enumerate((a, b, c)):
        table.register(t, mid, generation=1, now=0.0)
    assert table.arm(a, 5.0) is True          # earlier than "never": wake the demux
    assert table.arm(b, 3.0) is True
    assert table.arm(c, 9.0) is False
    table.arm(a, 10.0)                         # re-armed: the 5.0 entry is dead
    fired, nxt = table.expire(6.0)
    assert fired == [b] and nxt == 9.0 and table.wake_at == 9.0
    fired, nxt = table.expire(100.0)
    assert fired == [c, a] and nxt == NEVER
    assert table.timers == 0


def test_a_finished_request_is_not_kept_alive_by_its_timer():
    table = InFlight()
    t = queued()
    t.body = (bytearray(1 << 20),)
    table.register(t, 1, generation=1, now=0.0)
    table.arm(t, 1e9)
    ref = weakref.ref(t)
    assert table.retire(1, generation=1) is t
    del t
    gc.collect()
    assert ref() is None


def test_dead_timer_entries_are_compacted():
    table = InFlight()
    for mid in range(5000):
        t = queued()
        table.register(t, mid, generation=1, now=0.0)
        table.arm(t, 1e9 + mid)
        table.retire(mid, generation=1)
    assert table.timers == 0
    assert len(table._heap) < 1000


def test_take_generation_only_takes_that_generation():
    table = InFlight()
    old, new = queued(), queued()
    table.register(old, 1, generation=1, now=0.0)
    table.register(new, 2, generation=2, now=0.0)
    table.arm(old, 5.0)
    assert table.take_generation(1) == [old]
    assert list(table.pending.values()) == [new] and old.timer is None


# -- credit gate -------------------------------------------------------------------

def test_credit_gate_keeps_one_for_priority_while_in_flight():
    gate = CreditGate()
    gate.reset(2)
    gate.take(1, False, lambda: False)           # 1 in flight, 1 left
    got = []
    waiter = threading.Thread(target=lambda: (gate.take(1, False, lambda: False),
                                              got.append(1)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got          # the last credit is the reserve
    gate.take(1, True, lambda: False)             # a probe may use it
    gate.grant(2, 1)
    waiter.join(2)
    assert got == [1]


def test_a_starved_credit_gate_asks_for_credits():
    """One credit left, three needed, nothing in flight: no reply will grant
    more, so the waiter calls ``starved(left)`` (once per wake-up, outside
    the gate's lock) -- the client then asks the server for credits -- and
    takes its credits when they come."""
    gate = CreditGate()
    gate.reset(1)
    calls, got = [], []

    def starved(left):
        calls.append(left)
        assert gate.try_take(1)          # the ECHO asking for credits: no deadlock
    waiter = threading.Thread(target=lambda: (gate.take(3, False, lambda: False, None, starved),
                                              got.append(3)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and calls == [1] and not got    # the ECHO is in flight
    gate.grant(8, 1)                     # its reply grants 8
    waiter.join(2)
    assert got == [3] and gate.available == 5


def test_a_credit_gate_with_requests_in_flight_is_not_starved():
    gate = CreditGate()
    gate.reset(2)
    gate.take(2, False, lambda: False)   # their replies will grant more
    calls = []
    waiter = threading.Thread(target=gate.take, args=(3, False, lambda: False, None,
                                                      calls.append))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and calls == []
    gate.grant(1, 2)                     # replies granted little: now it is starved
    waiter.join(0.2)
    assert calls == [1]
    gate.grant(5)
    waiter.join(2)
    assert not waiter.is_alive()


def test_credit_gate_is_fifo_and_abortable():
    gate = CreditGate()
    gate.reset(0)
    order, stop = [], threading.Event()

    def want(n, name):
        try:
            gate.take(n, False, stop.is_set)
            order.append(name)
        except CreditsAborted:
            order.append(name + "-aborted")

    big = threading.Thread(target=want, args=(4, "big"))
    big.start()
    while not gate._queue:
        threading.Event().wait(0.01)
    small = threading.Thread(target=want, args=(1, "small"))
    small.start()
    gate.grant(2)                      # enough for small, but big is first in line
    small.join(0.2)
    assert small.is_alive() and order == []
    stop.set()
    gate.wake_all()
    big.join(2)
    small.join(2)
    assert sorted(order) == ["big-aborted", "small-aborted"]    # nobody jumped the line


def test_credit_gate_take_now_never_jumps_the_line_nor_the_reserve():
    """take_now (the one-step send path's credit check) takes only what
    take would take without waiting: never past a waiter, never the last
    credit while requests are in flight (unless priority)."""
    gate = CreditGate()
    gate.reset(2)
    assert gate.take_now(1, False)                  # 1 in flight, 1 left
    assert not gate.take_now(1, False)              # the last one is the reserve
    assert gate.take_now(1, True)                   # a probe may use it
    assert (gate.available, gate.in_flight) == (0, 2)
    gate.grant(1, 2)                                # nothing in flight: all usable
    assert gate.take_now(1, False)
    gate.reset(0)
    waiter = threading.Thread(target=gate.take, args=(2, False, lambda: False))
    waiter.start()
    while not gate._queue:
        threading.Event().wait(0.01)
    gate.grant(1)
    assert not gate.take_now(1, False)              # the waiter is first in line
    assert gate.available == 1
    gate.grant(1)
    waiter.join(2)
    assert not waiter.is_alive() and gate.available == 0


def test_flat_credit_charge_is_what_the_wire_charges():
    """charge_task's shortcut for size-independent commands gives the
    CreditCharge (and credits) Smb2Wire/Smb1Wire.charge would, every
    dialect, every such command."""
    import types
    from smblayer.config import Dialect
    from smblayer.proto import smb1, smb2
    from smblayer.proto.credits import MULTI_CREDIT_COMMANDS
    from smblayer.transport.send import charge_task
    from smblayer.transport.task import SmbTask
    from smblayer.transport.wire import Smb1Wire, Smb2Wire
    wires = [Smb2Wire(types.SimpleNamespace(dialect=d, multi_credit=d >= Dialect.SMB2_1))
             for d in Dialect if d is not Dialect.SMB1]
    wires.append(Smb1Wire(types.SimpleNamespace(capabilities=0)))
    for wire in wires:
        commands = smb1.Command if wire.is_smb1 else smb2.Command
        for command in commands:
            if not wire.is_smb1 and command in MULTI_CREDIT_COMMANDS:
                continue
            task = SmbTask(command, (b"\0" * 4,))
            credits = charge_task(wire, task)
            assert task.credit_charge == wire.charge(command, 0, 0), (wire.dialect, command)
            assert credits == max(1, wire.charge(command, 0, 0))
