"""The multichannel routing policy (ChannelSet.route), without sockets:
which channel a request goes on."""
import pytest

from smblayer.proto import smb2
from smblayer.transport.channels import ACTIVE, DEAD, ChannelSet
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


def channel_set(load, *channels, spread_above=0):
    cs = ChannelSet(Client(load), max_channels=4, table_lock=None, stats=None, sessions={},
                    wake=None, deliver_break=None, resend=None, before_reissue=None)
    cs.session = session = object()
    cs.channels = list(channels)
    cs.spread_above = spread_above
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


def test_no_spreading_below_the_threshold():
    idle = Channel(1, 0)
    cs, session = channel_set(63, idle, spread_above=64)
    assert cs.route(task(smb2.Command.WRITE, session)) is None
    cs.client.load = 64
    assert cs.route(task(smb2.Command.WRITE, session)) is idle


def test_a_pinned_task_goes_to_its_channel_and_a_rerouted_one_forgets_its_last():
    dead = Channel(1, 0, phase=DEAD)
    cs, session = channel_set(100, dead)
    pinned = task(smb2.Command.SESSION_SETUP, session)
    pinned.channel, pinned.pinned = dead, True
    assert cs.route(pinned) is dead
    moved = task(smb2.Command.WRITE, session)
    moved.channel = dead                   # it was in flight there when it died
    assert cs.route(moved) is None and moved.channel is None
