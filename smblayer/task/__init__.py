"""Compatibility path: see :mod:`smblayer.transport.task`."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.task import (FINAL_STATES, IN_FLIGHT, TRANSITIONS, IllegalTransition, Reply,
                              SmbTask, TaskState, can_move, move)

__all__ = ["SmbTask", "Reply", "TaskState", "TRANSITIONS", "FINAL_STATES", "IN_FLIGHT",
           "IllegalTransition", "move", "can_move"]
