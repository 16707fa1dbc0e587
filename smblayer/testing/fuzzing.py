"""Fuzz targets: every parser a server's bytes reach, with the rule they obey.

Theory of operation
-------------------
A :class:`Target` wraps one parser (or a short chain of them, as the client
runs them) in ``fn(data)``, and names the exceptions that parser documents
for bad input (``allowed``).  The rule, the same for every target::

    fn(data) returns, or raises one of ``allowed``, within ``TIME_BOUND``
    seconds -- anything else (IndexError, struct.error, UnicodeDecodeError,
    a bare ValueError, a hang, a MemoryError) is a crash.

:func:`check` applies the rule to one input and raises :class:`FuzzCrash`
(carrying the target, the input and the exception) when it is broken.

Inputs come from three places:

* the seed corpus, ``tests/vectors/fuzz/corpus/<target>/``: real server
  replies captured from our own traffic against Samba (``tools/fuzz.py
  --capture``), cut down to what the target parses;
* the regression vectors, ``tests/vectors/fuzz/<target>-<name>.bin``: inputs
  that once crashed a parser, replayed by every test run;
* :func:`mutate`: a small deterministic mutator (bit flips, interesting
  integers at any offset, truncation, insertion, splicing) for the smoke
  pass in the unit tests and for machines without atheris.  The long
  campaign (``tools/fuzz.py``) uses atheris, coverage-guided, instead.

Targets read private parsers of ``smblayer.fs`` through their module (the
white-box view a test has); nothing here is used by the library itself.
"""
from __future__ import annotations

import os
import pathlib
import random
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..config import Dialect, DialectRange
from ..errors import SmbProtocolError
from ..proto import commands, framing, negotiate, smb1, smb2
from ..proto.smb2 import MalformedMessage

__all__ = ["Target", "FuzzCrash", "TARGETS", "TIME_BOUND", "check", "mutate", "smoke",
           "corpus", "regression_vectors", "VECTORS", "KNOWN_KEY"]

#: seconds one input may take before it counts as a hang (generous: the tests run
#: on loaded machines; a real hang never ends)
TIME_BOUND = 5.0
#: tests/vectors/fuzz of the source tree (the regression vectors and corpus)
VECTORS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "vectors" / "fuzz"
#: the session key of the transform targets (decryption with a known key)
KNOWN_KEY = bytes(range(32))


@dataclass(frozen=True)
class Target:
    name: str
    fn: Callable[[bytes], Any]
    allowed: Tuple[type, ...]
    about: str = ""


class FuzzCrash(AssertionError):
    """A target broke the rule: ``target``, ``data``, ``error`` (the exception, or
    None for a hang) and ``seconds``."""

    def __init__(self, target: str, data: bytes, error: Optional[BaseException],
                 seconds: float = 0.0):
        what = f"{type(error).__name__}: {error}" if error is not None else \
            f"took {seconds:.2f} s (bound {TIME_BOUND} s)"
        super().__init__(f"fuzz target {target!r}: {what} on {len(data)}-byte input "
                         f"{data[:48].hex()}{'...' if len(data) > 48 else ''}")
        self.target = target
        self.data = data
        self.error = error
        self.seconds = seconds


def check(target: Target, data: bytes, time_bound: float = TIME_BOUND) -> bool:
    """Apply the rule to ``data``: True if it parsed, False if it raised an
    allowed error; FuzzCrash otherwise."""
    start = time.monotonic()
    try:
        target.fn(data)
        ok = True
    except Exception as exc:  # noqa: BLE001 - sorted out below
        # A UnicodeError is a ValueError, but never a documented one (unless
        # the target allows any Exception: third-party code the session wraps).
        if not isinstance(exc, target.allowed) or (
                isinstance(exc, UnicodeError) and Exception not in target.allowed):
            raise FuzzCrash(target.name, data, exc) from exc
        ok = False
    seconds = time.monotonic() - start
    if seconds > time_bound:
        raise FuzzCrash(target.name, data, None, seconds)
    return ok


# --- the mutator ---------------------------------------------------------------------

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 64, 63, 65, 8, 4, 2)
_PACK = (struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q"))


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes] = ()) -> bytes:
    """One to four random edits of ``data`` (deterministic for a seeded ``rng``)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:                                  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op in (1, 2):                                   # an interesting integer
            fmt = rng.choice(_PACK)
            value = rng.choice(_INTERESTING) & ((1 << (8 * fmt.size)) - 1)
            if rng.random() < 0.2:
                value = rng.getrandbits(8 * fmt.size)
            if pos + fmt.size <= len(out):
                fmt.pack_into(out, pos, value)
        elif op == 3:                                        # truncate
            del out[pos:]
        elif op == 4:                                        # insert bytes
            out[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        elif op == 5 and out:                                # delete a run
            del out[pos:pos + rng.randint(1, 16)]
        elif op == 6 and others:                             # splice another input
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            out[pos:] = other[cut:]
    return bytes(out)


# --- corpus and vectors -----------------------------------------------------------------

def corpus(target: str, root: Optional[pathlib.Path] = None) -> List[bytes]:
    """The seed inputs of ``target`` (sorted by file name: deterministic)."""
    folder = (root or VECTORS / "corpus") / target
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def regression_vectors(root: Optional[pathlib.Path] = None) -> Iterator[Tuple[str, str, bytes]]:
    """(target, file name, input) of every saved crash, ``<target>-<name>.bin``."""
    folder = root or VECTORS
    for path in sorted(folder.glob("*.bin")):
        target = path.name.split("-", 1)[0]
        yield target, path.name, path.read_bytes()


def smoke(target: Target, count: int, seed: int = 26,
          seeds: Optional[List[bytes]] = None) -> Dict[str, int]:
    """``count`` mutated inputs of the corpus through ``check``; a summary."""
    rng = random.Random(f"{seed}:{target.name}")
    pool = seeds if seeds is not None else corpus(target.name)
    pool = pool or [b""]
    parsed = 0
    for _ in range(count):
        data = mutate(rng, rng.choice(pool), pool)
        parsed += check(target, data)
    return {"inputs": count, "parsed": parsed}


# --- the targets ----------------------------------------------------------------------------

def _framing(data: bytes) -> None:
    """FrameReader on the byte stream, fed in chunks whose sizes the first
    byte picks; frames of over a buffer's half are offered for placement."""
    if not data:
        return
    chunk = 1 + data[0] % 61 if data[0] & 0x80 else 4096
    placed = []

    def claim(head, length):
        if head[:1] == b"\xfe" and length < 1 << 20:
            placed.append(length)
            return memoryview(bytearray(length - 80))
        return None

    reader = framing.FrameReader(buffer_size=512, claim=claim)
    stream = memoryview(data)[1:]
    while stream:
        buf = reader.buffer()
        n = min(len(buf), chunk, len(stream))
        buf[:n] = stream[:n]
        stream = stream[n:]
        for frame in reader.feed(n):
            assert len(frame) > 0


def _smb2_header(data: bytes) -> None:
    header = smb2.parse_header(data)
    smb2.route(data)
    for offset, length in smb2.split_compound(data):
        smb2.parse_header(data, offset)
        smb2.route(data, offset)
        if header.is_async:
            smb2.async_id(data, offset)
        smb2.session_id(data, offset)


def _smb1_message(data: bytes) -> None:
    header = smb1.parse_header(data)
    smb1.route(data)
    smb1.parse_params(data)
    if header.command == smb1.Command.NEGOTIATE:
        smb1.parse_negotiate_response(data)
    elif header.command in (smb1.Command.TRANSACTION, smb1.Command.TRANSACTION2):
        smb1.parse_transaction_response(data)


def _negotiate(data: bytes) -> None:
    """The negotiator's answer to the first byte's choice of opening move."""
    ranges = (DialectRange(Dialect.SMB2_0_2, Dialect.SMB3_1_1),
              DialectRange(Dialect.SMB1, Dialect.SMB3_1_1),
              DialectRange(Dialect.SMB1, Dialect.SMB1))
    if not data:
        return
    n = negotiate.Negotiator(ranges[data[0] % 3], client_guid=bytes(16), salt=bytes(32))
    n.start()
    result = n.receive(data[1:])
    if isinstance(result, negotiate.Outgoing):
        n.receive(data[1:])
    parsed = smb2.parse_negotiate_response(data[1:]) if data[1:5] == smb2.PROTOCOL_ID else None
    for ctx in getattr(parsed, "contexts", ()):
        if ctx.type in (1, 2, 8):
            smb2.context_values(ctx)


def _each(allowed: Tuple[type, ...], *calls: Callable[[], Any]) -> None:
    """Run every parser of a chain on the same input; each may fail as allowed."""
    for call in calls:
        try:
            call()
        except allowed:
            pass


def _commands(parse):
    def fn(data: bytes) -> None:
        parse(data)
    return fn


def _ioctl(data: bytes) -> None:
    resp = commands.parse_ioctl_response(data)
    _each(_MALFORMED, lambda: commands.parse_resume_key(resp.output),
          lambda: commands.parse_copychunk_output(resp.output))


def _directory(data: bytes) -> None:
    """proto's FILE_*_DIRECTORY_INFORMATION parser (class picked by the first
    byte; with a count limit as an SMB1 FIND reply gives) and SMB1's FIND
    entries (the same parser, through the ops table)."""
    from ..fs import smb1ops
    if not data:
        return
    classes = (
        commands.FILE_DIRECTORY_INFORMATION, commands.FILE_FULL_DIRECTORY_INFORMATION,
        commands.FILE_BOTH_DIRECTORY_INFORMATION, commands.FILE_ID_BOTH_DIRECTORY_INFORMATION,
        commands.FILE_ID_FULL_DIRECTORY_INFORMATION)
    buf = data[1:]
    which = data[0] % 7
    if which < 5:
        commands.parse_directory_entries(buf, classes[which])
    elif which == 5:
        commands.parse_directory_entries(buf, classes[data[0] % 5], limit=data[0])
    else:
        smb1ops._parse_directory_info(buf, 1 << 16)


def _notify(data: bytes) -> None:
    if data[:4] == smb2.PROTOCOL_ID:
        commands.parse_change_notify_response(data)
    else:
        commands.parse_notify_information(data)


def _cipher(cipher_id: int):
    from ..security import crypto
    key = KNOWN_KEY[:16] if cipher_id in (crypto.AES_128_CCM, crypto.AES_128_GCM) else KNOWN_KEY
    return crypto.TransformCipher(cipher_id, key, key, 0x0311)


_CIPHERS: Dict[int, Any] = {}


def _transform(data: bytes) -> None:
    """A transformed message decrypted with the known key, one-shot and (GCM)
    streaming, as the demultiplexer does; a plaintext that authenticates
    goes on to the compound split and header parse."""
    from ..security import crypto
    if not data:
        return
    cipher_id = 1 + data[0] % 4
    cipher = _CIPHERS.get(cipher_id) or _CIPHERS.setdefault(cipher_id, _cipher(cipher_id))
    frame = data[1:]
    crypto.transform_session_id(frame)
    plain = cipher.decrypt(frame)
    stream = cipher.decrypt_stream(frame[:crypto.TRANSFORM_HEADER_SIZE],
                                   len(frame) - crypto.TRANSFORM_HEADER_SIZE)
    if stream is not None:
        out = bytearray(len(frame) - crypto.TRANSFORM_HEADER_SIZE)
        stream.update_into(frame[crypto.TRANSFORM_HEADER_SIZE:], memoryview(out))
        stream.finalize()
    _smb2_header(plain)


def _transform_plain(data: bytes) -> None:
    """The decryption path with a known key past authentication: ``data`` is
    encrypted with the known key, then decrypted and parsed as the
    demultiplexer parses a plaintext (compound split, header, route)."""
    if not data:
        return
    cipher_id = 1 + data[0] % 4
    cipher = _CIPHERS.get(cipher_id) or _CIPHERS.setdefault(cipher_id, _cipher(cipher_id))
    sealed = b"".join(bytes(p) for p in cipher.encrypt([data[1:]], 0x1234))
    _smb2_header(cipher.decrypt(sealed))


def _spnego(data: bytes) -> None:
    """SPNEGO (pyspnego, NTLM inside: the first byte is a flag, kept so the
    corpus is shared) with the server's token.  The session turns any
    exception of pyspnego into SmbAuthError, so the rule here is: no hang,
    no unbounded memory, no BaseException."""
    from ..security.auth import Authenticator
    auth = Authenticator("user", "password", "127.0.0.1", protocol="negotiate")
    auth.step(None)
    auth.step(data[1:])


_NTLMSSP = b"NTLMSSP\0"


def _ntlm(data: bytes) -> None:
    """The in-tree NTLMv2 client (security/ntlm.py) with the server's
    CHALLENGE (a SPNEGO-wrapped one is unwrapped to its NTLMSSP part)."""
    from ..security.ntlm import NtlmAuthenticator
    at = data.find(_NTLMSSP)
    auth = NtlmAuthenticator("user", "password", "DOMAIN")
    auth.step(None)
    auth.step(data[at:] if at > 0 else data)


class _FakePipe:
    """The named pipe of an RpcPipe: the server's byte stream is ``data``,
    split at 0xFFFF-aligned points as IOCTL outputs and READs would be."""

    class client:                       # noqa: N801 - what RpcPipe reads: tree.client.dialect
        dialect = Dialect.SMB3_1_1

    def __init__(self, data: bytes):
        self.data = memoryview(data)

    def _next(self, n: int) -> bytes:
        chunk, self.data = bytes(self.data[:n]), self.data[n:]
        return chunk

    def ioctl(self, _file, _code, _input, max_output: int = 4280) -> bytes:
        return self._next(max(1, min(max_output, 4280)))

    def write(self, _data) -> int:
        return len(_data)

    def read(self, n: int) -> bytes:
        return self._next(max(1, n))


def _rpc(data: bytes) -> None:
    """BIND (BIND_ACK parse) then NetrShareEnum through RpcPipe, with the
    server's pipe stream taken from ``data``."""
    from ..rpc import RpcPipe, srvsvc
    pipe = _FakePipe(data)
    rpc = RpcPipe(pipe, pipe, srvsvc.SRVSVC_UUID, srvsvc.SRVSVC_VERSION)
    srvsvc.share_enum(rpc, "fuzz")


def _srvsvc(data: bytes) -> None:
    from ..rpc import srvsvc
    srvsvc.parse_share_enum_response(data)


def _dcerpc(data: bytes) -> None:
    from ..rpc import dcerpc
    pdu, _n = dcerpc.parse_pdu(data)
    if pdu.ptype == dcerpc.PTYPE_BIND_ACK:
        dcerpc.parse_bind_ack(pdu.body)


def _dfs(data: bytes) -> None:
    from ..proto import dfs
    dfs.parse_referral_response(data, "\\fuzz.example\\dfs\\link\\more")


def _netif(data: bytes) -> None:
    """QUERY_NETWORK_INTERFACE_INFO output, then the channel choice on it."""
    from ..proto import netif
    interfaces = netif.parse_network_interfaces(data)
    netif.channel_addresses(interfaces, 8, "127.0.0.1")


def _session_setup(data: bytes) -> None:
    """The SESSION_SETUP / TREE_CONNECT reply parsers of both dialects (the
    session's and the ops tables' use of the proto codecs)."""
    from ..fs import session, smb1ops, smb2ops
    from ..task import Reply
    if data[:4] == smb1.PROTOCOL_ID:
        reply = Reply(smb1.parse_header, data, smb1.HEADER_SIZE, 0)
        session._Smb1Auth.parse_setup(reply)
        smb1ops.Smb1FileOps.parse_tree_connect(reply)
    else:
        reply = Reply(smb2.parse_header, data, smb2.HEADER_SIZE, 0)
        session._Smb2Auth.parse_setup(reply)
        smb2ops.Smb2FileOps.parse_tree_connect(reply)


def _read_write(data: bytes) -> None:
    """READ / WRITE / oplock-break reply parsers of the file ops tables."""
    from ..fs import smb1ops, smb2ops
    from ..task import Reply
    if data[:4] == smb1.PROTOCOL_ID:
        ops = object.__new__(smb1ops.Smb1FileOps)
        reply = Reply(smb1.parse_header, data, smb1.HEADER_SIZE, 0)
    else:
        ops = object.__new__(smb2ops.Smb2FileOps)
        reply = Reply(smb2.parse_header, data, smb2.HEADER_SIZE, 0)
    _each(_FS, lambda: ops.parse_read(reply), lambda: ops.parse_write(reply),
          lambda: ops.parse_break(_Notification(reply)))


class _Notification:
    def __init__(self, reply):
        self.reply = reply


def _create(data: bytes) -> None:
    from ..proto import contexts
    resp = commands.parse_create_response(data)
    found = contexts.parse_create_contexts(resp.contexts)
    contexts.parse_lease(found.get(contexts.LEASE))
    contexts.parse_durable_v2_response(found.get(contexts.DURABLE_V2_REQUEST))
    contexts.parse_on_disk_id(found.get(contexts.QUERY_ON_DISK_ID))


def _posix(data: bytes) -> None:
    """SMB3 POSIX extensions (proto/posix.py): the create context response,
    FILE_POSIX_INFORMATION and the POSIX directory class, by the first byte.
    Their documented error is ValueError (the fs layer wraps it)."""
    from ..proto import posix
    if not data:
        return
    buf = data[1:]
    which = data[0] % 3
    if which == 0:
        posix.parse_create_response(buf)
    elif which == 1:
        posix.parse_file_info(buf)
    else:
        list(posix.parse_dir_entries(buf, 0, len(buf)))


def _security_descriptor(data: bytes) -> None:
    """A self-relative security descriptor (proto/security.py) as QUERY_INFO
    returns it, then what the acl command does with it: SDDL and smbcacls
    text, and the bytes again.  SDDL has no form for some ACE types (its
    documented ValueError)."""
    from ..proto import security
    sd = security.SecurityDescriptor.from_bytes(data)
    _each((ValueError,), sd.to_sddl)
    security.to_smbcacls(sd)
    security.to_smbcacls(sd, numeric=True)
    bytes(sd)


def _fscc(data: bytes) -> None:
    """[MS-FSCC] structures (proto/fscc.py), by the first byte: the stream
    list, the snapshot array, symlink reparse data, the symbolic link error
    response (3.1.1 error contexts or not; then the path it leads to) and
    the volume serial."""
    from ..proto import fscc
    if not data:
        return
    buf = data[1:]
    which = data[0] % 6
    if which == 0:
        fscc.parse_stream_information(buf)
    elif which == 1:
        fscc.parse_snapshots(buf)
    elif which == 2:
        fscc.parse_reparse_data(buf)
    elif which in (3, 4):
        link = fscc.parse_symlink_error(fscc.parse_error_data(buf), dialect_311=which == 3)
        try:
            fscc.follow_symlink("dir\\link\\rest\\file.txt", link)
        except fscc.SymlinkOutsideShare:
            pass
    else:
        fscc.parse_volume_serial(buf)


def _codec(data: bytes) -> None:
    """The message codecs of the one-layout-per-message refactor (proto/
    fileio, session, contexts, info, smb1commands): every parser that
    applies to the reply is run on it, each may fail as documented."""
    from ..proto import contexts, fileio, info, session, smb1commands
    m = _MALFORMED + (SmbProtocolError,)
    if data[:4] == smb1.PROTOCOL_ID:
        _each(m, lambda: smb1commands.parse_nt_create_andx_response(data),
              lambda: smb1commands.read_andx_response_data(data),
              lambda: smb1commands.write_andx_response_count(data),
              lambda: smb1commands.parse_oplock_break(data),
              lambda: smb1commands.parse_find_first2_params(data[32:]),
              lambda: smb1commands.parse_find_next2_params(data[32:]),
              lambda: session.parse_session_setup_andx_response(data))
        return

    def create_contexts():
        found = contexts.parse_create_contexts(commands.parse_create_response(data).contexts)
        for value in found.values():
            _each(m, lambda: contexts.parse_lease(value),
                  lambda: contexts.parse_durable_v2_response(value),
                  lambda: contexts.parse_on_disk_id(value))

    def query_info():
        out = commands.parse_query_info_response(data)
        _each(m, lambda: info.parse_all_information(out),
              lambda: info.parse_all_information(out, with_file_id=False),
              lambda: info.parse_u64(out), lambda: info.parse_fs_size_information(out),
              lambda: info.parse_fs_full_size_information(out))

    _each(m, lambda: fileio.read_response_data(data), lambda: fileio.write_response_count(data),
          lambda: fileio.parse_break_notification(data),
          lambda: session.parse_session_setup_response(data), create_contexts, query_info,
          lambda: negotiate.parse_validate_negotiate(commands.parse_ioctl_response(data).output))


_MALFORMED = (MalformedMessage,)
_FS = (SmbProtocolError, MalformedMessage)


def _targets() -> Dict[str, Target]:
    from ..security.crypto import DecryptError
    from ..rpc.dcerpc import RpcError
    t = [
        Target("framing", _framing, (framing.FramingError,), "direct-TCP FrameReader"),
        Target("smb2_header", _smb2_header, _MALFORMED, "SMB2 header, route, compound split"),
        Target("smb1_message", _smb1_message, _MALFORMED, "SMB1 header, params, negprot reply"),
        Target("negotiate", _negotiate, _MALFORMED + (negotiate.NegotiateFailed,),
               "Negotiator with SMB1/SMB2 replies, negotiate contexts"),
        Target("create", _create, _MALFORMED, "CREATE response and its create contexts"),
        Target("ioctl", _ioctl, _MALFORMED, "IOCTL response, resume key, copychunk output"),
        Target("query_info", _commands(commands.parse_query_info_response), _MALFORMED,
               "QUERY_INFO response"),
        Target("query_directory", _commands(commands.parse_query_directory_response),
               _MALFORMED, "QUERY_DIRECTORY response"),
        Target("directory", _directory, _FS, "directory listings (proto, SMB2, SMB1 FIND)"),
        Target("notify", _notify, _MALFORMED, "CHANGE_NOTIFY records"),
        Target("transform", _transform, (DecryptError, MalformedMessage),
               "TRANSFORM_HEADER decryption with a known key"),
        Target("transform_plain", _transform_plain, (DecryptError, MalformedMessage),
               "plaintext past decryption with a known key"),
        Target("spnego", _spnego, (Exception,), "SPNEGO/NTLM challenge into pyspnego"),
        Target("ntlm", _ntlm, (SmbProtocolError,), "NTLM CHALLENGE into the in-tree NTLMv2"),
        Target("dcerpc", _dcerpc, (RpcError,), "DCE/RPC PDU and BIND_ACK"),
        Target("rpc_pipe", _rpc, (RpcError,), "RpcPipe bind + NetrShareEnum on a pipe stream"),
        Target("srvsvc", _srvsvc, (RpcError,), "NetrShareEnum NDR stub"),
        Target("security_descriptor", _security_descriptor, (SmbProtocolError,),
               "security descriptor, its SDDL and smbcacls forms"),
        Target("fscc", _fscc, (SmbProtocolError,),
               "stream list, snapshots, reparse data, symlink error, volume serial"),
        Target("codec", _codec, _MALFORMED + (SmbProtocolError,),
               "proto/ fileio, session, contexts, info, smb1commands parsers"),
        Target("posix", _posix, (ValueError,), "SMB3 POSIX create context, info, listing"),
        Target("dfs", _dfs, _MALFORMED, "DFS referral response (proto.dfs)"),
        Target("session", _session_setup, _FS, "SESSION_SETUP / TREE_CONNECT replies"),
        Target("netif", _netif, _MALFORMED, "QUERY_NETWORK_INTERFACE_INFO (multichannel)"),
        Target("read_write", _read_write, _FS, "READ / WRITE / break replies"),
    ]
    return {target.name: target for target in t}


TARGETS: Dict[str, Target] = _targets()


def environment_seed() -> int:
    """SMBLAYER_FUZZ_SEED, or 26."""
    return int(os.environ.get("SMBLAYER_FUZZ_SEED", "26"))
