"""Byte-range locks on open files: ``f.lock(offset, length, exclusive=True,
wait=False)`` and ``f.unlock(offset, length)``.

Theory of operation
-------------------
``LockingFile`` is a base class of :class:`~smblayer.fs.file.SmbRawFile`
and owns the file's locks: the ranges it holds (``_held``) and the next
LockSequence value.  A lock is one LOCK request (SMB2, [MS-SMB2] 2.2.26) or
LOCKING_ANDX (SMB1) built by the dialect's ``FileOps.lock_task``:

* ``wait=False``: FAIL_IMMEDIATELY; a conflict raises at once
  (SmbStatusError LOCK_NOT_GRANTED, errno EACCES, with the path).
* ``wait=True``: the server queues the request (an interim reply, then the
  grant): a long poll, killable (Ctrl-C, ``client.close``): the request is
  then cancelled, and a grant that crossed the cancel released.
* ``wait=<seconds>``: the same, bounded: when the time is up the request is
  cancelled (SMB CANCEL) and SmbTimeoutError raised.  A grant that crossed
  the cancel is released again, so a lock is never held unknowingly.

On SMB 2.1 and later every lock carries a LockSequence (index 1..64 and a
4-bit number, [MS-SMB2] 3.2.4.19): a LOCK resent after a reconnect (the
replay of a durable or resilient handle) is then not applied twice.  After
a reconnect the recovery calls ``_relock``: a reclaimed durable handle keeps
its locks on the server; a file reopened by path asks each held range
again, and a range that cannot be had again makes the file's next call raise
SmbConnectionError naming it (never silently lost).

``Lock`` (what ``lock`` returns) is a context manager that unlocks on exit,
so ``with f.lock(0, 100): ...`` holds the range for the block.

Buffered wrappers (``LockingBuffer``) flush their writes before a lock
call, so what was written before ``unlock`` is on the server first.
"""
from __future__ import annotations

import io
import logging
import math
import threading
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional, Tuple, Union

from ..errors import (SmbCancelledError, SmbConnectionError, SmbError, SmbStatusError,
                      SmbTimeoutError)
from ..proto.commands import (LOCKFLAG_EXCLUSIVE_LOCK, LOCKFLAG_FAIL_IMMEDIATELY,
                              LOCKFLAG_SHARED_LOCK, LOCKFLAG_UNLOCK)

log = logging.getLogger("smblayer")

_MAX_RANGE = (1 << 64) - 1


class Lock:
    """A held byte range; ``with`` releases it on exit (``release()`` too)."""

    def __init__(self, file: "LockingFile", offset: int, length: int, exclusive: bool):
        self.file, self.offset, self.length, self.exclusive = file, offset, length, exclusive

    def release(self) -> None:
        self.file.unlock(self.offset, self.length)

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        if self in self.file._held:
            self.release()

    def __repr__(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return f"<Lock {self.file.name!r} {kind} [{self.offset}, +{self.length})>"


def _check_range(offset: int, length: int) -> None:
    if not isinstance(offset, int) or not isinstance(length, int):
        raise TypeError("offset and length are ints")
    if offset < 0 or length < 0 or offset + length > _MAX_RANGE:
        raise ValueError(f"bad byte range [{offset}, +{length})")


class LockingFile:
    """Mixin of SmbRawFile: byte-range locks (see the module docstring)."""

    _lock_lost: Optional[SmbConnectionError] = None

    @property
    def _held(self) -> List[Lock]:
        held = self.__dict__.get("_held_locks")
        if held is None:
            held = self.__dict__.setdefault("_held_locks", [])
        return held

    def _next_sequence(self) -> int:
        """The LOCK's LockSequence field ([MS-SMB2] 2.2.26): the
        LockSequenceIndex (1..64) in the upper 28 bits, the
        LockSequenceNumber (4 bits, new for each reuse of an index) in the
        lowest 4 bits."""
        with _SEQUENCE_LOCK:
            n = self.__dict__.get("_lock_seq", 0)
            self.__dict__["_lock_seq"] = n + 1
        return (n % 64 + 1) << 4 | (n // 64 + 1) % 16

    @property
    def locks(self) -> List[Lock]:
        """The byte ranges this file holds locked."""
        return list(self._held)

    def lock(self, offset: int, length: int, exclusive: bool = True,
             wait: Union[bool, float] = False) -> Lock:
        """Lock ``length`` bytes from ``offset`` (exclusive, or shared with
        other shared locks).  ``wait``: False fails at once on a conflict
        (SmbStatusError, errno EACCES); True waits until granted (killable);
        a number waits at most that many seconds (SmbTimeoutError).  Returns
        a :class:`Lock`, a context manager that unlocks on exit."""
        _check_range(offset, length)
        if wait is not True and wait is not False:
            wait = float(wait)
            if not wait >= 0 or math.isinf(wait):
                raise ValueError(f"wait must be True, False or seconds >= 0 (got {wait!r})")
        self._checkClosed()
        flags = LOCKFLAG_EXCLUSIVE_LOCK if exclusive else LOCKFLAG_SHARED_LOCK
        if wait is False:
            flags |= LOCKFLAG_FAIL_IMMEDIATELY
        sequence = self._next_sequence()
        build = (lambda h: self._ops.lock_task(h, [(offset, length, flags)],
                                               sequence=sequence))
        if wait is False:
            self._run(build)
        else:
            self._lock_waiting(build, None if wait is True else wait, offset, length)
        held = Lock(self, offset, length, exclusive)
        self._held.append(held)
        return held

    def _lock_waiting(self, build, seconds: Optional[float], offset: int,
                      length: int) -> None:
        """A LOCK the server may queue: wait for its grant, at most
        ``seconds`` (None: as long as it takes; the client's wait is
        killable).  Interrupted (Ctrl-C, a closed client) or timed out, the
        client cancels it; a grant that crossed the cancel is released."""
        task = self._build(build)
        try:
            self._client.run_task(task, wait=seconds)
        except SmbTimeoutError:
            self._release_late_grant(offset, length)
            error = SmbTimeoutError(f"{self.name!r}: the lock on [{offset}, +{length}) "
                                    f"was not granted within {seconds:g} s")
            error.path = self.name
            raise error from None
        except BaseException as exc:
            if not isinstance(exc, SmbStatusError):      # interrupted, not refused
                self._release_late_grant(offset, length)
            if isinstance(exc, SmbError):
                self._raise(self._failure(exc))
            raise
        finally:
            self._settled(task)

    def _release_late_grant(self, offset: int, length: int) -> None:
        """A cancelled LOCK may have been granted just before the CANCEL
        reached the server (its reply is then discarded): UNLOCK the range,
        sent behind the CANCEL, unless an older lock holds the same range."""
        if any((h.offset, h.length) == (offset, length) for h in self._held):
            return
        try:
            self._run(lambda h: self._ops.lock_task(h, [(offset, length, LOCKFLAG_UNLOCK)]))
        except SmbError as exc:
            log.debug("smblayer: no lock granted behind the cancel (%s)", exc)

    def unlock(self, offset: int, length: int) -> None:
        """Release the lock on exactly this range (SmbStatusError
        RANGE_NOT_LOCKED if there is none)."""
        _check_range(offset, length)
        self._checkClosed()
        self._run(lambda h: self._ops.lock_task(h, [(offset, length, LOCKFLAG_UNLOCK)],
                                                sequence=0))
        for held in self._held:
            if (held.offset, held.length) == (offset, length):
                self._held.remove(held)
                break

    # -- recovery ------------------------------------------------------------------------

    def _relock(self, how: str) -> None:
        """After a reconnect (recovery thread): a reclaimed durable handle
        kept its locks on the server; a reopened file asks them again.  A
        range not granted again is reported by the file's next call."""
        if how == "reclaimed" or not self._held:
            return
        lost: List[Tuple[int, int]] = []
        for held in list(self._held):
            flags = (LOCKFLAG_EXCLUSIVE_LOCK if held.exclusive else LOCKFLAG_SHARED_LOCK) | \
                LOCKFLAG_FAIL_IMMEDIATELY
            try:
                self._client.run_task(self._ops.lock_task(
                    self._handle, [(held.offset, held.length, flags)],
                    sequence=self._next_sequence()))
            except (SmbError, SmbCancelledError) as exc:
                log.warning("smblayer: %r: lock [%d, +%d) lost in the reconnect: %s",
                            self.name, held.offset, held.length, exc)
                lost.append((held.offset, held.length))
                self._held.remove(held)
        if lost:
            ranges = ", ".join(f"[{o}, +{n})" for o, n in lost)
            error = SmbConnectionError(
                f"{self.name!r}: the byte-range lock(s) {ranges} were lost when the "
                f"connection was re-established (another client may hold them now)")
            error.path = self.name
            self._lock_lost = error

    def _raise_lock_lost(self) -> None:
        """Raise a lost lock's error once (from the file's next call)."""
        lost, self._lock_lost = self._lock_lost, None
        if lost is not None:
            raise lost


_SEQUENCE_LOCK = threading.Lock()


class LockingBuffer:
    """Mixin of the buffered wrappers: ``lock``/``unlock`` on the raw file,
    after pushing the buffered writes."""

    def _flush_for_lock(self) -> None:
        if self.writable():
            self.flush()

    def lock(self, offset: int, length: int, exclusive: bool = True,
             wait: Union[bool, float] = False) -> Lock:
        self._flush_for_lock()
        return self.raw.lock(offset, length, exclusive=exclusive, wait=wait)

    def unlock(self, offset: int, length: int) -> None:
        self._flush_for_lock()
        self.raw.unlock(offset, length)

    @property
    def locks(self) -> List[Lock]:
        return self.raw.locks


class BufferedReader(LockingBuffer, io.BufferedReader):
    """io.BufferedReader with ``lock``/``unlock``."""


__all__ = ["Lock", "LockingFile", "LockingBuffer", "BufferedReader"]
