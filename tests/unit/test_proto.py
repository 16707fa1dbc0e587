"""Sans-I/O tests of smblayer.proto (framing, SMB1/SMB2 codecs, negotiate,
credits, NTSTATUS), the error mapping and the policy objects.

Every canned server response here is built by hand with ``struct`` from
[MS-SMB2]/[MS-CIFS] layouts, not with the codecs under test.
"""
from __future__ import annotations

import itertools
import json
import os
import pickle
import struct
from pathlib import Path

import pytest

from smblayer import (Dialect, DialectRange, NtStatus, ReconnectPolicy, SmbAuthError,
                      SmbStatusError, TimeoutPolicy)
from smblayer.errors import status_error
from smblayer.proto import credits, smb1, smb2
from smblayer.proto.framing import MAX_FRAME, FrameReader, FramingError, frame_prefix
from smblayer.proto.negotiate import (NegotiateFailed, NegotiateResult, Negotiator, Outgoing,
                                      State)
from smblayer.proto.status import is_error, status_name

D = Dialect
GUID = bytes(range(16))
SALT = bytes(range(100, 132))


# ---------------------------------------------------------------------------
# framing


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _push(reader: FrameReader, data: bytes) -> list:
    """Deliver ``data`` through buffer()/feed() as a socket would (several
    recv_into calls if the offered buffer is smaller)."""
    frames = []
    while data:
        buf = reader.buffer()
        n = min(len(buf), len(data))
        assert n > 0
        buf[:n] = data[:n]
        data = data[n:]
        frames += reader.feed(n)
    return frames


def test_frame_prefix():
    assert frame_prefix(1) == b"\x00\x00\x00\x01"
    assert frame_prefix(MAX_FRAME) == b"\x00\xff\xff\xff"
    for bad in (0, MAX_FRAME + 1, -1):
        with pytest.raises(FramingError):
            frame_prefix(bad)


def test_many_frames_in_one_feed():
    payloads = [bytes([i]) * (i + 1) for i in range(50)]
    reader = FrameReader(4096)
    blob = b"".join(_frame(p) for p in payloads)
    buf = reader.buffer()
    buf[:len(blob)] = blob
    frames = reader.feed(len(blob))
    assert [bytes(f) for f in frames] == payloads
    assert reader.pending == 0


def test_frame_split_byte_by_byte():
    payloads = [b"\xfeSMB" + os.urandom(60), b"x", b"\xfeSMB" + bytes(200)]
    reader = FrameReader(1024)
    got = []
    for byte in b"".join(_frame(p) for p in payloads):
        buf = reader.buffer()
        buf[0] = byte
        got += reader.feed(1)
        if len(got) < len(payloads):
            assert reader.pending >= 0
    assert [bytes(f) for f in got] == payloads
    assert reader.pending == 0


def test_frames_across_buffer_wrap_are_compacted():
    """Frames that straddle the end of the reusable buffer come out whole."""
    reader = FrameReader(64)
    payloads = [bytes([i % 251]) * (5 + i % 23) for i in range(200)]
    stream = b"".join(_frame(p) for p in payloads)
    got = []
    pos = 0
    sizes = itertools.cycle([7, 13, 1, 29, 3])
    while pos < len(stream):
        buf = reader.buffer()
        n = min(len(buf), next(sizes), len(stream) - pos)
        buf[:n] = stream[pos:pos + n]
        pos += n
        got += reader.feed(n)
    assert [bytes(f) for f in got] == payloads


def test_large_frame_gets_own_buffer_without_copy():
    reader = FrameReader(1024)
    payload = os.urandom(900)          # > half of the 1024-byte buffer
    data = _frame(payload)
    buf = reader.buffer()
    buf[:20] = data[:20]               # prefix and 16 bytes of the body
    assert reader.feed(20) == []
    big = reader.buffer()
    owner = big.obj
    assert isinstance(owner, bytearray) and len(owner) == 900
    assert len(big) == 900 - 16        # exactly what is still missing
    assert reader.pending == 4 + 16
    big[:100] = data[20:120]
    assert reader.feed(100) == []
    rest = reader.buffer()
    assert rest.obj is owner           # the same buffer keeps being filled
    rest[:] = data[120:]
    frames = reader.feed(len(data) - 120)
    assert len(frames) == 1
    frame = frames[0]
    assert frame is owner              # handed out as is, never copied
    assert type(frame) is bytearray and len(frame) == 900
    assert bytes(frame) == payload
    assert reader.pending == 0
    # the reader is back on its small buffer for the next frames
    assert _push(reader, _frame(b"abc") + _frame(b"de")) == [b"abc", b"de"]


def test_large_frame_followed_by_small_frames():
    reader = FrameReader(256)
    big = os.urandom(5000)
    frames = _push(reader, _frame(big) + _frame(b"after1") + _frame(b"after2"))
    assert [bytes(f) for f in frames] == [big, b"after1", b"after2"]


@pytest.mark.parametrize("prefix", [b"\x00\x00\x00\x00", b"\x01\x00\x00\x10",
                                    b"\x85\x00\x00\x00", b"\xff\xff\xff\xff"])
def test_bad_frames_raise(prefix):
    reader = FrameReader(1024)
    buf = reader.buffer()
    buf[:8] = prefix + b"abcd"
    with pytest.raises(FramingError):
        reader.feed(8)


def test_bad_frame_after_good_one_raises():
    reader = FrameReader(1024)
    with pytest.raises(FramingError):
        _push(reader, _frame(b"good") + b"\x02\x00\x00\x04abcd")


# ---------------------------------------------------------------------------
# SMB2 header


def test_smb2_sync_header_round_trip():
    raw = smb2.pack_header(smb2.Command.READ, 0x123456789A, credit_charge=3, credit_request=77,
                           flags=smb2.Flags.SIGNED | smb2.Flags.REPLAY_OPERATION,
                           next_command=0, tree_id=0xDEADBEEF, session_id=0x1122334455667788,
                           channel_sequence=5)
    assert len(raw) == 64 and raw[:4] == b"\xfeSMB"
    assert struct.unpack_from("<H", raw, 4)[0] == 64
    h = smb2.parse_header(raw)
    assert (h.command, h.message_id, h.credit_charge, h.credits) == (0x08, 0x123456789A, 3, 77)
    assert h.tree_id == 0xDEADBEEF and h.async_id is None
    assert h.session_id == 0x1122334455667788
    assert h.status == 5            # a request carries ChannelSequence in that field
    assert h.is_signed and not h.is_async and not h.is_response


def test_smb2_async_response_header_round_trip():
    raw = smb2.pack_header(smb2.Command.CHANGE_NOTIFY, 42, flags=smb2.Flags.SERVER_TO_REDIR,
                           async_id=0x0102030405060708, status=NtStatus.PENDING,
                           credit_request=9, session_id=7)
    h = smb2.parse_header(raw)
    assert h.is_async and h.is_response
    assert h.async_id == 0x0102030405060708
    assert h.status == NtStatus.PENDING and h.message_id == 42 and h.credits == 9
    assert h.tree_id == 0
    assert struct.unpack_from("<Q", raw, 32)[0] == 0x0102030405060708
    assert smb2.is_pending_interim(h.status, h.flags)
    assert not smb2.is_pending_interim(0, h.flags)
    route = smb2.route(raw)
    assert route == (1, NtStatus.PENDING, smb2.Command.CHANGE_NOTIFY, 9,
                     smb2.Flags.SERVER_TO_REDIR | smb2.Flags.ASYNC_COMMAND, 0, 42)
    assert smb2.async_id(raw) == 0x0102030405060708
    assert smb2.session_id(raw) == 7


@pytest.mark.parametrize("msg", [b"\xfeSMB" + bytes(26), b"\xffSMB" + bytes(60),
                                 b"\xfeSMB\x40\x00" + bytes(58)[:-1]])
def test_smb2_parse_rejects_truncated_or_foreign(msg):
    with pytest.raises(smb2.MalformedMessage):
        smb2.parse_header(msg)
    with pytest.raises(smb2.MalformedMessage):
        smb2.route(msg)


def test_smb2_parse_rejects_bad_structure_size():
    raw = bytearray(smb2.pack_header(smb2.Command.ECHO, 1))
    struct.pack_into("<H", raw, 4, 65)
    with pytest.raises(smb2.MalformedMessage):
        smb2.parse_header(raw)


# ---------------------------------------------------------------------------
# compound responses


def _element(mid: int, body: bytes, last: bool) -> bytes:
    size = 64 + len(body)
    padded = size if last else size + (-size % 8)
    hdr = smb2.pack_header(smb2.Command.ECHO, mid, flags=smb2.Flags.SERVER_TO_REDIR,
                           next_command=0 if last else padded)
    return (bytes(hdr) + body).ljust(padded, b"\0")


def test_split_compound_good_chain():
    elems = [_element(1, b"\x04\x00\x00\x00", False), _element(2, b"\x09" + bytes(8), False),
             _element(3, b"\x04\x00\x00\x00", True)]
    msg = b"".join(elems)
    parts = smb2.split_compound(msg)
    assert parts == [(0, len(elems[0])), (len(elems[0]), len(elems[1])),
                     (len(elems[0]) + len(elems[1]), len(elems[2]))]
    assert all(off % 8 == 0 for off, _ in parts)
    mids = [smb2.parse_header(msg, off).message_id for off, _ in parts]
    assert mids == [1, 2, 3]


def test_split_compound_single_message():
    msg = _element(9, b"\x04\x00\x00\x00", True)
    assert smb2.split_compound(msg) == [(0, len(msg))]


@pytest.mark.parametrize("next_command", [8, 63, 68, 100, 10_000])
def test_split_compound_bad_next_command(next_command):
    first = bytearray(_element(1, b"\x04\x00\x00\x00", False))
    struct.pack_into("<I", first, 20, next_command)
    msg = bytes(first) + _element(2, b"\x04\x00\x00\x00", True)
    with pytest.raises(smb2.MalformedMessage):
        smb2.split_compound(msg)


def test_split_compound_truncated_element():
    msg = _element(1, b"\x04\x00\x00\x00", False) + b"\xfeSMB" + bytes(20)
    with pytest.raises(smb2.MalformedMessage):
        smb2.split_compound(msg)


def test_split_compound_loop_is_bounded():
    # Every element points exactly at the next: a chain far longer than any
    # real compound must be refused, not walked forever.
    elem = bytearray(_element(1, b"\x04\x00\x00\x00", False))
    msg = bytes(elem) * 100 + _element(2, b"\x04\x00\x00\x00", True)
    with pytest.raises(smb2.MalformedMessage):
        smb2.split_compound(msg)


# ---------------------------------------------------------------------------
# NEGOTIATE requests


def _negotiator(lo, hi, **kw):
    return Negotiator(DialectRange(lo, hi), client_guid=GUID, salt=SALT, **kw)


def _smb2_request_fields(out: Outgoing):
    msg = out.to_bytes()
    hdr = smb2.parse_header(msg)
    (size, count, sec_mode, _r, caps, guid, ctx_off, ctx_count, _r2) = \
        smb2.NEGOTIATE_REQUEST.unpack_from(msg, 64)
    dialects = list(struct.unpack_from(f"<{count}H", msg, 64 + 36))
    return msg, hdr, size, dialects, sec_mode, caps, guid, ctx_off, ctx_count


def _smb1_offered(out: Outgoing):
    msg = out.to_bytes()
    assert msg[:4] == b"\xffSMB" and msg[4] == 0x72
    assert msg[32] == 0                                    # WordCount
    (bc,) = struct.unpack_from("<H", msg, 33)
    data = msg[35:35 + bc]
    assert len(data) == bc
    items = data.split(b"\x00")
    assert items[-1] == b""
    assert all(i[:1] == b"\x02" for i in items[:-1])
    return [i[1:].decode() for i in items[:-1]]


SMB2_RANGES = [
    ((D.SMB2_0_2, D.SMB3_1_1), [0x0311, 0x0302, 0x0300, 0x0210, 0x0202]),
    ((D.SMB2_0_2, D.SMB2_0_2), [0x0202]),
    ((D.SMB2_0_2, D.SMB2_1), [0x0210, 0x0202]),
    ((D.SMB2_1, D.SMB3_0_2), [0x0302, 0x0300, 0x0210]),
    ((D.SMB3_0, D.SMB3_0), [0x0300]),
    ((D.SMB3_0_2, D.SMB3_1_1), [0x0311, 0x0302]),
    ((D.SMB3_1_1, D.SMB3_1_1), [0x0311]),
]


@pytest.mark.parametrize("bounds,expected", SMB2_RANGES,
                         ids=[f"{a.name}-{b.name}" for (a, b), _ in SMB2_RANGES])
def test_smb2_negotiate_request_dialects(bounds, expected):
    neg = _negotiator(*bounds)
    out = neg.start()
    assert isinstance(out, Outgoing) and not out.smb1 and out.message_id == 0
    assert neg.state is State.WAIT_SMB2
    msg, hdr, size, dialects, sec_mode, caps, guid, ctx_off, ctx_count = _smb2_request_fields(out)
    assert hdr.command == smb2.Command.NEGOTIATE and hdr.message_id == 0
    assert not hdr.is_response
    assert size == 36
    assert dialects == expected
    assert sec_mode & smb2.SecurityMode.SIGNING_ENABLED
    if 0x0311 in expected:
        assert ctx_count == 3 and ctx_off
    else:
        assert ctx_count == 0 and ctx_off == 0
        assert len(msg) == 64 + 36 + 2 * len(expected)
    if max(expected) == 0x0202:
        assert guid == bytes(16)          # 2.0.2 only: ClientGuid must be zero
    else:
        assert guid == GUID
    if max(expected) >= 0x0210:
        assert caps & smb2.Capabilities.LARGE_MTU


def test_require_signing_sets_security_mode():
    out = _negotiator(D.SMB3_0, D.SMB3_1_1, require_signing=True).start()
    sec_mode = _smb2_request_fields(out)[4]
    assert sec_mode & smb2.SecurityMode.SIGNING_REQUIRED


def test_311_negotiate_contexts_aligned_and_inside():
    out = _negotiator(D.SMB2_0_2, D.SMB3_1_1).start()
    msg, _hdr, _size, dialects, _sm, _caps, _guid, ctx_off, ctx_count = _smb2_request_fields(out)
    assert ctx_off % 8 == 0
    assert ctx_off >= 64 + 36 + 2 * len(dialects)
    pos = ctx_off
    seen = {}
    for i in range(ctx_count):
        assert pos % 8 == 0, f"context {i} at unaligned offset {pos}"
        assert pos + 8 <= len(msg)
        ctype, dlen, reserved = struct.unpack_from("<HHI", msg, pos)
        assert reserved == 0
        assert pos + 8 + dlen <= len(msg), f"context {i} runs past the message"
        seen[ctype] = msg[pos + 8:pos + 8 + dlen]
        pos += 8 + dlen
        if i != ctx_count - 1:
            pos += -pos % 8
    assert pos == len(msg)                  # no trailing bytes after the last context
    assert set(seen) == {1, 2, 8}
    count, salt_len, hash_alg = struct.unpack_from("<HHH", seen[1])
    assert (count, salt_len, hash_alg) == (1, 32, 0x0001) and seen[1][6:] == SALT
    (n,) = struct.unpack_from("<H", seen[2])
    ciphers = list(struct.unpack_from(f"<{n}H", seen[2], 2))
    assert set(ciphers) == {1, 2, 3, 4}
    (n,) = struct.unpack_from("<H", seen[8])
    assert set(struct.unpack_from(f"<{n}H", seen[8], 2)) >= {0x0001, 0x0002}


@pytest.mark.parametrize("bounds,offered", [
    ((D.SMB1, D.SMB1), ["NT LM 0.12"]),
    ((D.SMB1, D.SMB2_0_2), ["NT LM 0.12", "SMB 2.002"]),
    ((D.SMB1, D.SMB2_1), ["NT LM 0.12", "SMB 2.002", "SMB 2.???"]),
    ((D.SMB1, D.SMB3_1_1), ["NT LM 0.12", "SMB 2.002", "SMB 2.???"]),
])
def test_smb1_negprot_dialects(bounds, offered):
    neg = _negotiator(*bounds)
    out = neg.start()
    assert out.smb1 and neg.state is State.WAIT_SMB1
    assert _smb1_offered(out) == offered


def test_start_twice_is_refused():
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.start()


def test_negotiator_checks_sizes():
    with pytest.raises(ValueError):
        Negotiator(DialectRange(), client_guid=b"short", salt=SALT)
    with pytest.raises(ValueError):
        Negotiator(DialectRange(), client_guid=GUID, salt=b"x")


# ---------------------------------------------------------------------------
# Negotiator transitions with canned responses


def smb2_negotiate_response(dialect: int, mid: int = 0, *, credits: int = 17,
                            status: int = 0, contexts=None, caps: int = 0x4,
                            sec_mode: int = 1) -> bytes:
    """A hand-built SMB2 NEGOTIATE response ([MS-SMB2] 2.2.4)."""
    hdr = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 0, status, 0, credits, 1, 0, mid,
                      0, 0, 0, bytes(16))
    if contexts is None and dialect == 0x0311:
        salt = bytes(32)
        contexts = [(1, struct.pack("<HHH", 1, 32, 1) + salt),
                    (2, struct.pack("<HH", 1, 0x0002)),
                    (8, struct.pack("<HH", 1, 0x0001))]
    blob = b""
    for i, (ctype, data) in enumerate(contexts or []):
        blob += struct.pack("<HHI", ctype, len(data), 0) + data
        if i != len(contexts) - 1:
            blob += bytes(-len(blob) % 8)
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, sec_mode, dialect, len(contexts or []),
                       b"S" * 16, caps, 1 << 20, 1 << 20, 1 << 20, 0, 0, 128, 0,
                       128 if contexts else 0)
    return hdr + body + (blob if contexts else b"\0")


def smb1_nt_lm_response(index: int = 0, max_mpx: int = 50, status: int = 0) -> bytes:
    """A hand-built NT LM 0.12 negprot response, extended security ([MS-CIFS] 2.2.4.52.2)."""
    hdr = struct.pack("<4sBIBHH8sHHHHH", b"\xffSMB", 0x72, status, 0x98, 0xC843, 0, bytes(8),
                      0, 0, 0xFEFF, 0, 0)
    caps = 0x80000000 | 0x4 | 0x10 | 0x40
    words = struct.pack("<HBHHIIIIQhB", index, 0x03, max_mpx, 1, 16644, 65536, 0xABCD, caps,
                        0, 0, 0)
    data = b"G" * 16 + b"spnego-blob"
    return hdr + bytes([len(words) // 2]) + words + struct.pack("<H", len(data)) + data


def test_smb1_only_nt_lm_reply():
    neg = _negotiator(D.SMB1, D.SMB1)
    neg.start()
    result = neg.receive(smb1_nt_lm_response(0, max_mpx=50))
    assert isinstance(result, NegotiateResult)
    assert neg.state is State.DONE
    assert result.dialect is D.SMB1
    assert result.max_mpx_count == 50 and result.credits_granted == 50
    assert result.max_buffer_size == 16644
    assert result.server_guid == b"G" * 16 and result.security_buffer == b"spnego-blob"
    assert result.smb1_session_key == 0xABCD
    with pytest.raises(NegotiateFailed):
        neg.receive(smb1_nt_lm_response(0))


def test_multiprotocol_smb1_answer():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    neg.start()
    result = neg.receive(smb1_nt_lm_response(0))
    assert result.dialect is D.SMB1


def test_smb1_no_common_dialect():
    neg = _negotiator(D.SMB1, D.SMB1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb1_nt_lm_response(0xFFFF))


def test_smb1_reply_choosing_smb2_dialect_string_fails():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb1_nt_lm_response(1))       # index 1 is "SMB 2.002" in an SMB1 reply


def test_smb1_error_status_fails():
    neg = _negotiator(D.SMB1, D.SMB1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb1_nt_lm_response(0, status=0xC0000022))


def test_wildcard_then_311():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    first = neg.start()
    assert first.smb1
    second = neg.receive(smb2_negotiate_response(0x02FF, mid=0, credits=1))
    assert isinstance(second, Outgoing) and not second.smb1
    assert second.message_id == 1 and neg.state is State.WAIT_SMB2
    req = second.to_bytes()
    assert smb2.parse_header(req).message_id == 1
    response = smb2_negotiate_response(0x0311, mid=1, credits=31)
    result = neg.receive(response)
    assert isinstance(result, NegotiateResult) and neg.state is State.DONE
    assert result.dialect is D.SMB3_1_1
    assert result.cipher_id == 0x0002 and result.signing_algorithm == 0x0001
    assert result.negotiate_messages == [req, response]
    assert result.credits_granted == 31 and result.next_message_id == 2
    assert result.client_guid == GUID
    assert result.supports_encryption and result.multi_credit


def test_smb1_negprot_answered_with_202():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    neg.start()
    result = neg.receive(smb2_negotiate_response(0x0202, mid=0, credits=3, caps=0))
    assert result.dialect is D.SMB2_0_2 and result.next_message_id == 1
    assert not result.multi_credit


def test_smb1_negprot_answered_with_other_smb2_dialect_fails():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x0311, mid=0))


def test_wildcard_not_offered_fails():
    neg = _negotiator(D.SMB1, D.SMB2_0_2)        # "SMB 2.???" not offered
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x02FF))


def test_wildcard_in_reply_to_smb2_negotiate_fails():
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x02FF))


@pytest.mark.parametrize("bounds,answer", [
    ((D.SMB2_1, D.SMB3_0), 0x0311),
    ((D.SMB2_1, D.SMB3_0), 0x0202),
    ((D.SMB3_1_1, D.SMB3_1_1), 0x0300),
    ((D.SMB2_0_2, D.SMB2_1), 0x0302),
    ((D.SMB2_0_2, D.SMB3_1_1), 0x0222),
])
def test_dialect_outside_bounds_fails(bounds, answer):
    neg = _negotiator(*bounds)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(answer, contexts=[]))
    assert neg.state is not State.DONE


def test_wildcard_then_dialect_outside_bounds_fails():
    neg = _negotiator(D.SMB1, D.SMB2_1)
    neg.start()
    neg.receive(smb2_negotiate_response(0x02FF))
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x0300, mid=1))


@pytest.mark.parametrize("dialect", [0x0202, 0x0210, 0x0300, 0x0302])
def test_each_smb2_dialect_accepted(dialect):
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    result = neg.receive(smb2_negotiate_response(dialect, credits=5))
    assert result.dialect == dialect and result.credits_granted == 5
    assert result.negotiate_messages == []       # kept for 3.1.1 only


def test_smb2_error_status_fails():
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x0311, status=0xC00000BB))


def test_311_without_preauth_context_fails():
    neg = _negotiator(D.SMB3_1_1, D.SMB3_1_1)
    neg.start()
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x0311, contexts=[(2, struct.pack("<HH", 1, 2))]))


def test_311_unoffered_cipher_fails():
    neg = _negotiator(D.SMB3_1_1, D.SMB3_1_1)
    neg.start()
    ctx = [(1, struct.pack("<HHH", 1, 32, 1) + bytes(32)), (2, struct.pack("<HH", 1, 0x0009))]
    with pytest.raises(NegotiateFailed):
        neg.receive(smb2_negotiate_response(0x0311, contexts=ctx))


def test_wrong_protocol_and_truncated_responses_are_malformed():
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    with pytest.raises(ValueError):             # MalformedMessage is a ValueError
        neg.receive(b"\xffSMB" + bytes(60))
    neg = _negotiator(D.SMB2_0_2, D.SMB3_1_1)
    neg.start()
    with pytest.raises(smb2.MalformedMessage):
        neg.receive(smb2_negotiate_response(0x0311)[:100])


def test_negotiate_result_properties():
    r = NegotiateResult(D.SMB3_0, capabilities=smb2.Capabilities.ENCRYPTION
                        | smb2.Capabilities.LARGE_MTU, security_mode=3)
    assert r.signing_required and r.multi_credit and r.supports_encryption
    r = NegotiateResult(D.SMB2_0_2, capabilities=smb2.Capabilities.LARGE_MTU)
    assert not r.multi_credit and not r.supports_encryption and not r.signing_required
    r = NegotiateResult(D.SMB1, security_mode=0x08)
    assert r.signing_required


# ---------------------------------------------------------------------------
# SMB1 codecs


def test_smb1_header_round_trip_and_params():
    hdr = smb1.pack_header(smb1.Command.ECHO, 0x1234, tid=7, uid=9, pid=0x00012345)
    words, data = smb1.pack_echo(b"ping", count=1)
    msg = bytes(hdr) + words + data
    h = smb1.parse_header(msg)
    assert (h.command, h.mid, h.tid, h.uid, h.pid) == (0x2B, 0x1234, 7, 9, 0x00012345)
    assert not h.is_response
    w, d = smb1.parse_params(msg)
    assert bytes(w) == b"\x01\x00" and bytes(d) == b"ping"
    assert smb1.route(msg)[-1] == 0x1234
    with pytest.raises(smb2.MalformedMessage):
        smb1.parse_header(msg[:20])
    with pytest.raises(smb2.MalformedMessage):
        smb1.parse_params(bytes(hdr) + b"\x05\x00")
    with pytest.raises(ValueError):
        smb1.pack_params(b"odd")


# ---------------------------------------------------------------------------
# credits


def _vectors():
    override = os.environ.get("SMBLAYER_VECTORS")
    path = Path(override) if override else Path(__file__).resolve().parents[1] / "vectors"
    path = path / "smb3-vectors.json" if path.is_dir() else path
    if not path.is_file():
        return []
    return [v for v in json.loads(path.read_text())["vectors"] if v["kind"] == "credit-charge"]


CREDIT_VECTORS = _vectors()


def test_credit_vectors_present():
    assert len(CREDIT_VECTORS) >= 5


@pytest.mark.parametrize("vec", CREDIT_VECTORS, ids=[v["id"] for v in CREDIT_VECTORS])
def test_credit_charge_vectors(vec):
    inp = vec["inputs"]
    got = credits.credit_charge(inp["send_payload_size"], inp["expected_response_payload_size"],
                                True)
    assert got == vec["expected"]["credit_charge"]
    # without multi-credit support (2.0.2 / no LARGE_MTU) CreditCharge is 0
    assert credits.credit_charge(inp["send_payload_size"],
                                 inp["expected_response_payload_size"], False) == 0
    assert credits.credits_needed(got) == max(1, got)


def test_credit_charge_small_and_boundaries():
    assert credits.credit_charge(0, 0, True) == 1
    assert credits.credit_charge(65536, 65536, True) == 1
    assert credits.credit_charge(65536 * 8 + 1, 0, True) == 9
    assert credits.credits_needed(0) == 1


# ---------------------------------------------------------------------------
# NTSTATUS and errors


def test_ntstatus_names():
    assert status_name(0xC0000034) == "STATUS_OBJECT_NAME_NOT_FOUND"
    assert status_name(0) == "STATUS_SUCCESS"
    assert status_name(0x103) == "STATUS_PENDING"
    assert status_name(0xC0DE0001) == "NTSTATUS 0xc0de0001"
    assert NtStatus.coerce(0xC0000022) is NtStatus.ACCESS_DENIED
    assert NtStatus.coerce(0xC0DE0001) == 0xC0DE0001
    assert is_error(0xC0000034) and not is_error(0x80000005) and not is_error(0x103)
    assert not is_error(0)


def test_status_error_file_not_found():
    err = status_error(0xC0000034, "CREATE", "dir/a.txt")
    assert isinstance(err, FileNotFoundError)
    assert isinstance(err, SmbStatusError)
    assert err.status is NtStatus.OBJECT_NAME_NOT_FOUND
    assert err.status.name == "OBJECT_NAME_NOT_FOUND"
    assert "OBJECT_NAME_NOT_FOUND" in str(err) and "dir/a.txt" in str(err)
    assert err.command == "CREATE" and err.path == "dir/a.txt"
    try:
        raise err
    except FileNotFoundError as caught:
        assert caught is err


@pytest.mark.parametrize("status,builtin", [
    (0xC000003A, FileNotFoundError), (0xC0000035, FileExistsError),
    (0xC0000022, PermissionError), (0xC00000BA, IsADirectoryError),
    (0xC0000103, NotADirectoryError),
])
def test_status_error_builtins(status, builtin):
    err = status_error(status)
    assert isinstance(err, builtin) and isinstance(err, SmbStatusError)


def test_status_error_auth_and_unknown():
    assert isinstance(status_error(0xC000006D), SmbAuthError)
    err = status_error(0xC0DE0001, "READ")
    assert type(err) is SmbStatusError
    assert err.status == 0xC0DE0001 and "0xc0de0001" in str(err)


def test_status_error_pickles():
    err = status_error(0xC0000034, "CREATE", "x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and back.status is NtStatus.OBJECT_NAME_NOT_FOUND
    assert back.path == "x"


# ---------------------------------------------------------------------------
# policies


def test_timeout_policy_validation():
    with pytest.raises(ValueError):
        TimeoutPolicy(mode="x")
    for field in ("timeout", "echo_interval", "soft_timeout", "connect_timeout"):
        with pytest.raises(ValueError):
            TimeoutPolicy(**{field: 0})
        with pytest.raises(ValueError):
            TimeoutPolicy(**{field: -1.0})
        with pytest.raises(TypeError):
            TimeoutPolicy(**{field: "1"})
        with pytest.raises(TypeError):
            TimeoutPolicy(**{field: True})
    hard = TimeoutPolicy(mode="hard")
    assert hard.hard and not TimeoutPolicy().hard
    assert hard.with_(timeout=3).timeout == 3 and hard.with_(timeout=3).hard
    assert hash(TimeoutPolicy()) == hash(TimeoutPolicy())
    with pytest.raises(Exception):
        hard.mode = "soft"          # frozen


def test_dialect_range_validation():
    with pytest.raises(ValueError):
        DialectRange(D.SMB3_1_1, D.SMB2_0_2)
    with pytest.raises(ValueError):
        DialectRange(D.SMB2_1, D.SMB1)
    assert DialectRange("2.1", "3.0") == DialectRange(D.SMB2_1, D.SMB3_0)
    assert DialectRange("NT1", "3.1.1").min is D.SMB1
    assert DialectRange("smb3_11", D.SMB3_1_1).min is D.SMB3_1_1
    assert D("3.0.2") is D.SMB3_0_2 and D.parse("2.02") is D.SMB2_0_2
    with pytest.raises(ValueError):
        DialectRange("2.5", D.SMB3_0)            # no such dialect
    with pytest.raises(TypeError):
        DialectRange(2.1, D.SMB3_0)
    with pytest.raises(TypeError):
        DialectRange(None, D.SMB3_0)
    with pytest.raises(ValueError):
        DialectRange(0x0999, D.SMB3_0)          # not a dialect
    r = DialectRange(0x0210, 0x0300)
    assert r.min is D.SMB2_1 and r.max is D.SMB3_0
    assert D.SMB2_1 in r and D.SMB3_0 in r and D.SMB3_1_1 not in r and "x" not in r
    assert DialectRange().smb2_dialects()[0] is D.SMB3_1_1
    assert D.SMB1 not in DialectRange()
    assert sorted(D) == [D.SMB1, D.SMB2_0_2, D.SMB2_1, D.SMB3_0, D.SMB3_0_2, D.SMB3_1_1]
    assert str(D.SMB3_1_1) == "3.1.1" and str(D.SMB1) == "NT LM 0.12"


def test_reconnect_policy_delays_double_and_cap():
    p = ReconnectPolicy(initial_delay=0.1, max_delay=1.0, max_attempts=7, jitter=0)
    delays = list(p.delays())
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    jittered = [list(ReconnectPolicy(initial_delay=0.1, max_delay=1.0, max_attempts=7)
                     .delays()) for _ in range(20)]
    for run in jittered:
        assert all(0.9 * d <= j <= 1.1 * d for j, d in zip(run, delays))
    assert len({tuple(run) for run in jittered}) > 1      # spread, not lock step
    forever = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, jitter=0)
    first = list(itertools.islice(forever.delays(), 10))
    assert first == pytest.approx([0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4])
    assert all(b >= a for a, b in zip(first, first[1:]))
    zero = list(itertools.islice(ReconnectPolicy(initial_delay=0, max_delay=1).delays(), 3))
    assert zero[0] == 0 and all(0 < d <= 1 for d in zero[1:])   # no busy loop after 0


def test_reconnect_policy_validation():
    with pytest.raises(ValueError):
        ReconnectPolicy(initial_delay=2.0, max_delay=1.0)
    with pytest.raises(ValueError):
        ReconnectPolicy(initial_delay=-1)
    with pytest.raises(ValueError):
        ReconnectPolicy(max_attempts=0)


def test_frame_reader_places_a_large_frame_in_the_claimed_buffer():
    """The head goes to claim(); the rest is received straight into the
    returned buffer, and the frame comes out as a PlacedFrame."""
    from smblayer.proto.framing import FrameReader, PlacedFrame
    payload = bytes(range(256)) * 2048                  # 512 KiB
    head = b"H" * 80
    wire = struct.pack(">I", len(head) + len(payload)) + head + payload
    target = bytearray(len(payload) + 100)
    seen = []

    def claim(h, length):
        seen.append((bytes(h), length))
        return memoryview(target)[:length - 80]
    reader = FrameReader(64 * 1024, claim=claim, claim_head=80)
    frames, pos = [], 0
    while pos < len(wire):
        buf = reader.buffer()
        n = min(len(buf), 50000, len(wire) - pos)
        buf[:n] = wire[pos:pos + n]
        pos += n
        frames += reader.feed(n)
    assert seen == [(head, len(head) + len(payload))]
    assert len(frames) == 1 and isinstance(frames[0], PlacedFrame)
    assert frames[0].head == head and bytes(frames[0].tail) == payload
    assert bytes(target[:len(payload)]) == payload


def test_frame_reader_declined_claim_falls_back_to_own_buffer():
    from smblayer.proto.framing import FrameReader
    body = b"x" * 300000
    wire = struct.pack(">I", len(body)) + body
    reader = FrameReader(64 * 1024, claim=lambda h, n: None, claim_head=80)
    frames, pos = [], 0
    while pos < len(wire):
        buf = reader.buffer()
        n = min(len(buf), len(wire) - pos)
        buf[:n] = wire[pos:pos + n]
        pos += n
        frames += reader.feed(n)
    assert len(frames) == 1 and bytes(frames[0]) == body


@pytest.mark.parametrize("mid", [1, 5, 0xFFFFFFFFFFFFFFFF])
def test_negotiate_response_for_another_message_id_is_malformed(mid):
    """The connection's MessageIds go on from the NEGOTIATE request's, never
    from the server's: a reply carrying MessageId 0xFFFF...FF made the next
    one 2**64, which no header can carry (struct.error on every send of a
    reconnect, found by the client-level fuzzer)."""
    neg = _negotiator(D.SMB2_1, D.SMB3_1_1)
    neg.start()
    with pytest.raises(smb2.MalformedMessage, match="MessageId"):
        neg.receive(smb2_negotiate_response(0x0311, mid=mid, credits=31))


def test_negotiate_after_smb1_expects_message_id_1():
    neg = _negotiator(D.SMB1, D.SMB3_1_1)
    neg.start()
    neg.receive(smb2_negotiate_response(0x02FF, mid=0, credits=1))
    with pytest.raises(smb2.MalformedMessage, match="MessageId"):
        neg.receive(smb2_negotiate_response(0x0311, mid=0, credits=31))
