"""Layers that only move or reduce values: flatten (batch axis kept, row-major) and sum (to a scalar)."""
from __future__ import annotations

import numpy as np

from ..case import Flatten, Sum
from ..errors import ShapeError
from .base import NAME, Field, LayerDecl

FIELDS = (Field("name", NAME, doc_default="<type>_<index>"),)


def _flatten(p, site) -> Flatten:
    if len(site.shape) < 2:
        raise ShapeError(f"flatten keeps the batch axis and needs rank >= 2, got shape {list(site.shape)}",
                         site.path)
    return Flatten(name=site.name, in_shape=site.shape, out_shape=(site.shape[0], int(np.prod(site.shape[1:]))))


def flatten_forward(L, xs, p):
    # y[n] = x[n].ravel()   (row-major, batch axis kept)
    (x,) = xs
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(L, dy, cache):
    # dx = dy reshaped back
    return [dy.reshape(cache)], {}


def sum_forward(L, xs, p):
    # y = Σ x
    (x,) = xs
    return np.asarray(x.sum()), x.shape


def sum_backward(L, dy, cache):
    # d(Σx)/dx = 1 everywhere
    return [np.broadcast_to(dy, cache).copy()], {}


FLATTEN = LayerDecl("flatten", "(N, ...) -> (N, features), row-major (NCHW order)", FIELDS, _flatten,
                    flatten_forward, flatten_backward)
SUM = LayerDecl("sum", "the sum of every element, a scalar", FIELDS,
                lambda p, site: Sum(name=site.name, in_shape=site.shape, out_shape=()), sum_forward, sum_backward)
DECLS = (FLATTEN, SUM)
