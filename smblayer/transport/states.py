"""The client's states and its transition table (the h11 way): every move
goes through ``SmbClient._move``, which rejects one this table does not list.
In a module of its own so the modules of each role (connect, probe) can
name the states without importing the client."""
from __future__ import annotations

import enum


class ClientState(enum.Enum):
    CONNECTING = "connecting"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


_C = ClientState
#: state -> the states the client may move to from there
CLIENT_TRANSITIONS = {
    _C.CONNECTING: frozenset({_C.ACTIVE, _C.CLOSED}),
    _C.ACTIVE: frozenset({_C.RECONNECTING, _C.CLOSED}),
    _C.RECONNECTING: frozenset({_C.ACTIVE, _C.CLOSED}),
    _C.CLOSED: frozenset(),
}
del _C
