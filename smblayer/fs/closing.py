"""Closing an SmbRawFile: the CLOSE sent behind the last writes, or the
handle kept open a while for the next open of the path (deferred close).

Theory of operation
-------------------
``close()`` ends a file object in one of two ways.

**A real close.**  The write-behind is flushed (a failed WRITE raises
here) and the CLOSE goes out: right behind the writes when they are all on
the wire already (the server finishes a handle's writes before it closes
it), or with the last small write as one compound (``_tail``), or alone.

**A deferred close** (:mod:`smblayer.fs.deferred`), when the file holds a
lease with handle caching and its tree defers closes.  Nothing of the
file's data waits for the deferral: every write is on the server before
``close()`` returns, exactly as with a real close, so a process that dies
during the deferral loses nothing.  A file that wrote also sets its write
time (SET_INFO FileBasicInformation, LastWriteTime = now, the client's
clock, as ``utime``): Samba stamps a written file's write time at its
CLOSE, or 2 s after the first write; without that a stat from any client
would show the old modification time for up to 2 s after ``close()``,
and the stamp would land when the kept handle is finally closed, after a
``utime`` the caller made meanwhile.  The last small write and that
SET_INFO go as one compound: ``open, write, close`` of a kept handle is
one round trip.  (An explicitly set time stays fixed for the handle's
later writes; the next ``close()`` of a reuse sets it again.)  Then the
handle is parked; if it cannot be (its lease lost handle caching
meanwhile, a reconnect), or the flush failed, it is closed for real.

The lock order is SmbRawFile's (``fs.file``); the park has its own lock,
taken with none of the file's held.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

from ..client import TEARDOWN_WAIT
from ..errors import (SmbCancelledError, SmbConnectionError, SmbStatusError, SmbTimeoutError,
                      status_error)
from ..proto.status import NtStatus
from ..task import TaskState
from .deferred import may_park
from .ops import ns_to_filetime

log = logging.getLogger("smblayer")

__all__ = ["ClosingMixin", "STALE_HANDLE", "on_smbiod"]

#: a handle the server no longer knows (closed with an old connection)
STALE_HANDLE = frozenset({NtStatus.FILE_CLOSED, NtStatus.INVALID_HANDLE})
_ON_THE_WIRE = frozenset({TaskState.SENT, TaskState.INTERIM, TaskState.DONE})


def on_smbiod() -> bool:
    """Whether the caller runs on an smbiod worker (a break callback)."""
    return threading.current_thread().name.startswith("smbiod-")


class ClosingMixin:
    """``close()`` of :class:`~smblayer.fs.file.SmbRawFile` (see the module
    docstring)."""

    def close(self) -> None:
        """Flush (a failed write raises here), then CLOSE the handle, or keep
        it for a while (deferred close).  With writes in flight the CLOSE is
        sent right behind them (the server completes a handle's writes
        before closing it): one round trip.  Not on SMB1: Samba 4.17's smbd
        crashes (close_file_smb, SIGSEGV) on an SMB1 CLOSE that arrives while
        asynchronous writes on the handle are pending."""
        with self._close_lock:
            if self.closed:
                return
            if may_park(self):
                self._close_deferred()
                return
            closing = None
            try:
                if self._tail is not None:
                    self._close_with_tail()
                    return
                if self._writes and self._ops.close_behind_writes and not on_smbiod() and \
                        self._open_on_server() and \
                        all(t.state in _ON_THE_WIRE and t.channel is None
                            for _f, t, _n in self._writes):
                    # Every write is on the wire on channel 0: the CLOSE follows them
                    # (a recovery cancels it; reissues, other channels: no order).
                    self._closing = self._ops.close_task
                    closing = self._start(self._closing)
                super().close()            # calls flush(): waits for the writes
            finally:
                self._drop_read_ahead()
                self._writes.clear()
                self._finish_close(closing)

    def _close_deferred(self) -> None:
        """Every write on the server (and the write time set, if written),
        then park the handle.  A failed write raises (the handle is closed
        for real); a write time the server refused is left to a real CLOSE."""
        keep = False
        try:
            if self._tail is not None:
                keep = self._write_tail_and_time()
            else:
                super().close()            # flush(): waits for the writes
                keep = not self._written or self._set_write_time()
        finally:
            self._drop_read_ahead()
            self._writes.clear()
            if keep and self._open_on_server():
                self._handle.info.size = self._size     # what the next opener starts from
                self._finish_close(None, park=True)
            else:
                self._finish_close(None)

    def _set_write_time(self) -> bool:
        now = ns_to_filetime(time.time_ns())
        try:
            self._run(lambda h: self._ops.set_write_time_task(h, now))
        except SmbStatusError as exc:
            log.debug("smblayer: setting the write time of %r failed: %s", self.name, exc)
            return False
        return True

    def _write_tail_and_time(self) -> bool:
        """WRITE the tail and set the write time in one compound (a failed
        WRITE raises; False: the time was not set)."""
        offset, data = self._tail
        self._tail = None
        super().close()                     # marks closed (nothing else in flight)
        ops = self._ops
        now = ns_to_filetime(time.time_ns())
        write = self._build(lambda h: ops.write_task(h, offset, data, any_status=True))
        stamp = self._build(lambda h: ops.set_write_time_task(h, now))
        stamp.ok_statuses = write.ok_statuses       # both replies are looked at here
        try:
            try:
                written, stamped = self._client.run_compound((write, stamp), related=False)
            except BaseException as exc:
                self._raise(self._failure(exc))
            if written.status:
                raise status_error(written.status, "WRITE", self.name)
            self._check_written(ops.parse_write(written), len(data))
            return not stamped.status
        finally:
            self._settled(write)
            self._settled(stamp)

    def _close_with_tail(self) -> None:
        """WRITE the tail and CLOSE in one compound; a failed WRITE raises
        once the handle is closed."""
        offset, data = self._tail
        self._tail = None
        super().close()                     # marks closed (nothing else in flight)
        ops = self._ops
        write = self._build(lambda h: ops.write_task(h, offset, data, any_status=True))
        close = self._build(ops.close_task)
        close.ok_statuses = write.ok_statuses       # both replies are looked at here
        try:
            try:
                written, closed = self._client.run_compound((write, close), related=False)
            except BaseException as exc:
                self._raise(self._failure(exc))
            if not closed.status:
                ops.close_done(self._handle, closed)
            if written.status:
                raise status_error(written.status, "WRITE", self.name)
            self._check_written(ops.parse_write(written), len(data))
        finally:
            self._settled(write)
            self._settled(close)
            self._handle.closed = True
            self._tree._forget_file(self)

    def _open_on_server(self) -> bool:
        return self._lost is None and not self._handle.closed and self._tree.connected

    def _finish_close(self, closing, park: bool = False) -> None:
        """Wait for the CLOSE sent behind the writes (``closing``), or send
        one, or (``park``) hand the handle to the tree's park."""
        handle = self._handle
        try:
            reply = None
            if closing is not None:
                task, future = closing
                try:
                    future.result(TEARDOWN_WAIT)     # a dead server: no longer than run_task
                except FutureTimeout:
                    future.cancel()
                    raise SmbTimeoutError(f"CLOSE of {handle.path!r} unanswered") from None
                except Exception:  # noqa: BLE001 - _result raises it as it should
                    pass
                try:
                    reply = self._result(task, future)
                except (SmbCancelledError, SmbConnectionError):
                    # cancelled by a recovery (sent again below), or the
                    # handle was lost meanwhile
                    if not self._open_on_server():
                        raise
            if reply is None and self._open_on_server():
                if park and self._tree.deferred_closes.park(self):
                    return                  # deferred close: the handle is kept open
                reply = self._run(self._ops.close_task)
            if reply is not None:
                self._ops.close_done(handle, reply)
        except SmbTimeoutError as exc:
            # A dead or frozen server: the handle is abandoned, like a
            # cancelled request (the server drops it with the connection).
            log.debug("smblayer: CLOSE of %r abandoned: %s", handle.path, exc)
        except SmbStatusError as exc:
            # A reconnect without a reclaim raced with this close: the server
            # dropped the handle with the old connection, as close wanted.
            if exc.status not in STALE_HANDLE:
                raise
        except (SmbConnectionError, SmbCancelledError):
            if self._lost is None:
                raise                      # lost while closing: nothing was pending
        finally:
            self._closing = None
            handle.closed = not handle.deferred
            if handle.closed:
                handle.data = None
            self._tree._forget_file(self)
