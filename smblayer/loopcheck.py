"""A blocking call made from inside a running asyncio event loop is an error.

``SmbClient.run_task`` and ``run_compound`` (every blocking request of the
library: Tree and file methods, ``fs.connect``, ``client.echo``) call
:func:`check_not_in_loop` first.  It costs a dict lookup when asyncio was
never imported and one C call otherwise; only when it raises does it look
at the stack, to name the method the caller used and its ``smblayer.aio``
alternative.

Jupyter (ipykernel) runs every cell inside its event loop, and blocking
there is what notebooks expect: it is allowed.  ``allow_blocking_in_loop()``
allows it elsewhere too, for code that knows what it does.
"""
from __future__ import annotations

import sys

_allowed = False


class BlockingInLoopError(RuntimeError):
    """A blocking smblayer call was made on a thread that runs an asyncio
    event loop; ``.method`` names it, ``.alternative`` the awaitable one."""

    def __init__(self, method: str, alternative: str):
        super().__init__(
            f"smblayer: {method} blocks, and was called from inside a running asyncio "
            f"event loop (it would stall every other task of the loop); use "
            f"{alternative} (smblayer.aio), or run it in a thread (asyncio.to_thread)")
        self.method = method
        self.alternative = alternative


def allow_blocking_in_loop(allow: bool = True) -> None:
    """Let blocking calls run on an event loop's thread (not recommended)."""
    global _allowed
    _allowed = bool(allow)


def check_not_in_loop() -> None:
    """Raise BlockingInLoopError if this thread is running an event loop."""
    # getattr: while another thread runs the first ``import asyncio`` the
    # module is in sys.modules half initialised (no loop can run yet).
    running = getattr(sys.modules.get("asyncio"), "_get_running_loop", None)
    if running is None or _allowed or running() is None:
        return
    if "ipykernel" in sys.modules:
        return
    raise BlockingInLoopError(*_caller())


_ALTERNATIVES = {
    "connect": "await smblayer.aio.connect(host, share, ...)",
    "echo": "await aclient.echo()",
}


def _caller():
    """(the public smblayer method the user called, its async spelling)."""
    frame = sys._getframe(2)
    method = None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("smblayer."):
            break
        name = frame.f_code.co_name
        owner = frame.f_locals.get("self")
        if not name.startswith("_"):
            method = (type(owner).__name__ + "." if owner is not None else
                      module.rpartition(".")[2] + ".") + name
        frame = frame.f_back
    if method is None:
        return "a blocking request", "the awaitable API"
    short = method.rpartition(".")[2]
    alternative = _ALTERNATIVES.get(short)
    if alternative is None:
        kind = method.partition(".")[0].lower()
        subject = "f" if "file" in kind else "tree"
        alternative = f"await {subject}.{short}(...)"
    return method + "()", alternative
