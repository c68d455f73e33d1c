"""The training loop end to end (SPEC §1.10): golden values per step and `expect.tolerance`, per-step data,
`unsupported` naming the setting, and each new catalogued divergence shown by its case: marked, an xfail;
unmarked, a failure."""
import dataclasses
import os

import numpy as np
import pytest

from gradconf import adapters
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.case import Golden
from gradconf.divergences import expectation
from gradconf.loader import load_file
from gradconf.runner import Runner
from tests.conftest import ROOT
from tests.planted import Copy


def _case(*parts):
    (case,) = load_file(os.path.join(ROOT, "cases", *parts))
    return case


def _golden_records(case):
    return [r for r in Runner(NumpyReference(), []).run_case(case).records if r.reference == "expected"]


def test_every_step_of_an_upstream_golden_is_compared_at_its_own_line():
    case = _case("upstream", "keras_adagrad_golden.yaml")
    records = _golden_records(case)
    assert sorted({r.step for r in records}) == [1, 2, 3, 4, 5] and {r.status for r in records} == {"pass"}
    assert len({r.line for r in records}) == 5  # each step's entry names its own line
    assert {(r.rtol, r.atol) for r in records} == {(5e-4, 5e-4)}  # expect.tolerance, exactly as written


def test_a_golden_value_off_by_more_than_its_stated_tolerance_fails():
    case = _case("upstream", "keras_adagrad_golden.yaml")
    g = case.expect.at[2]  # step 3's parameter
    wrong = dataclasses.replace(g, value=g.value + np.where(np.arange(g.value.size) == 4, 2e-3, 0.0).reshape(
        g.value.shape))
    bad = dataclasses.replace(case, expect=dataclasses.replace(case.expect, at=(*case.expect.at[:2], wrong,
                                                                                *case.expect.at[3:])))
    failing = [r for r in _golden_records(bad) if r.status == "fail"]
    assert [(r.step, r.tensor, r.worst_index) for r in failing] == [(3, "x.weight", [4, 0])]
    assert failing[0].line == case.line_of(*g.path)


def test_expect_tolerance_leaves_the_framework_comparisons_to_the_policy():
    case = _case("upstream", "keras_sgd_golden.yaml")
    records = Runner(NumpyReference(), [Copy()]).run_case(case).records
    vs_reference = [r for r in records if r.framework == "copy" and r.reference == "numpy" and r.quantity == "param"]
    vs_golden = [r for r in records if r.framework == "copy" and r.reference == "expected"]
    assert vs_reference and all(r.atol < 1e-4 and r.rtol < 1e-4 for r in vs_reference)  # the float32 policy
    assert vs_golden and {(r.rtol, r.atol) for r in vs_golden} == {(5e-4, 5e-4)}


def test_without_its_stated_tolerance_a_four_decimal_golden_fails():
    case = _case("upstream", "keras_nadam_golden.yaml")
    strict = dataclasses.replace(case, expect=dataclasses.replace(case.expect, tolerance=None))
    assert {r.status for r in _golden_records(case)} == {"pass"}
    assert "fail" in {r.status for r in _golden_records(strict)}


def test_per_step_data_drives_each_step():
    case = _case("conventions", "per_step_input_and_target.yaml")
    trace = NumpyReference().run(case, __import__("gradconf.tensors", fromlist=["x"]).materialize(case))
    assert [float(s.loss) for s in trace.steps] == [4.0, 4.0]
    assert [float(s.grads["w.weight"][0, 0]) for s in trace.steps] == [-4.0, 8.0]
    assert isinstance(case.expect.at[0], Golden)


@pytest.mark.parametrize("framework,case,setting", [
    ("tensorflow", ("conventions", "sgd_dampening_skips_first_step.yaml"), "dampening"),
    ("jax", ("conventions", "sgd_dampening_skips_first_step.yaml"), "dampening"),
    ("jax", ("conventions", "clip_norm_per_param.yaml"), "norm_per_param"),
])
def test_a_setting_a_framework_cannot_be_configured_to_is_unsupported_by_name(framework, case, setting):
    adapter = adapters.builtin(framework)
    if adapter.missing():
        pytest.skip(adapter.missing())
    records = Runner(NumpyReference(), [adapter]).run_case(_case(*case)).records
    (note,) = [r for r in records if r.framework == framework]
    assert note.status == "unsupported" and setting in note.message


# (framework, case file, id): each new catalogue entry's case shows it on this framework
SHOWN = [("tensorflow", ("conventions", "rmsprop_eps_outside_root.yaml"), "TF-RMSPROP-EPS"),
         ("tensorflow", ("upstream", "keras_rmsprop_golden.yaml"), "TF-RMSPROP-EPS"),
         ("tensorflow", ("conventions", "adagrad_initial_accumulator_is_zero.yaml"), "TF-ADAGRAD-EPS"),
         ("jax", ("conventions", "adagrad_initial_accumulator_is_zero.yaml"), "JAX-ADAGRAD-EPS"),
         ("tensorflow", ("conventions", "nadam_momentum_decay.yaml"), "TF-NADAM"),
         ("jax", ("conventions", "nadam_momentum_decay.yaml"), "JAX-NADAM"),
         ("tensorflow", ("conventions", "cosine_rises_past_t_max.yaml"), "COSINE-CLAMP"),
         ("jax", ("conventions", "cosine_rises_past_t_max.yaml"), "COSINE-CLAMP"),
         ("tensorflow", ("conventions", "cross_entropy_weight_with_smoothing.yaml"), "CE-WEIGHT-SMOOTHING"),
         ("jax", ("conventions", "cross_entropy_weight_with_smoothing.yaml"), "CE-WEIGHT-SMOOTHING"),
         ("tensorflow", ("conventions", "clip_compares_the_unclipped_gradient.yaml"), "CLIPNORM-EPS"),
         ("jax", ("conventions", "clip_compares_the_unclipped_gradient.yaml"), "CLIPNORM-EPS"),
         ("torch", ("conventions", "clip_norm_per_param.yaml"), "TORCH-CLIPNORM-EPS")]


@pytest.mark.parametrize("framework,where,entry", SHOWN, ids=[f"{e}-{f}" for f, _, e in SHOWN])
def test_a_new_divergence_is_an_xfail_marked_and_a_failure_unmarked(framework, where, entry):
    adapter = adapters.builtin(framework)
    if adapter.missing():
        pytest.skip(adapter.missing())
    case = _case(*where)
    assert entry in case.xfail[framework] and expectation(case, framework).applies
    runner = Runner(NumpyReference(), [adapter])
    marked = {r.status for r in runner.run_case(case).records if r.framework == framework}
    unmarked = [r for r in runner.run_case(dataclasses.replace(case, xfail={})).records if r.framework == framework]
    assert "xfail" in marked and not marked & {"fail", "xpass", "error"}
    assert "fail" in {r.status for r in unmarked}
    assert entry in adapter.known_divergences(case)
