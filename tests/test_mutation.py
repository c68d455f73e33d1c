"""Checks that can fail, shown: the mutation suite, exact max-pool ties and golden values."""
import dataclasses
import os

import numpy as np
import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.case import Expect, Pool2d
from gradconf.loader import load_paths
from gradconf.runner import CaseResult, Runner
from tests import mutation
from tests.conftest import ROOT
from tests.planted import MUTANTS
from tests.planted_layers import MaxPoolLastMax, MaxPoolSpreadTies


@pytest.fixture(scope="module")
def bundled():
    cases, errors = load_paths([os.path.join(ROOT, "cases")], None)  # the files' own counts, as CI runs them
    assert not errors
    return cases


def test_every_planted_bug_is_caught_by_two_bundled_cases_and_the_control_by_none(bundled):
    assert len(MUTANTS) >= 34 and len({m.name for m in MUTANTS}) == len(MUTANTS)
    score = mutation.score(bundled, need=2)
    assert score.missed(2) == [], {m: score.caught[m] for m in score.missed(2)}
    assert score.control_failures == []


def test_the_control_fails_no_bundled_case(bundled):
    """The control over every bundled case (the score stops visiting once every bug is caught)."""
    sample = mutation.visiting_order(bundled)[::4]
    assert mutation.score(sample, need=10 ** 6, mutants=[]).control_failures == []


def test_the_mutation_command_prints_the_score(capsys):
    assert mutation.main([os.path.join(ROOT, "cases", "examples"), os.path.join(ROOT, "cases", "conventions")]) == 1
    out = capsys.readouterr().out
    assert "mutation score: " in out and "MISSED" in out and "control (copy): 0 failing" in out


def _tie_bearing(cases):
    """Cases where the reference's gradients change when max-pool routes to the last maximum: an exact tie
    of maxima in a window that receives a gradient."""
    reference, last = NumpyReference(), MaxPoolLastMax()
    runner = Runner(reference, [])
    found = []
    for case in cases:
        if not any(isinstance(L, Pool2d) and L.kind == "max" for L in case.layers):
            continue
        initial = runner.reference_trace(case, CaseResult(case)).initial
        a, b = reference.run(case, initial), last.run(case, initial)
        # at step 1, where the case's data put the tie; a tie a later step's rounding makes (graph_resnet[5],
        # float32) moves the gradients by rounding only, which no allowance can tell from the frameworks'
        if any(not np.array_equal(a.steps[0].grads[k], b.steps[0].grads[k]) for k in a.steps[0].grads):
            found.append((case, a))
    return found


def test_every_bundled_case_with_max_pool_ties_fails_last_max_and_spread_ties(bundled):
    tied = _tie_bearing(bundled)
    assert len(tied) >= 20 and {"pool_ties", "pool_ties_f32"} <= {c.id for c, _ in tied}
    runner = Runner(NumpyReference(), [MaxPoolLastMax(), MaxPoolSpreadTies()])
    missed = []
    for case, _ in tied:
        failing = {r.framework for r in runner.run_case(case).records if r.status == "fail"}
        missed += [(case.id, name) for name in (MaxPoolLastMax.name, MaxPoolSpreadTies.name) if name not in failing]
    assert missed == []


def test_a_golden_max_pool_gradient_changed_by_one_fails(bundled):
    """The reference is held to golden values at its own rounding level: no conditioning slack."""
    runner = Runner(NumpyReference(), [])
    for case, trace in _tie_bearing(bundled):
        g = trace.steps[0].grads["input"]
        for golden, verdict in ((g, "pass"), (g + np.where(np.arange(g.size).reshape(g.shape) == np.argmax(np.abs(g)),
                                                              1.0, 0.0), "fail")):
            marked = dataclasses.replace(case, expect=Expect(grad={"input": golden}), xfail={})
            (record,) = [r for r in runner.run_case(marked).records if r.reference == "expected"]
            assert record.status == verdict, (case.id, verdict, record.message)
