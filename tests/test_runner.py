"""The runner's verdicts: wrong adapters are caught, correct ones pass, and nothing is lost."""
import dataclasses
import os

import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters import Unsupported
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.case import Conv2d, ConvTranspose2d
from gradconf.protocol import Rounding
from gradconf.loader import load_paths
from gradconf import reference as reference_module
from gradconf.runner import FAILING, CaseResult, Runner
from tests.conftest import ROOT, make_case
from tests.planted import WrongTanhDerivative
from tests.planting import Planted, _patched, _wrap_backward, swap


class FlippedKernelGradient(NumpyReference):
    """A classic hand-backprop bug: the conv weight gradient computed with the kernel flipped."""
    name = "flipped"

    def run(self, case, initial):
        trace = super().run(case, initial)
        for step in trace.steps:
            for L in case.layers:
                if type(L) is Conv2d:
                    g = step.grads[f"{L.name}.weight"]
                    step.grads[f"{L.name}.weight"] = g[..., ::-1, ::-1].copy()
        return trace


class Scripted(NumpyReference):
    """The reference, with one thing done to its result."""
    def __init__(self, name, change):
        self.name, self.change = name, change

    def run(self, case, initial):
        trace = super().run(case, initial)
        self.change(trace)
        return trace


def _bundled(count=None):
    cases, errors = load_paths([os.path.join(ROOT, "cases")], count)
    assert not errors
    return cases


def _has_real_conv(case):  # a 1x1 kernel is its own flip: the bug is not a bug there
    return any(type(L) is Conv2d and L.kernel_size != (1, 1) for L in case.layers)


def test_flipped_kernel_gradient_is_caught_on_every_bundled_conv_case():
    """Every dtype, every family, every fixed case with a real conv — except the few random variants
    whose conv gradient is exactly zero (a saturated or dead network), where no bug can show, and the
    cases tagged `near_tie`, built around a max-pool window whose routing, and so the conv gradient,
    the dtype's precision leaves undetermined (the allowance there is as wide as a flipped kernel)."""
    runner = Runner(NumpyReference(), [FlippedKernelGradient()])
    near_ties = [c for c in _bundled() if _has_real_conv(c) and "near_tie" in c.tags]
    assert len(near_ties) <= 2
    conv_cases = [c for c in _bundled() if _has_real_conv(c) and "near_tie" not in c.tags]
    assert len(conv_cases) > 300
    missed, degenerate = [], []
    for case in conv_cases:
        result = runner.run_case(case)
        bad = [r for r in result.records if r.framework == "flipped" and r.status == "fail" and r.quantity == "grad"
               and r.tensor.endswith(".weight")]
        if not bad:
            ref = runner.reference_trace(case, result)
            grads = [ref.trace.steps[0].grads[f"{L.name}.weight"] for L in case.layers if type(L) is Conv2d]
            (degenerate if all(not np.any(g) for g in grads) else missed).append(case.id)
    assert missed == []
    assert len(degenerate) <= 0.01 * len(conv_cases), degenerate


def test_correct_float32_run_over_1000_random_networks_has_no_failures():
    torch_adapter = pytest.importorskip("gradconf.adapters.torch_adapter")
    pytest.importorskip("torch")
    runner = Runner(NumpyReference(), [torch_adapter.TorchAdapter()])
    families = ["conv2d.yaml", "pool2d.yaml", "nets.yaml", "nets_momentum_f32.yaml"]  # the float32-capable ones
    cases = []
    for f in families:
        cases += load_paths([os.path.join(ROOT, "cases", "families", f)], 600)[0]
    cases = [c for c in cases if c.dtype == "float32"][:1000]
    assert len(cases) == 1000
    failures = [r for c in cases for r in runner.run_case(c).records if r.status in FAILING]
    assert failures == []


def _simple(**extra):
    return make_case(input={"shape": [2, 3]}, model=[{"dense": {"name": "fc", "out_features": 2}}],
                     loss={"mse": {"target": 0.0}}, optimizer={"sgd": {"lr": 0.1}}, steps=2, dtype="float64", **extra)


def _statuses(records, fw):
    return {r.status for r in records if r.framework == fw}


def test_isolation_errors_nan_unsupported_and_missing():
    def boom(trace):
        raise RuntimeError("kernel exploded")

    def nan(trace):
        trace.steps[1].grads["fc.weight"][0, 0] = np.nan

    class Cannot(NumpyReference):
        name = "cannot"

        def run(self, case, initial):
            raise Unsupported("no such layer here")

    class Absent(NumpyReference):
        name = "absent"

        def missing(self):
            return "absent is not installed"

    fws = [Scripted("boom", boom), Scripted("nan", nan), Cannot(), Absent(), Scripted("fine", lambda t: None)]
    records = Runner(NumpyReference(), fws).run_case(_simple()).records
    assert _statuses(records, "boom") == {"error"}
    assert "kernel exploded" in next(r.message for r in records if r.framework == "boom")
    nan_fail = [r for r in records if r.framework == "nan" and r.status == "fail"]
    assert [(r.step, r.quantity, r.tensor) for r in nan_fail] == [(2, "grad", "fc.weight")]
    assert "non-finite" in nan_fail[0].message
    assert _statuses(records, "cannot") == {"unsupported"}
    assert _statuses(records, "absent") == {"skipped"}
    assert _statuses(records, "fine") == {"pass"}
    # steps x (loss, output, 3 grads, 2 params) for the good one
    assert sum(r.framework == "fine" for r in records) == 2 * 7


def test_xfail_and_xpass():
    def off(trace):
        trace.steps[1].params["fc.bias"] += 1e-3

    case = _simple(xfail={"torch": "documented"})
    runner = Runner(NumpyReference(), [Scripted("torch", off)])
    records = runner.run_case(case).records
    assert _statuses(records, "torch") == {"pass", "xfail"}
    assert all("documented" in r.message for r in records if r.status == "xfail")
    records = Runner(NumpyReference(), [Scripted("torch", lambda t: None)]).run_case(case).records
    assert _statuses(records, "torch") == {"xpass"}


def test_golden_values_are_checked_for_reference_and_frameworks():
    case = make_case(input=[[1.0, 2.0]], model=[{"dense": {"name": "fc", "out_features": 1, "bias": False,
                                                             "weight": [[3.0, 4.0]]}}],
                     loss={"sum": {}}, dtype="float64", expect={"output": [[11.0]], "grad": {"fc.weight": [[1, 2.5]]}})
    records = Runner(NumpyReference(), [Scripted("other", lambda t: None)]).run_case(case).records
    golden = [r for r in records if r.reference == "expected"]
    assert {(r.framework, r.quantity, r.status) for r in golden} == {
        ("numpy", "output", "pass"), ("numpy", "grad", "fail"), ("other", "output", "pass"), ("other", "grad", "fail")}
    bad = next(r for r in golden if r.status == "fail")
    assert (bad.worst_index, bad.actual, bad.desired) == ([0, 1], 2.0, 2.5)


def test_reference_failure_is_an_error_for_every_framework():
    case = make_case(input=[[1e300, 1e300]], model=[{"dense": {"out_features": 1, "weight": [[1e300, 1e300]]}}],
                     loss={"sum": {}}, dtype="float64")
    records = Runner(NumpyReference(), [Scripted("other", lambda t: None)]).run_case(case).records
    assert {(r.framework, r.status) for r in records} == {("numpy", "error"), ("other", "error")}
    assert "non-finite" in records[0].message


def test_a_case_that_overflows_its_dtype_is_an_error_that_says_so():
    """In float16 the loss of this case is 2·10^5: a correct framework overflows to inf, so nothing can be
    compared; every framework gets one error naming the quantity and the dtype's largest value."""
    from gradconf.summary import summarize_records
    case = make_case(input=[[300.0, 400.0]], model=[{"dense": {"out_features": 1, "weight": [[1.0, 1.0]]}}],
                     loss={"mse": {"target": 0.0}}, dtype="float16")
    records = Runner(NumpyReference(), [Scripted("other", lambda t: None)]).run_case(case).records
    assert [(r.framework, r.status) for r in records] == [("numpy", "error"), ("other", "error")]
    assert records[0].message.startswith("the case overflows float16: the reference's loss at step 1 reaches 4.9")
    assert "65504" in records[0].message
    assert summarize_records(records).failing[0].verdict == f"the case or the reference: {records[0].message}"
    in_range = make_case(input=[[3.0, 4.0]], model=[{"dense": {"out_features": 1, "weight": [[1.0, 1.0]]}}],
                         loss={"mse": {"target": 0.0}}, dtype="float16")
    in_range_records = Runner(NumpyReference(), [Scripted("other", lambda t: None)]).run_case(in_range).records
    assert in_range_records and {r.status for r in in_range_records} == {"pass"}


def test_records_carry_allowance_and_ratio():
    records = Runner(NumpyReference(), [Scripted("same", lambda t: None)]).run_case(_simple()).records
    for r in records:
        if r.framework == "same":
            assert r.rtol > 0 and r.atol > 0 and r.ratio == 0.0 and r.status == "pass"


def test_a_records_atol_is_the_allowance_applied_measured_slack_included():
    """Near a fit, dL/dw = 2(y − t)·x is a difference of nearly equal numbers: the measured slack is most
    of the allowance, and a record that passes on it must say so in its `atol`."""
    case = make_case(input=[[1.0, 2.0]], model=[{"dense": {"name": "fc", "out_features": 1, "bias": False,
                                                           "weight": [[1.0, 1.0]]}}],
                     loss={"mse": {"target": 3.0 + 1e-9}}, dtype="float64")
    slack = Runner(NumpyReference(), []).reference_trace(case, CaseResult(case)).slack[(1, "grad", "fc.weight")]

    def nudge(trace):
        trace.steps[0].grads["fc.weight"] += slack / 2

    records = Runner(NumpyReference(), [Scripted("nudged", nudge)]).run_case(case).records
    r = next(r for r in records if r.framework == "nudged" and r.tensor == "fc.weight")
    assert r.status == "pass" and r.max_abs_err == pytest.approx(slack / 2)
    assert r.max_abs_err > r.rtol * 4e-9  # not covered by the computed allowance alone (max|ref| = 4e-9)
    assert r.max_abs_err <= r.atol + r.rtol * abs(r.desired)


def _one_weight_to_zero(tolerance):
    """w = 2, Σx = 10, target 10: one SGD step of lr 0.01 takes w to 2 − 0.01·200 = 0 exactly in the
    reference; a fused multiply-add (torch's `add_(g, alpha=-lr)`) leaves −4.2e-17, the rounding of 0.01."""
    return make_case(input=[[[[1.0, 2.0], [3.0, 4.0]]]], dtype="float64", tolerance=tolerance,
                     model=[{"conv2d": {"name": "c", "out_channels": 1, "kernel_size": 1, "bias": False,
                                        "weight": [[[[2.0]]]]}}, {"sum": {}}],
                     loss={"mse": {"target": 10.0}}, optimizer={"sgd": {"lr": 0.01}})


def _fused(trace):
    trace.steps[0].params["c.weight"][...] = -4.163336342344337e-17


def _weight_record(tolerance, change=_fused):
    records = Runner(NumpyReference(), [Scripted("fma", change)]).run_case(_one_weight_to_zero(tolerance)).records
    return next(r for r in records if r.framework == "fma" and r.quantity == "param" and r.reference == "numpy")


def test_a_cases_rtol_alone_keeps_the_policys_atol_and_its_measured_slack():
    """A tight rtol must not call a rounding-level cancellation wrong; a real error still fails."""
    r = _weight_record({"default": {"rtol": 1e-9}})
    assert r.status == "pass" and r.rtol == 1e-9 and r.atol >= r.max_abs_err > 0
    off = _weight_record({"default": {"rtol": 1e-9}}, lambda t: t.steps[0].params["c.weight"].__iadd__(1e-6))
    assert off.status == "fail"


def test_a_cases_atol_is_applied_exactly_most_specific_key_first():
    r = _weight_record({"default": {"rtol": 1e-9, "atol": 1e-3}, "param": {"atol": 1e-20}})
    assert (r.status, r.rtol, r.atol) == ("fail", 1e-9, 1e-20)
    r = _weight_record({"param": {"atol": 1e-20}, "param.c.weight": {"atol": 1e-16}})
    assert (r.status, r.atol) == ("pass", 1e-16)


class RunKinds(NumpyReference):
    """The reference, counting its runs by kind."""
    def __init__(self):
        self.calls = []

    def run(self, case, initial):
        self.calls.append("run")
        return super().run(case, initial)

    def run_rounded(self, case, initial, rounding):
        self.calls.append(type(rounding).__name__)
        return super().run_rounded(case, initial, rounding)


def test_the_first_reference_run_records_the_exact_zeros_the_conditioning_runs_hold():
    """A case with a ReLU: the run that made the trace also notes its exact zeros (ExactZeros), so the
    conditioning takes two more runs, not three, and the trace is the reference's own to the last bit."""
    case = make_case(input={"shape": [16, 8], "init": "normal"}, seed=3, dtype="float64",
                     model=[{"dense": {"name": "fc1", "out_features": 32}}, {"relu": {}},
                            {"dense": {"name": "fc2", "out_features": 2}}], loss={"mse": {"target": {"init": "normal"}}},
                     optimizer={"sgd": {"lr": 0.1}}, steps=2)
    counting = RunKinds()
    ref = Runner(counting, []).reference_trace(case, CaseResult(case))
    assert ref.slack and counting.calls == ["ExactZeros", "_Pinned", "_Pinned"]
    plain = NumpyReference().run(case, reference_module.materialize(case))
    for mine, theirs in zip(ref.trace.steps, plain.steps):
        assert all(np.array_equal(mine.grads[k], theirs.grads[k]) for k in theirs.grads)
        assert all(np.array_equal(mine.params[k], theirs.params[k]) for k in theirs.params)
        assert np.array_equal(mine.output, theirs.output) and mine.loss == theirs.loss
    counting.calls.clear()
    smooth = make_case(input={"shape": [4, 3], "init": "normal"}, dtype="float64", loss={"sum": {}},
                       model=[{"dense": {"name": "fc", "out_features": 2}}, {"tanh": {}}])  # no kink: nothing to record
    assert Runner(counting, []).reference_trace(smooth, CaseResult(smooth)).slack
    assert counting.calls == ["run", "RoundedLayers", "RoundedLayers"]


def _other_tanh(x):
    return np.sign(x) * (1.0 - 2.0 / (np.exp(2.0 * np.abs(x)) + 1.0))


class OtherTanh(NumpyReference):
    """A correct tanh with other last bits: 1 − 2/(e^2|x| + 1), within an ulp or two of np.tanh."""
    name = "other_tanh"

    def run(self, case, initial):
        def forward(L, xs, p):
            y = _other_tanh(xs[0])
            return y, (xs[0], y)
        with _patched([swap(vocab.LAYERS, "tanh", forward=forward)]):  # through tanh's declaration
            return super().run(case, initial)


class WithoutRounding(NumpyReference):
    """The reference, for a runner that cannot round its layer outputs (no `run_rounded`: protocol.rounds_off)."""
    run_rounded = None


def test_saturated_tanh_is_judged_by_the_rounding_of_its_output():
    """Near saturation tanh' = 1 − y² is decided by y's last bits: a correct tanh with other last bits
    passes, because the conditioning runs round every layer's output; without that it would be
    called wrong. A wrong derivative (1 − y) still fails."""
    case = next(c for c in _bundled() if c.id == "saturated_activations")
    x = np.arange(6.0, 17.0, 0.25)
    assert np.any(np.tanh(x) != _other_tanh(x)) and np.allclose(np.tanh(x), _other_tanh(x), rtol=1e-15, atol=0)
    assert _statuses(Runner(NumpyReference(), [OtherTanh()]).run_case(case).records, "other_tanh") == {"pass"}
    assert "fail" in _statuses(Runner(WithoutRounding(), [OtherTanh()]).run_case(case).records, "other_tanh")
    assert "fail" in _statuses(Runner(NumpyReference(), [WrongTanhDerivative()]).run_case(case).records,
                               "wrong_tanh")


class EluFromOutput(NumpyReference):
    """ELU's derivative read back from its output, y + alpha, as TensorFlow and JAX do: exact only to
    eps·alpha, so for x = −20 it is 2e-8 off in relative terms (graph_vocab[620] on jax, a bias gradient
    after a cancellation: 9.9x the allowance before the conditioning rounded what this reads)."""
    name = "elu_from_output"

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def run(self, case, initial):
        def backward(L, dy, cache):
            x, y, _ = cache
            return [dy * np.where(x > 0, 1.0, y + self.alpha)], {}
        with _patched([swap(vocab.LAYERS, "elu", backward=backward)]):
            return super().run(case, initial)


def test_an_elu_derivative_read_from_its_output_is_judged_by_the_rounding_of_that_output():
    """Every element's derivative is e^x ≈ 2e-9 here, and y + 1 carries eps of 1: a relative error the
    conditioning accounts for by rounding the output y it is read from (as for tanh' = 1 − y²). Without
    that rounding the same framework is called wrong, and a derivative without alpha still fails."""
    case = make_case(input=[[-20.0, -21.0, -19.5, -22.0]], dtype="float64", model=[{"elu": {"alpha": 1.0}}],
                     loss={"sum": {}})
    assert _statuses(Runner(NumpyReference(), [EluFromOutput()]).run_case(case).records, "elu_from_output") == {"pass"}
    assert "fail" in _statuses(Runner(WithoutRounding(), [EluFromOutput()]).run_case(case).records, "elu_from_output")
    assert "fail" in _statuses(Runner(NumpyReference(), [EluFromOutput(alpha=1.0 + 1e-6)]).run_case(case).records,
                               "elu_from_output")


def test_a_failure_that_fits_a_known_divergence_says_so():
    from gradconf.diagnose import describe_failures
    from gradconf.summary import summarize_records

    def off(trace):
        trace.steps[0].grads["fc.weight"] *= 1.01

    class Declares(Scripted):
        def known_divergences(self, case):
            return {"TF-WD": "gist", "TF-ADAM-EPS": "gist"}

    class Raises(Scripted):
        def known_divergences(self, case):
            raise RuntimeError("broken hint")

    case = _simple()
    fws = [Declares("declares", off), Declares("fine", lambda t: None), Raises("raises", off), Scripted("silent", off)]
    records = Runner(NumpyReference(), fws).run_case(case).records
    known = {(r.framework, r.status): r.known for r in records if r.framework != "numpy"}
    assert known[("declares", "fail")] == "TF-ADAM-EPS, TF-WD" and known[("declares", "pass")] is None
    assert {k for (fw, _), k in known.items() if fw != "declares"} == {None}
    assert "fail" in _statuses(records, "raises")  # a broken hint costs nothing
    verdict = summarize_records(records).failing[0].verdict
    assert "declares fits known divergence(s) TF-ADAM-EPS, TF-WD" in verdict and "silent fits" not in verdict
    mine = [r for r in records if r.framework == "declares"]
    assert "fits known divergence(s) of declares: TF-ADAM-EPS, TF-WD" in describe_failures(case, "declares", mine)


def test_a_max_pool_tie_made_by_float16_rounding_is_within_the_allowance(monkeypatch):
    """Two cells of a window round to the same float16 value: torch sends the gradient to the first, as
    every float16 framework does. The third conditioning run makes the same tie: with the perturbed runs
    taken out (whether their signs move this routing is luck), it alone passes torch, and without it
    torch was called wrong by 13x."""
    torch_adapter = pytest.importorskip("gradconf.adapters.torch_adapter")
    pytest.importorskip("torch")
    case = next(c for c in _bundled() if c.id == "half_maxpool_tie_f16")
    assert _statuses(Runner(NumpyReference(), [torch_adapter.TorchAdapter()]).run_case(case).records, "torch") == {"pass"}
    monkeypatch.setattr(reference_module, "perturbed", lambda case, initial, draw: initial)  # alone: no luck of signs
    assert _statuses(Runner(NumpyReference(), [torch_adapter.TorchAdapter()]).run_case(case).records, "torch") == {"pass"}
    assert "fail" in _statuses(Runner(WithoutRounding(), [torch_adapter.TorchAdapter()]).run_case(case).records, "torch")


def test_a_max_pool_tie_made_by_tensorflows_float16_sigmoid_is_within_the_allowance(monkeypatch):
    """TensorFlow's float16 sigmoid is an ulp off on a quarter of its inputs: it ties two cells whose
    correctly rounded values differ by one ulp. The two-ulp grid of the half-type conditioning runs
    makes the same tie; rounding only to float16 does not, and TensorFlow was called wrong by 98x."""
    tf_adapter = pytest.importorskip("gradconf.adapters.tensorflow_adapter")
    pytest.importorskip("tensorflow")
    from gradconf import tolerance
    case = next(c for c in _bundled() if c.id == "half_sigmoid_tie_f16")
    runner = Runner(NumpyReference(), [tf_adapter.TensorflowAdapter()])
    assert _statuses(runner.run_case(case).records, "tensorflow") == {"pass"}
    monkeypatch.setitem(tolerance.MANTISSA, "float16", (40, -14))  # a grid finer than float16: no grid
    assert "fail" in _statuses(runner.run_case(case).records, "tensorflow")


def test_a_relu_input_whose_sign_float16_accumulation_leaves_undetermined_is_within_the_allowance(monkeypatch):
    """A transposed-conv output of 3e-4 summed from terms up to 0.27: torch accumulates it to exactly 0,
    and its ReLU blocks a gradient the float64 reference passes. The shifted half-type run flips such
    signs; with the perturbed runs taken out (whether their signs move this ReLU is luck), the flip alone
    passes torch, and without it torch (and TF) were called wrong by 1.29x."""
    torch_adapter = pytest.importorskip("gradconf.adapters.torch_adapter")
    pytest.importorskip("torch")
    from gradconf import tolerance
    case = next(c for c in _bundled() if c.id == "half_relu_undetermined_f16")
    def torch_statuses():
        return _statuses(Runner(NumpyReference(), [torch_adapter.TorchAdapter()]).run_case(case).records, "torch")
    assert torch_statuses() == {"pass"}
    monkeypatch.setattr(reference_module, "perturbed", lambda case, initial, draw: initial)  # alone: no luck of signs
    assert torch_statuses() == {"pass"}
    monkeypatch.setitem(tolerance.UNDETERMINED, ConvTranspose2d, 0.0)
    assert "fail" in torch_statuses()


def test_the_sign_flip_takes_only_outputs_within_the_rounding_of_their_terms():
    from gradconf import tolerance
    case = make_case(dtype="float16", input={"shape": [1, 4]}, model=[{"dense": {"out_features": 4}}],
                     loss={"sum": {}})
    flip = tolerance.stored_in_dtype(case, 0.5)
    assert flip.wants_terms and not tolerance.stored_in_dtype(case, 0.0).wants_terms
    eps = tolerance.EPS["float16"]
    y = np.array([[0.01 * eps, -0.05 * eps, 0.2 * eps, 0.0]])  # Σ|terms| = 1 each: dense flips within 0.1·eps
    flip.output(y, case.layers[0], terms=np.ones_like(y))
    assert np.array_equal(np.sign(y), [[-1, 1, 1, 0]])


class ReturnsNoTrace(NumpyReference):
    name = "no_trace"

    def run(self, case, initial):
        return {"loss": 1.0}  # a third-party slip: not a Trace


def test_an_adapter_that_returns_no_trace_is_an_error_record_not_a_crash():
    records = Runner(NumpyReference(), [ReturnsNoTrace(), NumpyReference()]).run_case(_simple()).records
    (mine,) = [r for r in records if r.framework == "no_trace"]
    assert mine.status == "error" and mine.message.startswith("no_trace returned dict, not a Trace of Steps")


class SoftmaxOneUlpHigh(NumpyReference):
    """Cross-entropy as a float32 framework rounds it: the softmax sum and probabilities one float32 ulp
    high. For a confident row that moves p − 1 by a percent."""
    name = "ulp_high"

    def run(self, case, initial):
        class OneUlpHigh(Rounding):
            def softmax(self, a):
                a[...] = np.nextafter(a.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        return super().run_rounded(case, initial, OneUlpHigh())


def test_a_confident_cross_entropy_is_judged_at_the_rounding_of_its_softmax():
    """A correct softmax with float32's last bits passes; the gradient with its sign slipped (onehot − p,
    a classic hand-derivation error) still fails, on every bundled cross-entropy case."""
    cases = [c for c in _bundled() if c.loss.kind == "cross_entropy"]
    assert any(c.id == "cross_entropy_confident_f32" for c in cases)
    original = vocab.LOSSES["cross_entropy"].loss

    class SignSlipped(NumpyReference):
        name = "sign_slipped"

        def run(self, case, initial):
            def slipped(y, target, round_off=None, *args, **options):  # reduction and options pass through
                loss, dy = original(y, target, round_off, *args, **options)
                return loss, -dy
            with _patched([swap(vocab.LOSSES, "cross_entropy", loss=slipped)]):
                return super().run(case, initial)

    for case in cases:
        records = Runner(NumpyReference(), [SoftmaxOneUlpHigh(), SignSlipped()]).run_case(case).records
        if case.dtype == "float32":
            assert _statuses(records, "ulp_high") == {"pass"}, case.id
        if case.id == "cross_entropy_confident_f32":  # passes on the measured slack, not the computed allowance
            r = next(r for r in records if r.framework == "ulp_high" and r.tensor == "fc.weight" and r.step == 1
                     and r.quantity == "grad" and r.reference == "numpy")
            assert r.max_abs_err > 100 * r.rtol * 6.45e-6  # max|dL/dw| = 6.45e-6
        assert "fail" in {r.status for r in records if r.framework == "sign_slipped" and r.quantity == "grad"}, case.id


def test_an_overflowing_intermediate_is_named_as_the_cases():
    """½(t − y)² = 45000 fits float16, (t − y)² = 90000 does not: a float16 framework's inf loss is the
    case's doing, and the record says so."""
    case = make_case(input=[[300.0]], model=["sum"], loss={"half_sse": {"target": 0.0}}, dtype="float16")

    def overflow(trace):
        trace.steps[0].loss = np.asarray(np.inf)
    records = Runner(NumpyReference(), [Scripted("half", overflow)]).run_case(case).records
    r = next(r for r in records if r.framework == "half" and r.quantity == "loss" and r.reference == "numpy")
    assert r.status == "fail" and "where the reference has 45000" in r.message
    assert "beyond float16's largest value 65504: an intermediate overflows (the case" in r.message
    nan = Runner(NumpyReference(), [Scripted("nan", lambda t: t.steps[0].grads["input"].fill(np.nan))])
    r = next(r for r in nan.run_case(case).records if r.framework == "nan" and r.tensor == "input")
    assert r.status == "fail" and "(nan at [0, 0], where the reference has 300)" in r.message  # plain ints
    assert "overflows" not in r.message


def test_transposed_conv_cases_exist():  # the flipped-kernel check above skips them; they are FD-tested
    assert any(isinstance(L, ConvTranspose2d) for c in _bundled() for L in c.layers)


class CountingReference(NumpyReference):
    """The reference, counting its runs: the first, and each conditioning re-run."""
    def __init__(self):
        self.runs = 0

    def run(self, case, initial):
        self.runs += 1
        return super().run(case, initial)

    def run_rounded(self, case, initial, rounding):
        self.runs += 1
        return super().run_rounded(case, initial, rounding)


def _off(trace):  # 1% off in one weight gradient: fails whatever the slack
    trace.steps[0].grads["fc.weight"] *= 1.01


def test_conditioning_runs_only_where_it_can_change_a_verdict():
    """Re-runs measure the slack, which only widens an allowance: none when nothing is compared, when every
    framework passes without it, or when the case's own atol is every allowance; once per case however many
    frameworks fail without it."""
    absent = type("Absent", (NumpyReference,), {"name": "absent", "missing": lambda self: "not installed"})()
    fine, off = (lambda: Scripted("fine", lambda t: None)), (lambda name="off": Scripted(name, _off))
    for frameworks, tolerance, runs in (([absent], None, 1), ([fine()], None, 1), ([fine(), fine()], None, 1),
                                        ([off()], None, 3), ([fine(), off()], None, 3),
                                        ([off("a"), off("b")], None, 3),
                                        ([off()], {"default": {"atol": 1e-9}}, 1),
                                        ([off()], {"grad": {"atol": 1e-9}}, 3)):
        reference = CountingReference()
        case = _simple(**({"tolerance": tolerance} if tolerance else {}))
        records = Runner(reference, frameworks).run_case(case).records
        assert reference.runs == runs, (frameworks, tolerance)
        assert {r.status for r in records if r.framework in ("numpy", "fine", "absent")} <= {"pass", "skipped"}
        assert all(r.status == "fail" for r in records if r.framework in ("off", "a", "b")
                   and (r.step, r.quantity, r.tensor) == (1, "grad", "fc.weight"))


def test_a_record_that_passes_without_the_slack_states_the_plain_allowance():
    """A record's atol is the one it was judged by: the tolerance policy's without measured slack wherever it
    passes so, in a passing framework and in a failing one alike; only a comparison that fails without the
    slack is judged again with it, and states it."""
    case = _simple()
    records = Runner(NumpyReference(), [Scripted("fine", lambda t: None), Scripted("off", _off)]).run_case(case).records
    atol = {(r.framework, r.step, r.quantity, r.tensor): r.atol for r in records if r.reference == "numpy"}
    wider = [k[1:] for k in atol if k[0] == "off" and atol[k] > atol[("fine", *k[1:])]]
    assert wider == [(1, "grad", "fc.weight")]
    assert all(atol[k] == atol[("off", *k[1:])] for k in atol if k[0] == "fine" and k[1:] not in wider)


def test_the_conditioning_rerun_is_announced_as_the_references():
    """harness.isolate blames a crash or a time limit on the last adapter announced."""
    runner = Runner(NumpyReference(), [Scripted("off", _off)])
    announced = []
    runner.on_adapter_start = lambda case, adapter: announced.append(adapter.name)
    runner.run_case(_simple())
    # the conditioning re-runs, when "off" fails without their slack; then the long-double recheck of a
    # reference that one framework disputes and none backs (harness.blame)
    assert announced == ["numpy", "off", "numpy", "numpy"]


def test_a_reference_comparison_names_the_line_of_the_layer_that_holds_the_tensor(tmp_path):
    """A failing weight gradient points at its layer's line (README, Reports: `line`), the loss at `loss:`, the
    input's gradient at `input:`; a family variant, whose layers are drawn, keeps its case's line."""
    from gradconf.judge import declared_at
    from gradconf.loader import load_file

    path = tmp_path / "lines.yaml"
    path.write_text("name: lines\nseed: 1\ndtype: float64\ninput: {shape: [2, 3], init: normal}\nmodel:\n"
                    "  - linear: {name: first, out_features: 4}\n  - tanh: {}\n"
                    "  - linear: {name: last, out_features: 2}\nloss: {mse: {target: {init: normal}}}\n")
    (case,) = load_file(str(path))
    class WrongWeightGrad(Planted):
        def patches(self, case):
            return [_wrap_backward("dense", lambda dy, cache, L, dx, grads: (dx, {
                **grads, "weight": grads["weight"] * (1.01 if L.name == "first" else 1.0)}))]

    records = Runner(NumpyReference(), [WrongWeightGrad()]).run_case(case).records
    line = {(r.quantity, r.tensor): r.line for r in records if r.framework == "planted"}
    assert [(r.tensor, r.line) for r in records if r.status == "fail"] == [("first.weight", 6)]
    assert line["grad", "last.weight"] == 8 and line["loss", None] == 9 and line["grad", "input"] == 4
    assert line["output", None] == 1
    assert declared_at(dataclasses.replace(case, family="drawn"), "grad", "first.weight") is None
