"""Client-level fuzzing (issue 26): real client calls against the real Samba,
one reply per call mutated on the way back by a FaultProxy rewrite.

For every call the client must return the right answer or raise SmbError,
within the request bound; no thread may die, no waiter may be left in the
MID table, and nothing corrupted may come back as success.  On a signed or
encrypted session every mutation of a protected reply must be detected:
the call fails, or the client drops the connection and redoes the work on a
new one -- it never acts on the mutated reply.

The mutations come from a seeded RNG (``SMBLAYER_FUZZ_SEED``), so a failure
replays.  ``ROUNDS`` calls per mode keep the test bounded (tens of seconds);
``tools/soak.py`` runs the long, mixed version.
"""
from __future__ import annotations

import collections
import random
import struct
import threading
import time
from typing import Callable, List, Optional

import pytest

from smblayer import (ClientState, Dialect, DialectRange, ReconnectPolicy, SmbError,
                      TimeoutPolicy, fs)
from smblayer.testing import fuzzing
from smblayer.testing.proxy import FaultProxy
from smblayer.testing.waiting import eventually

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(240)]

ROUNDS = 24
TIMEOUTS = TimeoutPolicy(timeout=1.0, echo_interval=0.5, soft_timeout=2.0, connect_timeout=3.0)
#: a call of a few requests, each failing no later than soft_bound, reconnects included
CALL_BOUND = 4 * (TIMEOUTS.timeout + TIMEOUTS.soft_timeout + TIMEOUTS.connect_timeout) + 5


#: A reply whose MessageId is mutated is dropped as not ours ("reply for unknown
#: MessageId"); one whose NextCommand is mutated hides or cuts the compound
#: elements after it.  Either way a request's reply is lost while the server
#: answers ECHOs: soft mode's bound (timeout + soft_timeout) ends the wait.
#: On a plain session nothing can tell a reply whose MessageId was flipped
#: onto another request in flight from that request's own reply, so there a
#: mutation is kept only if every MessageId the client would route the frame
#: by is one the frame carried or one that cannot be in flight: not in the
#: client's MID table, and below the highest MessageId in it (already given
#: out: SMB2 never gives one twice on a connection) or at least
#: ``_MID_MARGIN`` above it (more than this test ever gives out).
_MID_MARGIN = 1 << 16
_BREAK_MID = 0xFFFFFFFFFFFFFFFF


def _elements(frame: bytes):
    """(offset, length, MessageId) of each SMB2 header the client would route
    ``frame``'s elements by, following NextCommand as ``split_compound`` does
    (it stops where the client would fail the frame)."""
    out, offset = [], 0
    while len(frame) - offset >= 64 and frame[offset:offset + 4] == b"\xfeSMB":
        (nxt,) = struct.unpack_from("<I", frame, offset + 20)
        (mid,) = struct.unpack_from("<Q", frame, offset + 24)
        last = nxt == 0 or nxt < 64 or nxt % 8 or offset + nxt > len(frame)
        out.append((offset, len(frame) - offset if last else nxt, mid))
        if last:
            break
        offset += nxt
    return out


def _collides(frame: bytes, out: bytes, in_flight: set) -> bool:
    """Would the client route ``out`` to a request in flight that ``frame``
    did not answer?  See _MID_MARGIN."""
    before = {(offset, mid) for offset, _, mid in _elements(frame)}
    high = max(in_flight | {mid for _, mid in before})
    return any(mid in in_flight or high <= mid < high + _MID_MARGIN
               for offset, _, mid in _elements(out) if (offset, mid) not in before)


def _reply_mid(frame: bytes) -> Optional[int]:
    """The MessageId (SMB1: MID) of ``frame``'s first reply; None if encrypted."""
    if frame[:4] == b"\xfeSMB" and len(frame) >= 32:
        return struct.unpack_from("<Q", frame, 24)[0]
    if frame[:4] == b"\xffSMB" and len(frame) >= 32:
        return struct.unpack_from("<H", frame, 30)[0]
    return None


def _protected(frame: bytes) -> bool:
    """Is ``frame`` covered by its session's signature or encryption?  A
    NEGOTIATE response and the SESSION_SETUP legs before the session key
    are not (3.1.1's preauth hash covers them at the final, signed leg; 3.0
    and 2.1's VALIDATE_NEGOTIATE_INFO the negotiated values), and a change
    to the Signature field of an unsigned reply changes nothing."""
    if frame[:4] == b"\xfdSMB":
        return True
    if frame[:4] == b"\xfeSMB":
        return bool(struct.unpack_from("<I", frame, 16)[0] & 0x8)      # SMB2_FLAGS_SIGNED
    return frame[:4] == b"\xffSMB" and bool(struct.unpack_from("<H", frame, 10)[0] & 0x4)


class OneMutation:
    """s2c rewrite: when armed, the next SMB reply is mutated once (bit
    flips, an interesting integer, truncation or extension).  ``body_only``
    (plain sessions): only the header and the first 32 body bytes change,
    never a payload, which nothing could protect without signing.
    ``routing``: only a MessageId or a NextCommand of an SMB2 reply (see
    :meth:`_routing`).  ``in_flight`` (plain sessions): returns the
    MessageIds in the client's MID table; a mutation that would collide
    with one is not used (see _MID_MARGIN).  ``kinds`` counts what was
    mutated ("message_id", "next_command", "other")."""

    def __init__(self, rng: random.Random, body_only: bool, routing: bool = False,
                 in_flight: Optional[Callable[[], set]] = None):
        self.rng = rng
        self.body_only = body_only
        self.routing = routing
        self.in_flight = in_flight
        self.awaited: Optional[Callable[[], set]] = None
        self.armed = False
        self.applied: List[bytes] = []
        self.kinds: collections.Counter = collections.Counter()
        self.last_kind = ""
        self.last_protected = False             # did signing or encryption cover it?
        self.last_change: tuple = ()            # (length before, after, offsets changed)
        self.last_mids: set = set()            # the MessageIds a mutation made up
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            self.armed = True

    def disarm(self) -> bool:
        with self._lock:
            fired, self.armed = not self.armed, False
            return fired

    def __call__(self, frame: bytes) -> Optional[bytes]:
        with self._lock:
            if not self.armed or frame[:4] not in (b"\xfeSMB", b"\xfdSMB", b"\xffSMB"):
                return None
            if self.routing and frame[:4] != b"\xfeSMB":
                return None
            for _ in range(200):
                out = self._routing(frame) if self.routing else self._any(frame)
                if out == frame:
                    continue
                if self.in_flight is not None and frame[:4] == b"\xfeSMB" and \
                        _collides(frame, out, self.in_flight()):
                    continue
                break
            else:
                return None                     # nothing safe: the next reply then
            self.armed = False
            self.last_kind = self._kind(frame, out)
            # a late reply to an abandoned request is dropped, whatever it says
            mid = _reply_mid(frame)
            self.last_protected = _protected(frame) and (
                mid is None or self.awaited is None or mid in self.awaited())
            self.last_change = (len(frame), len(out),
                                [i for i in range(min(len(frame), len(out)))
                                 if frame[i] != out[i]][:8])
            before = {(offset, mid) for offset, _, mid in _elements(frame)}
            self.last_mids = {mid for offset, _, mid in _elements(out)
                              if (offset, mid) not in before}
            self.kinds[self.last_kind] += 1
        self.applied.append(out)
        return out

    def _any(self, frame: bytes) -> bytes:
        head = 96 if self.body_only else len(frame)
        out = bytearray(frame)
        kind = self.rng.randrange(4)
        pos = self.rng.randrange(4, min(head, len(out)))
        if kind == 0:
            out[pos] ^= 1 << self.rng.randrange(8)
        elif kind == 1:
            value = self.rng.choice((0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
            if pos + 4 <= len(out):
                struct.pack_into("<I", out, pos, value)
        elif kind == 2 and not self.body_only:
            del out[pos:]
        elif kind == 3 and not self.body_only:
            out += bytes(self.rng.randrange(1, 64))
        return bytes(out)

    def _routing(self, frame: bytes) -> bytes:
        """A MessageId (a bit flipped, a neighbour, 0, the break id, a random
        one) or a NextCommand (0: the elements after it are hidden in it; a
        shorter length: it is cut and what follows is no header; another
        element's offset: those between are skipped; past the end; a bit
        flipped) of one element."""
        rng, out = self.rng, bytearray(frame)
        elements = _elements(frame)
        offset, length, mid = rng.choice(elements)
        if rng.random() < 0.5:
            value = rng.choice((mid ^ (1 << rng.randrange(64)), mid - 1, mid + 1, 0,
                                _BREAK_MID, rng.getrandbits(64))) & _BREAK_MID
            struct.pack_into("<Q", out, offset + 24, value)
            return bytes(out)
        later = [o - offset for o, _, _ in elements if o > offset]
        (nxt,) = struct.unpack_from("<I", frame, offset + 20)
        value = rng.choice([0, 64 + 8 * rng.randrange(max(1, (length - 64) // 8)),
                            len(frame) - offset + 8, nxt ^ (1 << rng.randrange(32))] + later)
        struct.pack_into("<I", out, offset + 20, value)
        return bytes(out)

    @staticmethod
    def _kind(frame: bytes, out: bytes) -> str:
        if frame[:4] != b"\xfeSMB" or len(out) != len(frame):
            return "other"
        changed = {i for i in range(len(frame)) if frame[i] != out[i]}
        heads = [o for o, _, _ in _elements(frame)]
        if any(o + 24 <= i < o + 32 for o in heads for i in changed):
            return "message_id"
        if any(o + 20 <= i < o + 24 for o in heads for i in changed):
            return "next_command"
        return "other"


MODES = {
    "plain": (Dialect.SMB3_1_1, dict(require_signing=False)),
    "plain-routing": (Dialect.SMB3_1_1, dict(require_signing=False)),  # MessageId, NextCommand
    "signed": (Dialect.SMB3_1_1, dict(require_signing=True)),          # AES-GMAC
    "encrypted": (Dialect.SMB3_1_1, dict(encrypt=True)),               # AES-GCM
    "signed-2.1": (Dialect.SMB2_1, dict(require_signing=True)),        # HMAC-SHA256
    "encrypted-3.0": (Dialect.SMB3_0, dict(encrypt=True)),             # AES-128-CCM
    "signed-smb1": (Dialect.SMB1, dict(require_signing=True)),         # MD5
}


def _calls(tree, rng: random.Random, files: dict):
    """One random call; returns a check of its result (True: right answer)."""
    kind = rng.choice(("write", "read", "list", "stat"))
    name = f"fz{rng.randrange(4)}.bin"
    if kind == "write":
        data = rng.randbytes(rng.choice((10, 3000, 70000)))

        def call():
            tree.write_bytes(name, data)
            files[name] = data
            return True
        return kind, name, call
    if kind == "read":
        def call():
            if name not in files:
                return True
            return tree.read_bytes(name) == files[name]
        return kind, name, call
    if kind == "list":
        def call():
            return set(files) <= set(tree.listdir(""))
        return kind, name, call

    def call():
        if name not in files:
            return True
        return tree.stat(name).st_size == len(files[name])
    return kind, name, call


@pytest.mark.parametrize("mode", sorted(MODES))
def test_mutated_replies(samba, mode):
    seed = fuzzing.environment_seed()
    rng = random.Random(f"{seed}:{mode}")
    plain = mode.startswith("plain")
    mutation = OneMutation(random.Random(f"{seed}:{mode}:m"), body_only=plain,
                           routing=(mode == "plain-routing"))
    died: List[BaseException] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: died.append(args.exc_value)
    outcomes = {"ok": 0, "error": 0, "reconnect": 0, "reopened": 0}
    try:
        with FaultProxy(samba.host, samba.port) as proxy:
            proxy.rewrite("s2c", mutation)

            def open_tree():
                tree = fs.connect(samba.host, "share", samba.username, samba.password,
                                  port=proxy.port, timeouts=TIMEOUTS, durable=False,
                                  dialects=DialectRange(MODES[mode][0], MODES[mode][0]),
                                  reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2),
                                  **MODES[mode][1])
                client = tree.session.client
                mutation.awaited = _awaited(client)
                if plain:
                    mutation.in_flight = _mid_table(client)
                return tree, client

            tree, client = open_tree()
            try:
                files: dict = {}
                # the reference state, unmutated
                for i in range(4):
                    tree.write_bytes(f"fz{i}.bin", b"start %d" % i)
                    files[f"fz{i}.bin"] = b"start %d" % i
                for _ in range(ROUNDS):
                    if client.state is ClientState.CLOSED:
                        # a mutated NEGOTIATE response that VALIDATE_NEGOTIATE_INFO
                        # caught closes the client (tampering): start again
                        tree.close()
                        tree, client = open_tree()
                        outcomes["reopened"] += 1
                    kind, name, call = _calls(tree, rng, files)
                    before = proxy.total_connections
                    dropped = unmatched = client.stats()["_client"]["unmatched_replies"]
                    mutation.arm()
                    started = time.monotonic()
                    try:
                        right = call()
                    except SmbError:
                        right = None
                    took = time.monotonic() - started
                    fired = mutation.disarm()
                    assert took < CALL_BOUND, f"{kind} took {took:.1f} s after mutation " \
                        f"{mutation.applied[-1][:100].hex() if fired else None}"
                    assert right is not False, f"{kind} returned wrong data as success " \
                        f"after mutation {mutation.applied[-1][:80].hex() if fired else None}"
                    # a rejected reply the call did not need (a compound's
                    # CLOSE) drops the connection after the call returned
                    # (3 s: the machine may be loaded)
                    reconnected = _reconnected(proxy, before, wait=fired and right is True
                                               and mutation.last_protected)
                    if right is None:
                        outcomes["error"] += 1
                    elif reconnected:
                        outcomes["reconnect"] += 1
                    else:
                        outcomes["ok"] += 1
                    # a reply whose MessageId was mutated is dropped, unread
                    # (its request, maybe a background CLOSE, fails at its bound)
                    dropped = client.stats()["_client"]["unmatched_replies"] > dropped
                    if fired and mutation.last_protected:
                        assert right is None or reconnected or dropped, \
                            f"{mode}: a mutated protected reply to {kind} was accepted: " \
                            f"{mutation.last_change} {mutation.applied[-1][:80].hex()}"
                    if fired and mutation.last_mids - {_BREAK_MID}:
                        # a made-up MessageId: the reply is dropped as not ours
                        # (the reply may be an ECHO's the call did not wait for)
                        eventually(lambda: client.stats()["_client"]["unmatched_replies"]
                                   > unmatched or proxy.total_connections > before, timeout=3)
                    if right is None and kind == "write":
                        _resync(tree, files, name)
                # no waiter left: a request whose reply was lost ends by its bound
                eventually(lambda: client.stats()["_client"]["in_flight"] == 0,
                           timeout=TIMEOUTS.timeout + TIMEOUTS.soft_timeout + 2)
                for name in files:
                    # best effort: a CREATE whose reply was lost (MessageId
                    # mutated: dropped, the request failed at its bound)
                    # leaves the server's open behind until the connection
                    # ends, and SMB1 then refuses the delete
                    try:
                        tree.remove(name)
                    except SmbError:
                        pass
            finally:
                tree.close()
    finally:
        threading.excepthook = previous_hook
    assert not died, f"threads died: {died!r}"
    # (a reconnect whose SESSION_SETUP was mutated leaves the session unusable
    # until the next reconnect: calls then fail with no reply to mutate)
    assert len(mutation.applied) >= ROUNDS // 3
    if plain:
        # the routing fields are mutated on plain sessions too
        assert mutation.kinds["message_id"] + mutation.kinds["next_command"] > 0
    print(mode, outcomes, len(mutation.applied), "mutations", dict(mutation.kinds))


def _awaited(client) -> Callable[[], set]:
    """The MessageIds of ``client``'s requests still awaited (not those of
    abandoned requests, whose MessageId is kept for a late reply)."""
    table = client._inflight

    def awaited() -> set:
        with table.lock:
            return {mid for mid, task in table.pending.items() if not task.state.final}
    return awaited


def _mid_table(client) -> Callable[[], set]:
    """The MessageIds in ``client``'s MID table (its requests in flight)."""
    table = client._inflight

    def in_flight() -> set:
        with table.lock:
            return set(table.pending)
    return in_flight


def _reconnected(proxy, before: int, wait: bool) -> bool:
    """Did the client open a new connection (within 3 s, with ``wait``)?"""
    deadline = time.monotonic() + (3.0 if wait else 0.0)
    while proxy.total_connections <= before:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _resync(tree, files: dict, name: str) -> None:
    """After a failed write the server's copy may be the old or the new
    data (or a part): read it back, unmutated (nothing is armed now)."""
    try:
        files[name] = tree.read_bytes(name)
    except SmbError:
        files.pop(name, None)


class MutateCreateReply:
    """s2c rewrite: when armed, flip one bit of the FileId in the next
    successful SMB2 CREATE response (a signed session then rejects it)."""

    def __init__(self):
        self.armed = False
        self.fired = 0
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            self.armed = True

    def __call__(self, frame: bytes) -> Optional[bytes]:
        if frame[:4] != b"\xfeSMB" or len(frame) < 64 + 88:
            return None
        (status,) = struct.unpack_from("<I", frame, 8)
        (command,) = struct.unpack_from("<H", frame, 12)
        with self._lock:
            if not self.armed or command != 5 or status != 0:
                return None
            self.armed = False
            self.fired += 1
        out = bytearray(frame)
        out[64 + 64] ^= 0x01                    # FileId.Persistent, first byte
        return bytes(out)


@pytest.mark.parametrize("dialect", [Dialect.SMB3_1_1, Dialect.SMB2_1])
def test_rejected_create_reply_leaves_no_open_behind(samba, dialect):
    """A CREATE reply that fails the signature check is not believed, but
    the server did open the file: the client drops the connection (and
    reconnects), so the server closes that open.  Before, it stayed until
    the client went away, and an exclusive open of the file failed with a
    sharing violation for as long."""
    from smblayer import SmbProtocolError
    from smblayer.testing.waiting import eventually
    mutation = MutateCreateReply()
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("s2c", mutation)
        with fs.connect(samba.host, "share", samba.username, samba.password, port=proxy.port,
                        dialects=DialectRange(dialect, dialect), timeouts=TIMEOUTS,
                        durable=False, require_signing=True,
                        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2)) as tree:
            tree.write_bytes("orphan.bin", b"data")
            client = tree.client
            generation = client.generation
            mutation.arm()
            with pytest.raises(SmbProtocolError, match="signature"):
                tree.open("orphan.bin", "rb")
            assert mutation.fired == 1
            eventually(lambda: client.generation > generation
                       and client.state is ClientState.ACTIVE)
            with tree.open("orphan.bin", "rb", share="") as f:     # nobody else has it open
                assert f.read() == b"data"
            tree.remove("orphan.bin")


class MutateReply:
    """s2c rewrite: when armed, pack ``value`` (struct ``fmt``) at ``offset``
    of the next SMB2 reply to ``command``."""

    def __init__(self, command: int, offset: int, fmt: str, value: int):
        self.command, self.offset, self.fmt, self.value = command, offset, fmt, value
        self.armed = False
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self, frame: bytes) -> Optional[bytes]:
        if frame[:4] != b"\xfeSMB" or len(frame) < 64 or \
                struct.unpack_from("<H", frame, 12)[0] != self.command:
            return None
        with self._lock:
            if not self.armed:
                return None
            self.armed = False
            self.fired += 1
        out = bytearray(frame)
        struct.pack_into(self.fmt, out, self.offset, self.value)
        return bytes(out)


def _reconnect_with(samba, mutation: MutateReply, check) -> None:
    """Connect through a proxy, arm ``mutation``, reset the connection and
    make a call; ``check(tree, took)`` judges it."""
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.rewrite("s2c", mutation)
        with fs.connect(samba.host, "share", samba.username, samba.password, port=proxy.port,
                        dialects=DialectRange(Dialect.SMB3_1_1, Dialect.SMB3_1_1),
                        timeouts=TIMEOUTS, durable=False,
                        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2)) as tree:
            tree.write_bytes("recon.bin", b"before")
            mutation.armed = True
            proxy.reset()
            started = time.monotonic()
            try:
                tree.write_bytes("recon.bin", b"after")
                error = None
            except SmbError as exc:
                error = exc
            check(tree, time.monotonic() - started, error)
            assert mutation.fired == 1


def test_reconnect_negotiate_reply_with_another_message_id(samba):
    """The NEGOTIATE response of a reconnect carries a MessageId that is not
    the request's: that attempt fails (malformed) and the next one works;
    the call waiting for the reconnect gets its answer within its bound.
    Before, the connection numbered its requests from the server's
    MessageId: 0xFFFF...FF + 1 fit no header, every send of the recovery
    failed with struct.error, and the call waited 60 s for credits."""
    def check(tree, took, error):
        assert error is None and took < CALL_BOUND
        assert tree.read_bytes("recon.bin") == b"after"
        tree.remove("recon.bin")
    _reconnect_with(samba, MutateReply(0, 24, "<Q", _BREAK_MID), check)


def test_reconnect_session_setup_reply_with_another_session_id(samba):
    """The first SESSION_SETUP response of a reconnect carries a wrong
    SessionId: the second leg fails (STATUS_USER_SESSION_DELETED) and
    grants no credits, which leaves the connection one credit and nothing
    in flight.  The waiting write (a three-credit compound) asks for credits
    with an ECHO and gets its answer at once (SmbError: the session was not
    set up again).  Before, it waited for credits no reply would grant,
    until Samba dropped the idle connection 60 s later."""
    def check(tree, took, error):
        assert took < CALL_BOUND, f"the write took {took:.1f} s"
    _reconnect_with(samba, MutateReply(1, 44, "<I", 0xFFFFFFFF), check)


def test_a_tree_whose_client_was_closed_raises_smb_errors(samba):
    """The client was closed under a tree (as a reconnect does when
    VALIDATE_NEGOTIATE_INFO finds the negotiate tampered with): every call
    raises SmbError.  Before, ``stat`` raised AttributeError (the dialect
    of a closed client was None)."""
    tree = fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                      timeouts=TIMEOUTS, durable=False)
    try:
        tree.write_bytes("closed.bin", b"data")
        tree.client.close()
        for call in (lambda: tree.stat("closed.bin"), lambda: tree.listdir(""),
                     lambda: tree.read_bytes("closed.bin"), lambda: tree.write_bytes("x", b""),
                     lambda: tree.volume_serial, lambda: tree.watch(""),
                     lambda: tree.open("closed.bin", "rb")):
            with pytest.raises(SmbError):
                call()
    finally:
        tree.close()
    with fs.connect(samba.host, "share", samba.username, samba.password,
                    port=samba.port) as again:
        again.remove("closed.bin")
