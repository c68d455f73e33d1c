"""Pointwise activations: sigmoid, tanh, relu. Each keeps its input and output for the backward."""
from __future__ import annotations

import numpy as np

from ..case import Activation
from .base import NAME, Field, LayerDecl

FIELDS = (Field("name", NAME, doc_default="<type>_<index>"),)


def _build(kind: str):
    return lambda p, site: Activation(name=site.name, in_shape=site.shape, out_shape=site.shape, kind=kind)


def sigmoid_forward(L, xs, p):
    # σ(x) = 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: no overflow, and relative accuracy where σ is tiny
    # (½(1 + tanh(x/2)) is off by an absolute ulp of 1 there: 1e-9 relative at σ = 1e-7).
    (x,) = xs
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1.0, e) / (1.0 + e)
    return y, (x, y)


def sigmoid_backward(L, dy, cache):
    # σ' = σ(1-σ)
    x, y = cache
    return [dy * y * (1.0 - y)], {}


def tanh_forward(L, xs, p):
    # y = tanh x
    (x,) = xs
    y = np.tanh(x)
    return y, (x, y)


def tanh_backward(L, dy, cache):
    # tanh' = 1 - tanh²
    x, y = cache
    return [dy * (1.0 - y * y)], {}


def relu_forward(L, xs, p):
    # y = max(x, 0)
    (x,) = xs
    y = np.maximum(x, 0.0)
    return y, (x, y)


def relu_backward(L, dy, cache):
    # relu' = [x > 0]  (so relu'(0) = 0)
    x, y = cache
    return [dy * (x > 0)], {}


SIGMOID = LayerDecl("sigmoid", "logistic σ(x)", FIELDS, _build("sigmoid"), sigmoid_forward, sigmoid_backward)
TANH = LayerDecl("tanh", "hyperbolic tangent", FIELDS, _build("tanh"), tanh_forward, tanh_backward)
RELU = LayerDecl("relu", "max(x, 0); its derivative at 0 is 0", FIELDS, _build("relu"), relu_forward, relu_backward)
DECLS = (SIGMOID, TANH, RELU)
