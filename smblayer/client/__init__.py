"""Compatibility path: see :mod:`smblayer.transport.client`."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.client import (CLOSE_WAIT, EXIT_WAIT, MAX_SENDS, STAGE_HANDLE, STAGE_OTHER,
                                STAGE_SESSION, STAGE_TREE, TEARDOWN_WAIT, BreakNotification,
                                SmbClient)
from ..transport.states import CLIENT_TRANSITIONS, ClientState

__all__ = ["SmbClient", "BreakNotification", "ClientState", "CLIENT_TRANSITIONS",
           "STAGE_SESSION", "STAGE_TREE", "STAGE_HANDLE", "STAGE_OTHER",
           "MAX_SENDS", "CLOSE_WAIT", "TEARDOWN_WAIT", "EXIT_WAIT"]
