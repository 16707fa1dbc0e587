"""Many small whole-file operations from one thread, several on the wire.

Theory of operation
-------------------
Copying a tree of small files one at a time costs a round trip or three per
file: on a 10 ms link a thousand files take tens of seconds of waiting.
Threads hide that but cost wake-ups and GIL hand-offs; here one thread keeps
up to ``window`` files in flight with the client's asynchronous tasks.

A *job* is a generator.  It yields *plans* -- ``(tasks, finish)`` from the
FileOps (``read_whole_plan``, ``write_whole_plan``, ``rename_plan`` ...: one
request or one related compound) -- and receives each plan's result, or has
its error thrown in, so it reads like the blocking code it replaces::

    def put_small(...):
        written = yield ops.write_whole_plan(temp, data)
        yield ops.rename_plan(temp, path, True)
        return written

:func:`run` starts jobs lazily from an iterable (memory stays bounded by the
window), sends each job's current plan with ``run_task_async`` /
``run_compound_async``, waits for whichever plan completes first
(``concurrent.futures.wait``), advances that job, and yields ``(key, result,
error)`` as jobs end, in completion order.  A job's own ``try``/``except``
sees its errors (a put deletes its temporary file); an error it lets out is
reported for its key and the others go on.  When the consumer stops early
(an exception, Ctrl-C, ``close()``), the plans still on the wire are
cancelled and each job is closed (its ``finally`` runs; it may not yield
more plans then); a plan that completed meanwhile is handed to its job
first, so the job's cleanup knows what it made.
"""
from __future__ import annotations

import concurrent.futures
from typing import (Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

Plan = Tuple[Sequence, Callable[[Sequence], Any]]
Job = Generator[Plan, Any, Any]

#: whole-file compounds in flight by default (a READ/WRITE each of up to 1 MiB)
DEFAULT_WINDOW = 32


def _send(client, plan: Plan) -> concurrent.futures.Future:
    tasks, _finish = plan
    if len(tasks) == 1:
        return client.run_task_async(tasks[0])
    return client.run_compound_async(tasks)


def _outcome(plan: Plan, future: concurrent.futures.Future) -> Tuple[bool, Any]:
    """(ok, value): the plan's result, or the error its replies raise."""
    try:
        replies = future.result()
        if len(plan[0]) == 1:
            replies = [replies]
        return True, plan[1](replies)
    except Exception as exc:  # noqa: BLE001 - handed to the job, which decides
        return False, exc


def run(client, jobs: Iterable[Tuple[Any, Job]], window: int = DEFAULT_WINDOW
        ) -> Iterator[Tuple[Any, Any, Optional[BaseException]]]:
    """Run ``(key, job)`` pairs with up to ``window`` in flight; yield
    ``(key, result, None)`` or ``(key, None, error)`` as each ends."""
    if window < 1:
        raise ValueError("window must be >= 1")
    source = iter(jobs)
    flying: Dict[concurrent.futures.Future, Tuple[Any, Job, Plan]] = {}
    ready: List[Tuple[Any, Job, Plan]] = []     # stepped, their plans not sent yet
    exhausted = False
    try:
        while True:
            while not exhausted and len(flying) + len(ready) < window:
                try:
                    key, job = next(source)
                except StopIteration:
                    exhausted = True
                    break
                ended = _step(key, job, lambda j: j.send(None), ready)
                if ended is not None:
                    yield ended
            yield from _launch(client, flying, ready)
            if not flying:
                if exhausted:
                    return
                continue
            done, _ = concurrent.futures.wait(list(flying),
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                key, job, plan = flying.pop(future)
                ok, value = _outcome(plan, future)
                step = (lambda j, v=value: j.send(v)) if ok else \
                    (lambda j, v=value: j.throw(v))
                ended = _step(key, job, step, ready)
                if ended is not None:
                    yield ended
    finally:
        for future, (_key, job, plan) in flying.items():
            if not future.cancel() and future.done():
                _hand_over(job, plan, future)
            job.close()
        for _key, job, _plan in ready:
            job.close()


def _hand_over(job: Job, plan: Plan, future: concurrent.futures.Future) -> None:
    """A plan that completed as the consumer stopped: its result goes to
    the job before it is closed, so the job knows what the plan made (a
    handle it left open, say) and its cleanup sees it.  What the job does
    next is not sent."""
    ok, value = _outcome(plan, future)
    try:
        if ok:
            job.send(value)
        else:
            job.throw(value)
    except Exception:  # noqa: BLE001 - the job ended: nothing more to hand over
        pass


def _step(key, job: Job, step: Callable[[Job], Plan], ready: list
          ) -> Optional[Tuple[Any, Any, Optional[BaseException]]]:
    """Step ``job`` to its next plan (queued in ``ready``); the job's end
    if it ended."""
    try:
        ready.append((key, job, step(job)))
    except StopIteration as stop:
        return key, stop.value, None
    except Exception as exc:  # noqa: BLE001 - reported for this job's key
        return key, None, exc
    return None


def _launch(client, flying: Dict, ready: list
            ) -> Iterator[Tuple[Any, Any, Optional[BaseException]]]:
    """Send the ``ready`` plans together: the client holds its sends while
    they are queued, so a window's worth goes out in one system call, not
    one each (nothing here waits for a reply: the jobs were stepped before).
    A job whose send failed (the client closed, say) gets the error and may
    answer with another plan; the ends are yielded."""
    hold = getattr(client, "hold_sends", None)
    while ready:
        batch, ready[:] = list(ready), []
        failed = []
        held = hold is not None and hold()
        try:
            for key, job, plan in batch:
                try:
                    flying[_send(client, plan)] = (key, job, plan)
                except Exception as exc:  # noqa: BLE001 - the job decides
                    failed.append((key, job, exc))
        finally:
            if held:
                client.release_sends()
        for key, job, exc in failed:
            ended = _step(key, job, lambda j, e=exc: j.throw(e), ready)
            if ended is not None:
                yield ended
