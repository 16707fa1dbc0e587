"""smblayer: a unified SMB transport layer for Python, modeled on sunrpc.

Public API (see DESIGN.md): ``get_client``, the policies, the dialects, the
errors, and the reference file client in :mod:`smblayer.fs`.
"""
from .client import BreakNotification, ClientState, SmbClient
from .config import Dialect, DialectRange, ReconnectPolicy, TimeoutPolicy
from .errors import (SmbAuthError, SmbCancelledError, SmbClosedError, SmbConnectionError,
                     SmbError, SmbNegotiateError, SmbProtocolError, SmbStatusError,
                     SmbTimeoutError)
from .proto.negotiate import NegotiateResult
from .proto.status import NtStatus
from .registry import get_client
from .task import Reply, SmbTask, TaskState

__version__ = "0.2.0"

__all__ = [
    "get_client", "SmbClient", "ClientState", "BreakNotification", "Dialect", "DialectRange",
    "TimeoutPolicy", "ReconnectPolicy", "NegotiateResult", "NtStatus", "SmbTask", "Reply",
    "TaskState", "SmbError", "SmbStatusError", "SmbConnectionError", "SmbTimeoutError",
    "SmbCancelledError", "SmbNegotiateError", "SmbAuthError", "SmbProtocolError",
    "SmbClosedError",
]
