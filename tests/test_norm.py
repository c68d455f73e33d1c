"""Normalisation layers (vocab/norm.py): the reference's backward against finite differences (float64),
training-mode batch norm through its batch statistics included, each proof shown able to fail on a wrong
formula; the running statistics by hand; and the `state` quantity's comparison shown able to fail."""
import dataclasses

import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.tensors import materialize
from gradconf.vocab import norm
from tests.conftest import make_case
from tests.planting import Planted, _wrap_backward, swap
from tests.test_reference import TOL, fd_error, net

BATCH = [dict(), dict(affine=False), dict(eps=1e-3, momentum=0.3), dict(training=False),
         dict(training=False, running_mean={"init": "normal"}, running_var={"init": "uniform", "low": 0.5, "high": 2}),
         dict(weight={"init": "normal"}, bias={"init": "normal"})]


@pytest.mark.parametrize("opts", BATCH, ids=str)
def test_batch_norm2d(opts):
    assert fd_error(net((3, 2, 3, 4), {"batch_norm2d": opts})) < TOL


def test_batch_norm2d_in_a_conv_net():
    assert fd_error(net((2, 2, 5, 5), {"conv2d": {"out_channels": 3, "kernel_size": 3}},
                        {"batch_norm2d": {"weight": {"init": "normal"}}}, {"tanh": {}})) < TOL


@pytest.mark.parametrize("opts", [dict(), dict(affine=False), dict(eps=0.1, weight={"init": "normal"})], ids=str)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2, 3)], ids=str)
def test_layer_norm(shape, opts):
    assert fd_error(net(shape, {"layer_norm": opts})) < TOL


@pytest.mark.parametrize("opts", [dict(num_groups=2), dict(num_groups=1), dict(num_groups=4, affine=False),
                                  dict(num_groups=2, weight={"init": "normal"}, bias={"init": "normal"})], ids=str)
def test_group_norm(opts):
    assert fd_error(net((2, 4, 3, 2), {"group_norm": opts})) < TOL


# Each a classic hand-backprop bug of a normalisation layer: the suite must see it.

def _bn_without_mean_path(L, dy, cache):
    # dx without the −mean dx̂ term (the gradient through the batch mean dropped)
    training, xhat, inv, w = cache
    dxhat = dy if w is None else dy * w.reshape(1, -1, 1, 1)
    dx = inv * (dxhat - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True))
    return [dx], {} if w is None else {"weight": (dy * xhat).sum(axis=(0, 2, 3)), "bias": dy.sum(axis=(0, 2, 3))}


def _bn_as_if_eval(L, dy, cache):
    # training mode's dx as if the statistics were constants
    training, xhat, inv, w = cache
    return norm.batch_norm_backward(L, dy, (False, xhat, inv, w))


def _ln_per_feature(L, dy, cache):
    # layer norm's statistics taken over the batch axis instead of the features
    xhat, inv, w = cache
    dxhat = dy * w[None]
    dx = inv * (dxhat - dxhat.mean(axis=0, keepdims=True) - xhat * (dxhat * xhat).mean(axis=0, keepdims=True))
    return [dx], {"weight": (dy * xhat).sum(axis=0), "bias": dy.sum(axis=0)}


def _gn_weight_unscaled(L, dy, cache):
    # group norm's dγ without x̂ (the bias gradient returned for the weight)
    (dx,), grads = norm.group_norm_backward(L, dy, cache)
    return [dx], {**grads, "weight": grads["bias"]}


@pytest.mark.parametrize("layer,fake,case", [
    ("batch_norm2d", _bn_without_mean_path, lambda: net((2, 2, 3, 3), {"batch_norm2d": {}})),
    ("batch_norm2d", _bn_as_if_eval, lambda: net((2, 2, 3, 3), {"batch_norm2d": {}})),
    ("layer_norm", _ln_per_feature, lambda: net((3, 4), {"layer_norm": {}})),
    ("group_norm", _gn_weight_unscaled, lambda: net((2, 4, 2, 2), {"group_norm": {"num_groups": 2}})),
], ids=["bn-mean-path", "bn-stats-constant", "ln-wrong-axis", "gn-dweight"])
def test_sabotaged_norm_backward_is_caught(monkeypatch, layer, fake, case):
    c = case()
    assert fd_error(c) < TOL
    monkeypatch.setitem(vocab.LAYERS, layer, dataclasses.replace(vocab.LAYERS[layer], backward=fake))
    assert fd_error(c) > 1e-3


# ---------------------------------------------------------------- the running statistics, as state

def _bn_case(**opts):
    return make_case(input={"shape": [3, 2, 2, 2], "init": "normal"}, dtype="float64", seed=3,
                     model=[{"conv2d": {"name": "conv", "out_channels": 2, "kernel_size": 1, "bias": False}},
                            {"batch_norm2d": {"name": "bn", **opts}}, {"tanh": {}}],
                     loss={"mse": {"target": {"init": "normal"}}}, optimizer={"sgd": {"lr": 0.1}}, steps=3)


def test_the_reference_keeps_the_running_statistics_across_steps():
    """Step k's state is the SPEC §1.9 rule applied to step k's batch statistics, from step k − 1's state."""
    case = _bn_case(momentum=0.3, running_mean=[0.5, -0.5], running_var=[2.0, 0.5])
    init = materialize(case)
    trace = NumpyReference().run(case, init)
    mean, var = np.array([0.5, -0.5]), np.array([2.0, 0.5])
    w = np.array(init.params["conv.weight"])
    for step in trace.steps:
        y = np.einsum("nchw,oc->nohw", init.input, w[:, :, 0, 0])  # the conv's output: the batch norm's input
        mean = 0.7 * mean + 0.3 * y.mean(axis=(0, 2, 3))
        var = 0.7 * var + 0.3 * y.var(axis=(0, 2, 3), ddof=1)
        np.testing.assert_allclose(step.state["bn.running_mean"], mean, rtol=1e-13)
        np.testing.assert_allclose(step.state["bn.running_var"], var, rtol=1e-13)
        w = w - 0.1 * step.grads["conv.weight"]


def test_eval_mode_leaves_the_state_and_the_precise_and_rounded_runs_keep_it():
    from gradconf.protocol import Rounding
    ref = NumpyReference()
    case = _bn_case(training=False, running_mean=[0.25, 0.5], running_var=[1.5, 0.75])
    init = materialize(case)
    trace = ref.run(case, init)
    assert [s.state["bn.running_var"].tolist() for s in trace.steps] == [[1.5, 0.75]] * 3
    trained = _bn_case()
    init = materialize(trained)
    plain, precise = ref.run(trained, init), ref.run_precise(trained, init)
    for a, b in zip(plain.steps, precise.steps):
        assert b.state["bn.running_var"].dtype == np.longdouble
        np.testing.assert_allclose(np.asarray(b.state["bn.running_var"], np.float64), a.state["bn.running_var"],
                                   rtol=1e-14)

    class Counting(Rounding):
        seen = []

        def param(self, a):
            self.seen.append(a.shape)
    ref.run_rounded(trained, init, Counting())
    # each step: bn.weight and bn.bias updated, and running_mean and running_var, stored in the dtype
    assert Counting.seen.count((2,)) == (2 + 2) * 3


class _Planted(Planted):
    """The reference with a planted bug in its batch norm's running variance: the biased batch variance."""

    def patches(self, case):
        forward = vocab.LAYERS["batch_norm2d"].forward

        def biased(L, xs, p, state=None):
            keep = state["running_var"].copy()
            y, cache = forward(L, xs, p, state=state)
            var = xs[0].var(axis=(0, 2, 3))
            state["running_var"] = (1 - L.momentum) * keep + L.momentum * var
            return y, cache
        return [swap(vocab.LAYERS, "batch_norm2d", forward=biased)]


def test_a_wrong_running_variance_fails_the_state_comparison():
    from gradconf.runner import Runner

    class Faithful(NumpyReference):
        name = "faithful"
    case = _bn_case()
    records = Runner(NumpyReference(), [Faithful(), _Planted()]).run_case(case).records
    state = {(r.framework, r.step, r.tensor): r.status for r in records
             if r.quantity == "state" and r.framework in ("faithful", "planted")}
    assert len(state) == 2 * 3 * 2
    assert {s for (fw, *_), s in state.items() if fw == "faithful"} == {"pass"}
    assert {s for (fw, _, t), s in state.items() if fw == "planted" and t == "bn.running_var"} == {"fail"}
    assert {s for (fw, _, t), s in state.items() if fw == "planted" and t == "bn.running_mean"} == {"pass"}
    assert {r.status for r in records if r.framework == "planted" and r.quantity != "state"} == {"pass"}


def test_the_tensorflow_batch_norm_is_keras_batchnormalization():
    """adapters/tf_norm.py writes out Keras' BatchNormalization.call: the same output and moving statistics
    as the layer itself, configured with momentum 1 − the case's."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from gradconf.adapters import tf_norm
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 2))  # NHWC
    gamma, beta, mean0, var0 = np.array([1.5, 0.5]), np.array([0.1, -0.2]), np.array([0.3, -0.1]), np.array([2.0, 0.5])
    layer = keras.layers.BatchNormalization(momentum=0.75, epsilon=1e-3, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([gamma, beta, mean0, var0])
    expected = np.asarray(layer(tf.constant(x), training=True))
    case = _bn_case(momentum=0.25, eps=1e-3)
    p = {"weight": tf.constant(gamma), "bias": tf.constant(beta), "running_mean": tf.constant(mean0),
         "running_var": tf.constant(var0)}
    y = tf_norm.batch_norm2d(case.layers[1], [tf.constant(x)], p)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(p["running_mean"]), np.asarray(layer.moving_mean), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(p["running_var"]), np.asarray(layer.moving_variance), rtol=1e-14)
    # ... and that is the biased batch variance (TF-BN-BIASED-VAR)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), 0.75 * var0 + 0.25 * x.var(axis=(0, 1, 2)), rtol=1e-13)


def test_a_golden_state_off_by_a_little_fails():
    import os
    from gradconf.loader import load_file
    from gradconf.runner import Runner
    from tests.conftest import ROOT
    (case,) = load_file(os.path.join(ROOT, "cases", "conventions", "batch_norm_running_var_unbiased.yaml"))
    golden = lambda c: {r.tensor: r.status for r in Runner(NumpyReference(), []).run_case(c).records  # noqa: E731
                        if r.reference == "expected" and r.quantity == "state"}
    assert golden(case) == {"bn.running_mean": "pass", "bn.running_var": "pass"}
    off = {**case.expect.state, "bn.running_var": np.array([1.4])}  # Keras' biased rule
    assert golden(dataclasses.replace(case, expect=dataclasses.replace(case.expect, state=off)))["bn.running_var"] == "fail"


@pytest.mark.parametrize("layer,message", [
    ({"batch_norm2d": {"running_var": [1.0, -0.5]}}, "model[0].batch_norm2d.running_var: must be >= 0"),
    ({"batch_norm2d": {"affine": False, "weight": [1.0, 2.0]}}, "model[0].batch_norm2d.weight: `weight` needs"),
    ({"batch_norm2d": {"momentum": 1.5}}, "model[0].batch_norm2d.momentum: must be in [0, 1]"),
    ({"group_norm": {"num_groups": 3}}, "model[0].group_norm.num_groups: num_groups 3 does not divide the 2"),
    ({"layer_norm": {"weight": [1.0, 2.0]}}, "model[0].layer_norm.weight"),
])
def test_invalid_norm_layers_name_the_field(layer, message):
    from gradconf.errors import CaseError
    with pytest.raises(CaseError) as e:
        make_case(input={"shape": [2, 2, 3, 3]}, model=[layer], loss={"sum": {}})
    assert message in str(e.value)


def test_training_mode_on_one_value_per_channel_is_an_invalid_case():
    from gradconf.errors import CaseError
    with pytest.raises(CaseError, match="model\\[0\\].batch_norm2d.training: training mode needs more than one value"):
        make_case(input={"shape": [1, 2, 1, 1]}, model=[{"batch_norm2d": {}}], loss={"sum": {}})
    make_case(input={"shape": [1, 2, 1, 1]}, model=[{"batch_norm2d": {"training": False}}], loss={"sum": {}})


@pytest.mark.parametrize("shape, groups", [((1, 2, 6), 2), ((2, 3, 3), 1), ((2, 4, 5), 2)], ids=str)
def test_the_tensorflow_group_norm_of_a_conv1d_activation_normalises_its_channels(shape, groups):
    """The TF adapter keeps 3-D (NCL) activations canonical; its group norm took the last axis for the channels
    (graph_norm's sweep: an error where L is not C, and γ, β along L where it is)."""
    pytest.importorskip("tensorflow")
    from gradconf.adapters.tensorflow_adapter import TensorflowAdapter
    from gradconf.runner import Runner
    case = make_case(name="gn1d", dtype="float64", input={"shape": list(shape), "init": "normal"},
                     model=[{"group_norm": {"num_groups": groups, "weight": {"init": "normal", "mean": 1.0},
                                            "bias": {"init": "normal"}}}, {"tanh": {}}],
                     loss={"grad_output": {"value": {"init": "normal"}}}, optimizer={"sgd": {"lr": 0.1}}, steps=2)
    records = Runner(NumpyReference(), [TensorflowAdapter()]).run_case(case).records
    assert {r.quantity for r in records} >= {"output", "grad", "param"}
    assert {(r.quantity, r.tensor, r.status) for r in records if r.status != "pass"} == set()


def test_a_group_norm_without_num_groups_is_a_case_error():
    from gradconf.errors import CaseError
    with pytest.raises(CaseError, match=r"model\[0\]\.group_norm: missing `num_groups`"):
        make_case(input={"shape": [2, 4, 3, 3], "init": "normal"}, model=[{"group_norm": {}}], loss={"sum": {}})


def _cancelling_case():
    # graph_norm[211] of the 2,000-variant sweep: one channel per group, a `sum` after it, so that dγ = Σ dy·x̂
    # is 0 by centring (float32; the frameworks give rounding noise of 1e-6, Adam with ε = 1e-12 a full step)
    return make_case(
        name="gn_cancels", seed=3959375904, dtype="float32", input={"shape": [1, 2, 7], "init": "normal"},
        model=[{"conv1d": {"name": "c", "out_channels": 2, "kernel_size": 3, "padding": "same", "bias": False}},
               {"group_norm": {"name": "n", "num_groups": 2, "eps": 1e-3}},
               {"add": {"name": "m", "from": ["n", "c"]}}, {"sum": {}}],
        loss={"mse": {"target": {"init": "normal"}}}, optimizer={"adam": {"lr": 0.01, "eps": 1e-12}}, steps=1)


class _WrongGamma(Planted):
    """A float32 framework whose group norm's dγ is off by 1e-3 of its terms Σ|dy·x̂|: a real bug, small."""
    name = "wrong_gamma"

    def patches(self, case):
        def wrong(dy, cache, L, dx, grads):
            return dx, {**grads, "weight": grads["weight"] + 1e-3 * np.abs(dy * cache[0]).sum(axis=(0, 2))}
        return [_wrap_backward("group_norm", wrong)]


def test_a_weight_gradient_zero_by_centring_is_judged_against_its_terms():
    """The conditioning rounds each x̂ (tolerance.RoundedLayers.normalised): torch's rounding noise on a dγ that
    is 0 by centring passes (it failed at 36,000x an allowance scaled by the exact 0), and an error of 1e-3
    of the terms still fails."""
    from gradconf.adapters.torch_adapter import TorchAdapter
    from gradconf.runner import Runner
    pytest.importorskip("torch")
    records = Runner(NumpyReference(), [TorchAdapter(), _WrongGamma()]).run_case(_cancelling_case()).records
    status = {(r.framework, r.quantity, r.tensor): r for r in records if r.tensor == "n.weight"}
    torch_grad = status["torch", "grad", "n.weight"]
    assert torch_grad.status == "pass" and torch_grad.max_abs_err > 1e-7  # noise there, and judged as noise
    assert status["wrong_gamma", "grad", "n.weight"].status == "fail"
    assert {r.status for r in records if r.framework == "torch"} == {"pass"}
