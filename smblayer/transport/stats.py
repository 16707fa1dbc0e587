"""Per-command counters in the spirit of NFS mountstats.

Send-side counters are updated under the client's send lock and receive-side
ones by the demux thread alone, so no extra lock is taken on the hot path.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

from ..proto import smb1, smb2
from .registry import REGISTRY


class CommandStats:
    __slots__ = ("name", "ops", "errors", "retransmissions", "timeouts", "cancels",
                 "bytes_sent", "bytes_recv", "queue_time", "rtt", "exec_time")

    def __init__(self, name: str):
        self.name = name
        self.ops = self.errors = self.retransmissions = self.timeouts = self.cancels = 0
        self.bytes_sent = self.bytes_recv = 0
        self.queue_time = self.rtt = self.exec_time = 0.0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "name"}
        done = max(1, self.ops)
        d["avg_rtt_ms"] = 1000.0 * self.rtt / done
        d["avg_exec_ms"] = 1000.0 * self.exec_time / done
        return d


def command_name(is_smb1: bool, command: int) -> str:
    try:
        return (smb1.Command(command) if is_smb1 else smb2.Command(command)).name
    except ValueError:
        return f"0x{command:02x}"


class ClientStats:
    def __init__(self):
        self._commands: Dict[Tuple[bool, int], CommandStats] = {}
        self._smb1: Dict[int, CommandStats] = {}     # the same, by family
        self._smb2: Dict[int, CommandStats] = {}
        self.reconnects = 0
        self.keepalives = 0
        self.unmatched = 0
        self.not_responding_time = 0.0

    def command(self, wire, command: int) -> CommandStats:
        family = self._smb1 if wire.is_smb1 else self._smb2    # no key tuple per request
        stats = family.get(command)
        if stats is None:
            key = (wire.is_smb1, command)
            stats = self._commands.setdefault(key, CommandStats(command_name(*key)))
            family[command] = stats
        return stats

    def snapshot(self, extra: dict, not_responding_since: Optional[float], now: float) -> dict:
        result = {s.name: s.as_dict() for s in list(self._commands.values())}
        nr = self.not_responding_time
        if not_responding_since is not None:
            nr += now - not_responding_since
        result["_client"] = dict(extra, reconnects=self.reconnects,
                                 keepalives=self.keepalives,
                                 unmatched_replies=self.unmatched,
                                 not_responding_time=nr,
                                 not_responding=not_responding_since is not None)
        return result


def snapshot_all() -> dict:
    """``stats()`` of every live client of this process, keyed "host:port"."""
    result = {}
    for client in REGISTRY.clients():
        key = f"{client.host}:{client.port}"
        if key in result:
            key = f"{key}#{id(client):x}"
        result[key] = client.stats()
    return result


def stats_path(pid: int) -> str:
    import os
    import tempfile
    return os.path.join(tempfile.gettempdir(), f"smblayer-stats-{pid}.json")


def install_stats_signal(signum: Optional[int] = None) -> None:
    """On ``signum`` (default SIGUSR2) write :func:`snapshot_all` as JSON to
    ``stats_path(os.getpid())``: ``tools/smbstat.py --pid`` reads it live."""
    import json
    import os
    import signal

    def dump(_sig, _frame):
        path = stats_path(os.getpid())
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snapshot_all(), f)
        os.replace(tmp, path)
    signal.signal(signum if signum is not None else signal.SIGUSR2, dump)
