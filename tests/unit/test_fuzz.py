"""Fuzz smoke pass and regression vectors (issue 26).

Every target of :mod:`smblayer.testing.fuzzing` replays its seed corpus and
the saved crash inputs, then runs a short deterministic mutation pass.  The
rule: a valid result or the parser's documented error, within the time
bound; anything else is a FuzzCrash.  The long, coverage-guided campaign is
``tools/fuzz.py --minutes N``.
"""
from __future__ import annotations

import random
import tracemalloc

import pytest

from smblayer.proto import smb2
from smblayer.testing import fuzzing

pytestmark = pytest.mark.timeout(120)

#: mutated inputs per target in the smoke pass (the whole pass takes a few seconds)
SMOKE_INPUTS = {"spnego": 40, "framing": 150}
DEFAULT_INPUTS = 300


@pytest.mark.parametrize("name", sorted(fuzzing.TARGETS))
def test_seed_corpus_obeys_the_rule(name):
    seeds = fuzzing.corpus(name)
    assert seeds, f"no seed corpus for {name}: run tools/fuzz.py --capture"
    target = fuzzing.TARGETS[name]
    results = [fuzzing.check(target, seed) for seed in seeds]
    assert any(results), f"no seed of {name} parses: the corpus does not reach the parser"


@pytest.mark.parametrize("name", sorted(fuzzing.TARGETS))
def test_smoke_pass(name):
    target = fuzzing.TARGETS[name]
    summary = fuzzing.smoke(target, SMOKE_INPUTS.get(name, DEFAULT_INPUTS),
                            seed=fuzzing.environment_seed())
    assert summary["inputs"] > 0


def test_regression_vectors():
    """Every saved crash input (tests/vectors/fuzz/<target>-<name>.bin) now
    obeys the rule, without a memory blow-up."""
    for target, name, data in fuzzing.regression_vectors():
        tracemalloc.start()
        try:
            fuzzing.check(fuzzing.TARGETS[target], data)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 32 * 1024 * 1024 + 64 * len(data), name


def test_the_rule_catches_a_crash():
    """The harness can fail: a parser raising IndexError breaks the rule, a
    documented error does not, and neither does a valid result."""
    def parse(data):
        if data == b"crash":
            return data[10]
        if data == b"bad":
            raise smb2.MalformedMessage("bad")
        return len(data)

    target = fuzzing.Target("demo", parse, (smb2.MalformedMessage,))
    assert fuzzing.check(target, b"fine") is True
    assert fuzzing.check(target, b"bad") is False
    with pytest.raises(fuzzing.FuzzCrash) as info:
        fuzzing.check(target, b"crash")
    assert isinstance(info.value.error, IndexError)
    assert info.value.data == b"crash"


def test_the_rule_catches_a_hang():
    def slow(data):
        import time
        time.sleep(0.05)

    with pytest.raises(fuzzing.FuzzCrash) as info:
        fuzzing.check(fuzzing.Target("slow", slow, ()), b"x", time_bound=0.01)
    assert info.value.error is None


def test_mutator_is_deterministic():
    seeds = fuzzing.corpus("smb2_header")
    a = [fuzzing.mutate(random.Random(1), s, seeds) for s in seeds]
    b = [fuzzing.mutate(random.Random(1), s, seeds) for s in seeds]
    assert a == b
    assert a != seeds


def test_every_target_has_a_documented_error():
    for target in fuzzing.TARGETS.values():
        assert target.allowed, target.name
        assert target.about, target.name
