"""Normalisation layers (SPEC §1.9): batch_norm2d (training: batch statistics, and running statistics as
state; eval: the running statistics), layer_norm (every axis but the batch), group_norm (channel groups).

Each normalises x̂ = (x − μ)/√(σ² + ε) over its axes (σ² biased) and applies y = γ·x̂ + β. The backward
through the statistics is the one closed form, `_through_stats`, over those same axes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..case import Layer, Param, TensorSpec
from ..errors import CaseError, Conflict, ShapeError
from ..fields import boolean, integer, number, tensor
from .base import BOOL, INT, NAME, REQUIRED, TENSOR, Field, LayerDecl, Site

POSITIVE = {"type": "number", "exclusiveMinimum": 0}
UNIT = {"type": "number", "minimum": 0, "maximum": 1}
_NAME = Field("name", NAME, doc_default="<type>_<index>")
_AFFINE = (Field("eps", POSITIVE, 1e-5), Field("affine", BOOL, True), Field("weight", TENSOR, doc_default="ones"),
           Field("bias", TENSOR, doc_default="zeros"))


@dataclass(frozen=True, kw_only=True)
class BatchNorm2d(Layer):
    TYPE = "batch_norm2d"
    eps: float
    momentum: float
    affine: bool
    training: bool

    @property
    def reduces(self) -> int:
        """How many elements each statistic sums (N·H·W): the tolerance policy's reduction width."""
        n, _, h, w = self.in_shape
        return n * h * w


@dataclass(frozen=True, kw_only=True)
class LayerNorm(Layer):
    TYPE = "layer_norm"
    eps: float
    affine: bool

    @property
    def reduces(self) -> int:
        return math.prod(self.in_shape[1:])


@dataclass(frozen=True, kw_only=True)
class GroupNorm(Layer):
    TYPE = "group_norm"
    num_groups: int
    eps: float
    affine: bool

    @property
    def reduces(self) -> int:
        return math.prod(self.in_shape[1:]) // self.num_groups


def _affine_params(p: dict, site: Site, shape: tuple) -> tuple[Param, ...]:
    """weight [ones] and bias [zeros] of `shape`, or none without `affine`."""
    path, affine = site.path, boolean(p["affine"], site.path + ("affine",))
    if not affine:
        for key in ("weight", "bias"):
            if p.get(key) is not None:
                raise Conflict(f"`{key}` needs `affine: true`", path + (key,))
        return ()
    return tuple(Param(f"{site.name}.{key}", tensor(p[key], path + (key,), shape, key) if p.get(key) is not None
                       else TensorSpec(shape, None, init)) for key, init in (("weight", "ones"), ("bias", "zeros")))


def _variance_spec(spec: TensorSpec, path) -> TensorSpec:
    """A running variance must be >= 0 (eval mode takes its square root)."""
    low = spec.values.min(initial=0.0) if spec.values is not None else \
        {"uniform": spec.low, "normal": -1.0, "arange": 0.0}.get(spec.init, 0.0)
    if low < 0:
        raise CaseError("must be >= 0 everywhere (a variance): a literal, or `init: uniform` with `low` >= 0, "
                        "`ones`, `zeros` or `arange`", path)
    return spec


def _build_batch(p: dict, site: Site) -> BatchNorm2d:
    path, shape = site.path, site.shape
    if len(shape) != 4:
        raise ShapeError(f"batch_norm2d needs an (N, C, H, W) input, got shape {list(shape)}", path)
    n, c, h, w = shape
    training = boolean(p["training"], path + ("training",))
    if training and n * h * w == 1:
        raise ShapeError("training mode needs more than one value per channel (N·H·W is 1): the running "
                         "variance takes the unbiased batch variance", path + ("training",))
    state = []
    for key, init in (("running_mean", "zeros"), ("running_var", "ones")):
        spec = tensor(p[key], path + (key,), (c,), key) if p.get(key) is not None else TensorSpec((c,), None, init)
        state.append(Param(f"{site.name}.{key}", _variance_spec(spec, path + (key,)) if key == "running_var" else spec))
    return BatchNorm2d(name=site.name, in_shape=shape, out_shape=shape, params=_affine_params(p, site, (c,)),
                       state=tuple(state), eps=number(p["eps"], path + ("eps",), min=0, strict_min=True),
                       momentum=_momentum(p["momentum"], path + ("momentum",)), affine=p["affine"], training=training)


def _momentum(v, path) -> float:
    m = number(v, path, min=0)
    if m > 1:
        raise CaseError(f"must be in [0, 1], got {v}", path)
    return m


def _build_layer(p: dict, site: Site) -> LayerNorm:
    path, shape = site.path, site.shape
    if len(shape) < 2:
        raise ShapeError(f"layer_norm needs a batch axis and at least one more, got shape {list(shape)}", path)
    return LayerNorm(name=site.name, in_shape=shape, out_shape=shape, params=_affine_params(p, site, shape[1:]),
                     eps=number(p["eps"], path + ("eps",), min=0, strict_min=True), affine=p["affine"])


def _build_group(p: dict, site: Site) -> GroupNorm:
    path, shape = site.path, site.shape
    if len(shape) < 2:
        raise ShapeError(f"group_norm needs an (N, C, ...) input, got shape {list(shape)}", path)
    if "num_groups" not in p:
        raise CaseError("missing `num_groups`", path)
    g = integer(p["num_groups"], path + ("num_groups",), min=1)
    if shape[1] % g:
        raise ShapeError(f"num_groups {g} does not divide the {shape[1]} channels", path + ("num_groups",))
    return GroupNorm(name=site.name, in_shape=shape, out_shape=shape, params=_affine_params(p, site, shape[1:2]),
                     num_groups=g, eps=number(p["eps"], path + ("eps",), min=0, strict_min=True), affine=p["affine"])


# ---------------------------------------------------------------- the math, shared


def _per_channel(v, ndim: int):
    """A (C,) vector shaped to broadcast over (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _normalise(x, axes, eps):
    # x̂ = (x − μ)/√(σ² + ε),  μ = mean x,  σ² = mean (x − μ)²  (biased), over `axes`
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    return (x - mu) * inv, inv, mu, var


def _through_stats(dxhat, xhat, inv, axes):
    # dx = (1/√(σ² + ε))·(dx̂ − mean dx̂ − x̂·mean(dx̂·x̂)), the means over the statistics' axes
    return inv * (dxhat - dxhat.mean(axis=axes, keepdims=True) - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


def _scale_shift(xhat, p, shape_to):
    # y = γ·x̂ + β
    if "weight" not in p:
        return xhat
    return xhat * shape_to(p["weight"]) + shape_to(p["bias"])


# ---------------------------------------------------------------- batch_norm2d


def batch_norm_init_state(L: BatchNorm2d) -> dict:
    """The declared initial state, where it needs no drawing (literal, zeros, ones); the reference is
    otherwise handed the materialised state (protocol.Initial.state)."""
    out = {}
    for s in L.state:
        spec = s.spec
        if spec.values is None and spec.init not in ("zeros", "ones"):
            raise ValueError(f"{s.name} is drawn from the seed: pass the materialised state (Initial.state)")
        out[s.name.rsplit(".", 1)[1]] = np.array(spec.values, dtype=np.float64) if spec.values is not None else \
            (np.zeros if spec.init == "zeros" else np.ones)(spec.shape)
    return out


def batch_norm_forward(L, xs, p, state=None):
    (x,), axes, ch = xs, (0, 2, 3), lambda v: _per_channel(v, 4)
    if state is None:
        state = batch_norm_init_state(L)
    if not L.training:
        # x̂ = (x − running_mean)/√(running_var + ε); the state is left as it is
        inv = 1.0 / np.sqrt(ch(state["running_var"]) + L.eps)
        xhat = (x - ch(state["running_mean"])) * inv
        return _scale_shift(xhat, p, ch), (False, xhat, inv, p.get("weight"))
    xhat, inv, mu, var = _normalise(x, axes, L.eps)
    m, mom = L.reduces, L.momentum
    # running ← (1 − momentum)·running + momentum·batch;  the variance unbiased: σ²·m/(m − 1)
    state["running_mean"] = (1 - mom) * state["running_mean"] + mom * mu.reshape(-1)
    state["running_var"] = (1 - mom) * state["running_var"] + mom * var.reshape(-1) * (m / (m - 1))
    return _scale_shift(xhat, p, ch), (True, xhat, inv, p.get("weight"))


def batch_norm_backward(L, dy, cache):
    # dβ = Σ dy ;  dγ = Σ dy·x̂ ;  dx̂ = γ·dy ;  training: dx through μ and σ² (_through_stats), eval: dx = dx̂/√(rv + ε)
    training, xhat, inv, w = cache
    axes = (0, 2, 3)
    dxhat = dy if w is None else dy * _per_channel(w, 4)
    dx = _through_stats(dxhat, xhat, inv, axes) if training else dxhat * inv
    grads = {} if w is None else {"weight": (dy * xhat).sum(axis=axes), "bias": dy.sum(axis=axes)}
    return [dx], grads


# ---------------------------------------------------------------- layer_norm, group_norm


def layer_norm_forward(L, xs, p):
    # x̂ over every axis but the batch; y = γ·x̂ + β, γ and β shaped like those axes
    (x,) = xs
    axes = tuple(range(1, x.ndim))
    xhat, inv, _, _ = _normalise(x, axes, L.eps)
    return _scale_shift(xhat, p, lambda v: v[None]), (xhat, inv, p.get("weight"))


def layer_norm_backward(L, dy, cache):
    # dγ = Σ_n dy·x̂ ;  dβ = Σ_n dy ;  dx = _through_stats(γ·dy) over every axis but the batch
    xhat, inv, w = cache
    axes = tuple(range(1, dy.ndim))
    dxhat = dy if w is None else dy * w[None]
    grads = {} if w is None else {"weight": (dy * xhat).sum(axis=0), "bias": dy.sum(axis=0)}
    return [_through_stats(dxhat, xhat, inv, axes)], grads


def _grouped(x, g):
    """(N, C, ...) -> (N, G, C/G·...): each group's values on one axis."""
    return x.reshape(x.shape[0], g, -1)


def group_norm_forward(L, xs, p):
    # x̂ over each sample's group of C/G channels (and every spatial axis); y = γ_c·x̂ + β_c
    (x,) = xs
    xhat, inv, _, _ = _normalise(_grouped(x, L.num_groups), (2,), L.eps)
    xhat = xhat.reshape(x.shape)
    return _scale_shift(xhat, p, lambda v: _per_channel(v, x.ndim)), (xhat, inv, p.get("weight"))


def group_norm_backward(L, dy, cache):
    # dγ_c = Σ_{n,spatial} dy·x̂ ;  dβ_c = Σ dy ;  dx = _through_stats(γ_c·dy) over each group
    xhat, inv, w = cache
    axes = (0, *range(2, dy.ndim))
    dxhat = dy if w is None else dy * _per_channel(w, dy.ndim)
    g = L.num_groups
    dx = _through_stats(_grouped(dxhat, g), _grouped(xhat, g), inv, (2,)).reshape(dy.shape)
    grads = {} if w is None else {"weight": (dy * xhat).sum(axis=axes), "bias": dy.sum(axis=axes)}
    return [dx], grads


def _fields(*extra):
    return (_NAME, *extra, *_AFFINE)


BATCH_NORM2D = LayerDecl(
    "batch_norm2d", "per-channel batch statistics (training; running statistics as state) or the running ones (eval)",
    (_NAME, Field("eps", POSITIVE, 1e-5), Field("momentum", UNIT, 0.1), Field("affine", BOOL, True),
     Field("training", BOOL, True), Field("weight", TENSOR, doc_default="ones"), Field("bias", TENSOR, doc_default="zeros"),
     Field("running_mean", TENSOR, doc_default="zeros"), Field("running_var", TENSOR, doc_default="ones")),
    _build_batch, batch_norm_forward, batch_norm_backward, init_state=batch_norm_init_state,
    normalised=lambda cache: cache[1])
LAYER_NORM = LayerDecl("layer_norm", "normalises each sample over every axis but the batch; γ, β of those axes",
                       _fields(), _build_layer, layer_norm_forward, layer_norm_backward,
                       normalised=lambda cache: cache[0])
GROUP_NORM = LayerDecl("group_norm", "normalises each sample's groups of C/num_groups channels; γ, β per channel",
                       _fields(Field("num_groups", INT, REQUIRED)), _build_group, group_norm_forward, group_norm_backward,
                       normalised=lambda cache: cache[0])
DECLS = (BATCH_NORM2D, LAYER_NORM, GROUP_NORM)
