"""The reference losses of SPEC §1.10, written out by hand: each returns (L, dL/dy), vectorised, float64.

`y` is the model's output, `t` the target (class ids as floats for `nll` / `cross_entropy`).
`reduction` is "mean" (over every element; for the class losses over the samples, divided by
Σ weight[target] when a class `weight` is given, as PyTorch does) or "sum". Every formula is the
PyTorch definition of the loss of the same name; each one's gradient is proven against finite
differences in tests/test_losses.py.
"""
from __future__ import annotations

import numpy as np


def _reduce(e: np.ndarray, de: np.ndarray, reduction: str):
    """Elementwise loss terms e and their derivatives de -> (mean or sum, its gradient)."""
    if reduction == "sum":
        return float(e.sum()), de
    return float(e.mean()), de / e.size  # L = Σe / n  ->  dL/dy = de / n


def mse(y, t, reduction="mean"):
    d = y - t
    return _reduce(d * d, 2.0 * d, reduction)  # e = (y − t)², e' = 2(y − t)


def l1(y, t, reduction="mean"):
    d = y - t
    return _reduce(np.abs(d), np.sign(d), reduction)  # e = |y − t|, e' = sign (0 at 0, as PyTorch)


def smooth_l1(y, t, reduction="mean", beta=1.0):
    d = y - t
    a = np.abs(d)
    if beta == 0:  # PyTorch: beta 0 is l1
        return l1(y, t, reduction)
    quad = a < beta  # e = ½d²/β inside |d| < β, |d| − ½β outside
    return _reduce(np.where(quad, 0.5 * d * d / beta, a - 0.5 * beta), np.where(quad, d / beta, np.sign(d)),
                   reduction)


def huber(y, t, reduction="mean", delta=1.0):
    d = y - t
    a = np.abs(d)
    quad = a < delta  # e = ½d² inside |d| < δ, δ(|d| − ½δ) outside (= δ·smooth_l1 with β = δ)
    return _reduce(np.where(quad, 0.5 * d * d, delta * (a - 0.5 * delta)), np.where(quad, d, delta * np.sign(d)),
                   reduction)


def bce(y, t, reduction="mean"):
    # e = −(t·log y + (1 − t)·log(1 − y)), y a probability; e' = (y − t) / (y(1 − y))
    # PyTorch clamps each log at −100; cases keep y inside (0, 1), where that never binds.
    e = -(t * np.maximum(np.log(y), -100.0) + (1.0 - t) * np.maximum(np.log1p(-y), -100.0))
    return _reduce(e, (y - t) / (y * (1.0 - y)), reduction)


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))  # log(1 + eˣ) without overflow


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def bce_with_logits(y, t, reduction="mean", pos_weight=None):
    # e = −(w·t·log σ(y) + (1 − t)·log(1 − σ(y))) = w·t·softplus(−y) + (1 − t)·softplus(y)
    # e' = σ(y)·(w·t + 1 − t) − w·t          (w = pos_weight, 1 without one; broadcast on the last axis)
    w = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    e = w * t * _softplus(-y) + (1.0 - t) * _softplus(y)
    return _reduce(e, _sigmoid(y) * (w * t + 1.0 - t) - w * t, reduction)


def _class_weights(weight, classes: int) -> np.ndarray:
    return np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)


def nll(y, t, reduction="mean", weight=None):
    # y: (N, C) log-probabilities; e_n = −w[t_n]·y[n, t_n];  mean: Σe / Σ w[t_n]
    n = np.arange(y.shape[0])
    ids = t.astype(np.int64)
    w = _class_weights(weight, y.shape[1])[ids]
    g = np.zeros_like(y)
    g[n, ids] = -w
    total = float(-(w * y[n, ids]).sum())
    if reduction == "sum":
        return total, g
    return total / w.sum(), g / w.sum()


def cross_entropy(y, t, reduction="mean", weight=None, label_smoothing=0.0, round_off=None):
    # q = (1 − ε)·onehot + ε/C ;  e_n = Σ_c w_c q_nc (−log p_nc) ;  mean: Σe / Σ w[t_n]   (PyTorch's)
    # de_n/dz_nc = p_nc·Σ_k w_k q_nk − w_c q_nc          (w = 1: p − q)
    # `round_off(array, "softmax")`: the conditioning runs round the softmax sum and probabilities
    # (a confident row: the sum is 1 + tiny, and p − 1 at its class nearly cancels).
    n, classes = y.shape
    rows, ids = np.arange(n), t.astype(np.int64)
    z = y - y.max(axis=1, keepdims=True)
    total = np.exp(z).sum(axis=1, keepdims=True)
    p = np.exp(z) / total
    if round_off is not None:
        round_off(total, "softmax")
        round_off(p, "softmax")
    log_p = z - np.log(total)
    w = _class_weights(weight, classes)
    q = np.full_like(y, label_smoothing / classes)
    q[rows, ids] += 1.0 - label_smoothing
    wq = w * q
    e = -(wq * log_p).sum(axis=1)
    g = p * wq.sum(axis=1, keepdims=True) - wq
    if reduction == "sum":
        return float(e.sum()), g
    denom = w[ids].sum()
    return float(e.sum() / denom), g / denom


def half_sse(y, t, reduction="mean"):
    d = y - t
    return 0.5 * float(np.sum(d * d)), d  # L = ½ Σ (t − y)²


def total(y, t, reduction="mean"):
    return float(np.sum(y)), np.ones_like(y)  # L = Σ y


def grad_output(y, t, reduction="mean"):
    return float(np.sum(y * t)), np.array(t, dtype=np.float64)  # L = Σ y·v, so dL/dy = v


# name -> (function, its options beyond reduction). `sum` is the loss named sum.
LOSSES = {"mse": (mse, ()), "l1": (l1, ()), "smooth_l1": (smooth_l1, ("beta",)), "huber": (huber, ("delta",)),
          "bce": (bce, ()), "bce_with_logits": (bce_with_logits, ("pos_weight",)), "nll": (nll, ("weight",)),
          "cross_entropy": (cross_entropy, ("weight", "label_smoothing")), "half_sse": (half_sse, ()),
          "sum": (total, ()), "grad_output": (grad_output, ())}
CLASS_LOSSES = ("nll", "cross_entropy")  # integer class targets
