"""Listing in as few round trips as the server allows: a directory that
fits one QUERY_DIRECTORY buffer is listed with one compound (CREATE + two
QUERY_DIRECTORY + CLOSE); a larger one falls back to step by step and is
still exact; an empty directory and a pattern matching nothing too."""
from __future__ import annotations

import uuid

import pytest

from smblayer import fs
from smblayer.testing.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def counted(samba):
    """(tree through a proxy, a list that collects each request frame)."""
    frames = []
    with FaultProxy(samba.host, samba.port) as proxy:
        proxy.tap(lambda _i, direction, _data: frames.append(direction))
        with fs.connect(samba.host, "share", samba.username, samba.password,
                        port=proxy.port) as tree:
            yield tree, frames


def _make(samba, count: int, width: int = 5) -> str:
    name = f"ls-{uuid.uuid4().hex[:8]}"
    root = samba.share_path("share") / name
    root.mkdir()
    for i in range(count):
        (root / f"entry-{i:0{width}d}.txt").write_bytes(b"")
    return name


def test_a_directory_that_fits_one_buffer_is_one_round_trip(samba, counted):
    tree, frames = counted
    name = _make(samba, 2000)
    frames.clear()
    names = tree.listdir(name)
    assert sorted(names) == [f"entry-{i:05d}.txt" for i in range(2000)]
    assert frames.count("c2s") == 1


def test_a_larger_directory_is_listed_step_by_step_exactly(samba, counted):
    tree, _frames = counted
    name = _make(samba, 15000, width=40)          # long names: several MiB of entries
    names = tree.listdir(name)
    assert len(names) == len(set(names)) == 15000


def test_empty_directory_and_no_match(samba, counted):
    tree, frames = counted
    name = _make(samba, 0)
    frames.clear()
    assert tree.listdir(name) == []
    assert frames.count("c2s") == 1
    name = _make(samba, 10)
    assert list(tree.scandir(name, "nothing*")) == []
    with pytest.raises(FileNotFoundError):
        tree.listdir(name + "-missing")
