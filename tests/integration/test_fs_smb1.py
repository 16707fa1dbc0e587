"""Smb1FileOps (NT LM 0.12) against a real, private Samba: the FileOps
primitives directly on an SMB1 tree (data round trips checked against
Samba's own smbclient, metadata, listing with FIND_NEXT2, namespace
operations, error mapping, batch oplock breaks, signing), then the
generic Tree API over SMB1.

Every test works in a fresh directory of the share, removed at teardown;
each runs against ``samba`` (NT1..SMB3_11 server) and ``samba_nt1``.
"""
from __future__ import annotations

import concurrent.futures
import errno
import os
import shutil
import stat
import threading
import time
import uuid

import pytest

from smblayer import Dialect, DialectRange, SmbStatusError, TimeoutPolicy, fs
from smblayer.fs import ops as O
from smblayer.fs.ops import ops_for
from smblayer.fs.smb1ops import LARGE_READ, LARGE_READ_SIGNED, LARGE_WRITE, Smb1FileOps
from smblayer.proto.status import NtStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SMB1 = DialectRange(Dialect.SMB1, Dialect.SMB1)
NT1_ARGS = ["-m", "NT1", "--option=client min protocol=NT1"]
RW = O.GENERIC_READ | O.GENERIC_WRITE


def connect(server, **kwargs) -> fs.Tree:
    return fs.connect("127.0.0.1", "share", server.username, server.password,
                      port=server.port, dialects=SMB1, **kwargs)


class Work:
    """A tree, its FileOps and a fresh directory (``p(name)`` gives share paths)."""

    def __init__(self, server, tree: fs.Tree, base: str):
        self.server, self.tree, self.base = server, tree, base
        self.ops = ops_for(tree)

    def p(self, *names: str) -> str:
        return "\\".join((self.base,) + names)

    def local(self, *names: str):
        return self.server.share_path("share").joinpath(self.base, *names)

    def create(self, name: str, data: bytes = b"") -> None:
        h = self.ops.open(self.p(name), access=RW, disposition=O.FILE_OVERWRITE_IF)
        try:
            if data:
                assert write_all(self.ops, h, data) == len(data)
        finally:
            self.ops.close(h)


def make_work(server, **kwargs):
    tree = connect(server, **kwargs)
    base = f"s1-{uuid.uuid4().hex[:12]}"
    ops_for(tree).mkdir(base)
    return Work(server, tree, base)


def drop_work(work: Work) -> None:
    work.tree.close()
    shutil.rmtree(work.server.share_path("share") / work.base, ignore_errors=True)


@pytest.fixture(params=["samba", "samba_nt1"])
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def work(server):
    w = make_work(server)
    try:
        yield w
    finally:
        drop_work(w)


def write_all(ops, handle, data, offset: int = 0) -> int:
    """Pipelined WRITE_ANDX in max_write chunks; returns the bytes written."""
    client = ops.client
    view = memoryview(data)
    futures = [client.run_task_async(ops.write_task(handle, offset + i,
                                                    view[i:i + ops.max_write]))
               for i in range(0, len(view), ops.max_write)]
    return sum(ops.parse_write(f.result()) for f in futures)


def read_all(ops, handle, size: int, offset: int = 0) -> bytes:
    """Pipelined READ_ANDX in max_read chunks."""
    client = ops.client
    futures = [client.run_task_async(ops.read_task(handle, offset + i,
                                                   min(ops.max_read, size - i)))
               for i in range(0, size, ops.max_read)]
    return b"".join(bytes(ops.parse_read(f.result())) for f in futures)


# ---------------------------------------------------------------------------
# data


def test_dialect_and_sizes(work):
    assert work.tree.client.dialect is Dialect.SMB1
    assert isinstance(work.ops, Smb1FileOps)
    # Samba has CAP_LARGE_READX/WRITEX: 1 MiB reads unsigned, and writes
    # below the 17-bit request length limit.
    assert work.ops.max_read == LARGE_READ
    assert work.ops.max_write == LARGE_WRITE
    assert work.ops.max_write + 64 <= 0x1FFFF


def test_read_of_a_small_file_leaves_no_export_of_its_buffer(work):
    """A read of the small rest of a file (one READ, waited for by the
    caller) must not leave the caller's buffer exported: read() trims its
    buffer right after (BufferError when the READ's builder kept it)."""
    name = f"{work.base}/small.txt"
    work.tree.write_bytes(name, b"ab")

    def reads(_):
        # several threads: the replies are read by the receive thread,
        # whose last reference to a task outlives the caller's wait
        for _ in range(25):
            with work.tree.open(name, "rb", buffering=0) as f:
                assert f.read(100) == b"ab"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(reads, range(4)))


def test_roundtrip_3mib(work, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 12345)
    ops = work.ops
    h = ops.open(work.p("big.bin"), access=RW, disposition=O.FILE_CREATE)
    assert isinstance(h.fid, int)
    assert write_all(ops, h, data) == len(data)
    ops.flush(h)
    assert ops.query_info(h).size == len(data)
    assert read_all(ops, h, len(data)) == data
    # Reading past the end gives a short (then empty) read.
    assert bytes(ops.parse_read(ops.client.run_task(
        ops.read_task(h, len(data) - 10, 100)))) == data[-10:]
    assert len(ops.parse_read(ops.client.run_task(ops.read_task(h, len(data) + 10, 100)))) == 0
    ops.close(h)
    assert h.closed
    assert work.local("big.bin").read_bytes() == data

    # Samba's own client reads what we wrote ...
    got = tmp_path / "got.bin"
    r = work.server.smbclient(NT1_ARGS + ["-c", f"get {work.p('big.bin')} {got}"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert got.read_bytes() == data

    # ... and we read what it put.
    sent = tmp_path / "sent.bin"
    sent.write_bytes(os.urandom(2 * 1024 * 1024 + 7))
    r = work.server.smbclient(NT1_ARGS + ["-c", f"put {sent} {work.p('put.bin')}"])
    assert r.returncode == 0, r.stdout + r.stderr
    h = ops.open(work.p("put.bin"), access=O.GENERIC_READ, disposition=O.FILE_OPEN)
    try:
        assert h.info.size == sent.stat().st_size
        assert read_all(ops, h, h.info.size) == sent.read_bytes()
    finally:
        ops.close(h)


def test_unaligned_offsets_and_sizes(work):
    ops = work.ops
    h = ops.open(work.p("u.bin"), access=RW, disposition=O.FILE_CREATE)
    try:
        pieces = [(0, b"a" * 7), (7, b"b" * 70001), (70008, b""), (70008, b"c" * 3)]
        for offset, chunk in pieces:
            assert write_all(ops, h, chunk, offset) == len(chunk)
        expect = b"a" * 7 + b"b" * 70001 + b"c" * 3
        assert read_all(ops, h, len(expect)) == expect
        assert read_all(ops, h, 10, offset=69999) == expect[69999:70009]
    finally:
        ops.close(h)


def test_large_offset(work):
    """OffsetHigh: a write and a read beyond 4 GiB (a sparse file)."""
    ops = work.ops
    h = ops.open(work.p("sparse.bin"), access=RW, disposition=O.FILE_CREATE)
    try:
        offset = (5 << 30) + 3
        assert write_all(ops, h, b"far away", offset) == 8
        assert ops.query_info(h).size == offset + 8
        assert read_all(ops, h, 8, offset) == b"far away"
    finally:
        ops.close(h)


def test_signed_roundtrip(server):
    w = make_work(server, require_signing=True)
    try:
        assert w.tree.session.signer is not None
        assert w.ops.max_read == LARGE_READ_SIGNED
        data = os.urandom(1024 * 1024 + 333)
        h = w.ops.open(w.p("signed.bin"), access=RW, disposition=O.FILE_CREATE)
        try:
            assert write_all(w.ops, h, data) == len(data)
            assert read_all(w.ops, h, len(data)) == data
        finally:
            w.ops.close(h)
        assert w.ops.stat(w.p("signed.bin")).size == len(data)
        assert [i.name for i in w.ops.listdir(w.base)] == ["signed.bin"]
    finally:
        drop_work(w)


# ---------------------------------------------------------------------------
# metadata


def test_stat_and_query_info(work):
    ops = work.ops
    work.create("f.txt", b"x" * 1234)
    local = os.stat(work.local("f.txt"))
    for info in (ops.stat(work.p("f.txt")), _query(ops, work.p("f.txt"))):
        assert info.name == "f.txt"
        assert info.size == 1234
        assert not info.is_dir
        st = info.to_stat()
        assert st.st_size == 1234
        assert abs(st.st_mtime - local.st_mtime) < 2
        assert abs(st.st_atime - local.st_atime) < 2
        assert st.st_ino == info.file_index
    d = ops.stat(work.base)
    assert d.is_dir and stat.S_ISDIR(d.to_stat().st_mode)
    assert ops.stat("").is_dir                 # the share root
    # The native SMB_QUERY_FILE_ALL_INFO level gives the same answer.
    native = Smb1FileOps(work.tree)
    native._passthrough = False
    n = native.stat(work.p("f.txt"))
    assert (n.size, n.last_write_time, n.attributes) == \
        (ops.stat(work.p("f.txt")).size, ops.stat(work.p("f.txt")).last_write_time,
         ops.stat(work.p("f.txt")).attributes)


def _query(ops, path):
    h = ops.open(path, access=O.FILE_READ_ATTRIBUTES, disposition=O.FILE_OPEN)
    try:
        return ops.query_info(h)
    finally:
        ops.close(h)


def test_set_end_of_file(work):
    ops = work.ops
    work.create("t.bin", b"0123456789")
    h = ops.open(work.p("t.bin"), access=RW, disposition=O.FILE_OPEN)
    try:
        ops.set_end_of_file(h, 4)
        assert ops.query_info(h).size == 4
        assert work.local("t.bin").read_bytes() == b"0123"
        ops.set_end_of_file(h, 100000)
        assert ops.query_info(h).size == 100000
        assert work.local("t.bin").read_bytes() == b"0123" + bytes(99996)
        ops.set_end_of_file(h, 0)
    finally:
        ops.close(h)
    assert ops.stat(work.p("t.bin")).size == 0


def test_listdir_many_entries_uses_find_next2(work):
    ops = work.ops
    names = {f"entry-{i:05d}-{'x' * (i % 40)}.dat" for i in range(1700)}
    names |= {"ünïcødé-日本語.txt", "sub"}
    d = work.local()
    for name in names - {"sub"}:
        (d / name).write_bytes(b"")
    ops.mkdir(work.p("sub"))
    before = work.tree.client.stats().get("TRANSACTION2", {}).get("ops", 0)
    infos = list(ops.listdir(work.base))
    after = work.tree.client.stats().get("TRANSACTION2", {}).get("ops", 0)
    assert after - before >= 3                 # FIND_FIRST2 + at least two FIND_NEXT2
    assert len(infos) == len(names)
    assert {i.name for i in infos} == names
    assert [i.is_dir for i in infos if i.name == "sub"] == [True]
    assert ops.stat(work.p("ünïcødé-日本語.txt")).size == 0
    # The share root lists our directory; an abandoned listing is closed.
    assert work.base in {i.name for i in ops.listdir("")}
    it = ops.listdir(work.base)
    next(it)
    it.close()
    assert len(list(ops.listdir(work.base))) == len(names)


def test_listdir_empty_directory(work):
    assert list(work.ops.listdir(work.base)) == []


# ---------------------------------------------------------------------------
# names


def test_mkdir_delete_rename(work):
    ops = work.ops
    ops.mkdir(work.p("d"))
    assert work.local("d").is_dir()
    ops.mkdir(work.p("d", "e"))
    work.create("d\\e\\f.txt", b"hello")
    ops.rename(work.p("d", "e", "f.txt"), work.p("d", "g.txt"))
    assert work.local("d", "g.txt").read_bytes() == b"hello"
    assert not work.local("d", "e", "f.txt").exists()
    ops.rename(work.p("d", "e"), work.p("d", "e2"))            # a directory
    assert work.local("d", "e2").is_dir()
    ops.delete(work.p("d", "g.txt"))
    assert not work.local("d", "g.txt").exists()
    ops.delete(work.p("d", "e2"), directory=True)
    ops.delete(work.p("d"), directory=True)
    assert list(ops.listdir(work.base)) == []


def test_rename_replace(work):
    ops = work.ops
    work.create("a.txt", b"A")
    work.create("b.txt", b"B")
    with pytest.raises(FileExistsError):
        ops.rename(work.p("a.txt"), work.p("b.txt"))
    # Same directory: atomic pass-through FileRenameInformation.
    ops.rename(work.p("a.txt"), work.p("b.txt"), replace=True)
    assert work.local("b.txt").read_bytes() == b"A"
    assert not work.local("a.txt").exists()
    # Another directory: delete the target, then RENAME.
    ops.mkdir(work.p("other"))
    work.create("other\\c.txt", b"C")
    ops.rename(work.p("b.txt"), work.p("other", "c.txt"), replace=True)
    assert work.local("other", "c.txt").read_bytes() == b"A"
    # replace=True with no target is a plain rename.
    ops.rename(work.p("other", "c.txt"), work.p("d.txt"), replace=True)
    assert work.local("d.txt").read_bytes() == b"A"
    # Without pass-through levels the fallback also handles one directory.
    native = Smb1FileOps(work.tree)
    native._passthrough = False
    work.create("e.txt", b"E")
    native.rename(work.p("e.txt"), work.p("d.txt"), replace=True)
    assert work.local("d.txt").read_bytes() == b"E"
    with pytest.raises(ValueError):
        ops.rename(work.p("*.txt"), work.p("x.txt"))


def test_hidden_dot_files(work):
    """Samba marks dot files hidden ("hide dot files", its default): every
    SMB1 request with search attributes includes HIDDEN|SYSTEM, so dot
    files rename, replace (as ``put`` does with its temporary name), delete
    and list like any other (issue 18: replace('.a', 'b') was
    STATUS_NO_SUCH_FILE)."""
    tree, base = work.tree, work.base
    for name in (".a", ".b", ".c", ".d", ".e", "f"):
        with tree.open(f"{base}/{name}", "wb") as f:
            f.write(name.encode())
    tree.replace(f"{base}/.a", f"{base}/new")              # no target yet
    assert work.local("new").read_bytes() == b".a"
    tree.replace(f"{base}/.b", f"{base}/new")              # over an existing file
    assert work.local("new").read_bytes() == b".b"
    tree.replace(f"{base}/.c", f"{base}/f")
    assert work.local("f").read_bytes() == b".c"
    tree.replace(f"{base}/f", f"{base}/.d")                # a hidden target
    assert work.local(".d").read_bytes() == b".c"
    tree.mkdir(f"{base}/sub")
    tree.replace(f"{base}/.d", f"{base}/sub/.x")           # another directory
    tree.rename(f"{base}/.e", f"{base}/.e2")
    tree.rename(f"{base}/sub", f"{base}/.sub")             # a hidden directory
    assert sorted(tree.listdir(base)) == [".e2", ".sub", "new"]
    assert tree.listdir(f"{base}/.sub") == [".x"]
    assert tree.glob(f"{base}/.e*") == [f"{base}/.e2"]
    assert tree.stat(f"{base}/.e2").st_size == 2 and tree.exists(f"{base}/.sub/.x")
    tree.copyfile(f"{base}/.e2", f"{base}/.e3")
    assert tree.read_bytes(f"{base}/.e3") == b".e"
    tree.remove(f"{base}/.e3")
    tree.remove(f"{base}/.e2")
    tree.remove(f"{base}/.sub/.x")
    tree.rmdir(f"{base}/.sub")
    assert tree.listdir(base) == ["new"]
    with pytest.raises(FileNotFoundError):
        tree.replace(f"{base}/.missing", f"{base}/new")


def test_error_mapping(work):
    ops = work.ops
    with pytest.raises(FileNotFoundError) as exc:
        ops.stat(work.p("missing"))
    assert isinstance(exc.value, SmbStatusError)
    assert exc.value.status in (NtStatus.OBJECT_NAME_NOT_FOUND, NtStatus.NO_SUCH_FILE)
    assert exc.value.path == work.p("missing").replace("\\", "/")   # paths out use "/"
    assert exc.value.errno == errno.ENOENT and exc.value.filename == exc.value.path
    with pytest.raises(FileNotFoundError) as exc:
        ops.open(work.p("missing"), access=O.GENERIC_READ, disposition=O.FILE_OPEN)
    assert exc.value.status == NtStatus.OBJECT_NAME_NOT_FOUND
    with pytest.raises(FileNotFoundError):
        ops.stat(work.p("nodir", "missing"))
    with pytest.raises(FileNotFoundError):
        ops.delete(work.p("missing"))
    with pytest.raises(FileNotFoundError):
        list(ops.listdir(work.p("nodir")))
    ops.mkdir(work.p("d"))
    with pytest.raises(FileExistsError) as exc:
        ops.mkdir(work.p("d"))
    assert exc.value.status == NtStatus.OBJECT_NAME_COLLISION
    work.create("d\\f")
    with pytest.raises(SmbStatusError) as exc:
        ops.delete(work.p("d"), directory=True)
    assert exc.value.status == NtStatus.DIRECTORY_NOT_EMPTY
    with pytest.raises(FileExistsError):
        ops.open(work.p("d", "f"), access=RW, disposition=O.FILE_CREATE)
    with pytest.raises(SmbStatusError) as exc:
        ops.delete(work.p("d"))                  # DELETE on a directory
    assert exc.value.status == NtStatus.FILE_IS_A_DIRECTORY
    with pytest.raises(ValueError):
        ops.open(work.p("x"), access=RW, disposition=O.FILE_CREATE, oplock=O.OPLOCK_LEASE)
    with pytest.raises(ValueError):
        ops.delete(work.p("*"))


def test_readonly_share(server):
    tree = fs.connect("127.0.0.1", "readonly", server.username, server.password,
                      port=server.port, dialects=SMB1)
    try:
        ops = ops_for(tree)
        assert "hello.txt" in {i.name for i in ops.listdir("")}
        h = ops.open("hello.txt", access=O.GENERIC_READ, disposition=O.FILE_OPEN)
        try:
            assert read_all(ops, h, h.info.size) == b"hello from the readonly share\n"
        finally:
            ops.close(h)
        with pytest.raises(PermissionError):
            ops.open("new.txt", access=RW, disposition=O.FILE_CREATE)
    finally:
        tree.close()


# ---------------------------------------------------------------------------
# oplocks


@pytest.mark.parametrize("signing", [False, True], ids=["unsigned", "signed"])
def test_batch_oplock_break(server, signing):
    w = make_work(server, require_signing=signing)
    # A different option makes a second, separate client (connection).
    other = connect(server, timeouts=TimeoutPolicy(timeout=11.0))
    seen = []
    acked = threading.Event()
    ops = w.ops
    try:
        assert other.client is not w.tree.client
        w.create("locked.bin", b"data")
        h = ops.open(w.p("locked.bin"), access=RW, disposition=O.FILE_OPEN,
                     oplock=O.OPLOCK_BATCH)
        assert h.oplock_level == O.OPLOCK_BATCH

        def on_break(note):
            kind, fid, level = ops.parse_break(note)
            seen.append((kind, fid, level))
            if fid == h.fid:
                ops.ack_break(h, level)
                acked.set()

        w.tree.client.add_break_handler(on_break)
        try:
            ops2 = ops_for(other)
            start = time.monotonic()
            h2 = ops2.open(w.p("locked.bin"), access=O.GENERIC_READ, disposition=O.FILE_OPEN)
            elapsed = time.monotonic() - start
            ops2.close(h2)
        finally:
            w.tree.client.remove_break_handler(on_break)
        assert acked.is_set()
        assert elapsed < 2.0, f"open waited {elapsed:.1f}s for the break"
        assert seen[0][:2] == ("oplock", h.fid)
        assert seen[0][2] in (O.OPLOCK_LEVEL_II, O.OPLOCK_NONE)
        assert h.oplock_level == seen[0][2]
        # The connection (and its signing sequence) is still in step.
        assert ops.stat(w.p("locked.bin")).size == 4
        assert read_all(ops, h, 4) == b"data"
        ops.close(h)
    finally:
        other.close()
        drop_work(w)


def test_oplock_levels_granted(work):
    ops = work.ops
    work.create("o.bin", b"x")
    h = ops.open(work.p("o.bin"), access=RW, disposition=O.FILE_OPEN,
                 oplock=O.OPLOCK_EXCLUSIVE)
    try:
        assert h.oplock_level == O.OPLOCK_EXCLUSIVE
    finally:
        ops.close(h)
    h = ops.open(work.p("o.bin"), access=RW, disposition=O.FILE_OPEN)
    try:
        assert h.oplock_level == O.OPLOCK_NONE
    finally:
        ops.close(h)


# ---------------------------------------------------------------------------
# the generic Tree API over SMB1


def test_tree_api_over_smb1(server, tmp_path):
    tree = connect(server)
    base = f"s1t-{uuid.uuid4().hex[:12]}"
    try:
        if not hasattr(tree, "open"):
            pytest.skip("Tree.open not available yet")
        tree.mkdir(base)
        data = os.urandom(3 * 1024 * 1024 + 99)
        with tree.open(f"{base}/a.bin", "wb") as f:
            f.write(data)
        with tree.open(f"{base}/a.bin", "rb") as f:
            assert f.read() == data
        assert tree.stat(f"{base}/a.bin").st_size == len(data)
        tree.mkdir(f"{base}/d")
        for i in range(20):
            tree.write_bytes(f"{base}/d/f{i}", b"%d" % i)
        assert sorted(tree.listdir(f"{base}/d")) == sorted(f"f{i}" for i in range(20))
        tree.rename(f"{base}/a.bin", f"{base}/b.bin")
        tree.replace(f"{base}/d/f0", f"{base}/d/f1")
        assert tree.read_bytes(f"{base}/d/f1") == b"0"
        tree.remove(f"{base}/b.bin")
        with pytest.raises(OSError):
            tree.rmdir(f"{base}/d")
        for name in tree.listdir(f"{base}/d"):
            tree.remove(f"{base}/d/{name}")
        tree.rmdir(f"{base}/d")
        assert tree.listdir(base) == []
        with tree.open(f"{base}/o.bin", "wb", oplock="batch") as f:
            f.write(b"oplocked")
        assert tree.read_bytes(f"{base}/o.bin") == b"oplocked"
    finally:
        tree.close()
        shutil.rmtree(server.share_path("share") / base, ignore_errors=True)
