"""Compatibility path: see :mod:`smblayer.transport.stats`."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.stats import (ClientStats, CommandStats, command_name, install_stats_signal,
                               snapshot_all, stats_path)

__all__ = ["ClientStats", "CommandStats", "command_name", "snapshot_all", "stats_path",
           "install_stats_signal"]
