"""The NumPy reference against central finite differences (float64), layer by layer and option by option.

The loss is a random `grad_output` projection unless a test is about losses, so that no symmetry of the
upstream gradient can hide a transposed kernel or a shifted window.
"""
import numpy as np
import pytest

import dataclasses

from gradconf import vocab
from gradconf.adapters.numpy_ref import gradients, initial_states
from gradconf.vocab import conv, numerics, pool
from gradconf.tensors import materialize
from tests.conftest import make_case

H = 1e-4  # with the 4-point stencil: truncation O(h⁴) ~ 1e-16, rounding eps·|L|/h ~ 1e-12
TOL = 1e-7


def fd_error(case) -> float:
    """max |numeric - analytic| / max |analytic| over the input and every parameter.

    Each derivative is estimated at two step sizes; where they disagree the loss is not smooth
    there (a max-pool or ReLU kink within a few steps), and that element is left out. Kinks are
    rare with continuous random data: more than 2% of elements excluded fails the check.
    """
    init = materialize(case)
    x = np.array(init.input)
    params = {k: np.array(v) for k, v in init.params.items()}
    states = initial_states(case, init, np.float64)  # a stateful layer's materialised state (batch norm)
    _, _, grads, _ = gradients(case, x, params, init.target, states=states)

    def derivative(arr, idx, h):
        keep, f = arr[idx], {}
        for k in (-2, -1, 1, 2):
            arr[idx] = keep + k * h
            f[k] = gradients(case, x, params, init.target, states=states)[0]
        arr[idx] = keep
        return (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * h)  # central, O(h⁴)

    worst, kinks, total = 0.0, 0, 0
    for name, arr in [("input", x), *params.items()]:
        scale = max(np.abs(grads[name]).max(), 1e-3)
        for idx in np.ndindex(arr.shape):
            coarse, fine = derivative(arr, idx, H), derivative(arr, idx, H / 4)
            total += 1
            if abs(coarse - fine) > 1e-8 * scale:
                kinks += 1
                continue
            worst = max(worst, abs(fine - grads[name][idx]) / scale)
    assert kinks <= 0.02 * total, f"{kinks} of {total} elements at kinks"
    return worst


def net(input_shape, *layers, loss=None, seed=0):
    return make_case(input={"shape": list(input_shape), "init": "normal"}, model=list(layers),
                     loss=loss or {"grad_output": {"value": {"init": "normal"}}}, dtype="float64", seed=seed)


CONV = [
    dict(kernel_size=3), dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=3),
    dict(kernel_size=[2, 3], stride=[1, 2]), dict(kernel_size=3, padding=1), dict(kernel_size=2, padding=[1, 0]),
    dict(kernel_size=3, padding=[[0, 2], [1, 0]]), dict(kernel_size=3, stride=2, padding="same"),
    dict(kernel_size=2, padding="valid"), dict(kernel_size=2, dilation=2), dict(kernel_size=2, dilation=3),
    dict(kernel_size=3, stride=2, dilation=2, padding=2), dict(kernel_size=2, groups=2),
    dict(kernel_size=3, groups=4, padding=1), dict(kernel_size=2, bias=False), dict(kernel_size=1, stride=2),
]


@pytest.mark.parametrize("opts", CONV, ids=str)
def test_conv2d(opts):
    out = 8 if opts.get("groups") == 4 else 4
    assert fd_error(net((2, 4, 7, 6), {"conv2d": {"out_channels": out, **opts}})) < TOL


@pytest.mark.parametrize("opts", [dict(kernel_size=3, padding=1), dict(kernel_size=2, dilation=2),
                                  dict(kernel_size=3, groups=2, padding=[[0, 2], [1, 0]])], ids=str)
def test_conv2d_few_input_channels(opts):
    """Four times as many output channels as input ones: dX goes through col2im, not the rotated kernel."""
    assert fd_error(net((2, 2, 6, 5), {"conv2d": {"out_channels": 8, **opts}})) < TOL


DECONV = [
    dict(kernel_size=3), dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1), dict(kernel_size=2, stride=3, output_padding=[2, 1]),
    dict(kernel_size=3, padding=[[0, 2], [1, 0]]), dict(kernel_size=3, stride=2, padding="same"),
    dict(kernel_size=2, stride=3, padding="same"), dict(kernel_size=2, dilation=2),
    dict(kernel_size=2, dilation=2, output_padding=1), dict(kernel_size=3, groups=2, stride=2), dict(kernel_size=2, bias=False),
]


@pytest.mark.parametrize("opts", DECONV, ids=str)
def test_conv_transpose2d(opts):
    assert fd_error(net((2, 4, 3, 4), {"conv_transpose2d": {"out_channels": 2, **opts}})) < TOL


POOL = [
    ("max_pool2d", dict(kernel_size=2)), ("max_pool2d", dict(kernel_size=3, stride=1)),
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1)), ("max_pool2d", dict(kernel_size=2, padding=[[1, 0], [0, 1]])),
    ("max_pool2d", dict(kernel_size=[2, 3], stride=[2, 1], padding="same")),
    ("avg_pool2d", dict(kernel_size=2)), ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=2, padding=[[1, 0], [0, 1]], count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=3, stride=1, padding="same", count_include_pad=False)),
]


@pytest.mark.parametrize("kind,opts", POOL, ids=str)
def test_pools(kind, opts):
    assert fd_error(net((2, 2, 6, 7), {kind: opts})) < TOL


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_activations(act):
    assert fd_error(net((2, 3, 4, 4), {act: {}})) < TOL


def test_sigmoid_and_tanh_are_accurate_to_an_ulp_relative_everywhere():
    """Where σ is tiny (x ≪ 0) a formula through 1 ± tiny, e.g. ½(1 + tanh(x/2)), loses its relative
    precision (1e-9 at σ = 1e-7): torch keeps it, so the reference must too. Against long double."""
    from gradconf.case import Activation
    x = np.concatenate([np.linspace(-740.0, 40.0, 20001), np.linspace(-3.0, 3.0, 2001)])
    wide = x.astype(np.longdouble)
    exact = {"sigmoid": np.where(wide >= 0, 1 / (1 + np.exp(-wide)), np.exp(wide) / (1 + np.exp(wide))),
             "tanh": np.tanh(wide)}
    for kind, want in exact.items():
        got, _ = vocab.LAYERS[kind].forward(Activation(kind=kind, name=kind, in_shape=x.shape, out_shape=x.shape),
                                            [x], {})
        tiny = np.abs(want) > np.finfo(np.float64).tiny  # normal results: relative error is defined
        rel = np.abs((got[tiny] - want[tiny]) / want[tiny]).astype(np.float64)
        assert rel.max() < 4 * np.finfo(np.float64).eps, (kind, x[tiny][np.argmax(rel)])


@pytest.mark.parametrize("bias", [True, False])
def test_flatten_dense(bias):
    assert fd_error(net((3, 2, 3, 3), {"flatten": {}}, {"dense": {"out_features": 4, "bias": bias}})) < TOL


LOSSES = [{"mse": {"target": {"init": "normal"}}}, {"mse": {"target": 0.25}}, {"half_sse": {"target": {"init": "normal"}}},
          {"sum": {}}, {"cross_entropy": {"target": [2, 0, 1]}}, {"grad_output": {"value": {"init": "normal"}}}]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: next(iter(l)))
def test_losses(loss):
    assert fd_error(net((3, 5), {"dense": {"out_features": 3}}, {"tanh": {}}, {"dense": {"out_features": 3}},
                        loss=loss)) < TOL


@pytest.mark.parametrize("seed", range(4))
def test_small_networks(seed):
    case = net((2, 2, 9, 8),
               {"conv2d": {"out_channels": 3, "kernel_size": 3, "padding": 1}}, {"max_pool2d": {"kernel_size": 2}},
               {"tanh": {}}, {"conv2d": {"out_channels": 2, "kernel_size": 2, "dilation": 2, "groups": 1}},
               {"sigmoid": {}}, {"conv_transpose2d": {"out_channels": 2, "kernel_size": 2, "stride": 2}},
               {"avg_pool2d": {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}},
               {"relu": {}}, {"flatten": {}}, {"dense": {"out_features": 3}},
               loss={"cross_entropy": {"target": [1, 2]}}, seed=seed)
    assert fd_error(case) < TOL


def test_sum_layer():
    assert fd_error(net((2, 3), {"dense": {"out_features": 2}}, {"sum": {}}, {"tanh": {}})) < TOL


# The suite must fail when a backward formula is wrong. Each sabotage is a classic hand-backprop bug.

def _flipped_kernel_dx(L, dy, cache):
    x_shape, cols, wg, has_bias = cache
    return conv.conv2d_backward(L, dy, [x_shape, cols, wg[..., ::-1], has_bias])  # the flipped kernel


def _sigmoid_without_chain(L, dy, cache):
    x, y = cache
    return [dy * y], {}


def _maxpool_last_max(L, dy, cache):
    shape, arg = cache
    return pool.max_pool2d_backward(L, dy, (shape, np.minimum(arg + 1, L.kernel_size[0] * L.kernel_size[1] - 1)))


@pytest.mark.parametrize("layer,fake,case", [
    ("conv2d", _flipped_kernel_dx, lambda: net((1, 2, 5, 5), {"conv2d": {"out_channels": 2, "kernel_size": 3}})),
    ("sigmoid", _sigmoid_without_chain, lambda: net((2, 3), {"sigmoid": {}})),
    ("max_pool2d", _maxpool_last_max, lambda: net((1, 1, 4, 4), {"max_pool2d": {"kernel_size": 2}})),
])
def test_sabotaged_backward_is_caught(monkeypatch, layer, fake, case):
    """A wrong backward injected through the layer's declaration (the registry the reference dispatches on)."""
    c = case()
    assert fd_error(c) < TOL
    monkeypatch.setitem(vocab.LAYERS, layer, dataclasses.replace(vocab.LAYERS[layer], backward=fake))
    assert fd_error(c) > 1e-3


# The conv reuses the im2col columns a backward has finished with (vocab.numerics.give_back): results
# must not depend on what the buffer held before, and a forward cache is good for one backward only.

def _conv(n, c, o, hw, stride=1, pad=1):
    from gradconf.case import Conv2d
    out = (hw + 2 * pad - 3) // stride + 1
    return Conv2d(name="conv", in_shape=(n, c, hw, hw), out_shape=(n, o, out, out), out_channels=o,
                  kernel_size=(3, 3), stride=(stride, stride), padding=((pad, pad), (pad, pad)),
                  dilation=(1, 1), groups=1)


def _fwd_bwd(L, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(L.in_shape), rng.standard_normal(L.out_shape)
    w, b = rng.standard_normal((L.out_channels, L.in_shape[1], 3, 3)), rng.standard_normal(L.out_channels)
    y, cache = conv.conv2d_forward(L, [x], {"weight": w, "bias": b})
    (dx,), grads = conv.conv2d_backward(L, dy, cache)
    return y, dx, grads["weight"], grads["bias"]


def _two_alive(L):
    """Two forwards before their backwards, as in a network: each needs its own columns."""
    rng = np.random.default_rng(7)
    xs, dys = rng.standard_normal((2, *L.in_shape)), rng.standard_normal((2, *L.out_shape))
    w = rng.standard_normal((L.out_channels, L.in_shape[1], 3, 3))
    caches = [conv.conv2d_forward(L, [x], {"weight": w})[1] for x in xs]
    return tuple(conv.conv2d_backward(L, dy, c)[1]["weight"] for dy, c in zip(dys[::-1], caches[::-1]))


def test_reused_columns_change_no_result(monkeypatch):
    # big enough to be kept; then a stride-2 conv (col2im path) and a larger-input one write over it
    layers = [_conv(2, 16, 8, 64), _conv(2, 8, 16, 48, stride=2), _conv(2, 16, 8, 64), _conv(1, 16, 16, 70, pad=0)]
    numerics._SPARE.cols = None
    reused = [_fwd_bwd(layers[0], 0)]
    spare = numerics._SPARE.cols
    assert spare is not None and spare.size >= 1 << 20  # kept...
    _, cache = conv.conv2d_forward(layers[0], [np.ones(layers[0].in_shape)], {"weight": np.ones((8, 16, 3, 3))})
    assert np.shares_memory(cache[1], spare)  # ...and written over by the next im2col
    conv.conv2d_backward(layers[0], np.ones(layers[0].out_shape), cache)
    reused += [_fwd_bwd(L, seed) for seed, L in enumerate(layers) if seed] + [_two_alive(layers[0])]
    monkeypatch.setattr(conv, "give_back", lambda cols: None)
    numerics._SPARE.cols = None
    fresh = [_fwd_bwd(L, seed) for seed, L in enumerate(layers)] + [_two_alive(layers[0])]
    for a, b in zip(reused, fresh):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_a_forward_cache_serves_one_backward():
    L = _conv(1, 2, 2, 5)
    rng = np.random.default_rng(0)
    y, cache = conv.conv2d_forward(L, [rng.standard_normal(L.in_shape)], {"weight": rng.standard_normal((2, 2, 3, 3))})
    conv.conv2d_backward(L, np.ones_like(y), cache)
    with pytest.raises(RuntimeError, match="already used by a backward"):
        conv.conv2d_backward(L, np.ones_like(y), cache)


def test_batch_split_over_threads_matches_one_thread(monkeypatch):
    """A big conv splits its batch over threads, one BLAS thread each (vocab.numerics.over_batch)."""
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info()]
    L = _conv(4, 16, 8, 64)
    monkeypatch.setattr(numerics, "_threads", lambda: 2)
    split = _fwd_bwd(L, 3)
    assert [i["num_threads"] for i in threadpool_info()] == before  # BLAS's own pool size is restored
    monkeypatch.setattr(numerics, "_threads", lambda: 1)
    whole = _fwd_bwd(L, 3)
    for u, v in zip(split, whole):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13 * np.abs(v).max())
