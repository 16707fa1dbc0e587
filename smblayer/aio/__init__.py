"""smblayer.aio: the file API for asyncio, on the same transport.

    from smblayer import aio

    async with aio.connect("127.0.0.1", "share", username="u", password="p") as tree:
        st = await tree.stat("dir/a.bin")
        async with tree.open("dir/a.bin", "rb") as f:
            data = await f.read()
        async for dirpath, dirnames, filenames in tree.walk("dir"):
            ...
        print(await tree.client.echo())

Theory of operation.  There is no second transport and no thread per call:
every request is the same ``SmbTask`` the blocking API sends, run with
``client.run_task_async`` / ``client.run_compound_async``, whose Future is
settled by the reader that placed the reply and reaches the loop through
``call_soon_threadsafe`` (``aio.wait``: ``asyncio.wrap_future`` with one
wake-up per burst, and no hop through smbiod).  Oplock/lease break
callbacks stay on smbiod and recovery on the connect worker.  Cancelling
a coroutine cancels its
requests exactly as ``task.cancel()`` does (never sent if not yet on the
wire, CANCEL otherwise); timeouts, hard/soft and reconnects are the
client's, unchanged.

* ``core``: awaiting Futures and plans, ``AsyncClient`` (``await
  client.echo()``), ``get_client``;
* ``tree``: ``AsyncTree`` (what runs in a thread, and why, is listed there);
* ``file``: ``AsyncFile`` (read-ahead, write-behind);
* ``watch``: ``AsyncWatch`` (CHANGE_NOTIFY as an async iterator).

A blocking smblayer call made on the loop's thread raises
``BlockingInLoopError`` naming the coroutine to use instead.
"""
from __future__ import annotations

import asyncio
from typing import Optional

from ..loopcheck import BlockingInLoopError, allow_blocking_in_loop
from .core import AsyncClient, AwaitableContext, get_client, run_plan, run_task, wait
from .file import AsyncFile
from .tree import AsyncTree
from .watch import AsyncWatch

__all__ = ["connect", "AsyncTree", "AsyncFile", "AsyncWatch", "AsyncClient", "get_client",
           "run_task", "run_plan", "wait", "BlockingInLoopError", "allow_blocking_in_loop"]


def connect(host: str, share: str, username: Optional[str] = None,
            password: Optional[str] = None, **options) -> AwaitableContext:
    """``fs.connect`` for coroutines (same arguments): ``tree = await
    aio.connect(...)`` or ``async with aio.connect(...) as tree``.  The
    connect (negotiate, SESSION_SETUP, TREE_CONNECT) runs in a worker
    thread, once per connection; everything after it is async."""
    return AwaitableContext(_connect(host, share, username, password, options))


async def _connect(host, share, username, password, options) -> AsyncTree:
    from .. import fs
    tree = await asyncio.to_thread(fs.connect, host, share, username, password, **options)
    return AsyncTree(tree)
