"""smblayer: a unified SMB transport layer for Python, modeled on sunrpc.

Public API (see DESIGN.md): ``get_client``, the policies, the dialects, the
errors, and the reference file client in :mod:`smblayer.fs`.

``import smblayer`` is cheap: each name below (and the subpackages ``fs``,
``rpc``, ``security``, ``proto``, ``cli``...) loads on first use (PEP 562),
so a command line or an application that needs a part pays only for it.
"""
from __future__ import annotations

import importlib

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing

__version__ = "0.2.0"

# public name -> the module (relative to this package) that defines it
_LAZY = {
    "get_client": "transport.client",
    "SmbClient": "transport.client", "ClientState": "transport.states",
    "BreakNotification": "transport.client",
    "Dialect": "config", "DialectRange": "config", "TimeoutPolicy": "config",
    "ReconnectPolicy": "config",
    "NegotiateResult": "proto.negotiate", "NtStatus": "proto.status",
    "SmbTask": "transport.task", "Reply": "transport.task", "TaskState": "transport.task",
    "SmbError": "errors", "SmbStatusError": "errors", "SmbConnectionError": "errors",
    "SmbTimeoutError": "errors", "SmbCancelledError": "errors", "SmbNegotiateError": "errors",
    "SmbAuthError": "errors", "SmbProtocolError": "errors", "SmbClosedError": "errors",
    "SmbMultichannelError": "errors",
}

__all__ = [
    "get_client", "SmbClient", "ClientState", "BreakNotification", "Dialect", "DialectRange",
    "TimeoutPolicy", "ReconnectPolicy", "NegotiateResult", "NtStatus", "SmbTask", "Reply",
    "TaskState", "SmbError", "SmbStatusError", "SmbConnectionError", "SmbTimeoutError",
    "SmbCancelledError", "SmbNegotiateError", "SmbAuthError", "SmbProtocolError",
    "SmbClosedError", "SmbMultichannelError",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None and not name.startswith("__"):
        # a subpackage or module (smblayer.fs, ...) on first attribute access
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:       # for type checkers and IDEs: the names as if imported eagerly
    from .transport.client import BreakNotification, SmbClient
    from .transport.states import ClientState
    from .config import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy
    from .errors import (SmbAuthError, SmbCancelledError, SmbClosedError, SmbConnectionError,
                         SmbError, SmbMultichannelError, SmbNegotiateError, SmbProtocolError,
                         SmbStatusError, SmbTimeoutError)
    from .proto.negotiate import NegotiateResult
    from .proto.status import NtStatus
    from .transport.client import get_client
    from .transport.task import Reply, SmbTask, TaskState
