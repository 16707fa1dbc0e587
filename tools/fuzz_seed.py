"""Seed corpus for the fuzz targets, captured from our own traffic against Samba.

Theory of operation
-------------------
A private DFS namespace (:class:`smblayer.testing.dfs.DfsNamespace`: smbd
with a ``share`` and an msdfs root ``dfs``) sits behind a
:class:`~smblayer.testing.proxy.FaultProxy` whose s2c rewrite hook records
every frame the server sends.  smblayer then does real work through it on
SMB 3.1.1, 2.1 and NT1 (negotiate, NTLM and SPNEGO session setup, write,
read, list, stat, watch, share listing over srvsvc, a DFS referral).  Each
recorded message is cut to what a target parses (a whole reply, an IOCTL's
output, a pipe stream, a security token...) and the few smallest distinct
ones per target are written to ``tests/vectors/fuzz/corpus/<target>/``.
Transform seeds are captured plaintexts sealed with the known fuzz key.
"""
from __future__ import annotations

import hashlib
import pathlib
import struct
import threading
from typing import Dict, List, Optional

from smblayer import Dialect, DialectRange, TimeoutPolicy, fs
from smblayer.fs.dfs import get_referral
from smblayer.proto import commands, smb1, smb2
from smblayer.testing import fuzzing
from smblayer.testing.dfs import DfsNamespace
from smblayer.testing.proxy import FaultProxy

PER_TARGET = 6
MAX_SEED = 6144
_TRANS2_DATA = struct.Struct("<HH")      # DataCount, DataOffset in TRANS2 response words


class _Recorder:
    def __init__(self) -> None:
        self.frames: List[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, frame: bytes):
        with self._lock:
            self.frames.append(bytes(frame))
        return None


def _work(ns: DfsNamespace, port: int, dialect: Dialect, auth: str) -> None:
    root = ns.root
    opts = dict(port=port, dialects=DialectRange(dialect, dialect), auth_protocol=auth,
                timeouts=TimeoutPolicy(timeout=10.0, connect_timeout=10.0))
    with fs.connect(root.host, "share", root.username, root.password, **opts) as tree:
        tree.write_bytes("seed.txt", b"fuzz seed " * 20)
        tree.read_bytes("seed.txt")
        tree.mkdir("seed.d")
        tree.write_bytes("seed.d\\a name.txt", b"x")
        tree.listdir("seed.d")
        tree.listdir("")
        tree.stat("seed.txt")
        if dialect is not Dialect.SMB1:
            watch = tree.watch("seed.d")
            try:
                tree.write_bytes("seed.d\\new.txt", b"y")
                watch.next(timeout=5.0)
            finally:
                watch.close()
        tree.remove("seed.d\\a name.txt")
        if dialect is not Dialect.SMB1:
            tree.remove("seed.d\\new.txt")
        tree.rmdir("seed.d")
        tree.remove("seed.txt")
    with fs.connect(root.host, "IPC$", root.username, root.password, dfs=False, **opts) as ipc:
        get_referral(ipc.session, "\\127.0.0.1\\dfs\\local", ipc)
    if dialect is not Dialect.SMB1:
        fs.list_shares(root.host, root.username, root.password, **opts)


def _add(seeds: Dict[str, Dict[bytes, None]], target: str, data: bytes) -> None:
    if data:
        seeds.setdefault(target, {})[bytes(data[:MAX_SEED])] = None


def _classify(seeds, message: bytes, pipe: List[bytes]) -> None:
    if message[:4] == smb1.PROTOCOL_ID:
        _add(seeds, "smb1_message", message)
        cmd = message[4]
        if cmd == smb1.Command.NEGOTIATE:
            _add(seeds, "negotiate", b"\x02" + message)
        elif cmd in (smb1.Command.SESSION_SETUP_ANDX, smb1.Command.TREE_CONNECT_ANDX):
            _add(seeds, "session", message)
        elif cmd in (smb1.Command.READ_ANDX, smb1.Command.WRITE_ANDX):
            _add(seeds, "read_write", message)
        elif cmd == smb1.Command.TRANSACTION2:
            try:
                words, _data = smb1.parse_params(message)
                count, offset = _TRANS2_DATA.unpack_from(words, 12)
            except (ValueError, struct.error):
                return
            out = message[offset:offset + count]
            _add(seeds, "directory", b"\x06" + out)
            _add(seeds, "dfs", out)
        return
    if message[:4] != smb2.PROTOCOL_ID:
        return
    for offset, length in smb2.split_compound(message):
        one = message[offset:offset + length]
        header = smb2.parse_header(one)
        cmd = header.command
        _add(seeds, "smb2_header", one)
        _add(seeds, "transform_plain", b"\x00" + one)
        if len(one) < 512:
            _add(seeds, "transform", _sealed(one))
        if cmd == smb2.Command.NEGOTIATE:
            _add(seeds, "negotiate", b"\x00" + one)
        elif cmd in (smb2.Command.SESSION_SETUP, smb2.Command.TREE_CONNECT):
            _add(seeds, "session", one)
            if cmd == smb2.Command.SESSION_SETUP and len(one) > 72:
                _off, _len = struct.unpack_from("<HH", one, 68)
                token = one[_off:_off + _len]
                if token:
                    _add(seeds, "spnego", (b"\x01" if token[:1] == b"\xa1" else b"\x00") + token)
                    at = token.find(b"NTLMSSP\0")
                    if at >= 0 and token[at + 8:at + 9] == b"\x02":       # a CHALLENGE
                        _add(seeds, "ntlm", token[at:])
        elif cmd == smb2.Command.CREATE:
            _add(seeds, "create", one)
        elif cmd in (smb2.Command.READ, smb2.Command.WRITE, smb2.Command.OPLOCK_BREAK):
            _add(seeds, "read_write", one)
        elif cmd == smb2.Command.QUERY_INFO:
            _add(seeds, "query_info", one)
        elif cmd == smb2.Command.QUERY_DIRECTORY:
            _add(seeds, "query_directory", one)
            try:
                out = commands.parse_query_directory_response(one)
            except ValueError:
                continue
            _add(seeds, "directory", b"\x03" + out)
            _add(seeds, "directory", b"\x05" + out)
        elif cmd == smb2.Command.CHANGE_NOTIFY:
            _add(seeds, "notify", one)
            try:
                _s, off, ln = struct.unpack_from("<HHI", one, 64)
                _add(seeds, "notify", one[off:off + ln])
            except struct.error:
                pass
        elif cmd == smb2.Command.IOCTL:
            _add(seeds, "ioctl", one)
            try:
                resp = commands.parse_ioctl_response(one)
            except ValueError:
                continue
            if resp.ctl_code == commands.FSCTL_DFS_GET_REFERRALS:
                _add(seeds, "dfs", resp.output)
            elif resp.ctl_code == commands.FSCTL_PIPE_TRANSCEIVE:
                pipe.append(resp.output)
                _add(seeds, "dcerpc", resp.output)
                if len(resp.output) > 24 and resp.output[2] == 2:       # RESPONSE
                    _add(seeds, "srvsvc", resp.output[24:])


_SEAL = {}


def _sealed(message: bytes) -> bytes:
    cipher_id = 1 + len(_SEAL) % 4
    cipher = _SEAL.get(cipher_id) or _SEAL.setdefault(cipher_id, fuzzing._cipher(cipher_id))
    return bytes([cipher_id - 1]) + b"".join(bytes(p) for p in cipher.encrypt([message], 7))


def capture(out: Optional[pathlib.Path] = None) -> Dict[str, int]:
    out = out or fuzzing.VECTORS / "corpus"
    recorder = _Recorder()
    with DfsNamespace(extra_global={"rpc start on demand helpers": "yes"}) as ns:
        with FaultProxy(ns.root.host, ns.root.port) as proxy:
            proxy.rewrite("s2c", recorder)
            for dialect, auth in ((Dialect.SMB3_1_1, "negotiate"), (Dialect.SMB2_1, "ntlm"),
                                  (Dialect.SMB3_0, "negotiate"), (Dialect.SMB1, "negotiate")):
                _work(ns, proxy.port, dialect, auth)
    seeds: Dict[str, Dict[bytes, None]] = {}
    pipe: List[bytes] = []
    for frame in recorder.frames:
        _classify(seeds, frame, pipe)
    # framing: the first frames of a connection as one stream (flag byte 0: 4 KB reads)
    stream = b"".join(struct.pack(">I", len(f)) + f for f in recorder.frames[:5])
    _add(seeds, "framing", b"\x00" + stream)
    _add(seeds, "framing", b"\x85" + stream)
    if pipe:
        _add(seeds, "rpc_pipe", b"".join(pipe[:2]))
    counts = {}
    for target, found in seeds.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        chosen = _pick(list(found))
        for data in chosen:
            (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        counts[target] = len(chosen)
    return counts


def _pick(found: List[bytes]) -> List[bytes]:
    """PER_TARGET seeds: spread over the captured order (so several commands
    and dialects show up), smallest first among equals."""
    if len(found) <= PER_TARGET:
        return found
    step = len(found) / PER_TARGET
    return [found[int(i * step)] for i in range(PER_TARGET)]
