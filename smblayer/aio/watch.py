"""AsyncWatch: CHANGE_NOTIFY events as an async iterator.

    async with tree.watch("dir") as w:
        async for event in w:          # WatchEvent(action, path)
            ...

Theory of operation.  The state machine is the blocking ``Watch``'s (one
CHANGE_NOTIFY always outstanding, long-poll, re-armed after every reply,
re-opened after a reconnect with a "rescan" event); a ``_LoopWatch``
subclass only adds the way to the loop: every completion (the Watch's
callback, run on smbiod) also sets an ``asyncio.Event`` through
``call_soon_threadsafe``, and the iterator takes events without ever
waiting on the Watch's Condition.  A reply is turned into events on the loop (parsing and
re-arming do not block); only the rare paths that open the directory again
(a reconnect, a failed request) run in a worker thread.

Closing sends nothing new and never blocks: the outstanding request is
cancelled (CANCEL) and the directory handle closed.  Cancelling the
coroutine that iterates closes the watch (the CLOSE is sent without being
awaited, so the cancellation is not delayed).
"""
from __future__ import annotations

import asyncio
from typing import Optional

from ..fs.helpers import normpath
from ..fs.watch import Watch, WatchEvent
from .core import run_plan


class _LoopWatch(Watch):
    """A Watch whose wake-ups also reach an event loop."""

    def __init__(self, tree, path, *, loop: asyncio.AbstractEventLoop, **options):
        self._loop = loop
        self.wakeup = asyncio.Event()
        super().__init__(tree, path, **options)

    def _signal(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.wakeup.set)
        except RuntimeError:            # the loop is closed: nobody iterates any more
            pass

    def _completed(self, future) -> None:
        super()._completed(future)
        self._signal()

    def _reopen(self) -> bool:
        ok = super()._reopen()
        self._signal()
        return ok

    def poll(self):
        """(an event, or a completed request to process, or neither) without
        waiting; clears the wake-up when there is nothing (loop thread)."""
        with self._cond:
            if self._events:
                return self._events.popleft(), None
            if self._closed:
                raise StopAsyncIteration
            if self._done:
                return None, self._done.popleft()
            self.wakeup.clear()
        return None, None

    def needs_thread(self, future) -> bool:
        """Processing this completion may open the directory again (blocking)."""
        return self._stale() or future.cancelled() or future.exception() is not None

    def process(self, future) -> None:
        self._handle_completion(future)

    def stop(self):
        """Closed from now on; the request cancelled; returns the handle to close."""
        with self._cond:
            if self._closed:
                return None
            self._closed = True
            self._cond.notify_all()
            task, handle = self._task, self._handle
        if task is not None:
            task.cancel()
        return handle


class AsyncWatch:
    """Not for direct construction: ``tree.watch(path)`` on an AsyncTree."""

    def __init__(self, atree, path="", *, recursive: bool = False, **options):
        self._atree = atree
        self.path = path
        self.recursive = recursive
        self._options = options
        self._watch: Optional[_LoopWatch] = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncWatch {self.path!r} on {self._atree!r}>"

    async def start(self) -> "AsyncWatch":
        """Open the directory and arm the first request (``async with`` and
        the first ``__anext__`` do it)."""
        if self._watch is None:
            if self._closed:
                raise ValueError("the watch is closed")
            atree = self._atree
            path = normpath(self.path)
            if atree.plans is not None:
                handle = await run_plan(atree.client.sync, atree.plans.opendir_plan(path))
            else:
                handle = await asyncio.to_thread(atree.sync.open_handle, path, directory=True)
            self._watch = _LoopWatch(atree.sync, self.path, loop=asyncio.get_running_loop(),
                                     recursive=self.recursive, handle=handle, **self._options)
        return self

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        watch = self._watch or (await self.start())._watch
        try:
            while True:
                event, future = watch.poll()
                if event is not None:
                    return event
                if future is None:
                    await watch.wakeup.wait()
                elif watch.needs_thread(future):
                    await asyncio.to_thread(watch.process, future)
                else:
                    watch.process(future)
        except StopAsyncIteration:
            self._closed = True
            raise
        except asyncio.CancelledError:
            self.close_nowait()
            raise

    def _stop(self):
        """Closed: cancel the request; the directory handle still open on
        the server (None if there is none, or it went with a connection)."""
        self._closed = True
        watch = self._watch
        handle = watch.stop() if watch is not None else None
        if handle is None or handle.closed or \
                handle.generation != self._atree.client.sync.generation:
            return None
        return handle

    def close_nowait(self) -> None:
        """Close without waiting: cancel the request, send the CLOSE."""
        handle = self._stop()
        if handle is None:
            return
        tree = self._atree.sync
        handle.closed = True
        future = tree.client.run_task_async(tree.ops.close_task(handle))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def close(self) -> None:
        """Cancel the request and close the directory (the CLOSE awaited)."""
        handle = self._stop()
        if handle is None:
            return
        ops = self._atree.sync.ops
        try:
            await run_plan(self._atree.client.sync,
                           ([ops.close_task(handle)], lambda r: ops.close_done(handle, r[0])))
        except OSError:
            pass

    async def __aenter__(self) -> "AsyncWatch":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()


__all__ = ["AsyncWatch", "WatchEvent"]
