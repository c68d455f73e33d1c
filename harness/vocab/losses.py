"""The losses (SPEC §1.3, §1.10): each its parameters, its check against the model's output, and its value
and dL/dy, written out by hand, vectorised, in the precision of the output (float64; long double in the
blame recheck).

`y` is the model's output, `t` the target (class ids as floats for `nll` / `cross_entropy`). `reduction` is
"mean" (over every element; for the class losses over the samples, divided by Σ weight[target] when a class
`weight` is given, as PyTorch does) or "sum". Every formula is PyTorch's definition of the loss of that name;
tests/test_losses.py proves each gradient against finite differences and each value against torch.
"""
from __future__ import annotations

import numpy as np

from ..case import Loss, Shape, TensorSpec
from ..errors import CaseError, ShapeError
from ..fields import integer, number, tensor
from ..parse_training import per_step
from .base import REQUIRED, TENSOR, Field, LossDecl, Site

REDUCTIONS = ("mean", "sum")


def _reduce(e: np.ndarray, de: np.ndarray, reduction: str):
    """Elementwise loss terms e and their derivatives de -> (mean or sum, its gradient)."""
    if reduction == "sum":
        return e.sum(), de
    return e.mean(), de / e.size  # L = Σe / n  ->  dL/dy = de / n


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
    total = -(w * y[n, ids]).sum()
    if reduction == "sum":
        return total, g
    return total / w.sum(), g / w.sum()


def cross_entropy(y, t, reduction="mean", weight=None, label_smoothing=0.0, rounding=None):
    # q = (1 − ε)·onehot + ε/C ;  e_n = Σ_c w_c q_nc (−log p_nc) ;  mean: Σe / Σ w[t_n]   (PyTorch's)
    # de_n/dz_nc = p_nc·Σ_k w_k q_nk − w_c q_nc          (w = 1: p − q)
    # `rounding.softmax(array)`: the conditioning runs round the softmax sum and probabilities
    # (a confident row: the sum is 1 + tiny, and p − 1 at its class nearly cancels).
    n, classes = y.shape
    rows, ids = np.arange(n), t.astype(np.int64)
    z = y - y.max(axis=1, keepdims=True)
    total = np.exp(z).sum(axis=1, keepdims=True)
    p = np.exp(z) / total
    if rounding is not None:
        rounding.softmax(total)
        rounding.softmax(p)
    log_p = z - np.log(total)
    w = _class_weights(weight, classes)
    q = np.full_like(y, label_smoothing / classes)
    q[rows, ids] += 1.0 - label_smoothing
    wq = w * q
    e = -(wq * log_p).sum(axis=1)
    g = p * wq.sum(axis=1, keepdims=True) - wq
    if reduction == "sum":
        return e.sum(), g
    denom = w[ids].sum()
    return e.sum() / denom, g / denom


def half_sse(y, t, reduction="mean"):
    d = y - t
    return 0.5 * np.sum(d * d), d  # L = ½ Σ (t − y)²


def total(y, t, reduction="mean"):
    return np.sum(y), np.ones_like(y)  # L = Σ y


def grad_output(y, t, reduction="mean"):
    return np.sum(y * t), np.array(t, dtype=np.result_type(y, np.float64))  # L = Σ y·v, so dL/dy = v (y's precision)


# ---------------------------------------------------------------- declarations: parameters and checks

def _reduction(p, path) -> str:
    r = p.get("reduction", "mean")
    if r not in REDUCTIONS:
        raise CaseError(f"must be `mean` or `sum`, got {r!r}", path + ("reduction",))
    return r


def _positive(p, key, path, *, strict=False) -> float:
    return number(p[key], path + (key,), min=0, strict_min=strict)


def _per_column(v, path, columns: int, what: str):
    """A number, or one number per output column (the last axis)."""
    if isinstance(v, list):
        if len(v) != columns:
            raise ShapeError(f"{len(v)} {what} value(s) for {columns} output column(s)", path)
        return tuple(number(x, path + (i,), min=0) for i, x in enumerate(v))
    return number(v, path, min=0)


def _elementwise(kind: str, options=()):
    """build() of a loss of a target tensor shaped as the output (`value` for grad_output), with `options`."""
    key = "value" if kind == "grad_output" else "target"

    def build(p, site: Site) -> Loss:
        path = site.path
        if key not in p:
            raise CaseError(f"missing `{key}`", path)
        first, steps = per_step(p[key], path + (key,), site.shape, key)
        opts = {}
        for o in options:
            if o == "beta":
                opts[o] = _positive(p, o, path)
            elif o == "delta":
                opts[o] = _positive(p, o, path, strict=True)
            elif o == "pos_weight":
                opts[o] = None if p.get(o) is None else _per_column(p[o], path + (o,), site.shape[-1], o)
        reduction = _reduction(p, path) if "reduction" in p or kind not in ("half_sse", "grad_output") else "mean"
        return Loss(kind, first, steps, reduction, opts)
    return build


def _ids(t, path, out_shape: Shape) -> TensorSpec:
    if not isinstance(t, list):
        raise CaseError("must be a list of integer class ids, one per batch row", path)
    ids = [integer(x, path + (i,), min=0) for i, x in enumerate(t)]
    if len(ids) != out_shape[0]:
        raise ShapeError(f"{len(ids)} class ids for a batch of {out_shape[0]}", path)
    for i, x in enumerate(ids):
        if x >= out_shape[1]:
            raise ShapeError(f"class id {x} out of range for {out_shape[1]} classes", path + (i,))
    return TensorSpec((len(ids),), np.array(ids, dtype=np.float64))


def _class_loss(kind: str):
    def build(p, site: Site) -> Loss:
        path, out_shape = site.path, site.shape
        if "target" not in p:
            raise CaseError("missing `target`", path)
        if len(out_shape) != 2:
            raise ShapeError(f"{kind} needs (batch, classes) inputs, the model outputs shape {list(out_shape)}", path)
        first, steps = per_step(p["target"], path + ("target",), out_shape, "target",
                                one=lambda v, q, shape: _ids(v, q, out_shape))
        opts = {"weight": None}
        if p.get("weight") is not None:
            w = p["weight"]
            if not isinstance(w, list) or len(w) != out_shape[1]:
                raise ShapeError(f"`weight` takes one number per class ({out_shape[1]})", path + ("weight",))
            opts["weight"] = tuple(number(x, path + ("weight", i), min=0) for i, x in enumerate(w))
            if _reduction(p, path) == "mean" and not any(opts["weight"][int(i)] for s in steps or (first,)
                                                           for i in s.values):
                raise ShapeError("every target's class weight is 0: the weighted mean divides by 0",
                                 path + ("weight",))
        if kind == "cross_entropy":
            ls = number(p["label_smoothing"], path + ("label_smoothing",), min=0)
            if ls > 1:
                raise CaseError(f"must be in [0, 1], got {ls}", path + ("label_smoothing",))
            opts["label_smoothing"] = ls
        return Loss(kind, first, steps, _reduction(p, path), opts)
    return build


def _loss_of(fn):
    """The reference's entry point: (y, target, rounding, reduction, options) -> (L, dL/dy)."""
    def loss(y, target, rounding=None, reduction="mean", **options):
        if fn is cross_entropy:
            return fn(y, target, reduction, rounding=rounding, **options)
        return fn(y, target, reduction, **options)
    return loss


# a tensor, or {per_step: [tensor, ...]}: one per step (SPEC §1.10)
_STEPPED = {"anyOf": [TENSOR, {"type": "object", "additionalProperties": False, "required": ["per_step"],
                               "properties": {"per_step": {"type": "array", "minItems": 1, "items": TENSOR}}}]}
_RED = Field("reduction", {"enum": list(REDUCTIONS)}, "mean")
_TARGET = (Field("target", _STEPPED, REQUIRED), _RED)
_CLASS = (Field("target", _STEPPED, REQUIRED), Field("weight", {"type": ["array", "null"]}, None,
                                                    doc_default="none"), _RED)
_NUM = {"type": "number", "minimum": 0}
DECLS = (
    LossDecl("mse", "mean((y − t)²), PyTorch's MSELoss (no ½)", _TARGET, _elementwise("mse"), _loss_of(mse)),
    LossDecl("l1", "\\|y − t\\|", _TARGET, _elementwise("l1"), _loss_of(l1)),
    LossDecl("smooth_l1", "½d²/β inside \\|d\\| < β, else \\|d\\| − ½β", (*_TARGET, Field("beta", _NUM, 1.0)),
             _elementwise("smooth_l1", ("beta",)), _loss_of(smooth_l1)),
    LossDecl("huber", "½d² inside \\|d\\| < δ, else δ(\\|d\\| − ½δ)", (*_TARGET, Field("delta", _NUM, 1.0)),
             _elementwise("huber", ("delta",)), _loss_of(huber)),
    LossDecl("bce", "−(t·log y + (1 − t)·log(1 − y)) of probabilities y", _TARGET, _elementwise("bce"), _loss_of(bce)),
    LossDecl("bce_with_logits", "bce of σ(y), positives weighted by `pos_weight`",
             (*_TARGET, Field("pos_weight", {"type": ["number", "array", "null"]}, None, doc_default="none")),
             _elementwise("bce_with_logits", ("pos_weight",)), _loss_of(bce_with_logits)),
    LossDecl("nll", "−w[t]·y[t] of (batch, classes) log-probabilities; `target`: class ids", _CLASS,
             _class_loss("nll"), _loss_of(nll)),
    LossDecl("cross_entropy", "softmax cross-entropy of (batch, classes) logits, class `weight`, `label_smoothing`",
             (*_CLASS, Field("label_smoothing", _NUM, 0.0)), _class_loss("cross_entropy"), _loss_of(cross_entropy)),
    LossDecl("half_sse", "½ Σ (t − y)²", (Field("target", _STEPPED, REQUIRED),), _elementwise("half_sse"),
             _loss_of(half_sse)),
    LossDecl("sum", "Σ y", (), lambda p, site: Loss("sum"), _loss_of(total)),
    LossDecl("grad_output", "Σ y·v: back-propagates the given `value` as dL/dy", (Field("value", _STEPPED, REQUIRED),),
             _elementwise("grad_output"), _loss_of(grad_output)),
)
CLASS_LOSSES = ("nll", "cross_entropy")  # integer class targets
