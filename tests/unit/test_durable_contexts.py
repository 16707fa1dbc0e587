"""CREATE contexts for durable handles ([MS-SMB2] 2.2.13.2, 2.2.14.2), built
and parsed without a server: DH2Q (with the persistent flag only on a
continuously available share of a server with persistent handles), DHnQ
only with a batch oplock or lease, DH2C/DHnC reclaims, QFid."""
from __future__ import annotations

import struct
from types import SimpleNamespace

from smblayer.config import Dialect
from smblayer.fs import smb2ops
from smblayer.fs.ops import (FILE_OVERWRITE_IF, OPLOCK_BATCH, OPLOCK_LEASE, OPLOCK_NONE,
                             FileInfo, Handle)
from smblayer.proto import contexts as create_contexts, smb2
from smblayer.proto.negotiate import NegotiateResult


def _ops(dialect: Dialect, server_caps: int = smb2.Capabilities.LEASING,
         share_caps: int = 0) -> smb2ops.Smb2FileOps:
    negotiated = NegotiateResult(dialect, capabilities=server_caps,
                                 max_read_size=1 << 20, max_write_size=1 << 20)
    client = SimpleNamespace(negotiated=negotiated)
    tree = SimpleNamespace(client=client, session=None, capabilities=share_caps)
    return smb2ops.Smb2FileOps(tree)


def _contexts(task) -> dict:
    body = task.body[0]
    ctx_off, ctx_len = struct.unpack_from("<II", body, len(body) - 8)
    message = bytes(smb2.HEADER_SIZE) + b"".join(bytes(p) for p in task.body)
    found = create_contexts.parse_create_contexts(message, ctx_off, ctx_len)
    return {name: bytes(data) for name, data in found.items()}


def test_dh2q_on_3x_persistent_only_on_a_ca_share():
    guid = bytes(range(16))
    plain = _ops(Dialect.SMB3_1_1)
    task, _level, _key = plain._create_task("a", access=1, disposition=FILE_OVERWRITE_IF,
                                            oplock=OPLOCK_LEASE, lease_state=7, durable=guid)
    found = _contexts(task)
    assert set(found) == {b"RqLs", b"DH2Q", b"QFid"}
    timeout, flags, _reserved, create_guid = struct.unpack("<II8s16s", found[b"DH2Q"])
    assert (timeout, flags, create_guid) == (smb2ops.DURABLE_TIMEOUT_MS, 0, guid)
    assert found[b"QFid"] == b""
    ca = _ops(Dialect.SMB3_1_1, smb2.Capabilities.LEASING | smb2.Capabilities.PERSISTENT_HANDLES,
              share_caps=smb2ops.SHARE_CAP_CONTINUOUS_AVAILABILITY)
    task, _level, _key = ca._create_task("a", access=1, disposition=FILE_OVERWRITE_IF,
                                         oplock=OPLOCK_LEASE, lease_state=7, durable=guid)
    flags = struct.unpack_from("<I", _contexts(task)[b"DH2Q"], 4)[0]
    assert flags == smb2ops.DH2_FLAG_PERSISTENT


def test_dhnq_on_2x_only_with_a_batch_oplock_or_lease():
    ops = _ops(Dialect.SMB2_1)
    task, _l, _k = ops._create_task("a", access=1, disposition=1, oplock=OPLOCK_BATCH,
                                    durable=bytes(16))
    assert _contexts(task)[b"DHnQ"] == bytes(16)
    task, _l, _k = ops._create_task("a", access=1, disposition=1, oplock=OPLOCK_NONE,
                                    durable=bytes(16))
    assert b"DHnQ" not in _contexts(task)


def test_reclaim_sends_dh2c_with_the_create_guid_or_dhnc():
    fid, guid = bytes(range(16, 32)), bytes(range(32, 48))
    handle = Handle(fid, "a", FileInfo(), OPLOCK_LEASE, lease_key=b"k" * 16, lease_state=7,
                    durable=True, create_guid=guid)
    task, _l, key = _ops(Dialect.SMB3_0)._create_task(
        "a", access=1, disposition=1, oplock=OPLOCK_LEASE, lease_key=handle.lease_key,
        lease_state=7, reclaim=handle)
    found = _contexts(task)
    assert found[b"DH2C"] == fid + guid + bytes(4)
    assert found[b"RqLs"][:16] == b"k" * 16 and key == b"k" * 16
    assert b"DH2Q" not in found
    handle.create_guid = None
    task, _l, _k = _ops(Dialect.SMB2_0_2)._create_task("a", access=1, disposition=1,
                                                       oplock=OPLOCK_BATCH, reclaim=handle)
    assert _contexts(task)[b"DHnC"] == fid


def test_parse_contexts_ignores_out_of_bounds_and_stops_at_the_last():
    packed = create_contexts.pack_create_contexts([(b"DH2Q", b"\x01" * 8),
                                                   (b"QFid", b"\x02" * 32)])
    assert len(packed) % 8 == 0 or packed.endswith(b"\x02" * 32)
    found = create_contexts.parse_create_contexts(packed, 0, len(packed))
    assert bytes(found[b"DH2Q"]) == b"\x01" * 8 and bytes(found[b"QFid"]) == b"\x02" * 32
    assert create_contexts.parse_create_contexts(packed, 0, len(packed) + 100) == {}
    bad = bytearray(packed)
    struct.pack_into("<I", bad, 12, 10_000)             # first DataLength: out of bounds
    assert set(create_contexts.parse_create_contexts(bytes(bad), 0, len(bad))) == {b"QFid"}
