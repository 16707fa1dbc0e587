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
    with FaultProxy(samba.host, samba.port) as proxy:
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


def test_download_keeps_its_reads_in_flight_across_the_mapped_windows(samba, proxied, tmp_path,
                                                                     monkeypatch):
    """The copy engine maps the local file a window at a time; the READs of
    the next window go out with those of this one (a readinto per window
    drained the pipeline at each window's end: a round trip each)."""
    from smblayer.fs import transfer
    name = f"rt-{uuid.uuid4().hex[:8]}.bin"
    with _connect(samba, proxied) as tree:
        step = tree.io_read_size
        data = os.urandom(8 * step)                    # the window's floor: 8 READs
        (samba.share_path("share") / name).write_bytes(data)
        monkeypatch.setattr(transfer, "chunk_size", lambda _tree: 2 * step)   # 4 windows
        proxied.delay(0.05)
        log = _tapped(proxied)
        n = transfer.get_file(tree, name, str(tmp_path / "got.bin"))
        proxied.tap(None)
        proxied.delay(0)
    assert n == len(data) and (tmp_path / "got.bin").read_bytes() == data
    reads, replies = log.messages("c2s", C.READ), log.messages("s2c", C.READ)
    assert len(reads) == 8
    assert max(m.time for m in reads) <= min(m.time for m in replies)
