"""smblayer.fs over SMB 2.0.2 .. 3.1.1 against a real, private Samba:
data round trips (checked against Samba's own smbclient), file-object
semantics (seek/tell/truncate/append, compared with local files), names
(listdir/scandir/stat/mkdir/rmdir/remove/rename/exists), the builtin error
mapping, and eight threads sharing one tree.

Every test works in a fresh directory of the share, removed at teardown.
The 256 MiB round trip runs on 3.1.1 only (deselect with ``-k "not 256mib"``).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import shutil
import stat
import threading
import time
import uuid

import pytest

from smblayer import Dialect, DialectRange, SmbStatusError, fs
from smblayer.proto.status import NtStatus
from smblayer.testing.pytest_plugin import SERVERS, on_both

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


# Interop: every test of this module runs on Samba 4.17 and on Samba 4.22.
@pytest.fixture(scope="module", params=SERVERS)
def samba(request, samba):
    return on_both(request, samba, "samba_422")


D = Dialect
SMB2_DIALECTS = [D.SMB2_0_2, D.SMB2_1, D.SMB3_0, D.SMB3_0_2, D.SMB3_1_1]
# (dialect, share, encrypt): every dialect in clear, every 3.x encrypted.
VARIANTS = [(d, "share", False) for d in SMB2_DIALECTS] + \
           [(d, "encrypted", True) for d in SMB2_DIALECTS if d.is_smb3]
VARIANT_IDS = [f"{d}-{'enc' if enc else 'clear'}" for d, _s, enc in VARIANTS]


def connect(samba, dialect=D.SMB3_1_1, share="share", encrypt=False, **kwargs) -> fs.Tree:
    return fs.connect(samba.host, share, samba.username, samba.password, port=samba.port,
                      encrypt=encrypt, dialects=DialectRange(dialect, dialect), **kwargs)


class Workdir:
    """A tree plus a fresh directory on it (``p(name)`` gives paths inside)."""

    def __init__(self, samba, tree: fs.Tree, share: str, base: str):
        self.samba, self.tree, self.share, self.base = samba, tree, share, base

    def p(self, *names: str) -> str:
        return "/".join((self.base,) + names)

    def local(self, *names: str):
        """The file behind ``p(*names)`` on the server's disk."""
        return self.samba.share_path(self.share).joinpath(self.base, *names)


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def work(request, samba):
    dialect, share, encrypt = request.param
    tree = connect(samba, dialect, share, encrypt)
    base = f"t-{uuid.uuid4().hex[:12]}"
    tree.mkdir(base)
    try:
        yield Workdir(samba, tree, share, base)
    finally:
        tree.close()
        shutil.rmtree(samba.share_path(share) / base, ignore_errors=True)


@pytest.fixture
def work311(samba):
    tree = connect(samba)
    base = f"t-{uuid.uuid4().hex[:12]}"
    tree.mkdir(base)
    try:
        yield Workdir(samba, tree, "share", base)
    finally:
        tree.close()
        shutil.rmtree(samba.share_path("share") / base, ignore_errors=True)


def smbclient_ok(samba, share: str, command: str):
    result = samba.smbclient(["-c", command], share=share)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# ---------------------------------------------------------------------------
# data


def test_connect_negotiates_the_dialect(work):
    assert work.tree.client.dialect is work.tree.client.negotiated.dialect
    assert work.tree.encrypt == (work.share == "encrypted")
    ops = work.tree.ops
    if work.tree.client.dialect is D.SMB2_0_2:
        assert ops.max_read <= 65536 and ops.max_write <= 65536
    assert type(ops).__name__ == "Smb2FileOps"


def test_roundtrip_3mib(work, tmp_path):
    data = os.urandom(3 << 20)
    tree = work.tree
    with tree.open(work.p("a.bin"), "wb") as f:
        assert f.write(data) == len(data)
        assert f.tell() == len(data)
    assert tree.stat(work.p("a.bin")).st_size == len(data)
    with tree.open(work.p("a.bin"), "rb") as f:
        assert f.read() == data
    with tree.open(work.p("a.bin"), "rb") as f:
        buf = bytearray(len(data) + 100)
        assert f.readinto(buf) == len(data)
        assert buf[:len(data)] == data
        assert f.read() == b""
    assert tree.read_bytes(work.p("a.bin")) == data
    assert work.local("a.bin").read_bytes() == data

    # Samba's smbclient reads what we wrote ...
    got = tmp_path / "got.bin"
    smbclient_ok(work.samba, work.share, f'get "{work.base}\\a.bin" "{got}"')
    assert got.read_bytes() == data
    # ... and we read what smbclient put.
    theirs = os.urandom((3 << 20) + 12345)
    src = tmp_path / "put.bin"
    src.write_bytes(theirs)
    smbclient_ok(work.samba, work.share, f'put "{src}" "{work.base}\\b.bin"')
    assert tree.read_bytes(work.p("b.bin")) == theirs
    with tree.open(work.p("b.bin"), "rb", buffering=0) as f:
        view = memoryview(bytearray(len(theirs)))
        assert f.readinto(view[:1000]) == 1000
        assert f.readinto(view[1000:]) == len(theirs) - 1000
        assert view == theirs


def test_small_and_unaligned_io(work):
    tree = work.tree
    data = os.urandom(200_003)
    with tree.open(work.p("u.bin"), "wb") as f:
        for i in range(0, len(data), 777):
            f.write(data[i:i + 777])
    with tree.open(work.p("u.bin"), "rb") as f:
        parts = []
        while True:
            chunk = f.read(4099)
            if not chunk:
                break
            parts.append(chunk)
    assert b"".join(parts) == data
    assert tree.write_bytes(work.p("empty"), b"") == 0
    assert tree.read_bytes(work.p("empty")) == b""


@pytest.mark.timeout(300)
def test_roundtrip_256mib_3_1_1(work311, capsys):
    """256 MiB written streaming from a pattern, read back, hashes compared."""
    tree, path = work311.tree, work311.p("big.bin")
    block = bytearray(os.urandom(16 << 20))
    count = 16
    expected = hashlib.sha256()
    write_s = 0.0                                  # time in I/O calls only
    with tree.open(path, "wb") as f:
        for i in range(count):
            block[:8] = i.to_bytes(8, "little")
            expected.update(block)
            start = time.perf_counter()
            f.write(block)
            write_s += time.perf_counter() - start
        start = time.perf_counter()
    write_s += time.perf_counter() - start         # the close (flush + CLOSE)
    total = count * len(block)
    assert tree.stat(path).st_size == total

    got = hashlib.sha256()
    buf = bytearray(16 << 20)
    n = 0
    read_s = 0.0
    with tree.open(path, "rb") as f:
        while True:
            start = time.perf_counter()
            k = f.readinto(buf)
            read_s += time.perf_counter() - start
            if not k:
                break
            got.update(memoryview(buf)[:k])
            n += k
    assert n == total
    assert got.hexdigest() == expected.hexdigest()
    with open(work311.local("big.bin"), "rb") as local:
        assert hashlib.file_digest(local, "sha256").hexdigest() == expected.hexdigest()
    with capsys.disabled():
        print(f"\n256 MiB on 3.1.1: write {total / 1e6 / write_s:.0f} MB/s, "
              f"read {total / 1e6 / read_s:.0f} MB/s")
    tree.remove(path)


# ---------------------------------------------------------------------------
# file-object semantics, compared with the same calls on a local file


def _script(f):
    """Run a fixed sequence of calls on ``f``; return what each returned."""
    out = [f.write(b"hello world"), f.tell(), f.seek(0), f.write(b"J"), f.tell(),
           f.seek(0, io.SEEK_END), f.seek(-3, io.SEEK_END), f.write(b"LD!"), f.tell(),
           f.seek(20), f.write(b"x"), f.tell(), f.truncate(5), f.tell(), f.seek(0, 2)]
    f.flush()
    return out


def _append_script(f):
    out = [f.tell(), f.write(b"AB"), f.seek(0), f.write(b"CD")]
    f.flush()
    return out + [f.tell()]


@pytest.mark.parametrize("buffering", [-1, 0], ids=["buffered", "raw"])
def test_seek_tell_truncate_like_local_files(work, tmp_path, buffering):
    local = tmp_path / "ref.bin"
    with open(local, "w+b", buffering=buffering) as ref:
        want = _script(ref)
    with work.tree.open(work.p("s.bin"), "w+b", buffering=buffering) as f:
        assert f.seekable() and f.readable() and f.writable()
        assert _script(f) == want
        f.seek(0)
        assert f.read() == local.read_bytes()
        f.seek(2)
        assert f.read(2) == local.read_bytes()[2:4]
    assert work.tree.read_bytes(work.p("s.bin")) == local.read_bytes() == b"Jello"


def test_modes(work, tmp_path):
    tree, p = work.tree, work.p("m.bin")
    tree.write_bytes(p, b"0123456789")
    ref = tmp_path / "ref.bin"
    ref.write_bytes(b"0123456789")
    for buffering in (-1, 0):
        with open(ref, "ab", buffering=buffering) as f:
            want = _append_script(f)
        with tree.open(p, "ab", buffering=buffering) as f:   # appends, whatever the position
            assert _append_script(f) == want
    assert tree.read_bytes(p) == ref.read_bytes() == b"0123456789ABCDABCD"
    tree.write_bytes(p, b"0123456789")
    with tree.open(p, "ab") as f:
        f.write(b"AB")
        f.seek(0)
        f.write(b"CD")
        assert not f.readable()
        with pytest.raises(io.UnsupportedOperation):
            f.read()
    assert tree.read_bytes(p) == b"0123456789ABCD"
    with tree.open(p, "a+b") as f:
        f.seek(0)
        assert f.read(4) == b"0123"
        f.write(b"!")
    assert tree.read_bytes(p) == b"0123456789ABCD!"
    with tree.open(p, "r+b") as f:                  # no truncation
        f.seek(3)
        f.write(b"xx")
        f.seek(0)
        assert f.read() == b"012xx56789ABCD!"
    with tree.open(p, "rb") as f:
        assert not f.writable()
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"no")
    with tree.open(p, "wb") as f:                   # truncates
        pass
    assert tree.stat(p).st_size == 0
    with tree.open(work.p("new.bin"), "xb") as f:
        f.write(b"new")
    with tree.open(work.p("new2.bin"), "x+b") as f:
        f.write(b"new2")
        f.seek(0)
        assert f.read() == b"new2"
    with tree.open(work.p("t.txt"), "w", encoding="utf-8") as f:
        f.write("héllo\nwörld\n")
    with tree.open(work.p("t.txt"), "r") as f:
        assert f.readlines() == ["héllo\n", "wörld\n"]
    f = tree.open(p, "rb")
    f.close()
    f.close()                                       # idempotent
    with pytest.raises(ValueError):
        f.read()
    for bad in ("rw", "rbb", "z", "rbt", ""):
        with pytest.raises(ValueError):
            tree.open(p, bad)
    with pytest.raises(ValueError):
        tree.open(p, "rb", oplock="bogus")


def test_truncate_extends_and_fsync(work):
    tree, p = work.tree, work.p("tr.bin")
    with tree.open(p, "wb", buffering=0) as f:
        f.write(b"abc")
        assert f.truncate(10) == 10
        assert f.tell() == 3
        f.fsync()
        assert f.stat().st_size == 10
    assert tree.read_bytes(p) == b"abc" + bytes(7)


# ---------------------------------------------------------------------------
# names


def test_directory_operations(work):
    tree, p = work.tree, work.p
    assert tree.listdir(work.base) == []
    tree.mkdir(p("sub"))
    tree.write_bytes(p("sub", "one.bin"), b"1" * 100)
    tree.write_bytes(p("two.bin"), b"22")
    assert sorted(tree.listdir(work.base)) == ["sub", "two.bin"]
    # "/" or "\\", leading and doubled separators all name the same thing
    assert sorted(tree.listdir("\\" + work.base + "\\")) == ["sub", "two.bin"]
    assert tree.listdir("/" + work.base + "//sub") == ["one.bin"]
    entries = {e.name: e for e in tree.scandir(work.base)}
    assert entries["sub"].is_dir() and not entries["sub"].is_file()
    assert entries["two.bin"].is_file() and entries["two.bin"].stat().st_size == 2
    assert entries["two.bin"].path == work.base + "/two.bin"

    st = tree.stat(p("sub", "one.bin"))
    assert st.st_size == 100 and stat.S_ISREG(st.st_mode)
    assert abs(st.st_mtime - time.time()) < 120
    assert stat.S_ISDIR(tree.stat(p("sub")).st_mode)
    assert stat.S_ISDIR(tree.stat("").st_mode)    # the share root
    assert tree.exists(p("two.bin")) and tree.exists(p("sub"))
    assert not tree.exists(p("nope")) and not tree.exists(p("nope", "deeper"))
    assert tree.isdir(p("sub")) and tree.isfile(p("two.bin"))

    tree.rename(p("two.bin"), p("sub", "three.bin"))
    assert not tree.exists(p("two.bin"))
    assert tree.read_bytes(p("sub", "three.bin")) == b"22"
    tree.write_bytes(p("four.bin"), b"4444")
    tree.replace(p("four.bin"), p("sub", "three.bin"))
    assert tree.read_bytes(p("sub", "three.bin")) == b"4444"
    tree.rename(p("sub"), p("moved"))
    assert sorted(tree.listdir(p("moved"))) == ["one.bin", "three.bin"]

    tree.remove(p("moved", "one.bin"))
    tree.unlink(p("moved", "three.bin"))
    tree.rmdir(p("moved"))
    assert tree.listdir(work.base) == []
    tree.makedirs(p("a", "b", "c"))
    tree.makedirs(p("a", "b", "c"), exist_ok=True)
    assert tree.isdir(p("a", "b", "c"))


def test_listdir_many_entries(work):
    """More entries than one QUERY_DIRECTORY response holds on 2.0.2."""
    tree = work.tree
    tree.mkdir(work.p("many"))
    names = {f"file-with-a-rather-long-name-{i:05d}.dat" for i in range(700)}
    local = work.local("many")
    for name in names:                              # quicker through the disk
        (local / name).write_bytes(b"")
    assert set(tree.listdir(work.p("many"))) == names


def _status(exc_info) -> int:
    return exc_info.value.status


def test_error_mapping(work):
    tree, p = work.tree, work.p
    tree.mkdir(p("d"))
    tree.write_bytes(p("d", "f.bin"), b"x")
    tree.write_bytes(p("g.bin"), b"y")

    with pytest.raises(FileNotFoundError) as ei:
        tree.open(p("missing.bin"), "rb")
    assert _status(ei) == NtStatus.OBJECT_NAME_NOT_FOUND
    assert isinstance(ei.value, SmbStatusError) and "missing.bin" in ei.value.path
    with pytest.raises(FileNotFoundError):
        tree.open(p("nodir", "x.bin"), "rb")
    with pytest.raises(FileNotFoundError):
        tree.stat(p("missing.bin"))
    with pytest.raises(FileNotFoundError):
        tree.remove(p("missing.bin"))
    with pytest.raises(FileNotFoundError):
        tree.rename(p("missing.bin"), p("other.bin"))
    with pytest.raises(FileNotFoundError):
        tree.listdir(p("nodir"))

    with pytest.raises(FileExistsError) as ei:
        tree.mkdir(p("d"))
    assert _status(ei) == NtStatus.OBJECT_NAME_COLLISION
    with pytest.raises(FileExistsError):
        tree.open(p("g.bin"), "xb")
    with pytest.raises(FileExistsError):
        tree.rename(p("g.bin"), p("d", "f.bin"))
    assert tree.read_bytes(p("g.bin")) == b"y"      # nothing happened

    with pytest.raises(OSError) as ei:
        tree.rmdir(p("d"))
    assert _status(ei) == NtStatus.DIRECTORY_NOT_EMPTY
    assert tree.exists(p("d", "f.bin"))

    with pytest.raises(IsADirectoryError) as ei:
        tree.open(p("d"), "rb")
    assert _status(ei) == NtStatus.FILE_IS_A_DIRECTORY
    with pytest.raises(IsADirectoryError):
        tree.remove(p("d"))
    with pytest.raises(NotADirectoryError) as ei:
        tree.rmdir(p("g.bin"))
    assert _status(ei) == NtStatus.NOT_A_DIRECTORY
    with pytest.raises(NotADirectoryError):
        tree.listdir(p("g.bin"))


def test_readonly_share_permission_errors(samba):
    with connect(samba, D.SMB3_1_1, "readonly") as tree:
        assert tree.read_bytes("hello.txt")
        for action in (lambda: tree.open("new.bin", "wb"),
                       lambda: tree.open("hello.txt", "r+b"),
                       lambda: tree.mkdir("newdir"),
                       lambda: tree.remove("hello.txt")):
            with pytest.raises(PermissionError) as ei:
                action()
            assert isinstance(ei.value, SmbStatusError)
            assert ei.value.status == NtStatus.ACCESS_DENIED


def test_tree_close_closes_open_files(samba):
    tree = connect(samba, D.SMB3_0)
    base = f"t-{uuid.uuid4().hex[:12]}"
    try:
        tree.mkdir(base)
        f = tree.open(f"{base}/open.bin", "wb")
        f.write(b"buffered, not yet written")
        tree.close()
        assert f.closed
        assert (samba.share_path("share") / base / "open.bin").read_bytes() == \
            b"buffered, not yet written"
        with pytest.raises(ValueError):
            tree.stat(base)
    finally:
        shutil.rmtree(samba.share_path("share") / base, ignore_errors=True)


# ---------------------------------------------------------------------------
# concurrency


def test_eight_threads_one_tree(work):
    tree = work.tree
    shared = os.urandom((2 << 20) + 333)
    tree.write_bytes(work.p("shared.bin"), shared)
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        rng = os.urandom((512 << 10) + i * 1001)
        name = work.p(f"w{i}.bin")
        barrier.wait(30)
        for round_ in range(3):
            with tree.open(name, "wb") as f:
                f.write(rng)
            assert tree.read_bytes(name) == rng
            with tree.open(work.p("shared.bin"), "rb") as f:
                f.seek(i * 1000)
                assert f.read(300_000) == shared[i * 1000:i * 1000 + 300_000]
            assert tree.read_bytes(work.p("shared.bin")) == shared
            assert tree.stat(name).st_size == len(rng)
        tree.remove(name)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, i) for i in range(8)]:
            future.result(timeout=120)
    assert tree.listdir(work.base) == ["shared.bin"]
