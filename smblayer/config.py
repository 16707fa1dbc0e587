"""Frozen policy objects: which dialects, how to time out, how to reconnect.

Policies replace loose keyword arguments (the urllib3 way): they are
immutable, hashable (part of the shared-client key) and validated when built,
so a bad value raises before anything is sent.
"""
from __future__ import annotations

import enum
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Optional

from .records import FrozenRecord, replace


class Dialect(enum.IntEnum):
    """SMB dialects, ordered by version. The value is the wire DialectRevision
    (SMB1 has none on the wire; 0x0100 only orders it below SMB 2.0.2)."""

    SMB1 = 0x0100
    SMB2_0_2 = 0x0202
    SMB2_1 = 0x0210
    SMB3_0 = 0x0300
    SMB3_0_2 = 0x0302
    SMB3_1_1 = 0x0311

    @property
    def is_smb1(self) -> bool:
        return self is Dialect.SMB1

    @property
    def is_smb3(self) -> bool:
        return self >= Dialect.SMB3_0

    @classmethod
    def _missing_(cls, value):
        """``Dialect("2.1")``: a dialect from its name (see ``parse``)."""
        if isinstance(value, str):
            return cls.parse(value)
        return None

    @classmethod
    def parse(cls, text: str) -> "Dialect":
        """'3.1.1', '3.11', '2.1', '2.0.2', '2.02', 'NT1', 'NT LM 0.12',
        'SMB3_11', 'SMB2_1', 'SMB3_1_1' ... -> Dialect; ValueError otherwise."""
        key = text.strip().lower().replace(" ", "")
        dialect = _DIALECT_NAMES.get(key)
        if dialect is None:
            dialect = cls.__members__.get(text.strip().upper())
        if dialect is None:
            raise ValueError(f"unknown dialect {text!r} (use NT1, 2.0.2, 2.1, 3.0, 3.0.2 "
                             f"or 3.1.1)")
        return dialect

    def __str__(self) -> str:
        if self is Dialect.SMB1:
            return "NT LM 0.12"
        v = int(self)
        return f"{v >> 8}.{(v >> 4) & 0xF}.{v & 0xF}"


_DIALECT_NAMES = {
    "nt1": Dialect.SMB1, "smb1": Dialect.SMB1, "ntlm0.12": Dialect.SMB1, "1": Dialect.SMB1,
    "2.0.2": Dialect.SMB2_0_2, "2.02": Dialect.SMB2_0_2, "2": Dialect.SMB2_0_2,
    "2.0": Dialect.SMB2_0_2, "smb2": Dialect.SMB2_0_2, "smb2_02": Dialect.SMB2_0_2,
    "2.1": Dialect.SMB2_1, "2.10": Dialect.SMB2_1, "smb2_10": Dialect.SMB2_1,
    "3.0": Dialect.SMB3_0, "3": Dialect.SMB3_0, "3.00": Dialect.SMB3_0,
    "smb3": Dialect.SMB3_0, "smb3_00": Dialect.SMB3_0,
    "3.0.2": Dialect.SMB3_0_2, "3.02": Dialect.SMB3_0_2, "smb3_02": Dialect.SMB3_0_2,
    "3.1.1": Dialect.SMB3_1_1, "3.11": Dialect.SMB3_1_1, "smb3_11": Dialect.SMB3_1_1,
}


class DialectRange(FrozenRecord):
    """The dialects the caller accepts, inclusive: ``DialectRange(min, max)``;
    each bound a Dialect or a name such as "2.1" or "3.1.1"."""

    __slots__ = ("min", "max")

    def __init__(self, min: Dialect = Dialect.SMB2_0_2, max: Dialect = Dialect.SMB3_1_1) -> None:
        self._init(min, max)
        self.__post_init__()

    def __post_init__(self):
        for name in ("min", "max"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = Dialect.parse(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"DialectRange.{name} must be a Dialect or a dialect "
                                f"name like '3.1.1', not {value!r}")
            object.__setattr__(self, name, Dialect(value))
        if self.min > self.max:
            raise ValueError(f"DialectRange: min {self.min.name} > max {self.max.name}")

    def __contains__(self, dialect: object) -> bool:
        return isinstance(dialect, int) and self.min <= dialect <= self.max

    def smb2_dialects(self) -> list:
        """The SMB2+ dialects in range, highest first."""
        return [d for d in sorted(Dialect, reverse=True) if d in self and not d.is_smb1]


class TimeoutPolicy(FrozenRecord):
    """Per-request timer policy (sunrpc's rpc_timeout plus hard/soft).

    ``timeout``: seconds without a reply before the layer probes with ECHO.
    ``echo_interval``: seconds between probes (at most one outstanding).
    ``soft_timeout``: soft mode only; seconds of unanswered probing before the
    layer disconnects, reconnects and, if that fails, raises SmbTimeoutError.
    ``connect_timeout``: bound on one TCP connect + negotiate attempt;
    default min(10 s, timeout + soft_timeout).
    ``keepalive``: an idle connection sends an ECHO this often (cifs: 60 s).

    A soft request fails no later than ``soft_bound`` seconds after it was
    first sent (timeout + soft_timeout + connect_timeout), however many
    reconnects happen in between; without a reconnect, timeout +
    soft_timeout, even while the server answers ECHO (an interim reply
    restarts the clock once; a long-poll request the server acknowledged is
    exempt).  Hard requests wait as long as it takes.
    """

    __slots__ = ("mode", "timeout", "echo_interval", "soft_timeout", "connect_timeout",
                 "keepalive")

    def __init__(self, mode: str = "soft", timeout: float = 10.0, echo_interval: float = 2.0,
                 soft_timeout: float = 30.0, connect_timeout: Optional[float] = None,
                 keepalive: float = 60.0) -> None:
        self._init(mode, timeout, echo_interval, soft_timeout, connect_timeout, keepalive)
        self.__post_init__()

    def __post_init__(self):
        if self.mode not in ("hard", "soft"):
            raise ValueError(f"TimeoutPolicy.mode must be 'hard' or 'soft', not {self.mode!r}")
        if self.connect_timeout is None and isinstance(self.timeout, (int, float)) and \
                isinstance(self.soft_timeout, (int, float)):
            object.__setattr__(self, "connect_timeout",
                               min(10.0, self.timeout + self.soft_timeout))
        for name in ("timeout", "echo_interval", "soft_timeout", "connect_timeout",
                     "keepalive"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"TimeoutPolicy.{name} must be a number, not {value!r}")
            if value <= 0:
                raise ValueError(f"TimeoutPolicy.{name} must be > 0, not {value!r}")

    @property
    def hard(self) -> bool:
        return self.mode == "hard"

    @property
    def soft_bound(self) -> float:
        """Soft mode: the most a request may take from its first send."""
        return self.timeout + self.soft_timeout + self.connect_timeout

    def with_(self, **changes) -> "TimeoutPolicy":
        return replace(self, **changes)


class ReconnectPolicy(FrozenRecord):
    """Backoff for the connect worker: ``initial_delay`` doubling up to
    ``max_delay``; ``max_attempts`` (None = forever) gives up after that many
    failed attempts in a row, failing the waiting requests.  ``jitter``
    spreads each delay by up to that fraction either way, so many clients
    cut off together do not come back in lock step."""

    __slots__ = ("initial_delay", "max_delay", "max_attempts", "jitter")

    def __init__(self, initial_delay: float = 0.1, max_delay: float = 30.0,
                 max_attempts: Optional[int] = None, jitter: float = 0.1) -> None:
        self._init(initial_delay, max_delay, max_attempts, jitter)
        self.__post_init__()

    def __post_init__(self):
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("ReconnectPolicy: need 0 <= initial_delay <= max_delay")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("ReconnectPolicy.max_attempts must be >= 1 or None")
        if not 0 <= self.jitter < 1:
            raise ValueError("ReconnectPolicy.jitter must be in [0, 1)")

    def delays(self):
        """Yield the successive delays before each reconnect attempt."""
        from random import random as _random    # here: a one-shot command never reconnects
        delay = self.initial_delay
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay * (1.0 + self.jitter * (2.0 * _random() - 1.0))
            attempt += 1
            delay = min(self.max_delay, max(delay * 2, 0.05))
