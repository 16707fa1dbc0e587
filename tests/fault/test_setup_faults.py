"""A connection lost while a session is being set up (the soak's "bad
signature on the server's final SESSION_SETUP response" and "lost while
SESSION_SETUP was in flight"): the exchange starts over on the new
connection instead of failing the connect.  On 3.1.1 the keys come from
the connection's NEGOTIATE, so legs that straddle two connections can only
end in a bad signature."""
from __future__ import annotations

import struct
import threading

import pytest

import smblayer
from smblayer import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy, fs
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(60)]

TIMEOUTS = TimeoutPolicy(timeout=2.0, echo_interval=0.5, soft_timeout=2.0, connect_timeout=5.0)
QUICK = ReconnectPolicy(initial_delay=0.05, max_delay=0.2)
SESSION_SETUP = 1


class ResetAtFirstSetup:
    """c2s rewrite: reset the connection carrying the first SESSION_SETUP
    request (the exception makes the proxy RST it)."""

    def __init__(self):
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self, frame: bytes):
        if frame[:4] == b"\xfeSMB" and len(frame) >= 64:
            (command,) = struct.unpack_from("<H", frame, 12)
            with self._lock:
                if command == SESSION_SETUP and not self.fired:
                    self.fired += 1
                    raise ConnectionResetError("reset at the first SESSION_SETUP")
        return None


@pytest.mark.parametrize("dialect", [Dialect.SMB3_1_1, Dialect.SMB2_1])
def test_setup_leg_lost_with_its_connection_starts_over(samba, dialect):
    reset = ResetAtFirstSetup()
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("c2s", reset)
        with fs.connect(samba.host, "share", samba.username, samba.password, port=proxy.port,
                        dialects=DialectRange(dialect, dialect), timeouts=TIMEOUTS,
                        reconnect=QUICK, require_signing=True) as tree:
            tree.write_bytes("setup-restart.bin", b"ok")
            assert tree.read_bytes("setup-restart.bin") == b"ok"
            tree.remove("setup-restart.bin")
            assert reset.fired == 1
            assert tree.client.generation >= 2


def test_reconnect_between_negotiate_and_setup(samba):
    """The client reconnects after its NEGOTIATE was read for the preauth
    hash: the legs go out on the new connection, whose hash differs."""
    with FaultProxy(samba.host, samba.port) as proxy:
        client = smblayer.get_client(samba.host, proxy.port, timeouts=TIMEOUTS, reconnect=QUICK,
                                     dialects=DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1))
        try:
            client.echo()
            proxy.reset()
            session = fs.Session(client, username=samba.username, password=samba.password,
                                 require_signing=True)
            tree = session.tree_connect("share")
            assert tree.listdir("") is not None
            tree.close()
            session.logoff()
        finally:
            client.release()
