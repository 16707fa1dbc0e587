"""SmbTask: one request, its timer, its waiter, its future, its generation.

A task is created by the upper layer, handed to ``client.run_task`` or
``client.run_task_async`` and may be sent more than once (reissued after a
reconnect).  The demultiplexer completes it: a sync waiter is woken through
the task's parking lock, an async task's completion goes to smbiod.

Life cycle: every move goes through :func:`move`, which checks it against
``TRANSITIONS`` (the h11 way) and raises :class:`IllegalTransition` for any
other (the per-request moves -- QUEUED in ``Sender._send_now``, SENT in
``InFlight.register``, DONE in ``Demux._dispatch_one`` -- spell the same
check on the members' bit masks inline, without the call).  The client
calls it under its MID-table lock, so a cancel and a send can never both
win: a CANCELLED task is never sent::

    NEW -> QUEUED (waiting for credits / an ACTIVE client) -> SENT
        -> INTERIM (STATUS_PENDING received, still waiting)
        -> DONE (reply) | FAILED (error) | CANCELLED
    SENT/INTERIM -> REISSUE (connection lost) -> QUEUED ...
    QUEUED -> REISSUE (its connection went away before the writer took it)
    DONE/FAILED/CANCELLED -> NEW (the task object is run again)
"""
from __future__ import annotations

import enum
import threading
from concurrent.futures import Future
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence

from ..config import TimeoutPolicy


class TaskState(enum.Enum):
    NEW = "new"
    QUEUED = "queued"
    SENT = "sent"
    INTERIM = "interim"
    REISSUE = "reissue"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_OK_ONLY = frozenset({0})
_OK_DEFAULT = (0,)      # ok_statuses' default: told apart by identity first
#: SMB2 commands that may change what a READ of a file returns (its data,
#: its size, a byte-range lock on it)
CHANGING_COMMANDS = frozenset({0x05, 0x09, 0x0A, 0x0B, 0x11})  # CREATE WRITE LOCK IOCTL SET_INFO

FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})
IN_FLIGHT = frozenset({TaskState.SENT, TaskState.INTERIM})

_S = TaskState
#: state -> the states a task may move to from there
TRANSITIONS = {
    _S.NEW: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.QUEUED, _S.SENT, _S.FAILED, _S.CANCELLED, _S.REISSUE}),
    _S.SENT: frozenset({_S.INTERIM, _S.DONE, _S.FAILED, _S.CANCELLED, _S.REISSUE}),
    _S.INTERIM: frozenset({_S.INTERIM, _S.DONE, _S.FAILED, _S.CANCELLED, _S.REISSUE}),
    _S.REISSUE: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELLED}),
    _S.DONE: frozenset({_S.NEW}),
    _S.FAILED: frozenset({_S.NEW}),
    _S.CANCELLED: frozenset({_S.NEW}),
}
del _S


class IllegalTransition(RuntimeError):
    """A task (or client) state move that its transition table forbids."""

    def __init__(self, what: str, old: enum.Enum, new: enum.Enum):
        super().__init__(f"{what}: illegal move {old.name} -> {new.name}")
        self.old, self.new = old, new


# The table compiled to bit masks on the members (the hot path would
# otherwise hash an Enum, a Python-level call, several times per request).
for _i, _state in enumerate(TaskState):
    _state.bit = 1 << _i
for _state, _targets in TRANSITIONS.items():
    _state.allowed = sum(t.bit for t in _targets)
    _state.in_flight = _state in IN_FLIGHT
    _state.final = _state in FINAL_STATES
del _i, _state, _targets

# The hot path reads members through module constants (``_NEW = TaskState.NEW``
# in each module that needs them): on Python 3.11 ``TaskState.NEW`` runs
# EnumType.__getattr__'s hook on every access (~300 instructions, and the
# lookup is never specialised); a module global is one specialised load.
_NEW = TaskState.NEW


def move(task: "SmbTask", new: TaskState) -> None:
    """Move ``task`` to ``new`` or raise IllegalTransition (the client holds
    its MID-table lock)."""
    old = task.state
    if not old.allowed & new.bit:
        raise IllegalTransition("task", old, new)
    task.state = new


def can_move(task: "SmbTask", new: TaskState) -> bool:
    return bool(task.state.allowed & new.bit)


class Reply:
    """A response message: ``header`` (parsed on first use), ``message`` (the
    whole SMB message as received), ``body`` (a memoryview after the header)
    and ``status`` (the NTSTATUS)."""

    __slots__ = ("_header", "_parse", "message", "body", "encrypted", "status", "placed")

    def __init__(self, parse, message, body_offset: int, status: int,
                 encrypted: bool = False):
        self._header = None
        self._parse = parse
        self.message = message
        self.body = memoryview(message)[body_offset:]
        self.status = status
        self.encrypted = encrypted
        self.placed: Optional[memoryview] = None   # data received into task.recv_buffer

    @property
    def header(self):
        header = self._header
        if header is None:
            try:
                header = self._header = self._parse(self.message)
            except ValueError as exc:
                from ..errors import SmbProtocolError
                raise SmbProtocolError(f"malformed reply header: {exc}") from None
        return header

    def __repr__(self) -> str:
        return f"<Reply {self.header!r} {len(self.message)} bytes>"


class SmbTask:
    """One SMB request.

    ``command``: the SMB2 (or SMB1) command code.  ``body``: the buffers that
    follow the header (the fixed body, then payloads kept separate so they
    are never concatenated).  ``tree_id``/``session_id`` go into the header
    (SMB1: TID and UID).  ``security`` is the session object that signs or
    encrypts the request and verifies the reply (None before a session).
    ``expected_response`` is the response payload size for CreditCharge.
    ``replayable``: safe to resend after a reconnect (with the replay flag on
    3.x); a task that is not fails with SmbConnectionError instead.
    ``tree``: if given, its ``tree_id`` is read when the header is built, so a
    task reissued after a reconnect carries the new TreeId.
    ``timeouts`` overrides the client's TimeoutPolicy for this task.
    ``ok_statuses``: NTSTATUS values that complete the task normally; any
    other error status raises SmbStatusError from run_task.
    ``long_poll``: the request may legitimately wait for a long time
    (CHANGE_NOTIFY, a blocking LOCK): once the server has sent an interim
    STATUS_PENDING reply its timer stops counting; the connection's
    liveness is checked by keepalive ECHOs instead.
    ``on_reissue``: ``fn(task) -> bool`` called before the task is resent
    after a reconnect (e.g. to rebuild its body with a new FileId); returning
    False fails it with SmbConnectionError instead.
    """

    __slots__ = ("command", "body", "tree_id", "session_id", "flags", "security",
                 "expected_response", "replayable", "timeouts", "ok_statuses", "path",
                 "priority", "credit_charge", "state", "message_id", "async_id",
                 "generation", "deadline", "sends", "reply", "error", "future",
                 "parking", "t_queued", "t_sent", "t_done", "cancel_requested",
                 "timed_out", "context", "send_credits", "sign_seq",
                 "header_flags", "on_late_reply", "context_client", "is_probe", "tree",
                 "payload_size", "recv_buffer", "placement", "long_poll", "on_reissue", "timer",
                 "t_first_sent", "t_pending", "group", "channel", "pinned", "counters",
                 "signer", "__weakref__")

    def __init__(self, command: int, body: Sequence = (), *, tree_id: int = 0,
                 session_id: int = 0, flags: int = 0, security: Any = None,
                 expected_response: int = 0, replayable: bool = True,
                 timeouts: Optional[TimeoutPolicy] = None,
                 ok_statuses: Sequence[int] = _OK_DEFAULT, path: Optional[str] = None,
                 priority: bool = False, on_late_reply: Any = None, tree: Any = None,
                 long_poll: bool = False,
                 on_reissue: Optional[Callable[["SmbTask"], bool]] = None):
        self.command = command
        self.body = body = tuple(body)
        size = 0
        for part in body:               # (a loop: cheaper than sum(map()) for 1-3 parts)
            size += len(part)
        self.payload_size = size
        self.tree_id = tree_id
        self.session_id = session_id
        self.flags = flags
        self.security = security
        self.expected_response = expected_response
        self.replayable = replayable
        self.timeouts = timeouts
        self.ok_statuses = _OK_ONLY if ok_statuses is _OK_DEFAULT or ok_statuses == (0,) \
            else frozenset(ok_statuses)
        self.path = path
        self.priority = priority          # may use the reserved credit (echo, break ack)
        self.on_late_reply = on_late_reply  # called with the reply of an abandoned task
        self.credit_charge = 0
        self.send_credits = 0
        self.state = _NEW
        self.message_id = -1
        self.async_id: Optional[int] = None
        self.generation = -1
        self.deadline = 0.0
        self.sends = 0
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None
        self.future: Optional[Future] = None
        self.parking: Optional[threading.Lock] = None   # a sync waiter waits on it
        self.t_queued = self.t_sent = self.t_done = 0.0
        self.cancel_requested = False
        self.timed_out = False
        self.context: Any = None          # free for the upper layer
        self.sign_seq = 0
        self.header_flags = 0
        self.context_client = None        # the client it is running on
        self.is_probe = False             # an internal echo probe: no timer
        self.tree = tree                  # object whose .tree_id is read at send time
        self.recv_buffer: Optional[memoryview] = None   # READ data may land here directly
        self.placement: Any = None        # (demux, view) once its data is being placed there
        self.long_poll = long_poll
        self.on_reissue = on_reissue
        self.timer: Optional[list] = None  # its live entry in the in-flight table's timer heap
        self.t_first_sent = 0.0           # the first send: soft deadlines count from here
        self.t_pending = 0.0              # the first interim reply: ...or from here
        self.group = None                 # the CompoundRun of an async compound it belongs to
        self.channel = None               # multichannel: the extra channel it went on (None: 0)
        self.pinned = False               # it must go on ``channel`` (session binding)
        self.counters = None              # its command's CommandStats, set when it is sent
        self.signer = None                # the key that signed its last send (its reply's)

    @property
    def done(self) -> bool:
        return self.state.final

    def cancel(self) -> bool:
        """Ask the client to cancel this task (from any thread).  The waiter
        gets SmbCancelledError; the server gets an SMB CANCEL."""
        client = self.context_client
        if client is None:
            self.cancel_requested = True
            return not self.done
        return client.cancel_task(self)

    def __repr__(self) -> str:
        return (f"<SmbTask cmd=0x{self.command:02x} mid={self.message_id} "
                f"state={self.state.value} gen={self.generation}>")
