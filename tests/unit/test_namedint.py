"""smblayer.namedint: the enum protocol the layer's int tables keep."""
import copy
import pickle

import pytest

from smblayer.namedint import NamedInt, named_ints
from smblayer.proto import smb1, smb2
from smblayer.proto.status import NtStatus


@named_ints
class Color(NamedInt):
    RED = 1
    GREEN = 2
    VERT = 2            # an alias, as in an enum
    not_a_member = 3


def test_members_are_ints_with_names():
    assert Color.RED == 1 and isinstance(Color.RED, int) and isinstance(Color.RED, Color)
    assert Color.RED.name == "RED" and Color.RED.value == 1
    assert Color(2) is Color.GREEN is Color.VERT is Color["VERT"]
    assert Color.not_a_member == 3 and not isinstance(Color.not_a_member, Color)
    with pytest.raises(ValueError):
        Color(3)
    with pytest.raises(KeyError):
        Color["BLUE"]


def test_class_protocol():
    assert list(Color) == [Color.RED, Color.GREEN] and len(Color) == 2
    assert 1 in Color and Color.GREEN in Color and 3 not in Color
    assert Color.__members__ == {"RED": Color.RED, "GREEN": Color.GREEN, "VERT": Color.GREEN}


def test_repr_str_format_hash_pickle_copy():
    member = NtStatus.ACCESS_DENIED
    assert repr(member) == "<NtStatus.ACCESS_DENIED: 3221225506>"
    assert str(member) == f"{member}" == "3221225506" and f"{member:#x}" == "0xc0000022"
    assert {0xC0000022: "x"}[member] == "x"
    assert pickle.loads(pickle.dumps(member)) is member
    assert copy.copy(member) is member and copy.deepcopy(member) is member


def test_the_protocol_tables():
    assert smb2.Command(8) is smb2.Command.READ and smb2.Command.READ.name == "READ"
    assert smb2.ContextType.SIGNING_CAPABILITIES == 8
    assert smb1.Command["CLOSE"] == 4 and len(smb1.Command) == 23
    assert NtStatus.coerce(0xC0000022) is NtStatus.ACCESS_DENIED
    assert NtStatus.coerce(0xC0DE0001) == 0xC0DE0001 and type(NtStatus.coerce(0xC0DE0001)) is int
    assert len(NtStatus) == 150
