"""The activations of SPEC §1.9 (leaky_relu, elu, gelu, silu, softplus, softmax, log_softmax, dropout): each
backward against central finite differences in float64, each with a planted wrong formula the check must catch
(error > 1e-3); the vectorised erf against math.erf; the shape rules and their errors."""
import dataclasses
import math

import numpy as np
import pytest

from gradconf import vocab
from gradconf.errors import CaseError
from gradconf.vocab.erf import erf, erfc
from tests.conftest import make_case
from tests.test_reference import TOL, fd_error, net

SHAPE = (2, 3, 4, 4)
LAYERS = [
    {"leaky_relu": {}}, {"leaky_relu": {"negative_slope": 0.2}}, {"leaky_relu": {"negative_slope": -0.5}},
    {"elu": {}}, {"elu": {"alpha": 0.5}}, {"gelu": {}}, {"gelu": {"approximate": "tanh"}}, {"silu": {}},
    {"softplus": {}}, {"softplus": {"beta": 2.0, "threshold": 1.0}}, {"softplus": {"beta": 0.5, "threshold": 0.25}},
    {"softmax": {}}, {"softmax": {"dim": 0}}, {"softmax": {"dim": 3}}, {"softmax": {"dim": -2}},
    {"log_softmax": {}}, {"log_softmax": {"dim": 2}}, {"log_softmax": {"dim": -1}}, {"dropout": {"p": 0.3}},
]


def _wide(*layers, seed=0):
    """A net whose input spans the interesting ranges: normal with std 3 (softplus's threshold, gelu's tails)."""
    return make_case(input={"shape": list(SHAPE), "init": "normal", "std": 3.0}, model=list(layers),
                     loss={"grad_output": {"value": {"init": "normal"}}}, dtype="float64", seed=seed)


@pytest.mark.parametrize("layer", LAYERS, ids=str)
def test_backward_matches_finite_differences(layer):
    assert fd_error(_wide(layer)) < TOL


@pytest.mark.parametrize("seed", range(2))
def test_in_a_conv_net(seed):
    case = net((2, 2, 6, 5), {"conv2d": {"out_channels": 3, "kernel_size": 3, "padding": 1}}, {"gelu": {}},
               {"conv2d": {"out_channels": 3, "kernel_size": 2}}, {"elu": {"alpha": 0.7}}, {"softmax": {}},
               {"leaky_relu": {"negative_slope": 0.1}}, {"flatten": {}}, {"dense": {"out_features": 4}},
               {"silu": {}}, {"dropout": {"p": 0.5}}, {"softplus": {"beta": 3.0}}, {"log_softmax": {}},
               loss={"nll": {"target": [1, 3]}}, seed=seed)
    assert fd_error(case) < TOL


# ---------------------------------------------------------------- planted bugs: each must be caught

def _leaky_no_slope(L, dy, x):
    return [dy * (x > 0)], {}  # relu's derivative: the slope forgotten


def _elu_no_alpha(L, dy, cache):
    x, *_ = cache
    return [dy * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))], {}  # alpha·eˣ without alpha


def _gelu_no_pdf_term(L, dy, cache):
    x, c = cache
    return [dy * (c if L.approximate == "none" else 0.5 * (1.0 + c))], {}  # Φ(x) alone: x·φ(x) forgotten


def _gelu_tanh_no_cubic(L, dy, cache):
    x, t = cache  # the inner derivative √(2/π)·(1 + 3·0.044715·x²) without its cubic term
    return [dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * math.sqrt(2.0 / math.pi))], {}


def _silu_sigmoid_only(L, dy, cache):
    x, s = cache
    return [dy * s], {}  # (x·σ)' read as σ


def _softplus_unscaled(L, dy, cache):
    x, z = cache
    return [dy * np.where(z > L.threshold, 1.0, 1.0 / (1.0 + np.exp(-x)))], {}  # σ(x) for σ(βx)


def _softmax_no_sum(L, dy, y):
    return [y * dy], {}  # the Jacobian's diagonal only


def _softmax_wrong_axis(L, dy, y):
    other = (L.dim + 1) % y.ndim
    return [y * (dy - (dy * y).sum(axis=other, keepdims=True))], {}


def _log_softmax_identity(L, dy, y):
    return [dy], {}  # dx = dy − softmax·Σdy without its second term


def _dropout_train_scale(L, dy, cache):
    return [dy / (1.0 - L.p)], {}  # train mode's 1/(1 − p) kept in evaluation


PLANTED = [
    ("leaky_relu", _leaky_no_slope, {"leaky_relu": {"negative_slope": 0.2}}),
    ("elu", _elu_no_alpha, {"elu": {"alpha": 0.5}}),
    ("gelu", _gelu_no_pdf_term, {"gelu": {}}),
    ("gelu", _gelu_tanh_no_cubic, {"gelu": {"approximate": "tanh"}}),
    ("silu", _silu_sigmoid_only, {"silu": {}}),
    ("softplus", _softplus_unscaled, {"softplus": {"beta": 2.0}}),
    ("softmax", _softmax_no_sum, {"softmax": {}}),
    ("softmax", _softmax_wrong_axis, {"softmax": {}}),
    ("log_softmax", _log_softmax_identity, {"log_softmax": {}}),
    ("dropout", _dropout_train_scale, {"dropout": {"p": 0.25}}),
]


@pytest.mark.parametrize("kind,fake,layer", PLANTED, ids=lambda v: getattr(v, "__name__", None))
def test_a_wrong_backward_is_caught(monkeypatch, kind, fake, layer):
    case = _wide(layer)
    assert fd_error(case) < TOL
    monkeypatch.setitem(vocab.LAYERS, kind, dataclasses.replace(vocab.LAYERS[kind], backward=fake))
    assert fd_error(case) > 1e-3


# ---------------------------------------------------------------- erf

def test_erf_and_erfc_are_accurate_to_a_few_ulps_everywhere():
    """Against math.erf / math.erfc (correctly rounded to within an ulp), relative, over every normal result:
    a dense grid over [-30, 30], random points, and the boundaries of the series / continued-fraction split."""
    x = np.concatenate([np.linspace(-30.0, 30.0, 60001), np.random.default_rng(0).normal(0.0, 3.0, 10000),
                        np.nextafter(1.0, [0.0, 2.0]), [0.0, 1.0, -1.0, 1e-300, 27.0]])
    for mine, exact, ulps in ((erf, math.erf, 2), (erfc, math.erfc, 8)):
        want, got = np.array([exact(v) for v in x]), mine(x)
        normal = np.abs(want) >= np.finfo(np.float64).tiny
        rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
        assert rel.max() < ulps * np.finfo(np.float64).eps, (mine.__name__, x[normal][np.argmax(rel)])
        assert np.abs(got[~normal] - want[~normal]).max() <= 1e-300  # erfc's underflow: subnormal or 0
    assert erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0] and erfc(np.array([np.inf])).tolist() == [0.0]
    assert np.isnan(erf(np.array([np.nan]))).all()


def test_erf_check_would_catch_a_cruder_erf():
    """The accuracy test above can fail: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) is far outside it."""
    x = np.linspace(0.1, 3.0, 100)
    t = 1.0 / (1.0 + 0.3275911 * x)
    crude = 1.0 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) \
        * np.exp(-x * x)
    want = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(crude - want) / want) > 1e3 * np.finfo(np.float64).eps
    assert np.max(np.abs(erf(x) - want) / want) < 2 * np.finfo(np.float64).eps


def test_gelu_keeps_its_relative_accuracy_far_left():
    """x·Φ(x) through erfc: at x = -20, Φ = 2.75e-89, where ½(1 + erf(x/√2)) would be exactly 0."""
    L = vocab.LAYERS["gelu"].build({"approximate": "none"}, vocab.Site(("model", 0), "g", ((3,),)))
    x = np.array([-20.0, -8.0, -1.0])
    y, _ = vocab.LAYERS["gelu"].forward(L, [x], {})
    want = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    np.testing.assert_allclose(y, want, rtol=1e-14)


# ---------------------------------------------------------------- the shape rules and their errors

def _case(layer, shape=(2, 3)):
    return make_case(input={"shape": list(shape)}, model=[layer], loss={"sum": {}})


@pytest.mark.parametrize("layer,message", [
    ({"dropout": {"p": 0.5, "training": True}}, r"only `training: false`.*own random generator"),
    ({"dropout": {"p": 1.5}}, r"must be a probability in \[0, 1\], got 1.5"),
    ({"softmax": {"dim": 2}}, r"dim 2 is not an axis of the 2-D input"),
    ({"log_softmax": {"dim": -3}}, r"dim -3 is not an axis"),
    ({"gelu": {"approximate": "erf"}}, r"must be `none` \(the exact, erf form\) or `tanh`"),
    ({"softplus": {"beta": 0}}, r"must be > 0"),
    ({"leaky_relu": {"negative_slope": "0.1x"}}, r"must be a number"),
    ({"elu": {"slope": 1}}, r"unknown key `slope`"),
])
def test_invalid_options_are_case_errors(layer, message):
    with pytest.raises(CaseError, match=message):
        _case(layer)


def test_defaults_and_the_dim_normalised():
    layers = make_case(input={"shape": [2, 3, 4, 5]}, loss={"sum": {}},
                       model=["leaky_relu", "elu", "gelu", "softplus", {"softmax": {"dim": -1}}, "log_softmax",
                              "dropout"]).layers
    assert layers[0].negative_slope == 0.01 and layers[1].alpha == 1.0 and layers[2].approximate == "none"
    assert (layers[3].beta, layers[3].threshold) == (1.0, 20.0)
    assert layers[4].dim == 3 and layers[5].dim == 1 and layers[6].p == 0.5
    assert all(L.out_shape == (2, 3, 4, 5) for L in layers)


# ---------------------------------------------------------------- the catalogued differences are real

@pytest.mark.parametrize("name,framework", [("tf_gelu_float64", "tensorflow"), ("tf_leaky_relu_float64", "tensorflow"),
                                            ("jax_leaky_relu_kink", "jax")])
def test_the_activation_divergences_are_real(name, framework):
    """Marked, the case is an xfail; unmarked, a failure; torch conforms on it."""
    import os
    from gradconf import adapters
    from gradconf.adapters.numpy_ref import NumpyReference
    from gradconf.loader import load_file
    from gradconf.runner import Runner
    from tests.conftest import ROOT
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax"}[framework])
    pytest.importorskip("torch")
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", f"{name}.yaml"))
    runner = Runner(NumpyReference(), [adapters.builtin(framework), adapters.builtin("torch")])
    statuses = lambda c, fw: {r.status for r in runner.run_case(c).records if r.framework == fw}  # noqa: E731
    marked = statuses(case, framework)
    assert "xfail" in marked and not marked & {"fail", "xpass"}, marked
    assert "fail" in statuses(dataclasses.replace(case, xfail={}), framework)
    assert statuses(case, "torch") == {"pass"}


# ---------------------------------------------------------------- `gradconf repro` writes them too

ACT_ROUND_TRIP = {
    "torch": ["convention_gelu_tanh", "convention_softplus_beta", "convention_log_softmax_last_axis",
              "convention_elu_at_zero", "convention_dropout_eval_is_identity", "convention_leaky_relu_default_slope"],
    "tensorflow": ["convention_softmax_over_channels", "convention_log_softmax_last_axis", "convention_softplus_threshold",
                   "convention_elu_at_zero", "convention_dropout_eval_is_identity", "convention_gelu_exact_by_default"],
}


@pytest.mark.parametrize("framework", sorted(ACT_ROUND_TRIP))
def test_a_repro_script_computes_what_the_adapter_computes(tmp_path, framework):
    from tests.test_repro import _write_round_trips, run_scripts
    paths = _write_round_trips(tmp_path, framework, ACT_ROUND_TRIP[framework])
    codes, stdout = run_scripts(*paths, cwd=tmp_path)
    assert codes == {str(p): 0 for p in paths}, stdout


def test_the_tf_gelu_divergence_shows_in_its_script_alone(tmp_path):
    from tests.test_repro import CASES, _adapter, run_scripts
    from gradconf.cli import main
    _adapter("tensorflow")
    out = tmp_path / "repro.py"
    assert main(["repro", "divergence_tf_gelu_float64", "--framework", "tensorflow", "-o", str(out), "--paths", CASES]) == 0
    assert "TF-GELU-CONST32" in out.read_text()
    codes, stdout = run_scripts(out, cwd=tmp_path)
    assert codes[str(out)] == 1 and "DIFFERS" in stdout


# ---------------------------------------------------------------- the catalogue's conditions, per case

def _expect(fw, **kw):
    from gradconf.divergences import expectation
    base = dict(input=[[0.0, 1.0, -1.0]], model=[{"leaky_relu": {}}, {"dense": {"out_features": 2}}],
                loss={"sum": {}}, dtype="float32", xfail={"jax": "JAX-LEAKY-RELU-KINK",
                                                          "tensorflow": "TF-GELU-CONST32, TF-GELU-TANH-CONST32, "
                                                                        "TF-LEAKY-ALPHA32"})
    return expectation(make_case(**{**base, **kw}), fw)


def test_the_jax_kink_applies_where_a_leaky_relu_reads_a_given_zero():
    assert _expect("jax").applies and _expect("jax").strict
    assert not _expect("jax", input=[[0.5, 1.0, -1.0]]).applies
    assert not _expect("jax", input={"shape": [2, 3], "init": "normal"}).applies
    behind = [{"dense": {"name": "d", "out_features": 3}}, {"leaky_relu": {}}, {"dense": {"out_features": 2}}]
    assert not _expect("jax", model=behind).applies  # a computed 0: a hint only (known), never expected
    from_input = [{"dense": {"name": "d", "out_features": 3}}, {"leaky_relu": {"from": "input"}},
                  {"dense": {"out_features": 2}}]
    assert _expect("jax", model=from_input).applies  # the graph decides what it reads


def test_the_tf_float32_casts_apply_in_float64_only_and_where_they_can_show():
    assert not _expect("tensorflow").applies  # float32
    assert _expect("tensorflow", dtype="float64").applies  # slope 0.01 is no float32 number
    exact = dict(negative_slope=0.25)
    assert not _expect("tensorflow", dtype="float64", model=[{"leaky_relu": exact}]).applies
    assert not _expect("tensorflow", dtype="float64", model=["sigmoid", "leaky_relu"]).applies  # no negative input
    gelu = _expect("tensorflow", dtype="float64", model=["gelu", {"gelu": {"approximate": "tanh"}}])
    tanh = _expect("tensorflow", dtype="float64", model=[{"gelu": {"approximate": "tanh"}}])
    assert gelu.applies and gelu.strict and "TF-GELU-CONST32" in gelu.why
    assert tanh.applies and not tanh.strict and "TF-GELU-TANH-CONST32" in tanh.why


def test_the_tf_float32_casts_do_not_apply_to_a_dead_end_layer():
    """graph_vocab[324] (--count 400): a leaky_relu no later layer read was expected to show TF-LEAKY-ALPHA32 (an xpass)."""
    dead = [{"dense": {"name": "d", "out_features": 3}}, {"leaky_relu": {"name": "a"}},
            {"dense": {"from": "d", "out_features": 2}}]
    assert not _expect("tensorflow", dtype="float64", model=dead).applies
    read = [{"dense": {"name": "d", "out_features": 3}}, {"leaky_relu": {"name": "a"}},
            {"add": {"from": ["a", "d"]}}, {"dense": {"out_features": 2}}]
    assert _expect("tensorflow", dtype="float64", model=read).applies
    gelu = [{"dense": {"name": "d", "out_features": 3}}, {"gelu": {"name": "g"}}, {"dense": {"from": "d", "out_features": 2}}]
    assert not _expect("tensorflow", dtype="float64", model=gelu).applies
