"""Pointwise activations: sigmoid, tanh, relu, leaky_relu, elu, gelu, silu, softplus, and dropout in evaluation
mode. Each keeps what its derivative needs (its input, or its output) for the backward. softmax: vocab/softmax.py."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..case import Activation, Layer
from ..errors import CaseError
from ..fields import boolean, number
from .base import BOOL, NAME, Field, LayerDecl
from .erf import erfc

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


# ---------------------------------------------------------------- with options (SPEC §1.9)

NUMBER = {"type": "number"}


@dataclass(frozen=True, kw_only=True)
class LeakyRelu(Activation):
    negative_slope: float


@dataclass(frozen=True, kw_only=True)
class Elu(Activation):
    alpha: float


@dataclass(frozen=True, kw_only=True)
class Gelu(Activation):
    approximate: str  # "none" (the erf form) | "tanh"


@dataclass(frozen=True, kw_only=True)
class Softplus(Activation):
    beta: float
    threshold: float


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    """Not an Activation: the identity, so the conditioning runs leave it alone (nothing to round)."""
    TYPE = "dropout"
    p: float


def _same(cls, kind: str, **rules):
    """build(): the input's shape, each option checked by its rule (value, path) -> value."""
    def build(p, site):
        options = {key: rule(p[key], site.path + (key,)) for key, rule in rules.items()}
        return cls(name=site.name, in_shape=site.shape, out_shape=site.shape, kind=kind, **options)
    return build


def _approximate(v, path) -> str:
    if v not in ("none", "tanh"):
        raise CaseError(f"must be `none` (the exact, erf form) or `tanh`, got {v!r}", path)
    return v


def _dropout(p, site) -> Dropout:
    if boolean(p["training"], site.path + ("training",)):
        raise CaseError("only `training: false` (the identity) can be compared: a train-mode mask comes from each "
                        "framework's own random generator, so no two frameworks drop the same elements",
                        site.path + ("training",))
    rate = number(p["p"], site.path + ("p",), min=0)
    if rate > 1:
        raise CaseError(f"must be a probability in [0, 1], got {rate}", site.path + ("p",))
    return Dropout(name=site.name, in_shape=site.shape, out_shape=site.shape, p=rate)


def leaky_relu_forward(L, xs, p):
    # y = x for x > 0, negative_slope·x otherwise
    (x,) = xs
    return np.where(x > 0, x, L.negative_slope * x), x


def leaky_relu_backward(L, dy, x):
    # y' = 1 for x > 0, negative_slope otherwise (the left-hand value at the kink: y'(0) = negative_slope)
    return [dy * np.where(x > 0, 1.0, L.negative_slope)], {}


def elu_forward(L, xs, p):
    # y = x for x > 0, alpha·(eˣ − 1) otherwise (expm1: accurate near 0)
    (x,) = xs
    left = L.alpha * np.expm1(np.minimum(x, 0.0))
    y = np.where(x > 0, x, left)
    return y, (x, y, left)


def elu_backward(L, dy, cache):
    # y' = 1 for x > 0, alpha·eˣ otherwise (the left-hand value at the kink: y'(0) = alpha)
    # + (y − alpha·(eˣ − 1)): 0 to the bit here; in a conditioning run, the rounding of the stored output y
    # (tolerance.RoundedLayers rounds y in place, not `left`). TensorFlow and JAX read y' back from y as
    # y + alpha, exact only to eps·alpha: for x = −20 that is 2e-8 of eˣ, which a later cancellation can bring
    # above the allowance.
    x, y, left = cache
    return [dy * np.where(x > 0, 1.0, L.alpha * np.exp(np.minimum(x, 0.0)) + (y - left))], {}


_GELU_C = math.sqrt(2.0 / math.pi)  # tanh form: u = √(2/π)·(x + 0.044715·x³)
_INV_SQRT2, _INV_SQRT_2PI = 1.0 / math.sqrt(2.0), 1.0 / math.sqrt(2.0 * math.pi)


def gelu_forward(L, xs, p):
    (x,) = xs
    if L.approximate == "tanh":
        # y = ½x·(1 + tanh u),  u = √(2/π)·(x + 0.044715·x³)
        t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1.0 + t), (x, t)
    # y = x·Φ(x),  Φ(x) = ½·erfc(−x/√2)  (erfc: Φ keeps its relative accuracy far left, where 1 + erf would not)
    cdf = 0.5 * erfc(-x * _INV_SQRT2)
    return x * cdf, (x, cdf)


def gelu_backward(L, dy, cache):
    x, c = cache
    if L.approximate == "tanh":
        # y' = ½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²),  t = tanh u
        return [dy * (0.5 * (1.0 + c) + 0.5 * x * (1.0 - c * c) * _GELU_C * (1.0 + 3 * 0.044715 * x * x))], {}
    # y' = Φ(x) + x·φ(x),  φ(x) = e^(−x²/2)/√(2π)
    return [dy * (c + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x))], {}


def silu_forward(L, xs, p):
    # y = x·σ(x)
    (x,) = xs
    s, _ = sigmoid_forward(L, xs, p)
    return x * s, (x, s)


def silu_backward(L, dy, cache):
    # y' = σ(x)·(1 + x·(1 − σ(x)))
    x, s = cache
    return [dy * s * (1.0 + x * (1.0 - s))], {}


def softplus_forward(L, xs, p):
    # y = x where β·x > threshold (PyTorch's linear region), else log(1 + e^(βx))/β = (max(βx, 0) + log1p(e^−|βx|))/β
    (x,) = xs
    z = L.beta * x
    return np.where(z > L.threshold, x, (np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))) / L.beta), (x, z)


def softplus_backward(L, dy, cache):
    # y' = 1 where β·x > threshold, else σ(βx)
    x, z = cache
    s, _ = sigmoid_forward(L, [z], {})
    return [dy * np.where(z > L.threshold, 1.0, s)], {}


def dropout_forward(L, xs, p):
    # y = x  (evaluation mode: the identity, whatever p); a copy, so no rounding of it reaches the layer before
    return xs[0].copy(), None


def dropout_backward(L, dy, cache):
    # dx = dy
    return [dy], {}


LEAKY_RELU = LayerDecl("leaky_relu", "x for x > 0, else `negative_slope`·x; its derivative at 0 is `negative_slope`",
                       (*FIELDS, Field("negative_slope", NUMBER, 0.01)),
                       _same(LeakyRelu, "leaky_relu", negative_slope=number), leaky_relu_forward, leaky_relu_backward)
ELU = LayerDecl("elu", "x for x > 0, else `alpha`·(eˣ − 1); its derivative at 0 is `alpha`",
                (*FIELDS, Field("alpha", NUMBER, 1.0)), _same(Elu, "elu", alpha=number), elu_forward, elu_backward)
GELU = LayerDecl("gelu", "x·Φ(x) (`approximate: none`, with erf) or its tanh form (`approximate: tanh`)",
                 (*FIELDS, Field("approximate", {"enum": ["none", "tanh"]}, "none")),
                 _same(Gelu, "gelu", approximate=_approximate), gelu_forward, gelu_backward)
SILU = LayerDecl("silu", "x·σ(x) (swish)", FIELDS, _build("silu"), silu_forward, silu_backward)
SOFTPLUS = LayerDecl("softplus", "log(1 + e^(βx))/β; x itself where β·x > `threshold` (PyTorch's)",
                     (*FIELDS, Field("beta", NUMBER, 1.0), Field("threshold", NUMBER, 20.0)),
                     _same(Softplus, "softplus", beta=lambda v, path: number(v, path, min=0, strict_min=True),
                           threshold=number), softplus_forward, softplus_backward)
DROPOUT = LayerDecl("dropout", "evaluation mode only (`training: false`): the identity; `p` is checked, not applied",
                    (*FIELDS, Field("p", {"type": "number", "minimum": 0, "maximum": 1}, 0.5),
                     Field("training", BOOL, False)),
                    _dropout, dropout_forward, dropout_backward)
DECLS = (SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, SILU, SOFTPLUS, DROPOUT)
