"""The core defects of issue 10, each as a test against a real Samba (or a
loopback fake server) through the public API and the public test helpers.

Every test fails on the core as it was when the issue was filed, for the
reason its xfail marker names; the marker goes when the defect is fixed.
A test whose defect is a hang keeps the blocking part in a thread or a
subprocess with a deadline, so it fails on time instead of hanging.
"""
from __future__ import annotations

import concurrent.futures
import inspect
import os
import signal
import struct
import threading
import time

import pytest

import smblayer
from smblayer import (ClientState, ReconnectPolicy, SmbCancelledError, SmbError, SmbTask,
                      SmbTimeoutError, TimeoutPolicy, fs)
from smblayer.fs import ops as fsops
from smblayer.proto import smb2
from smblayer.testing import fakeserver as fake
from smblayer.testing.capture import FrameLog
from smblayer.testing.fakeserver import FakeSmbServer
from smblayer.testing.process import PythonChild, frozen, server_pids
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90)]

QUICK_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        tick.wait(0.01)


@pytest.fixture
def server(samba_factory):
    return samba_factory()


def connect(server, port=None, **options):
    return fs.connect(server.host, "share", server.username, server.password,
                      port=server.port if port is None else port, **options)


def close_quietly(tree) -> None:
    """Close the client under ``tree`` (wakes every waiter), then the tree."""
    tree.client.close()
    try:
        tree.close()
    except SmbError:
        pass


# ---------------------------------------------------------------------------
# 1. Reconnect deadlock


@pytest.mark.xfail(strict=True, reason="issue 10: reconnect deadlock - async calls made "
                   "while RECONNECTING hold every smbiod worker, so the session's "
                   "reconnect handler never runs and the client stays RECONNECTING")
def test_reconnect_with_64_async_calls_and_a_session_completes(server):
    """fs session behind a proxy, hard mode: refuse + reset, 64 echo_async()
    and 4 threads of path-based calls while RECONNECTING, heal: everything
    completes.  (Writes through files opened before the outage need durable
    handles and are not part of this test.)"""
    (server.share_path("share") / "here.txt").write_bytes(b"x" * 10)
    with FaultProxy(server.host, server.port) as proxy:
        tree = connect(server, proxy.port, timeouts=TimeoutPolicy(mode="hard"),
                       reconnect=QUICK_RECONNECT)
        client = tree.client
        threads = []
        try:
            client.echo()
            proxy.refuse(True)
            proxy.reset()
            wait_for(lambda: client.state is ClientState.RECONNECTING, 10, "RECONNECTING")
            futures = [client.echo_async() for _ in range(64)]
            results, errors = [], []

            def path_calls():
                try:
                    results.append(tree.stat("here.txt").st_size)
                    results.append(len(tree.listdir("")))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
            threads = [threading.Thread(target=path_calls, daemon=True) for _ in range(4)]
            for t in threads:
                t.start()
            proxy.refuse(False)
            done, not_done = concurrent.futures.wait(futures, timeout=20)
            deadline = time.monotonic() + 5
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            assert not not_done, (f"{len(not_done)} of 64 echo_async() calls never completed; "
                                  f"client state {client.state}")
            assert all(f.exception() is None for f in done)
            assert not any(t.is_alive() for t in threads), "path-based calls still blocked"
            assert not errors, errors
            assert results.count(10) == 4
            assert client.stats()["_client"]["reconnects"] == 1
        finally:
            close_quietly(tree)
            for t in threads:
                t.join(10)


@pytest.mark.xfail(strict=True, reason="issue 10: no public way to wait for a client state "
                   "(SmbClient.wait_for_state does not exist)")
def test_wait_for_state_after_reset(server):
    with FaultProxy(server.host, server.port) as proxy:
        client = smblayer.get_client(server.host, proxy.port, reconnect=QUICK_RECONNECT)
        try:
            client.echo()
            proxy.refuse(True)
            proxy.reset()
            assert client.wait_for_state(ClientState.RECONNECTING, timeout=10) is True
            assert client.wait_for_state(ClientState.ACTIVE, timeout=0.3) is False
            proxy.refuse(False)
            start = time.monotonic()
            assert client.wait_for_state(ClientState.ACTIVE, timeout=10) is True
            assert time.monotonic() - start < 10
            assert client.state is ClientState.ACTIVE
            client.echo()
        finally:
            client.close()
