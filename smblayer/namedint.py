"""Int enumerations that cost a class, not an enum.

Theory of operation: an ``enum.IntEnum`` class costs ~100 k instructions
per member to build (the enum machinery runs for each), and a one-shot
command builds every table of the protocol it imports: NtStatus alone (150
members) was ~7 % of a one-shot ``ls``.  A :class:`NamedInt` subclass is
written like an IntEnum (``NAME = value`` lines in its body) and decorated
with :func:`named_ints`, which turns those ints into instances of the class
-- ints with a ``name`` -- in one loop.  Where the layer and its users touch
them they behave as the IntEnum members did: ``Cls.NAME`` is an int equal to
its value, with ``.name`` and ``.value``; ``Cls(value)`` gives that same
object (ValueError for a value that is not a member), ``Cls["NAME"]``,
iteration in definition order, ``len``, ``in`` and ``__members__`` work;
repr is ``<Cls.NAME: value>``, str and format are the int's (as IntEnum's
since Python 3.11); members pickle and copy as themselves.  A value given
twice makes the second name an alias of the first member, as in an enum.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Dict, Iterator, Type, TypeVar
    T = TypeVar("T", bound="NamedInt")

__all__ = ["NamedInt", "named_ints"]


class NamedIntType(type):
    """The class-level protocol of an enum: iteration, len, ``in``, ``[name]``."""

    def __iter__(cls) -> Iterator[NamedInt]:
        return iter(cls._by_value.values())

    def __len__(cls) -> int:
        return len(cls._by_value)

    def __contains__(cls, value) -> bool:
        return isinstance(value, cls) or value in cls._by_value

    def __getitem__(cls, name: str) -> NamedInt:
        return cls._by_name[name]

    @property
    def __members__(cls) -> Dict[str, NamedInt]:
        return dict(cls._by_name)


class NamedInt(int, metaclass=NamedIntType):
    """An int with a name, member of its class's table (see the module's doc)."""

    _by_value: Dict[int, NamedInt] = {}
    _by_name: Dict[str, NamedInt] = {}

    def __new__(cls, value: int) -> NamedInt:
        """The member whose value is ``value`` (ValueError if none is)."""
        member = cls._by_value.get(value)
        if member is None:
            raise ValueError(f"{value!r} is not a valid {cls.__name__}")
        return member

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {int(self)}>"

    __str__ = int.__repr__
    __format__ = int.__format__

    def __reduce__(self):
        return type(self), (int(self),)

    def __copy__(self) -> NamedInt:
        return self

    def __deepcopy__(self, memo) -> NamedInt:
        return self


def named_ints(cls: Type[T]) -> Type[T]:
    """Class decorator: the class's upper-case int attributes become its
    members (instances of it, in definition order; the first name of a
    value wins, a later one is an alias)."""
    by_value: Dict[int, NamedInt] = {}
    by_name: Dict[str, NamedInt] = {}
    for name, value in list(vars(cls).items()):
        if type(value) is not int or not name.isupper():
            continue
        member = by_value.get(value)
        if member is None:
            member = int.__new__(cls, value)
            member.name = name
            by_value[value] = member
        by_name[name] = member
        setattr(cls, name, member)
    cls._by_value, cls._by_name = by_value, by_name
    return cls
