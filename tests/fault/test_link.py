"""The link emulator (smblayer.testing.link) against a loopback echo server:
exact bytes, paced at its rate (never faster: a lower bound, whatever the
load), its threads gone when a connection closes and after close(), which
also ends the connections still open; LinkProcess."""

import os
import socket
import threading
import time

import pytest

from _echo_server import echo_server
from smblayer.testing.link import Link, LinkProcess

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

RATE = 4e6          # bytes/s each way


@pytest.fixture
def echo():
    with echo_server() as address:
        yield address


def round_trip(address, data: bytes) -> float:
    """Send ``data`` through ``address`` and read the echo back: seconds taken."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=20) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()
        back = bytearray()
        while len(back) < len(data):
            chunk = sock.recv(1 << 20)
            assert chunk, "the link closed early"
            back += chunk
        sender.join(20)
    assert bytes(back) == data
    return time.monotonic() - start


def link_threads(port: int):
    return [t for t in threading.enumerate() if t.name.startswith(f"smblayer-link-{port}-")]


def test_paced_at_its_rate_with_exact_bytes(echo):
    data = os.urandom(1 << 20)
    with Link(echo, RATE) as link:
        took = round_trip((link.host, link.port), data)
        # each direction waits len / rate in all (store and forward): never faster
        assert took >= 0.95 * len(data) / RATE, took
        assert link.connections == 1
        # the connection's two threads end by themselves once it closed
        end = time.monotonic() + 10
        while len(link_threads(link.port)) > 1 and time.monotonic() < end:
            time.sleep(0.01)
        assert [t.name for t in link_threads(link.port)] == [f"smblayer-link-{link.port}-accept"]
    assert not link_threads(link.port)


def test_unpaced_and_closed_with_connections_open(echo):
    data = os.urandom(4 << 20)
    link = Link(echo, 0, listen_host="127.0.0.2")
    try:
        assert link.host == "127.0.0.2"
        round_trip((link.host, link.port), data)      # exact bytes (no pace to check)
        idle = socket.create_connection((link.host, link.port), timeout=20)
        end = time.monotonic() + 10       # accepted (else close() would reset it)
        while link.connections < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert link.connections == 2
    finally:
        link.close()                       # shuts the open connection down
    with idle:
        assert idle.recv(1) == b""
    assert not link_threads(link.port)
    with pytest.raises(OSError):
        socket.create_connection((link.host, link.port), timeout=5).close()


def test_link_process(echo):
    data = os.urandom(1 << 20)
    with LinkProcess(echo, RATE) as link:
        assert link.process.is_alive()
        took = round_trip((link.host, link.port), data)
        assert took >= 0.95 * len(data) / RATE, took
    assert not link.process.is_alive()
