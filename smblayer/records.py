"""Plain value classes: what ``@dataclass`` gave, without its start-up cost.

Theory of operation.  A value class (a parsed header, a reply's fields, a
policy) subclasses :class:`Record` (or :class:`FrozenRecord` for an
immutable, hashable one), lists its fields in ``__slots__`` and writes its
own ``__init__``.  The base reads the fields from the ``__slots__`` of the
class and its bases (base fields first, the order ``__init__`` takes them),
once per class in ``__init_subclass__``, and from them gives what the
dataclass did: a ``Name(field=value, ...)`` repr (fields named in
``_hidden`` left out, e.g. a password), ``==`` on the class and its field
values, a hash for the frozen kind (``None`` for the mutable one), pickling,
and :func:`replace`.

Why not dataclasses: ``import dataclasses`` pulls in inspect, ast, dis and
tokenize, and each decorated class compiles and execs generated methods
(about 3 M instructions a class); a one-shot command loads some 35 of them
before it sends its first byte (issue 20).  A hand-written ``__init__`` is
also what the hot path wants: no ``field`` objects, no generated code.

A frozen class assigns its fields in ``__init__`` through ``_init`` (in
field order); afterwards any assignment raises ``AttributeError``, as a
frozen dataclass does.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, Tuple

__all__ = ["Record", "FrozenRecord", "replace"]

_set = object.__setattr__


class Record:
    """A mutable value class with repr, ``==`` and pickling from its slots."""

    __slots__ = ()
    _fields: Tuple[str, ...] = ()
    _hidden: Tuple[str, ...] = ()      # left out of the repr
    __hash__ = None                    # mutable: unhashable, as a dataclass with eq

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        cls._fields = cls._fields + tuple(s for s in slots if not s.startswith("__"))

    def _values(self) -> tuple:
        return tuple([getattr(self, name) for name in self._fields])

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields
                          if name not in self._hidden)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __reduce__(self):
        return type(self), self._values()


class FrozenRecord(Record):
    """An immutable, hashable value class (a ``frozen=True`` dataclass)."""

    __slots__ = ()

    def _init(self, *values: Any) -> None:
        """Assign the fields, in order (``__init__`` only)."""
        for name, value in zip(self._fields, values):
            _set(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(self._values())


def replace(record: Record, **changes: Any) -> Record:
    """A new record of the same class with ``changes`` applied (its
    ``__init__`` runs, validation included), like ``dataclasses.replace``."""
    values = dict(zip(record._fields, record._values()))
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(record).__qualname__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(record)(**values)
