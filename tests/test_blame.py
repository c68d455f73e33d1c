"""Weighed blame (harness/blame.py, harness/verdict.py): agreement among the frameworks, and a reference
that nothing else backs recomputed in long double before anyone is blamed."""
import numpy as np
import pytest

from gradconf import blame
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.runner import Runner
from gradconf.tensors import materialize
from gradconf.verdict import who_is_wrong
from tests.conftest import make_case


class Scaled(NumpyReference):
    """The reference's math with its input gradient scaled: factor 1 conforms."""
    def __init__(self, name, factor):
        self.name, self.factor = name, factor

    def run(self, case, initial):
        return self._scaled(super().run(case, initial))

    def run_rounded(self, case, initial, rounding):  # the conditioning runs see the same math
        return self._scaled(super().run_rounded(case, initial, rounding))

    def _scaled(self, trace):
        for s in trace.steps:
            s.grads["input"] = self.factor * s.grads["input"]
        return trace


class Float32Reference(NumpyReference):
    """A planted reference bug: its results rounded to float32 in a float64 case."""
    def run(self, case, initial):
        return self._rounded(super().run(case, initial))

    def run_rounded(self, case, initial, rounding):  # the conditioning runs see the same bug; run_precise not
        return self._rounded(super().run_rounded(case, initial, rounding))

    @staticmethod
    def _rounded(trace):
        for s in trace.steps:
            s.loss, s.output = np.float64(np.float32(s.loss)), s.output.astype(np.float32).astype(np.float64)
            s.grads = {k: v.astype(np.float32).astype(np.float64) for k, v in s.grads.items()}
        return trace


def _case():
    return make_case(input=[[0.3, -1.7, 2.2]], model=[{"dense": {"name": "fc", "out_features": 2, "weight": [
        [0.11, -0.7, 0.35], [1.3, 0.2, -0.45]], "bias": [0.1, -0.2]}}, {"tanh": {}}],
        loss={"mse": {"target": [[0.5, -0.25]]}}, dtype="float64")


def _run(reference, frameworks):
    case = _case()
    records = Runner(reference, frameworks).run_case(case).records
    return records, who_is_wrong(records, reference.name)


def _rechecked(records):
    return [r for r in records if r.reference == blame.HIGH]


def test_a_framework_alone_departing_from_a_consensus_is_named():
    records, verdict = _run(NumpyReference(), [Scaled("a", 1.0), Scaled("b", 1.0), Scaled("odd", 1.5)])
    assert verdict.startswith("odd alone departs from the consensus of a, b, which match(es) the reference")
    assert not _rechecked(records)  # two frameworks back the reference: no question to recheck
    (bad,) = [r for r in records if r.status == "fail"]
    assert bad.framework == "odd" and bad.tensor == "input" and bad.agrees == ""  # nobody fails with it


def test_frameworks_that_fail_alike_are_one_bloc_and_the_reference_that_stands_is_said_to():
    records, verdict = _run(NumpyReference(), [Scaled("a", 2.0), Scaled("b", 2.0), Scaled("c", 2.0)])
    assert {r.agrees for r in records if r.status == "fail"} == {"b, c", "a, c", "a, b"}
    assert _rechecked(records) and {r.status for r in _rechecked(records)} == {"pass"}
    assert verdict.startswith("a, b, c agree with each other, not with the reference, which recomputed in long "
                              "double stands")


def test_frameworks_that_fail_apart_are_not_a_bloc():
    records, verdict = _run(NumpyReference(), [Scaled("a", 2.0), Scaled("b", 3.0), Scaled("c", 1.0)])
    assert {r.agrees for r in records if r.status == "fail"} == {""}
    assert verdict.startswith("a, b: differs from the reference, which c match(es) and which recomputed in long "
                              "double stands")
    records, verdict = _run(NumpyReference(), [Scaled("a", 2.0), Scaled("b", 3.0)])
    assert verdict.startswith("a, b: depart(s) from the reference and from each other, which recomputed in long "
                              "double stands")


def test_a_reference_nobody_backs_is_recomputed_and_blamed_when_it_moves():
    records, verdict = _run(Float32Reference(), [Scaled("a", 1.0), Scaled("b", 1.0), Scaled("c", 1.0)])
    assert any(r.status == "fail" for r in _rechecked(records))
    assert verdict.startswith("the reference: recomputed in long double it moves beyond its allowance")
    assert "a, b, c may be right" in verdict


def test_a_known_divergence_is_no_question_for_the_recheck():
    case = make_case(input=[[0.3, -1.7, 2.2]], model=[{"dense": {"name": "fc", "out_features": 2}}],
                     loss={"sum": {}}, dtype="float64", xfail={"a": "planted: scaled input gradient"})
    records = Runner(NumpyReference(), [Scaled("a", 2.0)]).run_case(case).records
    assert {r.status for r in records if r.framework == "a" and r.tensor == "input"} == {"xfail"}
    assert not _rechecked(records)


def test_long_double_is_more_precise_than_the_float64_reference():
    """The recheck really is in higher precision: 1e16 + 1 − 1e16 is 0 in float64 and 1 in long double
    (on x86-64; where long double is float64 it is only a second float64 run, and this says so)."""
    case = make_case(input=[[1e16, 1.0, -1e16]], model=[{"sum": {}}], loss={"sum": {}}, dtype="float64")
    high = NumpyReference().run_precise(case, materialize(case))
    assert high.steps[0].output.dtype == np.longdouble
    if np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("long double is float64 on this platform")
    assert high.steps[0].output == 1 and NumpyReference().run(case, materialize(case)).steps[0].output == 0


@pytest.mark.parametrize("folder", ["cases/examples", "cases/layers", "cases/conventions"])
def test_the_long_double_run_keeps_its_precision_through_every_layer(root, folder):
    from gradconf.loader import load_paths
    cases, errors = load_paths([f"{root}/{folder}"], 1)
    assert cases and not errors
    for case in cases:
        trace = NumpyReference().run_precise(case, materialize(case))
        arrays = [trace.steps[-1].loss, trace.steps[-1].output, *trace.steps[-1].grads.values(),
                  *trace.steps[-1].params.values()]
        assert {np.asarray(a).dtype for a in arrays} == {np.dtype(np.longdouble)}, case.id


def test_one_framework_and_a_reference_recheck_when_they_differ():
    records, verdict = _run(NumpyReference(), [Scaled("a", 2.0)])
    assert _rechecked(records)
    assert verdict.startswith("a: depart(s) from the reference, which recomputed in long double stands")
