"""Event loops that used smblayer.aio are not kept alive by it (the loop's
inbox/outbox sit in a table keyed weakly by the loop; a strong reference
from the value to its key kept every loop forever)."""
import asyncio
import gc
import weakref

from smblayer.aio import core


async def _use_the_port():
    core._port(asyncio.get_running_loop())      # what every awaited request does
    return weakref.ref(asyncio.get_running_loop())


def test_a_finished_loop_is_collected():
    refs = [asyncio.run(_use_the_port()) for _ in range(5)]
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert len(core._ports) == 0
