"""The multichannel routing policy (ChannelSet.route), without sockets:
which channel a request goes on."""
import struct
import time

import pytest

from smblayer.proto import fileio, smb2
from smblayer.transport.channels import ACTIVE, DEAD, ChannelSet
from smblayer.transport.picker import ChannelPicker
from smblayer.transport.task import SmbTask

pytestmark = pytest.mark.timeout(10)


class Client:
    """What ChannelSet reads of a client to route (no connection)."""

    host, port = "127.0.0.1", 445

    def __init__(self, load):
        self.load = load

    def credit_load(self):
        return self.load

    def add_reconnect_handler(self, fn, stage=0):
        pass

    def add_active_handler(self, fn):
        pass


class Credits:
    def __init__(self, in_flight):
        self.in_flight = in_flight


class Channel:
    def __init__(self, index, in_flight, phase=ACTIVE):
        self.index, self.phase, self.credits = index, phase, Credits(in_flight)
        self.breaks = 0


def channel_set(load, *channels, spill_delay=0):
    """spill_delay 0: by load (the spill-over itself: test_channel_picker)."""
    cs = ChannelSet(Client(load), max_channels=4, table_lock=None, stats=None, sessions={},
                    wake=None, deliver_break=None, resend=None, before_reissue=None)
    cs.session = session = object()
    cs.channels = list(channels)
    cs.picker = ChannelPicker(spill_delay)
    return cs, session


def task(command, security):
    return SmbTask(command, (b"x",), security=security)


def test_least_credits_in_flight_wins_and_ties_stay_on_channel_0():
    one, two = Channel(1, 40), Channel(2, 10)
    cs, session = channel_set(30, one, two)
    assert cs.route(task(smb2.Command.WRITE, session)) is two
    cs, session = channel_set(10, one, two)
    assert cs.route(task(smb2.Command.READ, session)) is None      # a tie: channel 0


def test_dead_channels_and_other_commands_and_sessions_stay_off():
    dead = Channel(1, 0, phase=DEAD)
    cs, session = channel_set(100, dead)
    assert cs.route(task(smb2.Command.WRITE, session)) is None
    idle = Channel(2, 0)
    cs, session = channel_set(100, idle)
    for command in (smb2.Command.CREATE, smb2.Command.CLOSE, smb2.Command.LOCK,
                    smb2.Command.OPLOCK_BREAK, smb2.Command.IOCTL):
        assert cs.route(task(command, session)) is None
    assert cs.route(task(smb2.Command.WRITE, object())) is None   # another session
    assert cs.route(task(smb2.Command.WRITE, session)) is idle


def test_a_transfer_stays_on_channel_0_while_it_does_not_queue():
    """The default policy: channel 0 with a whole window in flight keeps the
    next READ/WRITE (spreading on a 2-core loopback cost 5-30 % of the
    write speed: the CPUs, not the channel, are the bottleneck)."""
    idle = Channel(1, 0)
    cs, session = channel_set(128, idle, spill_delay=ChannelSet.spill_delay)
    assert cs.route(task(smb2.Command.WRITE, session)) is None
    assert cs.route(task(smb2.Command.READ, session)) is None


def test_a_queueing_channel_0_spills_to_the_next_channel_not_the_least_loaded():
    """Channel 0's request has waited past spill_delay (a slow link): the
    next one goes to channel 1 (fill first), though channel 2 is idler."""
    one, two = Channel(1, 16), Channel(2, 0)
    cs, session = channel_set(16, one, two, spill_delay=ChannelSet.spill_delay)
    first = task(smb2.Command.WRITE, session)
    assert cs.route(first) is None
    first.sends, first.t_sent = 1, time.monotonic() - 1.0       # sent a second ago
    assert cs.route(task(smb2.Command.WRITE, session)) is one


def test_a_pinned_task_goes_to_its_channel_and_a_rerouted_one_forgets_its_last():
    dead = Channel(1, 0, phase=DEAD)
    cs, session = channel_set(100, dead)
    pinned = task(smb2.Command.SESSION_SETUP, session)
    pinned.channel, pinned.pinned = dead, True
    assert cs.route(pinned) is dead
    moved = task(smb2.Command.WRITE, session)
    moved.channel = dead                   # it was in flight there when it died
    assert cs.route(moved) is None and moved.channel is None


class Reply:
    """A break notification as the demux hands it over (body after the header)."""

    def __init__(self, body):
        self.body = memoryview(body)


def oplock_break(file_id):
    """[MS-SMB2] 2.2.23.1: StructureSize, OplockLevel, reserved, FileId."""
    return Reply(struct.pack("<HBBI16s", 24, 0, 0, 0, file_id))


def lease_break(lease_key):
    """2.2.23.2: StructureSize, NewEpoch, Flags (ACK_REQUIRED), LeaseKey, states..."""
    return Reply(struct.pack("<HHI16sIIIII", 44, 1, 1, lease_key, 7, 1, 0, 0, 0))


def ack(session, key, lease=False):
    body = fileio.lease_break_ack(key, 1) if lease else fileio.oplock_break_ack(key, 0)
    return SmbTask(smb2.Command.OPLOCK_BREAK, (body,), security=session)


def test_a_break_acknowledgement_goes_back_on_the_channel_the_break_came_in_on():
    """[MS-SMB2] 3.3.4.1.6: the server picks the channel of a break; the
    acknowledgement goes back there (not by load, not on channel 0)."""
    one, two = Channel(1, 0), Channel(2, 0)
    cs, session = channel_set(1000, one, two)          # channel 0 loaded: no matter
    fid, lease = b"F" * 16, b"L" * 16
    cs.break_in(oplock_break(fid), two)
    cs.break_in(lease_break(lease), one)
    assert cs.route(ack(session, fid)) is two
    assert cs.route(ack(session, lease, lease=True)) is one
    assert (one.breaks, two.breaks) == (1, 1)
    # once: a second acknowledgement of that key (no new break) is a plain request
    assert cs.route(ack(session, fid)) is None
    assert cs.main.break_acks == 1
    # the same open's next break came in on channel 0: the ack goes there
    cs.break_in(oplock_break(fid), two)
    cs.break_in(oplock_break(fid), None)
    assert cs.route(ack(session, fid)) is None and cs.main.breaks == 1


def test_a_break_acknowledgement_avoids_a_dead_channel_and_another_sessions_open():
    dead = Channel(1, 0, phase=DEAD)
    cs, session = channel_set(0, dead)
    cs.break_in(oplock_break(b"F" * 16), dead)
    assert cs.route(ack(session, b"F" * 16)) is None          # channel 0 then
    live = Channel(2, 0)
    cs.channels.append(live)
    cs.break_in(oplock_break(b"G" * 16), live)
    # an open of a session not bound to the channels: its ack cannot go there
    assert cs.route(ack(object(), b"G" * 16)) is None


def test_remembered_breaks_are_bounded():
    from smblayer.transport.channels import BREAKS_REMEMBERED
    one = Channel(1, 0)
    cs, session = channel_set(0, one)
    for n in range(BREAKS_REMEMBERED + 10):        # level II -> none: never acknowledged
        cs.break_in(oplock_break(n.to_bytes(16, "little")), one)
    assert len(cs._break_channels) == BREAKS_REMEMBERED
    assert cs.route(ack(session, (BREAKS_REMEMBERED + 9).to_bytes(16, "little"))) is one


class FailingOver:
    """The connect worker while channel 0 fails over."""

    failing_over = True

    def end_failover(self):
        self.failing_over = False


def test_while_channel_0_fails_over_a_reauthentication_keeps_to_one_channel():
    """Channel 0 down: requests go to the least loaded active channel, but
    every SESSION_SETUP leg of a re-authentication to the first active one
    (legs of one exchange on one connection, [MS-SMB2] 3.2.5.3)."""
    dead, busy, idle = Channel(1, 0, phase=DEAD), Channel(2, 50), Channel(3, 0)
    cs, session = channel_set(0, dead, busy, idle)
    cs._connector = FailingOver()
    assert cs.route(task(smb2.Command.CREATE, session)) is idle
    for _leg in range(2):
        assert cs.route(task(smb2.Command.SESSION_SETUP, session)) is busy
    idle.phase = busy.phase = DEAD
    assert cs.route(task(smb2.Command.SESSION_SETUP, session)) is None
    assert not cs._connector.failing_over          # nothing carries it: reconnect


def test_while_channel_0_fails_over_another_sessions_requests_wait_for_it():
    """Channel 0 down: only the bound session's requests (and session-less
    ones) go on the other channels; another session's (a SESSION_SETUP of a
    new one too) wait for channel 0 (route None, the failover goes on): the
    server knows that session on channel 0's connection alone, and the
    channels sign with the bound session's keys."""
    idle = Channel(1, 0)
    cs, session = channel_set(0, idle)
    cs._connector = FailingOver()
    other = object()
    for command in (smb2.Command.TREE_CONNECT, smb2.Command.LOGOFF, smb2.Command.READ,
                    smb2.Command.SESSION_SETUP):
        assert cs.route(task(command, other)) is None
        assert cs.route(task(command, session)) is idle
    assert cs.route(task(smb2.Command.ECHO, None)) is idle
    assert cs._connector.failing_over


def test_channel_0_lost_with_another_session_set_up_is_no_failover():
    """The bound session goes on without channel 0 only if no other session
    of the client lived on it (the server logged that one off with its
    connection: a reconnect sets it up again): every session set up counts
    (``sessions_up``), a guest or anonymous one too, which has no key and
    so is not among the sessions by id (decryption, ECHO)."""
    cs, session = channel_set(0, Channel(1, 0))
    cs._binder = object()
    cs.sessions = {1: session}
    cs.sessions_up = {session}
    assert cs.can_take_over()
    guest = object()                    # set up, but not by id
    cs.sessions_up.add(guest)
    assert not cs.can_take_over()
    cs.sessions_up.discard(guest)
    cs.channels[0].phase = DEAD
    assert not cs.can_take_over()


def test_a_compound_goes_on_channel_0_and_forgets_its_last_channel():
    """A compound stays on channel 0 unless channel 0 fails over; either way
    its elements forget the channel they last went on (a compound resent on
    channel 0 after a failover was signed with that channel's key)."""
    one = Channel(1, 0)
    cs, session = channel_set(100, one)
    tasks = [task(smb2.Command.CREATE, session), task(smb2.Command.CLOSE, session)]
    for t in tasks:
        t.channel = one                      # where they went during a failover
    assert cs.route_compound(tasks) is None
    assert [t.channel for t in tasks] == [None, None]
    cs._connector = FailingOver()
    assert cs.route_compound(tasks) is one
