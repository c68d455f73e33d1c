"""The losses: each its parameters, its check against the model's output, and its value and dL/dy."""
from __future__ import annotations

import numpy as np

from ..case import Loss, TensorSpec
from ..errors import CaseError, ShapeError
from ..fields import integer, tensor
from .base import REQUIRED, TENSOR, Field, LossDecl, Site


def _tensor_target(key: str):
    """build() of a loss whose `key` is a tensor of the output's shape (a number broadcasts to it)."""
    def build(p, site: Site) -> Loss:
        if key not in p:
            raise CaseError(f"missing `{key}`", site.path)
        return Loss(site.name, tensor(p[key], site.path + (key,), site.shape, key))
    return build


def _class_ids(p, site: Site) -> Loss:
    path, out_shape = site.path, site.shape
    if "target" not in p:
        raise CaseError("missing `target`", path)
    if len(out_shape) != 2:
        raise ShapeError(f"cross_entropy needs (batch, classes) logits, the model outputs shape {list(out_shape)}",
                         path)
    t = p["target"]
    if not isinstance(t, list):
        raise CaseError("must be a list of integer class ids, one per batch row", path + ("target",))
    ids = [integer(x, path + ("target", i), min=0) for i, x in enumerate(t)]
    if len(ids) != out_shape[0]:
        raise ShapeError(f"{len(ids)} class ids for a batch of {out_shape[0]}", path + ("target",))
    for i, x in enumerate(ids):
        if x >= out_shape[1]:
            raise ShapeError(f"class id {x} out of range for {out_shape[1]} classes", path + ("target", i))
    return Loss("cross_entropy", TensorSpec((len(ids),), np.array(ids, dtype=np.float64)))


def mse(y, target, rounding=None):
    # L = mean((y - t)²) ;  dL/dy = 2(y - t)/size
    d = y - target
    return np.mean(d * d), 2.0 * d / d.size


def half_sse(y, target, rounding=None):
    # L = ½ Σ (t - y)² ;  dL/dy = y - t
    d = y - target
    return 0.5 * np.sum(d * d), d


def total(y, target, rounding=None):
    # L = Σ y ;  dL/dy = 1
    return np.sum(y), np.ones_like(y)


def grad_output(y, target, rounding=None):
    # L = Σ y·v, so dL/dy = v
    return np.sum(y * target), np.array(target, dtype=np.result_type(y, np.float64))  # a copy, in y's precision


def cross_entropy(y, target, rounding=None):
    # L = mean_n(-log softmax(y_n)[t_n]) ;  dL/dy = (softmax - onehot)/N
    n = y.shape[0]
    z = y - y.max(axis=1, keepdims=True)
    sums = np.exp(z).sum(axis=1, keepdims=True)  # softmax p = exp(z) / sums
    p = np.exp(z) / sums
    if rounding is not None:  # a confident row: the sum is 1 + tiny, and p − 1 at its class nearly cancels
        rounding.softmax(sums)
        rounding.softmax(p)
    t = target.astype(np.int64)
    onehot = np.zeros_like(y)
    onehot[np.arange(n), t] = 1.0
    return (np.log(sums)[:, 0] - z[np.arange(n), t]).mean(), (p - onehot) / n


_TARGET = (Field("target", TENSOR, REQUIRED),)
DECLS = (
    LossDecl("mse", "mean((y − t)²), PyTorch's MSELoss (no ½)", _TARGET, _tensor_target("target"), mse),
    LossDecl("half_sse", "½ Σ (t − y)²", _TARGET, _tensor_target("target"), half_sse),
    LossDecl("sum", "Σ y", (), lambda p, site: Loss("sum"), total),
    LossDecl("cross_entropy", "mean softmax cross-entropy of (batch, classes) logits; `target`: class ids",
             _TARGET, _class_ids, cross_entropy),
    LossDecl("grad_output", "Σ y·v: back-propagates the given `value` as dL/dy", (Field("value", TENSOR, REQUIRED),),
             _tensor_target("value"), grad_output),
)
