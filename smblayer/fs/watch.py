"""Tree.watch: directory change notifications (CHANGE_NOTIFY) as an iterable.

Built only on the public extension API: ``Tree.open_handle``,
``Tree.close_handle``, the CHANGE_NOTIFY codec of ``smblayer.proto.commands``
and an ``SmbTask`` with ``long_poll=True`` (no timeout while the server
holds the request; the connection is probed instead) and an ``on_reissue``
hook (after a reconnect the directory is opened again and the request is
rebuilt with the new FileId).

One CHANGE_NOTIFY is always outstanding (armed at creation, so changes made
right after ``watch()`` returns are seen); its completion wakes the iterator.
Changes the server could not keep (STATUS_NOTIFY_ENUM_DIR) and any
reconnect are reported as one ``WatchEvent("rescan", <watched dir>)``: the
caller should list the directory again.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from typing import Deque, NamedTuple, Optional

from ..errors import (SmbCancelledError, SmbClosedError, SmbConnectionError, SmbError,
                      SmbProtocolError, SmbStatusError)
from ..proto.commands import (FILE_NOTIFY_CHANGE_ALL, NOTIFY_CLEANUP, NOTIFY_ENUM_DIR,
                              change_notify_request, parse_change_notify_response)
from ..proto.smb2 import Command, MalformedMessage
from ..task import SmbTask

log = logging.getLogger("smblayer")

ACTIONS = {1: "added", 2: "removed", 3: "modified", 4: "renamed_from", 5: "renamed_to",
           6: "added_stream", 7: "removed_stream", 8: "modified_stream"}
RESCAN = "rescan"


class WatchEvent(NamedTuple):
    """``action``: "added", "removed", "modified", "renamed_from",
    "renamed_to", the *_stream ones, or "rescan"; ``path``: share-relative
    with "/" (for "rescan", the watched directory)."""

    action: str
    path: str


class Watch:
    """Iterate for WatchEvents (blocking); ``next(timeout)`` waits at most
    ``timeout`` seconds (None if nothing happened); ``close()`` from any
    thread cancels the outstanding request and ends the iteration."""

    def __init__(self, tree, path="", *, recursive: bool = False,
                 completion_filter: int = FILE_NOTIFY_CHANGE_ALL, buffer_size: int = 65536,
                 handle=None):
        """``handle``: the directory, already opened (``Tree.open_handle(path,
        directory=True)``; the watch closes it), else the watch opens it."""
        if tree.client.dialect.is_smb1:
            raise ValueError("watch needs SMB 2.0.2 or later (SMB1 has NT_TRANSACT_NOTIFY)")
        if not 0 < buffer_size <= 0xFFFFFFFF:
            raise ValueError(f"bad buffer_size {buffer_size}")
        self.tree = tree
        self.path = "/".join(p for p in str(path).replace("\\", "/").split("/") if p)
        self.recursive = recursive
        self.completion_filter = completion_filter
        self.buffer_size = buffer_size
        self._cond = threading.Condition()
        self._events: Deque[WatchEvent] = collections.deque()
        self._done: Deque[Future] = collections.deque()
        self._closed = False
        self._task: Optional[SmbTask] = None
        self._handle = handle if handle is not None else \
            tree.open_handle(self.path, directory=True)
        try:
            self._arm()
        except BaseException:
            tree.close_handle(self._handle)
            raise

    def __repr__(self) -> str:
        return f"<Watch {self.path!r} on {self.tree!r}{' closed' if self._closed else ''}>"

    # -- the outstanding request ---------------------------------------------------------

    def _body(self):
        return change_notify_request(self._handle.fid, completion_filter=self.completion_filter,
                                     output_length=self.buffer_size,
                                     watch_tree=self.recursive)

    def _stale(self) -> bool:
        return self._handle.generation != self.tree.client.generation

    def _arm(self) -> None:
        if self._stale() and not self._reopen():
            raise SmbConnectionError(f"watch on {self.path!r}: the directory cannot be "
                                     "opened again after a reconnect")
        task = SmbTask(Command.CHANGE_NOTIFY, self._body(), security=self.tree.session,
                       tree=self.tree, path=self.path, long_poll=True,
                       on_reissue=self._on_reissue,
                       ok_statuses=(0, NOTIFY_ENUM_DIR, NOTIFY_CLEANUP))
        self._task = task
        future = self.tree.client.run_task_async(task)
        future.add_done_callback(self._completed)

    def _completed(self, future: Future) -> None:
        with self._cond:
            self._done.append(future)
            self._cond.notify_all()

    def _reopen(self) -> bool:
        """The directory handle died with the connection: open it again and
        queue a "rescan" (changes in between were not seen)."""
        with self._cond:
            if self._closed:
                return False
        try:
            handle = self.tree.open_handle(self.path, directory=True)
        except SmbError as exc:
            log.warning("smblayer: watch on %r cannot be re-armed: %s", self.path, exc)
            return False
        with self._cond:
            closed = self._closed
            if not closed:
                old, self._handle = self._handle, handle
                old.closed = True
                self._events.append(WatchEvent(RESCAN, self.path))
                self._cond.notify_all()
        if closed:                      # close() ran meanwhile: not ours to keep
            self.tree.close_handle(handle)
            return False
        return True

    def _on_reissue(self, task: SmbTask) -> bool:
        """SmbTask.on_reissue (after a reconnect, before the resend)."""
        if not self._reopen():
            return False
        task.body = self._body()
        return True

    # -- iteration --------------------------------------------------------------------------

    def next(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next event; None after ``timeout`` seconds without one.
        Raises StopIteration once closed, SmbError if the watch failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while not self._events and not self._done and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                if self._events:
                    return self._events.popleft()
                if self._closed:
                    raise StopIteration
                future = self._done.popleft()
            self._handle_completion(future)

    def _handle_completion(self, future: Future) -> None:
        """Turn a completed CHANGE_NOTIFY into events and re-arm; a failure
        that cannot be recovered ends the watch (closed) and raises."""
        try:
            self._process(future)
        except MalformedMessage as exc:
            self.close()
            raise SmbProtocolError(f"bad CHANGE_NOTIFY response: {exc}") from None
        except SmbError:
            if not self._closed:
                self.close()
                raise

    def _process(self, future: Future) -> None:
        try:
            reply = future.result()
        except (SmbCancelledError, SmbClosedError):
            if self._closed:
                return
            raise
        except (SmbConnectionError, SmbStatusError) as exc:
            # Not reissued (resent too often), or sent with the old FileId
            # while the client reconnected: arm a fresh request.
            if self._closed or (isinstance(exc, SmbStatusError) and not self._stale()) or \
                    not self._reopen():
                raise
            self._arm()
            return
        status = reply.status
        if status == NOTIFY_CLEANUP:
            self.close()
            return
        if status == NOTIFY_ENUM_DIR:
            events = [WatchEvent(RESCAN, self.path)]
        else:
            prefix = self.path + "/" if self.path else ""
            events = [WatchEvent(ACTIONS.get(e.action, f"action{e.action}"),
                                 prefix + e.name.replace("\\", "/"))
                      for e in parse_change_notify_response(reply)]
        with self._cond:
            if self._closed:
                return
            self._events.extend(events)
        self._arm()

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> WatchEvent:
        event = self.next()
        if event is None:        # pragma: no cover - next(None) never times out
            raise StopIteration
        return event

    # -- lifetime -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel the outstanding request and close the directory handle."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            task = self._task
        if task is not None:
            task.cancel()
        with self._cond:
            handle = self._handle
        try:
            self.tree.close_handle(handle)
        except SmbError as exc:
            log.debug("smblayer: closing the watched directory %r failed: %s", self.path, exc)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Watch", "WatchEvent", "ACTIONS", "RESCAN"]
