"""The blocking-call-in-a-loop check (smblayer.loopcheck), without a server."""
from __future__ import annotations

import asyncio

import pytest

from smblayer import loopcheck
from smblayer.loopcheck import BlockingInLoopError, check_not_in_loop


def test_no_loop_no_error():
    check_not_in_loop()


def test_in_a_running_loop_it_raises_and_names_an_alternative():
    async def inside():
        check_not_in_loop()
    with pytest.raises(BlockingInLoopError) as info:
        asyncio.run(inside())
    assert "asyncio.to_thread" in str(info.value) and info.value.alternative


def test_a_worker_thread_of_the_loop_is_fine():
    async def inside():
        await asyncio.to_thread(check_not_in_loop)
    asyncio.run(inside())


def test_allow_blocking_in_loop():
    async def inside():
        check_not_in_loop()
    loopcheck.allow_blocking_in_loop()
    try:
        asyncio.run(inside())
    finally:
        loopcheck.allow_blocking_in_loop(False)
    with pytest.raises(BlockingInLoopError):
        asyncio.run(inside())
