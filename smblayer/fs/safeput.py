"""Writing a whole file safely in few round trips: a temporary name, then a
rename over the destination on the same handle.

Theory of operation
-------------------
A *job* (a generator of FileOps plans, as :mod:`.batch` runs them) that
puts ``data`` at ``dest`` so the destination is whole or as it was:

1. CREATE a temporary name beside ``dest`` (``.NAME.smblayer-XXXXXXXX``,
   same folder, so the rename is atomic) + WRITE + SET_INFO of the times,
   one compound, the handle left open with DELETE access;
2. SET_INFO (rename over ``dest``) + CLOSE on that handle, one compound.

Two round trips and one open a file.  On any failure the temporary file is
deleted (on its handle while it is open, else by name), Ctrl-C included.
:mod:`.many` runs many such jobs at once; :func:`run_one` runs one with the
blocking API (``transfer.put_file`` for a file that fits one WRITE).
Only SMB 2+ trees that are not DFS namespaces have plans (:func:`has_plans`).
"""
from __future__ import annotations

import os
import posixpath
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Generator, Optional, Tuple

from ..errors import SmbStatusError
from ..proto.status import NtStatus
from .ops import normpath, ns_to_filetime, seconds_to_ns

__all__ = ["has_plans", "filetimes", "temp_name", "write_job", "run_one"]

if TYPE_CHECKING:
    Job = Generator[Any, Any, Any]


def has_plans(tree) -> bool:
    """True if ``tree`` writes whole files with plans (SMB 2+, not DFS)."""
    return hasattr(tree.ops, "write_open_plan") and not getattr(tree, "dfs", False)


def filetimes(times: Tuple[float, float]) -> Tuple[int, int]:
    """(atime, mtime) seconds as (access, write) FILETIMEs."""
    return ns_to_filetime(seconds_to_ns(times[0])), ns_to_filetime(seconds_to_ns(times[1]))


def temp_name(path: str) -> str:
    """A new temporary name beside ``path`` (same folder)."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.smblayer-{os.urandom(4).hex()}")


def write_job(tree, data, dest: str, times: Optional[Tuple[int, int]]) -> Job:
    """Write ``data`` under a temporary name, give it ``times`` (access,
    write: FILETIMEs), rename it over ``dest``: two compounds, the rename on
    the handle the data went through; the temporary file is removed on any
    failure.  Returns the bytes written."""
    ops = tree.ops
    temp = normpath(temp_name(dest))
    handle = None
    renaming = False          # from here on the handle may be closed (its CLOSE sent)
    try:
        handle, written, error = yield ops.write_open_plan(temp, data, times)
        if error is not None:
            raise error
        if written < len(data):
            raise SmbStatusError(NtStatus.DISK_FULL, "WRITE", dest.replace("\\", "/"),
                                 message=f"short write ({written} of {len(data)} bytes)")
        renaming = True
        yield ops.handle_rename_plan(handle, normpath(dest), True)
    except GeneratorExit:              # the caller stopped (Ctrl-C): no more plans
        _discard_quietly(tree, handle, temp)
        raise
    except BaseException:
        try:
            yield (ops.handle_delete_plan(handle) if handle is not None and not renaming
                   else ops.delete_plan(temp, False))
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass
        raise
    return len(data)


def run_one(tree, job: Job):
    """Run one job with the blocking API (each plan waits for its replies);
    its result, or its error raised.  Interrupted (Ctrl-C), the job is
    closed, so its cleanup runs."""
    step, value = job.send, None
    try:
        while True:
            plan = step(value)
            try:
                step, value = job.send, tree.ops.run_plan(plan)
            except Exception as exc:  # noqa: BLE001 - handed to the job, which decides
                step, value = job.throw, exc
    except StopIteration as stop:
        return stop.value
    finally:
        job.close()


def _discard_quietly(tree, handle, temp: str) -> None:
    """Delete the temporary file, on ``handle`` while it may be open, else
    by name (blocking: the job is being closed)."""
    if handle is not None:
        try:
            tree.ops.run_plan(tree.ops.handle_delete_plan(handle))
            return
        except Exception:  # noqa: BLE001 - closed already (its rename went): by name
            pass
    try:
        tree.remove(temp.replace("\\", "/"))
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
