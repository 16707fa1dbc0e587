"""Round trips at latency (issue 20): what goes out together, seen on the
wire through a FaultProxy tap.  A request sent before the reply of another
arrived shares its round trip: every request of the step is read by the
proxy before the first of their replies."""
from __future__ import annotations

import os
import uuid

import pytest

from smblayer import fs
from smblayer.fs import many
from smblayer.proto import smb2
from smblayer.testing.capture import FrameLog
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

C = smb2.Command


@pytest.fixture
def proxied(samba):
    """A proxy with 10 ms each way: what is sent together is read by the
    proxy before any of its replies even when the machine is loaded (on
    bare loopback a reply can beat the next request out)."""
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.delay(0.01)
        yield proxy


def _connect(samba, proxy):
    return fs.connect(proxy.host, "share", samba.username, samba.password, port=proxy.port)


def _tapped(proxy) -> FrameLog:
    log = FrameLog()
    proxy.tap(log)
    return log


def _one_round_trip(log: FrameLog) -> None:
    sent, answered = log.messages("c2s"), log.messages("s2c")
    assert sent and answered
    assert max(m.time for m in sent) <= min(m.time for m in answered), \
        [(m.direction, C(m.header.command).name) for m in log.messages()]


def _commands(log: FrameLog, direction: str = "c2s"):
    return [C(m.header.command) for m in log.messages(direction)]


def test_first_stat_asks_the_volume_serial_in_the_same_round_trip(samba, proxied):
    name = f"rt-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / name).write_bytes(b"x" * 10)
    with _connect(samba, proxied) as tree:
        log = _tapped(proxied)
        st = tree.stat(name)
        proxied.tap(None)
        assert st.st_size == 10 and st.st_dev != 0
        assert _commands(log).count(C.CREATE) == 2          # the file's and the root's
        _one_round_trip(log)
        log = _tapped(proxied)
        assert tree.stat(name).st_dev == st.st_dev           # asked once per tree
        proxied.tap(None)
        assert _commands(log).count(C.CREATE) == 1


def test_a_missing_file_does_not_lose_the_serial(samba, proxied):
    with _connect(samba, proxied) as tree:
        with pytest.raises(FileNotFoundError):
            tree.stat(f"missing-{uuid.uuid4().hex[:8]}")
        log = _tapped(proxied)
        assert tree.stat("").st_dev != 0
        proxied.tap(None)
        assert _commands(log).count(C.CREATE) == 1           # the answer in flight was kept


def test_close_sends_tree_disconnect_and_logoff_together(samba, proxied):
    tree = _connect(samba, proxied)
    tree.listdir("")
    log = _tapped(proxied)
    tree.close()
    proxied.tap(None)
    assert _commands(log) == [C.TREE_DISCONNECT, C.LOGOFF]
    assert sorted(_commands(log, "s2c")) == sorted([C.TREE_DISCONNECT, C.LOGOFF])
    assert all(m.header.status == 0 for m in log.messages("s2c"))
    _one_round_trip(log)


def test_put_many_is_one_open_and_two_compounds_a_file(samba, proxied, tmp_path):
    folder = f"rt-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / folder).mkdir()
    items = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(100 + i))
        items.append((str(p), f"{folder}/f{i}", (1_500_000_000.0 + i, 1_500_000_000.0 + i)))
    with _connect(samba, proxied) as tree:
        log = _tapped(proxied)
        results = list(many.put_files(tree, items))
        proxied.tap(None)
    assert all(error is None for _k, _n, error in results)
    # per file: CREATE+WRITE+SET_INFO(times), then SET_INFO(rename)+CLOSE on
    # that handle: one open a file, no separate times compound
    sent = _commands(log)
    assert sent.count(C.CREATE) == len(items) and sent.count(C.CLOSE) == len(items)
    assert sent.count(C.SET_INFO) == 2 * len(items)
    assert not [p for p in (samba.share_path("share") / folder).iterdir()
                if p.name.startswith(".")]
    for src, dest, times in items:
        remote = samba.share_path("share") / dest
        assert remote.read_bytes() == open(src, "rb").read()
        assert os.stat(remote).st_mtime == times[1]


def test_cli_ls_of_a_directory_url_lists_without_a_stat(samba, proxied):
    from _cli_helpers import ok, run
    folder = f"rt-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / folder).mkdir()
    for name in ("a.txt", "b.txt"):
        (samba.share_path("share") / folder / name).write_bytes(b"")
    log = _tapped(proxied)
    out = ok(run(["ls", f"//{proxied.host}:{proxied.port}/share/{folder}/"], samba))
    proxied.tap(None)
    assert out.decode().split() == ["a.txt", "b.txt"]
    sent = _commands(log)
    assert C.QUERY_INFO not in sent, sent          # no stat, no volume serial
    assert sent.count(C.CREATE) == 1 and C.QUERY_DIRECTORY in sent
    assert sent[-2:] == [C.TREE_DISCONNECT, C.LOGOFF]


def test_cli_get_ends_in_one_round_trip(samba, proxied, tmp_path):
    """A one-shot get: after the data, the kept read handle's CLOSE goes
    with the TREE_DISCONNECT and the LOGOFF, one round trip (the CLOSE
    was waited for first)."""
    from _cli_helpers import ok, run
    name = f"rt-{uuid.uuid4().hex[:8]}.bin"
    data = os.urandom(3 << 20)
    (samba.share_path("share") / name).write_bytes(data)
    log = _tapped(proxied)
    ok(run(["get", f"//{proxied.host}:{proxied.port}/share/{name}", str(tmp_path / "got")],
           samba))
    proxied.tap(None)
    assert (tmp_path / "got").read_bytes() == data
    sent = _commands(log)
    assert sent[-3:] == [C.CLOSE, C.TREE_DISCONNECT, C.LOGOFF], sent
    assert len(set(_flights(log)[-3:])) == 1, sent


def test_download_keeps_its_reads_in_flight_across_its_chunks(samba, proxied, tmp_path):
    """The copy engine receives a file as one pipeline (one READ's worth a
    buffer, each written out as it completes): every READ goes out before
    the first reply, none past the end.  A
    readinto per 16 MiB window drained the pipeline at each window's end,
    and read ahead past it."""
    from smblayer.fs import transfer
    name = f"rt-{uuid.uuid4().hex[:8]}.bin"
    with _connect(samba, proxied) as tree:
        step = tree.io_read_size
        data = os.urandom(7 * step + 5)          # 8 READs
        (samba.share_path("share") / name).write_bytes(data)
        proxied.delay(0.05)
        log = _tapped(proxied)
        n = transfer.get_file(tree, name, str(tmp_path / "got.bin"))
        proxied.tap(None)
    assert n == len(data) and (tmp_path / "got.bin").read_bytes() == data
    reads, replies = log.messages("c2s", C.READ), log.messages("s2c", C.READ)
    assert len(reads) == 8
    assert max(m.time for m in reads) <= min(m.time for m in replies)


def _flights(log: FrameLog, command=None):
    """For each request sent (of ``command``), how many replies the proxy
    had read before it: requests of one round trip share the number."""
    msgs = log.messages()
    out, answered = [], 0
    for m in msgs:
        if m.direction == "s2c":
            answered += 1
        elif command is None or m.header.command == command:
            out.append(answered)
    return out


def test_small_put_is_two_compounds(samba, proxied, tmp_path):
    """transfer.put_file of a file that fits one WRITE: CREATE of the
    temporary name + WRITE + SET_INFO (times), then SET_INFO (rename) +
    CLOSE on that handle (it was five round trips: write, times, a rename
    of three)."""
    from smblayer.fs import transfer
    folder = f"rt-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / folder).mkdir()
    (tmp_path / "f").write_bytes(b"small" * 100)
    with _connect(samba, proxied) as tree:
        log = _tapped(proxied)
        with open(tmp_path / "f", "rb") as local:
            assert transfer.put_file(tree, local, f"{folder}/f", size=500,
                                     times=(1_500_000_000.0, 1_500_000_001.0)) == 500
        proxied.tap(None)
    assert _commands(log) == [C.CREATE, C.WRITE, C.SET_INFO, C.SET_INFO, C.CLOSE]
    assert len(set(_flights(log))) == 2
    remote = samba.share_path("share") / folder / "f"
    assert remote.read_bytes() == b"small" * 100 and os.stat(remote).st_mtime == 1_500_000_001
    assert [p.name for p in remote.parent.iterdir()] == ["f"]


def test_large_put_ends_with_times_and_rename_in_one_compound(samba, proxied, tmp_path):
    """After the data of a large put: the times and the rename go as one
    compound (utime, then a rename of three round trips, before)."""
    from smblayer.fs import transfer
    folder = f"rt-{uuid.uuid4().hex[:8]}"
    (samba.share_path("share") / folder).mkdir()
    with _connect(samba, proxied) as tree:
        data = os.urandom(2 * tree.io_write_size + 5)
        (tmp_path / "big").write_bytes(data)
        log = _tapped(proxied)
        with open(tmp_path / "big", "rb") as local:
            transfer.put_file(tree, local, f"{folder}/big", size=len(data),
                              times=(1_500_000_000.0, 1_500_000_002.0))
        proxied.tap(None)
    sent = _commands(log)
    tail = sent[len(sent) - 1 - sent[::-1].index(C.WRITE) + 1:]
    # the temporary file's CLOSE goes right behind the writes: it is not
    # kept (deferred close), which cost a write time and a CLOSE round trip
    assert tail == [C.CLOSE, C.CREATE, C.SET_INFO, C.SET_INFO, C.CLOSE], sent
    assert len(set(_flights(log)[-4:])) == 1     # the times and the rename: one compound
    remote = samba.share_path("share") / folder / "big"
    assert remote.read_bytes() == data and os.stat(remote).st_mtime == 1_500_000_002
    assert [p.name for p in remote.parent.iterdir()] == ["big"]


def test_make_dirs_is_a_round_trip_a_depth(samba, proxied):
    """put -r's directories: all those of one depth at once, each a
    compound CREATE + CLOSE (it was CREATE, then CLOSE, a directory at a
    time); an existing one is fine, a file in the way is an error."""
    top = f"rt-{uuid.uuid4().hex[:8]}"
    dirs = [top, f"{top}/a", f"{top}/b", f"{top}/c", f"{top}/a/x", f"{top}/b/y"]
    with _connect(samba, proxied) as tree:
        log = _tapped(proxied)
        many.make_dirs(tree, dirs)
        proxied.tap(None)
        assert _commands(log).count(C.CREATE) == len(dirs)
        assert len(set(_flights(log, C.CREATE))) == 3
        many.make_dirs(tree, dirs[:3])                   # they exist already: fine
        for d in dirs:
            assert tree.isdir(d)
        tree.write_bytes(f"{top}/file", b"x")
        with pytest.raises(FileExistsError):
            many.make_dirs(tree, [top, f"{top}/file"])
        log = _tapped(proxied)
        tree.mkdir(f"{top}/one")
        tree.rename(f"{top}/one", f"{top}/two")
        proxied.tap(None)
        assert tree.isdir(f"{top}/two") and not tree.exists(f"{top}/one")
    assert _commands(log) == [C.CREATE, C.CLOSE, C.CREATE, C.SET_INFO, C.CLOSE]
    assert len(set(_flights(log))) == 2                  # mkdir, rename: one each
