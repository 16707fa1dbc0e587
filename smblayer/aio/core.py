"""Awaiting the transport's Futures, and the async client.

Every request of the async API is an ``SmbTask`` run with
``client.run_task_async`` or ``client.run_compound_async``.  Their Future
(an ``SmbFuture``) is settled by the reader that placed the reply (the
demux thread, or a caller on the fast path; smbiod only when settling may
block, e.g. a session to renew), and ``wait`` hands the result to the loop
from there: the waiter is queued in the loop's inbox, and the loop is woken
with one ``call_soon_threadsafe`` per burst of replies (as
``asyncio.wrap_future`` does, minus its per-request wake-up and minus the
hop through smbiod a user done-callback takes).  Nothing here waits on a
lock, a Condition or a Future's ``result()``: the loop is never blocked.

Cancelling the awaiting coroutine cancels the wrapped Future, and that
cancels the task exactly as ``task.cancel()`` does: never sent if it was not
yet on the wire, CANCEL sent otherwise (its MessageId kept for the late
reply).  Timeouts, hard/soft and reconnects are the client's, unchanged.
"""
from __future__ import annotations

import asyncio
import collections
import weakref
from concurrent.futures import CancelledError as FutureCancelled, Future
from typing import Any, Deque, Optional, Tuple

from ..config import TimeoutPolicy
from ..task import Reply, SmbTask


class _Inbox:
    """Completions on their way from the reader to one loop: queued, and the
    loop woken once per batch (``call_soon_threadsafe``), not once per
    request as ``asyncio.wrap_future`` would: with many requests in flight
    the replies come in bursts (one recv places many, see
    ``transport.completion.Batch``).

    ``push`` runs in the settling thread (the reader): it takes no lock and
    runs no user code.  ``drain`` clears ``scheduled`` before it empties the
    queue, so an item pushed meanwhile is either drained by this pass or
    schedules the next; two readers racing on ``scheduled`` cost at most one
    spare (empty) drain.  The loop is held weakly: the inbox lives in
    ``_ports``, keyed weakly by its loop, and must not keep it alive."""

    __slots__ = ("loop", "items", "scheduled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = weakref.ref(loop)
        self.items: Deque[Tuple[asyncio.Future, Future]] = collections.deque()
        self.scheduled = False

    def push(self, waiter: asyncio.Future, future: Future) -> None:
        """``future`` is done (any thread): hand it to ``waiter``'s loop."""
        self.items.append((waiter, future))
        if self.scheduled:
            return
        self.scheduled = True
        loop = self.loop()
        if loop is None:                # the loop is gone: nobody waits any more
            return
        try:
            loop.call_soon_threadsafe(self.drain)
        except RuntimeError:            # the loop is closed: nobody waits any more
            pass

    def drain(self) -> None:
        """Settle every queued waiter (the loop's thread)."""
        self.scheduled = False
        items = self.items
        while items:
            waiter, future = items.popleft()
            if waiter.done():
                continue
            try:
                value = future.result()        # done: one look under its lock
            except FutureCancelled:
                waiter.cancel()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                waiter.set_exception(exc)
            else:
                waiter.set_result(value)


#: plans written together at most: then the server starts on them while the
#: next are built (a burst of 100 small-file reads from fsspec's _cat would
#: else leave the server idle until the last was built)
BATCH = 16


class _Outbox:
    """The plans the coroutines of one loop iteration start, sent together.

    ``run_plan`` queues its requests with the loop future it awaits, and the
    loop runs ``flush`` once, after this iteration's callbacks (a burst of
    replies resumes many coroutines in one iteration, and each starts its
    next request): ``flush`` takes the client's writer role
    (``hold_sends``) while it starts them all, so they reach the wire in one
    ``sendmsg`` instead of one each (and the loop thread, which does that
    system call, releases the GIL once instead of once per request), up to
    ``BATCH`` at a time.  A coroutine cancelled before the flush: its
    request is never started.  The loop is held weakly, as by the inbox."""

    __slots__ = ("loop", "inbox", "items", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: _Inbox):
        self.loop = weakref.ref(loop)
        self.inbox = inbox
        self.items: list = []
        self.scheduled = False

    def add(self, client, tasks, waiter: asyncio.Future) -> None:
        self.items.append((client, tasks, waiter))
        if not self.scheduled:
            self.scheduled = True
            self.loop().call_soon(self.flush)         # called in the (live) loop

    def flush(self) -> None:
        self.scheduled = False
        items, self.items = self.items, []
        held, tried = [], set()
        try:
            for n, (client, tasks, waiter) in enumerate(items):
                if waiter.done():
                    continue                # cancelled before it was sent: never sent
                if n % BATCH == 0 and held:
                    for c in held:          # write these, the server starts on them
                        c.release_sends()
                    held, tried = [], set()
                if id(client) not in tried:
                    tried.add(id(client))
                    if client.hold_sends():
                        held.append(client)
                try:
                    future = client.run_task_async(tasks[0]) if len(tasks) == 1 else \
                        client.run_compound_async(tasks)
                except Exception as exc:  # noqa: BLE001 - the awaiting coroutine's error
                    waiter.set_exception(exc)
                    continue
                _link(future, waiter, self.inbox)
                waiter.add_done_callback(lambda w, f=future: w.cancelled() and f.cancel())
        finally:
            for client in held:
                client.release_sends()      # the queued requests go out now


_ports: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox]" = \
    weakref.WeakKeyDictionary()


def _port(loop: asyncio.AbstractEventLoop) -> _Outbox:
    """The loop's outbox (and, as its ``inbox``, its inbox)."""
    port = _ports.get(loop)
    if port is None:
        port = _ports[loop] = _Outbox(loop, _Inbox(loop))
    return port


def _link(future: Future, waiter: "asyncio.Future", inbox: _Inbox) -> None:
    """Settle ``waiter`` from ``future`` through ``inbox``: straight from the
    settling thread (no hop through smbiod), the push being lock-free
    bookkeeping plus a wake-up, no user code (see _Inbox)."""
    add = getattr(future, "add_internal_callback", future.add_done_callback)
    add(lambda f: inbox.push(waiter, f))


def _waiter(future: Future) -> "asyncio.Future":
    """A loop future settled from ``future`` (through the loop's inbox)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    _link(future, waiter, _port(loop).inbox)
    return waiter


def wait(future: Future) -> "asyncio.Future":
    """An awaitable for a transport Future (``asyncio.wrap_future``, with
    the loop woken once per burst of replies).  Cancelling it cancels the
    request, exactly as ``task.cancel()``."""
    waiter = _waiter(future)
    waiter.add_done_callback(lambda w: w.cancelled() and future.cancel())
    return waiter


async def result(future: Future) -> Any:
    """``await wait(future)`` for the common case, a coroutine awaiting its
    own request: cancelling the coroutine cancels the request."""
    try:
        return await _waiter(future)
    except asyncio.CancelledError:
        future.cancel()
        raise


async def run_task(client, task: SmbTask) -> Reply:
    """``client.run_task`` for a coroutine."""
    return await result(client.run_task_async(task))


async def run_plan(client, plan) -> Any:
    """Run a FileOps plan ``(tasks, finish)``: one request or one compound,
    started with the other plans of this loop iteration (``_Outbox``) and
    awaited; returns ``finish(replies)``.  Cancelling the coroutine cancels
    it (never sent if the outbox had not sent it yet)."""
    tasks, finish = plan
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    _port(loop).add(client, tasks, waiter)
    replies = await waiter
    return finish([replies] if len(tasks) == 1 else replies)


class AsyncClient:
    """The awaitable face of an ``SmbClient`` (``.sync`` is the client
    itself; its non-blocking attributes are read through)."""

    def __init__(self, client):
        self.sync = client

    def __getattr__(self, name: str):
        return getattr(self.sync, name)

    def __repr__(self) -> str:
        return f"<AsyncClient {self.sync!r}>"

    async def echo(self, timeouts: Optional[TimeoutPolicy] = None) -> float:
        """One ECHO round trip; the round-trip time in seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await result(self.sync.echo_async(timeouts))
        return loop.time() - start

    async def run_task(self, task: SmbTask) -> Reply:
        return await run_task(self.sync, task)

    async def run_compound(self, tasks, related: bool = True):
        return await result(self.sync.run_compound_async(tasks, related))

    async def release(self) -> None:
        """``client.release()`` (may close the socket: in a thread)."""
        await asyncio.to_thread(self.sync.release)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.release()


async def get_client(host: str, port: int = 445, **options) -> AsyncClient:
    """``smblayer.get_client`` for a coroutine (the connect and negotiate
    run in a worker thread: they happen once per connection)."""
    from ..registry import get_client as get
    return AsyncClient(await asyncio.to_thread(get, host, port, **options))


class AwaitableContext:
    """An opening (a file, a connection): ``await`` it for the object, or
    use it as ``async with`` (the object is closed on leaving)."""

    __slots__ = ("_coro", "_obj")

    def __init__(self, coro):
        self._coro = coro
        self._obj = None

    def __await__(self):
        return self._coro.__await__()

    async def __aenter__(self):
        self._obj = await self._coro
        return self._obj

    async def __aexit__(self, *exc) -> None:
        await self._obj.close()
