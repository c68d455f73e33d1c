"""The reference losses (SPEC §1.10): each gradient against central finite differences, each value against
PyTorch's functional loss of the same name in float64, and planted bugs that each check catches."""
import numpy as np
import pytest

from gradconf import vocab
from gradconf.vocab import losses as L

RNG = np.random.default_rng(11)
Y = RNG.normal(size=(4, 5)) * 1.5
T = RNG.normal(size=(4, 5))
PROB = 1.0 / (1.0 + np.exp(-Y))  # bce takes probabilities
BIN = RNG.uniform(0.0, 1.0, size=(4, 5))
IDS = np.array([0, 3, 3, 1], dtype=np.float64)
W = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
LOGP = Y - np.log(np.exp(Y).sum(axis=1, keepdims=True))

# (name, y, target, options): every loss, every option, both reductions below
CASES = [("mse", Y, T, {}), ("l1", Y, T, {}), ("smooth_l1", Y, T, {"beta": 0.7}), ("smooth_l1", Y, T, {"beta": 2.5}),
         ("huber", Y, T, {"delta": 0.6}), ("huber", Y, T, {"delta": 3.0}), ("bce", PROB, BIN, {}),
         ("bce_with_logits", Y, BIN, {}), ("bce_with_logits", Y, BIN, {"pos_weight": 2.5}),
         ("bce_with_logits", Y, BIN, {"pos_weight": [1.0, 2.0, 0.5, 3.0, 1.5]}),
         ("nll", LOGP, IDS, {}), ("nll", LOGP, IDS, {"weight": W}), ("cross_entropy", Y, IDS, {}),
         ("cross_entropy", Y, IDS, {"weight": W}), ("cross_entropy", Y, IDS, {"label_smoothing": 0.2}),
         ("cross_entropy", Y, IDS, {"weight": W, "label_smoothing": 0.3})]
IDS_ = [f"{n}-{'-'.join(f'{k}' for k in o) or 'plain'}" for n, _, _, o in CASES]


def _fd(f, y, h=1e-6):
    """Central differences of a scalar function of y, element by element."""
    g = np.zeros_like(y)
    for i in np.ndindex(y.shape):
        up, down = y.copy(), y.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


def _fn(name):
    """The declaration's loss as (y, t, reduction, **options) -> (L, dL/dy)."""
    loss = vocab.LOSSES[name].loss
    return lambda y, t, reduction, **o: loss(y, t, None, reduction, **o)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name,y,t,opts", CASES, ids=IDS_)
def test_gradient_matches_finite_differences(name, y, t, opts, reduction):
    fn = _fn(name)
    value, grad = fn(y, t, reduction, **opts)
    fd = _fd(lambda v: fn(v, t, reduction, **opts)[0], y)
    assert np.isfinite(value)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name,y,t,opts", CASES, ids=IDS_)
def test_value_and_gradient_match_torch(name, y, t, opts, reduction):
    pytest.importorskip("torch")
    value, grad = _fn(name)(y, t, reduction, **opts)
    torch_value, torch_grad = _torch_value_and_grad(name, y, t, reduction, opts)
    np.testing.assert_allclose(value, torch_value, rtol=1e-13)
    np.testing.assert_allclose(grad, torch_grad, rtol=1e-12, atol=1e-15)


def _torch_value_and_grad(name, y, t, reduction, opts):
    import torch
    import torch.nn.functional as F
    yt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.int64 if name in L.CLASS_LOSSES else torch.float64)
    w = None if opts.get("weight") is None else torch.tensor(opts["weight"], dtype=torch.float64)
    calls = {
        "mse": lambda: F.mse_loss(yt, tt, reduction=reduction),
        "l1": lambda: F.l1_loss(yt, tt, reduction=reduction),
        "smooth_l1": lambda: F.smooth_l1_loss(yt, tt, reduction=reduction, beta=opts.get("beta", 1.0)),
        "huber": lambda: F.huber_loss(yt, tt, reduction=reduction, delta=opts.get("delta", 1.0)),
        "bce": lambda: F.binary_cross_entropy(yt, tt, reduction=reduction),
        "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(
            yt, tt, reduction=reduction, pos_weight=None if opts.get("pos_weight") is None else
            torch.tensor(np.broadcast_to(opts["pos_weight"], y.shape[-1:]).copy(), dtype=torch.float64)),
        "nll": lambda: F.nll_loss(yt, tt, weight=w, reduction=reduction),
        "cross_entropy": lambda: F.cross_entropy(yt, tt, weight=w, reduction=reduction,
                                                 label_smoothing=opts.get("label_smoothing", 0.0)),
    }
    loss = calls[name]()
    loss.backward()
    return loss.item(), yt.grad.numpy()


# ---------------------------------------------------------------- the checks can fail

def _fd_error(fn, y, t, reduction, opts) -> float:
    """How far fn's gradient is from finite differences, as a multiple of the test's allowance."""
    _, grad = fn(y, t, reduction, **opts)
    fd = _fd(lambda v: fn(v, t, reduction, **opts)[0], y)
    return float(np.max(np.abs(grad - fd) / (1e-6 * np.abs(fd) + 1e-8 * max(1.0, np.abs(fd).max()))))


def _huber_without_delta(y, t, reduction, delta):  # the outside gradient as sign(d), δ dropped
    value, _ = L.huber(y, t, reduction, delta)
    d = y - t
    g = np.where(np.abs(d) < delta, d, np.sign(d))
    return value, g / (1 if reduction == "sum" else d.size)


def _ce_smoothing_ignores_weight(y, t, reduction, weight, label_smoothing):  # gradient p − q, weights dropped
    value, _ = L.cross_entropy(y, t, reduction, weight, label_smoothing)
    return value, L.cross_entropy(y, t, reduction, None, label_smoothing)[1]


def _bce_logits_pos_weight_on_negatives(y, t, reduction, pos_weight):  # pos_weight on the wrong term
    value, _ = L.bce_with_logits(y, t, reduction, pos_weight)
    g = L._sigmoid(y) * (t + pos_weight * (1 - t)) - t
    return value, g / (1 if reduction == "sum" else y.size)


def _nll_mean_over_n(y, t, reduction, weight):  # the gradient of a weighted mean divided by N, not Σ w[t]
    return L.nll(y, t, reduction, weight)[0], L.nll(y, t, "sum", weight)[1] / y.shape[0]


@pytest.mark.parametrize("planted,y,t,opts", [
    (_huber_without_delta, Y * 3, T, {"delta": 0.6}),
    (_ce_smoothing_ignores_weight, Y, IDS, {"weight": W, "label_smoothing": 0.3}),
    (_bce_logits_pos_weight_on_negatives, Y, BIN, {"pos_weight": 2.5}),
    (_nll_mean_over_n, LOGP, IDS, {"weight": W}),
], ids=["huber-delta", "ce-weight", "bce-pos-weight", "nll-denominator"])
def test_a_planted_gradient_bug_fails_the_finite_difference_check(planted, y, t, opts):
    assert _fd_error(planted, y, t, "mean", opts) > 100


def test_a_planted_value_bug_fails_the_torch_check():
    """smooth_l1 written as huber (β not divided out) fails against torch's value."""
    pytest.importorskip("torch")
    torch_value, _ = _torch_value_and_grad("smooth_l1", Y, T, "mean", {"beta": 0.7})
    assert not np.isclose(L.huber(Y, T, "mean", 0.7)[0], torch_value, rtol=1e-13)
