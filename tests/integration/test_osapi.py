"""The os/shutil-level API of a Tree against a real, private Samba, on SMB1
and SMB 2.0.2 / 2.1 / 3.1.1: walk, glob, rmtree, copyfile, copytree,
exists/isdir/isfile (never an error for "not there"), getsize, utime,
stat() as an os.stat_result, "/" in the paths handed out, SmbStatusError
as an OSError with errno and filename, and fs.connect(timeout=...).

Trees are laid out and checked on the server's disk directly
(``samba.share_path``), so each answer is compared with what os/glob say
about the same files.
"""
from __future__ import annotations

import errno
import glob as globmod
import os
import shutil
import stat
import time
import uuid

import pytest

from smblayer import Dialect, DialectRange, SmbError, SmbStatusError, TimeoutPolicy, fs
from smblayer.fs import ops as O
from smblayer.proto.status import NtStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Dialect
DIALECTS = [D.SMB1, D.SMB2_0_2, D.SMB2_1, D.SMB3_1_1]


class Work:
    """A tree on one dialect plus a fresh directory: ``p(...)`` gives share
    paths ("/"), ``local(...)`` the same file on the server's disk."""

    def __init__(self, samba, tree: fs.Tree, base: str):
        self.samba, self.tree, self.base = samba, tree, base

    def p(self, *names: str) -> str:
        return "/".join((self.base,) + names)

    def local(self, *names: str):
        return self.samba.share_path("share").joinpath(self.base, *names)

    def layout(self, files: dict) -> None:
        """Create ``{relative path: bytes}`` on the server's disk."""
        for rel, data in files.items():
            path = self.local(*rel.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def connect(samba, dialect: Dialect, **kwargs) -> fs.Tree:
    return fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                      dialects=DialectRange(dialect, dialect), **kwargs)


@pytest.fixture(params=DIALECTS, ids=[str(d) for d in DIALECTS])
def work(request, samba):
    tree = connect(samba, request.param)
    base = f"os-{uuid.uuid4().hex[:12]}"
    tree.mkdir(base)
    try:
        yield Work(samba, tree, base)
    finally:
        tree.close()
        shutil.rmtree(samba.share_path("share") / base, ignore_errors=True)


TREE = {
    "a.bin": b"a" * 10, "b.bin": b"b" * 20, "c.txt": b"c", ".hidden.bin": b"h",
    "BIG1.dat": b"B" * 5, "big2.dat": b"b" * 6,
    "sub/d.bin": b"d" * 30, "sub/x.txt": b"x",
    "sub/deeper/e.bin": b"e" * 40, "sub/deeper/f.txt": b"",
    "empty/.keep": b"",
}


def local_walk(root, topdown=True):
    out = []
    for dirpath, dirs, files in os.walk(root, topdown=topdown):
        rel = os.path.relpath(dirpath, root)
        out.append((rel, sorted(dirs), sorted(files)))
    return sorted(out)


# ---------------------------------------------------------------------------
# walk


def test_walk_matches_os_walk(work):
    work.layout(TREE)
    tree = work.tree
    for topdown in (True, False):
        got = []
        for dirpath, dirs, files in tree.walk(work.base, topdown=topdown):
            assert "\\" not in dirpath and dirpath.startswith(work.base)
            rel = os.path.relpath(dirpath, work.base)
            got.append((rel, sorted(dirs), sorted(files)))
        assert sorted(got) == local_walk(work.local(), topdown)
    # bottom-up: children come before their parent
    order = [d for d, _ds, _fs in tree.walk(work.base, topdown=False)]
    assert order.index(work.p("sub", "deeper")) < order.index(work.p("sub")) < \
        order.index(work.base)


def test_walk_prunes_and_reports_errors(work):
    work.layout(TREE)
    seen = []
    for dirpath, dirs, _files in work.tree.walk(work.base):
        seen.append(dirpath)
        if "sub" in dirs:
            dirs.remove("sub")              # like os.walk: not descended into
    assert sorted(seen) == sorted([work.base, work.p("empty")])
    errors = []
    assert list(work.tree.walk(work.p("missing"), onerror=errors.append)) == []
    assert len(errors) == 1 and isinstance(errors[0], FileNotFoundError)


# ---------------------------------------------------------------------------
# glob


def local_glob(work, pattern, **kwargs):
    root = str(work.local())
    return sorted(work.p(*os.path.relpath(p, root).split(os.sep))
                  for p in globmod.glob(os.path.join(root, pattern), **kwargs))


GLOB_PATTERNS = [
    "*.bin", "?.bin", "[ab].bin", "[!a]*.bin", "sub/*", "*/*.bin", "*/deeper/*", "sub/d*",
    "?ub/*.txt", ".*", "nomatch*", "*/nomatch/*", "c.txt", "missing.txt", "sub/deeper",
]


def test_glob_matches_glob_module(work):
    work.layout(TREE)
    for pattern in GLOB_PATTERNS:
        got = work.tree.glob(work.p(pattern))
        assert got == local_glob(work, pattern), pattern
        assert all("\\" not in p for p in got)


def test_glob_recursive_hidden_and_case(work):
    work.layout(TREE)
    tree = work.tree
    assert tree.glob(work.p("**", "*.bin"), recursive=True) == \
        local_glob(work, "**/*.bin", recursive=True)
    assert tree.glob(work.p("**", "*.bin"), recursive=True, include_hidden=True) == \
        local_glob(work, "**/*.bin", recursive=True, include_hidden=True)
    # "**" not recursive is a plain "*"
    assert tree.glob(work.p("**", "*.bin")) == local_glob(work, "*/*.bin")
    # SMB names are case-insensitive: so is the matching
    assert tree.glob(work.p("big*")) == [work.p("BIG1.dat"), work.p("big2.dat")]
    assert tree.glob(work.p("*.BIN")) == local_glob(work, "*.bin")
    assert tree.glob("/" + work.base + "\\*.txt") == [work.p("c.txt")]


def test_glob_asks_the_server_for_the_pattern(work):
    """A "*"/"?" component is QUERY_DIRECTORY's pattern: matching 2 names in a
    directory of 400 brings back 2 entries, not 400."""
    work.layout({f"n{i:04d}-with-a-longish-name.txt": b"" for i in range(400)})
    work.layout({"match1.bin": b"", "match2.bin": b""})
    client = work.tree.client

    def received():
        stats = client.stats()
        return sum(c["bytes_recv"] for name, c in stats.items()
                   if name in ("QUERY_DIRECTORY", "TRANSACTION2"))

    before = received()
    assert work.tree.glob(work.p("match?.bin")) == [work.p("match1.bin"), work.p("match2.bin")]
    assert received() - before < 4000          # the whole listing is ~50 KB
    before = received()
    assert len(work.tree.glob(work.p("[n]*"))) == 400   # "[" is matched here
    assert received() - before > 20000


# ---------------------------------------------------------------------------
# rmtree, copyfile, copytree


def test_rmtree(work):
    work.layout(TREE)
    work.layout({f"many/f{i}": b"x" for i in range(40)})
    tree = work.tree
    tree.rmtree(work.p("sub"))
    assert not work.local("sub").exists() and work.local("a.bin").exists()
    tree.rmtree(work.p("many") + "/")
    assert not work.local("many").exists()
    with pytest.raises(NotADirectoryError):
        tree.rmtree(work.p("a.bin"))
    with pytest.raises(FileNotFoundError):
        tree.rmtree(work.p("missing"))
    tree.rmtree(work.p("missing"), ignore_errors=True)        # as shutil.rmtree
    with pytest.raises(ValueError):
        tree.rmtree("/")
    tree.rmtree(work.p("a.bin"), ignore_errors=True)
    assert work.local("a.bin").exists()
    calls = []
    tree.rmtree(work.p("a.bin"), onerror=lambda *a: calls.append(a))
    assert len(calls) == 1 and calls[0][1] == work.p("a.bin") and \
        calls[0][2][0] is not None
    tree.rmtree(work.base)
    assert not work.local().exists()


def test_copyfile(work):
    tree = work.tree
    small, large = os.urandom(1000), os.urandom(3 * 1024 * 1024 + 17)
    exact = os.urandom(tree.io_read_size)                    # one READ's worth exactly
    work.layout({"small": small, "large": large, "old": b"x" * 5000, "exact": exact,
                 "empty": b""})
    tree.copyfile(work.p("exact"), work.p("exact2"))
    assert work.local("exact2").read_bytes() == exact
    tree.copyfile(work.p("empty"), work.p("empty2"))
    assert work.local("empty2").read_bytes() == b""
    assert tree.copyfile(work.p("small"), work.p("small2")) == work.p("small2")
    assert work.local("small2").read_bytes() == small
    tree.copyfile(work.p("large"), work.p("old"))            # overwrites
    assert work.local("old").read_bytes() == large
    tree.copyfile(work.p("small"), work.p("old"))            # and truncates
    assert work.local("old").read_bytes() == small
    with pytest.raises(shutil.SameFileError):
        tree.copyfile(work.p("small"), "/" + work.p("small"))
    with pytest.raises(FileNotFoundError):
        tree.copyfile(work.p("missing"), work.p("x"))
    assert not work.local("x").exists()


def test_readinto_leaves_the_callers_buffer_free(work):
    """readinto(bytearray) and then resizing it, at the end of a file read
    sequentially (read-ahead on): the read-ahead dropped past the end is
    cancelled; the SmbCancelledError its Future was settled with kept the
    traceback of that raise, whose frames (up to readinto's) held the
    caller's buffer exported while the cancelled task waited in the MID
    table for its late reply: ``del buf[n:]`` raised BufferError in ~1 of 4
    such reads before."""
    tree = work.tree
    data = os.urandom(3 * 1024 * 1024 + 17)
    work.layout({"f": data})
    for _ in range(8):
        got = []
        with tree.open(work.p("f"), "rb", buffering=0) as f:
            while True:
                buf = bytearray(1 << 20)
                n = f.readinto(buf)
                del buf[n:]                 # BufferError while a view lingers
                if not n:
                    break
                got.append(bytes(buf))
        assert b"".join(got) == data

def test_read_while_a_view_of_its_buffer_lingers(work):
    """read(n) and readall() of less than they allocated: a view of the
    buffer may outlive the call that filled it (a task the receive thread
    drops late), so the buffer is copied out, never resized (BufferError
    before: test_read_chunks failed so in ~1 of 15 runs)."""
    tree = work.tree
    data = os.urandom(200 * 1024 + 3)
    work.layout({"f": data})
    with tree.open(work.p("f"), "rb", buffering=0) as f:
        lingering, read_into = [], f._read_into

        def keeping(offset, view):
            lingering.append(view)          # the late reference
            return read_into(offset, view)

        f._read_into = keeping
        assert f.read(1 << 20) == data
        f.seek(0)
        assert f.readall() == data
    assert lingering


def test_read_chunks(work):
    """Steps sized by the size CREATE returned: a small file costs one READ
    (not a pipeline's worth past its end); big files, a start offset and a
    file that grew after the open come out whole."""
    tree = work.tree
    big = os.urandom(3 * 1024 * 1024 + 17)
    work.layout({"small": b"s" * 100, "big": big, "grows": b"g" * 10})

    def reads():
        return sum(c["ops"] for name, c in tree.client.stats().items()
                   if name in ("READ", "READ_ANDX"))

    before = reads()
    with tree.open(work.p("small"), "rb", buffering=0) as f:
        assert b"".join(tree.read_chunks(f)) == b"s" * 100
    assert reads() - before == 1
    with tree.open(work.p("big"), "rb", buffering=0) as f:
        assert b"".join(tree.read_chunks(f)) == big
    with tree.open(work.p("big"), "rb", buffering=0) as f:
        f.seek(len(big) - 5)
        assert list(tree.read_chunks(f)) == [big[-5:]]
    with tree.open(work.p("grows"), "rb", buffering=0) as f:
        with open(work.local("grows"), "ab") as local:
            local.write(b"h" * 5000)
        assert b"".join(tree.read_chunks(f)) == b"g" * 10 + b"h" * 5000


def test_copytree(work):
    work.layout(TREE)
    old = time.time() - 86400 * 3
    os.utime(work.local("sub", "deeper", "e.bin"), (old, old))
    tree = work.tree
    assert tree.copytree(work.base, work.base + "-copy") == work.base + "-copy"
    try:
        copy_root = work.samba.share_path("share") / (work.base + "-copy")
        assert local_walk(copy_root) == local_walk(work.local())
        for rel in TREE:
            assert copy_root.joinpath(*rel.split("/")).read_bytes() == TREE[rel]
        assert abs(copy_root.joinpath("sub", "deeper", "e.bin").stat().st_mtime - old) < 1
        with pytest.raises(FileExistsError):
            tree.copytree(work.p("sub"), work.base + "-copy")
        work.layout({"sub/new.bin": b"new"})
        tree.copytree(work.p("sub"), work.base + "-copy/sub", dirs_exist_ok=True)
        assert copy_root.joinpath("sub", "new.bin").read_bytes() == b"new"
        with pytest.raises(ValueError):
            tree.copytree(work.base, work.p("sub", "inside"))
    finally:
        shutil.rmtree(work.samba.share_path("share") / (work.base + "-copy"),
                      ignore_errors=True)


# ---------------------------------------------------------------------------
# exists / isdir / isfile / getsize


def test_exists_isdir_isfile_never_raise_for_not_there(work):
    work.layout(TREE)
    tree = work.tree
    assert tree.exists(work.p("a.bin")) and tree.isfile(work.p("a.bin"))
    assert not tree.isdir(work.p("a.bin"))
    assert tree.exists(work.p("sub")) and tree.isdir(work.p("sub"))
    assert not tree.isfile(work.p("sub")) and tree.isdir("")
    for missing in ("nope", "nope/deeper", "a.bin/child", "bad*name", "bad?", 'q"uote',
                    "a<b", "x" * 300):
        path = work.p(missing)
        assert not tree.exists(path), missing
        assert not tree.isdir(path) and not tree.isfile(path)
    assert tree.getsize(work.p("b.bin")) == 20
    with pytest.raises(FileNotFoundError):
        tree.getsize(work.p("nope"))


def test_exists_on_a_delete_pending_file(samba):
    """A file whose delete is pending (another handle set the disposition)
    answers DELETE_PENDING; os.path.exists would say False, not raise."""
    tree = connect(samba, D.SMB3_1_1)
    path = f"pending-{uuid.uuid4().hex[:8]}"
    tree.write_bytes(path, b"x")
    handle = tree.ops.open(path, access=O.DELETE | O.FILE_READ_ATTRIBUTES | O.SYNCHRONIZE,
                           disposition=O.FILE_OPEN)
    try:
        tree.ops._set_info(handle, 13, b"\x01")       # FileDispositionInformation
        with pytest.raises(SmbStatusError) as exc:
            tree.ops.stat(path)
        assert exc.value.status == NtStatus.DELETE_PENDING
        assert not tree.exists(path)
        assert not tree.isfile(path) and not tree.isdir(path)
    finally:
        tree.ops.close(handle)
        tree.close()
    assert not (samba.share_path("share") / path).exists()


# ---------------------------------------------------------------------------
# stat, utime


def test_stat_is_an_os_stat_result(work):
    work.layout({"f.bin": b"x" * 1234, "d/g": b""})
    os.link(work.local("f.bin"), work.local("hard"))
    tree = work.tree
    local = os.stat(work.local("f.bin"))
    st = tree.stat(work.p("f.bin"))
    assert isinstance(st, os.stat_result)
    assert stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode)
    assert st.st_mode & 0o777 == 0o644
    assert st.st_size == 1234 and st[stat.ST_SIZE] == 1234
    assert st.st_ino == local.st_ino != 0          # the server's file id: Samba's inode
    assert st.st_nlink == 2                         # the hard link
    assert isinstance(st.st_mtime, float) and isinstance(st.st_mtime_ns, int)
    assert st.st_mtime_ns == local.st_mtime_ns // 100 * 100
    assert st[stat.ST_MTIME] == int(local.st_mtime)
    assert abs(st.st_atime - local.st_atime) < 1e-6
    d = tree.stat(work.p("d"))
    assert stat.S_ISDIR(d.st_mode) and d.st_ino == os.stat(work.local("d")).st_ino
    assert stat.S_ISDIR(tree.stat("").st_mode)
    # scandir gives the same answer without a stat each
    entries = {e.name: e for e in tree.scandir(work.base)}
    est = entries["f.bin"].stat()
    assert isinstance(est, os.stat_result)
    assert (est.st_ino, est.st_size, est.st_mtime_ns) == (st.st_ino, st.st_size,
                                                         st.st_mtime_ns)
    assert entries["f.bin"].inode() == local.st_ino
    # an open file's stat() too
    with tree.open(work.p("f.bin"), "rb") as f:
        fst = f.raw.stat()
        assert isinstance(fst, os.stat_result) and fst.st_ino == local.st_ino
        assert fst.st_nlink == 2


def test_utime(work):
    work.layout({"f": b"data", "d/g": b""})
    tree = work.tree
    tree.utime(work.p("f"), (1_000_000_000.5, 1_200_000_000.25))
    local = os.stat(work.local("f"))
    assert local.st_atime_ns == 1_000_000_000_500_000_000
    assert local.st_mtime_ns == 1_200_000_000_250_000_000
    st = tree.stat(work.p("f"))
    assert st.st_mtime == 1_200_000_000.25 and st.st_atime == 1_000_000_000.5
    tree.utime(work.p("d"), ns=(1_300_000_000_123_456_700, 1_400_000_000_000_000_100))
    assert os.stat(work.local("d")).st_mtime_ns == 1_400_000_000_000_000_100
    before = time.time()
    tree.utime(work.p("f"))
    assert abs(os.stat(work.local("f")).st_mtime - before) < 5
    assert work.local("f").read_bytes() == b"data"
    with pytest.raises(FileNotFoundError):
        tree.utime(work.p("missing"), (1, 1))
    with pytest.raises(ValueError):
        tree.utime(work.p("f"), (1, 1), ns=(1, 1))
    with pytest.raises(TypeError):
        tree.utime(work.p("f"), (1, 2, 3))


# ---------------------------------------------------------------------------
# paths out, errors, connect(timeout=)


def test_paths_come_out_with_slashes(work):
    work.layout({"sub/f.bin": b"x"})
    tree = work.tree
    [entry] = tree.scandir(work.base + "\\sub")
    assert entry.path == work.p("sub", "f.bin") and os.fspath(entry) == entry.path
    with tree.open(work.base + "\\sub\\f.bin", "rb") as f:
        assert f.name == work.p("sub", "f.bin")
    with tree.open(work.p("sub", "new"), "w") as f:
        assert f.name == work.p("sub", "new")
    with pytest.raises(FileNotFoundError) as exc:
        tree.open(work.base + "\\missing", "rb")
    assert exc.value.filename == work.p("missing") == exc.value.path


def test_status_errors_are_oserrors(work):
    tree = work.tree
    with pytest.raises(FileNotFoundError) as exc:
        tree.stat(work.p("missing"))
    err = exc.value
    assert isinstance(err, OSError) and isinstance(err, SmbStatusError)
    assert err.errno == errno.ENOENT and err.filename == work.p("missing")
    assert err.status in (NtStatus.OBJECT_NAME_NOT_FOUND, NtStatus.NO_SUCH_FILE)
    assert "NOT_FOUND" in str(err) or "NO_SUCH_FILE" in str(err)
    tree.mkdir(work.p("d"))
    with pytest.raises(FileExistsError) as exc:
        tree.mkdir(work.p("d"))
    assert exc.value.errno == errno.EEXIST and exc.value.filename == work.p("d")
    tree.write_bytes(work.p("d", "f"), b"x")
    with pytest.raises(OSError) as exc:
        tree.rmdir(work.p("d"))
    assert exc.value.errno == errno.ENOTEMPTY
    if not tree.client.dialect.is_smb1:
        # a name no file can have: not a "not found", still an OSError
        with pytest.raises(OSError) as exc:
            tree.open(work.p("a:b:c"), "wb")
        assert isinstance(exc.value, SmbStatusError) and exc.value.errno == errno.EINVAL
        assert exc.value.status == NtStatus.OBJECT_NAME_INVALID


def test_connect_timeout_shorthand(samba):
    with connect(samba, D.SMB3_1_1, timeout=5) as tree:
        assert tree.client.timeouts == TimeoutPolicy(timeout=5)
    with connect(samba, D.SMB3_1_1, timeout=7,
                 timeouts=TimeoutPolicy(mode="hard", echo_interval=1.0)) as tree:
        assert tree.client.timeouts == TimeoutPolicy(mode="hard", timeout=7,
                                                     echo_interval=1.0)
    with pytest.raises(ValueError):
        connect(samba, D.SMB3_1_1, timeout=0)
    with connect(samba, "2.1") as tree:            # dialect names are accepted too
        assert tree.client.dialect is D.SMB2_1
    assert issubclass(SmbStatusError, SmbError)
