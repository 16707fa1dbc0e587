"""smblayer.records: the plain value classes give what the dataclasses gave
(repr, ==, hash for the frozen kind, immutability, pickling, replace)."""
import pickle

import pytest

from smblayer.cli.connections import Credentials
from smblayer.config import DialectRange, TimeoutPolicy
from smblayer.proto.info import AllInformation
from smblayer.proto.negotiate import NegotiateResult
from smblayer.records import replace


def test_repr_eq_and_hash():
    policy = TimeoutPolicy(mode="hard", timeout=5)
    assert repr(policy) == ("TimeoutPolicy(mode='hard', timeout=5, echo_interval=2.0, "
                            "soft_timeout=30.0, connect_timeout=10.0, keepalive=60.0)")
    assert policy == TimeoutPolicy(mode="hard", timeout=5) != TimeoutPolicy()
    assert hash(policy) == hash(TimeoutPolicy(mode="hard", timeout=5))
    assert len({DialectRange("2.1", "3.0"), DialectRange("2.1", "3.0")}) == 1
    with pytest.raises(TypeError):
        hash(NegotiateResult(dialect=0))          # mutable: unhashable, as with eq=True


def test_hidden_fields_stay_out_of_the_repr():
    assert "hunter2" not in repr(Credentials("bob", "hunter2"))
    assert "negotiate_messages" not in repr(NegotiateResult(dialect=0, negotiate_messages=[b"x"]))


def test_frozen_records_refuse_assignment():
    policy = TimeoutPolicy()
    with pytest.raises(AttributeError):
        policy.timeout = 1.0
    with pytest.raises(AttributeError):
        del policy.mode


def test_subclass_fields_follow_the_base_fields():
    info = AllInformation(1, 2, 3, 4, 5, 6, 7, links=2)
    assert info.end_of_file == 6 and info.links == 2 and not info.directory
    assert info == AllInformation(1, 2, 3, 4, 5, 6, 7, 2)
    assert repr(info).startswith("AllInformation(creation_time=1, ")


def test_pickle_and_replace():
    for record in (TimeoutPolicy(timeout=3), AllInformation(1, 2, 3, 4, 5, 6, 7),
                   NegotiateResult(dialect=0, request_dialects=[0x311])):
        assert pickle.loads(pickle.dumps(record)) == record
    assert replace(TimeoutPolicy(), timeout=4.0).timeout == 4.0
    with pytest.raises(ValueError):
        replace(TimeoutPolicy(), mode="sometimes")     # __init__ validates again
    with pytest.raises(TypeError):
        replace(TimeoutPolicy(), bogus=1)
    assert NegotiateResult(dialect=0).request_dialects == []     # a fresh list each
    assert NegotiateResult(dialect=0).request_dialects is not \
        NegotiateResult(dialect=0).request_dialects
