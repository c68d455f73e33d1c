"""softmax and log_softmax over one axis (`dim`, default 1: the channel axis of NCHW, the features of (N, F))."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Activation
from ..errors import ShapeError
from ..fields import integer
from .base import NAME, Field, LayerDecl, Site

FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("dim", {"type": "integer"}, 1))  # negative: from the end


@dataclass(frozen=True, kw_only=True)
class Softmax(Activation):
    """kind: softmax | log_softmax; dim: the axis, in the canonical (NCHW) layout, counted from 0."""
    dim: int


def _build(kind: str):
    def build(p: dict, site: Site) -> Softmax:
        path, shape = site.path + ("dim",), site.shape
        dim = integer(p["dim"], path)
        if not -len(shape) <= dim < len(shape):
            raise ShapeError(f"dim {dim} is not an axis of the {len(shape)}-D input (shape {list(shape)}): "
                             f"use 0 to {len(shape) - 1}, or -{len(shape)} to -1", path)
        return Softmax(name=site.name, in_shape=shape, out_shape=shape, kind=kind, dim=dim % len(shape))
    return build


def softmax_forward(L: Softmax, xs, p):
    # y = e^(x − max x) / Σ e^(x − max x)   along dim (the shift: no overflow, the same y)
    (x,) = xs
    e = np.exp(x - x.max(axis=L.dim, keepdims=True))
    y = e / e.sum(axis=L.dim, keepdims=True)
    return y, y


def softmax_backward(L: Softmax, dy, y):
    # dx = y ⊙ (dy − Σ_dim dy ⊙ y)
    return [y * (dy - (dy * y).sum(axis=L.dim, keepdims=True))], {}


def log_softmax_forward(L: Softmax, xs, p):
    # y = x − m − log Σ e^(x − m),  m = max x along dim (log-sum-exp: no overflow, no log of an underflowed 0)
    (x,) = xs
    shifted = x - x.max(axis=L.dim, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=L.dim, keepdims=True))
    return y, y


def log_softmax_backward(L: Softmax, dy, y):
    # dx = dy − e^y · Σ_dim dy   (e^y: the softmax)
    return [dy - np.exp(y) * dy.sum(axis=L.dim, keepdims=True)], {}


SOFTMAX = LayerDecl("softmax", "e^x / Σ e^x along `dim` (default 1: the channel axis)", FIELDS, _build("softmax"),
                    softmax_forward, softmax_backward)
LOG_SOFTMAX = LayerDecl("log_softmax", "x − log Σ e^x along `dim` (log-sum-exp)", FIELDS, _build("log_softmax"),
                        log_softmax_forward, log_softmax_backward)
DECLS = (SOFTMAX, LOG_SOFTMAX)
