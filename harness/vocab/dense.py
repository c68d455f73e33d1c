"""dense (alias linear): y = x·Wᵀ + b on a (batch, features) input, weight (out, in)."""
from __future__ import annotations

from ..case import Dense, Param
from ..errors import CaseError, ShapeError
from ..fields import bias_params, check_size, default_param, integer, literal, sizes_in_reach, tensor
from .base import BOOL, INT, NAME, REQUIRED, TENSOR, Field, LayerDecl, Site

FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("in_features", INT, doc_default="checked if given"),
          Field("out_features", INT, REQUIRED, doc_default="required (or from a literal weight)"),
          Field("bias", {"anyOf": [BOOL, TENSOR]}, True), Field("weight", TENSOR, doc_default="PyTorch's init"))


def _build(p: dict, site: Site) -> Dense:
    sizes_in_reach(p, site.path, ("out_features",))
    path, shape = site.path, site.shape
    if len(shape) != 2:
        raise ShapeError(f"dense needs a (batch, features) input, got shape {list(shape)}; add a `flatten` "
                         f"layer before it", path)
    n, fan_in = shape
    if "in_features" in p and integer(p["in_features"], path + ("in_features",), min=1) != fan_in:
        raise ShapeError(f"in_features is {p['in_features']} but the incoming tensor has {fan_in} features "
                         f"(shape {list(shape)})", path + ("in_features",))
    w = p.get("weight")
    if "out_features" in p:
        out_f = integer(p["out_features"], path + ("out_features",), min=1)
    elif isinstance(w, list):
        out_f = literal(w, path + ("weight",), "weight").shape[0]
    else:
        raise CaseError("missing `out_features`", path)
    check_size((out_f, fan_in), path + ("weight",), "the weight")
    weight = (tensor(w, path + ("weight",), (out_f, fan_in), "weight") if w is not None
              else default_param((out_f, fan_in), fan_in))
    params = (Param(f"{site.name}.weight", weight), *bias_params(p, path, site.name, out_f, fan_in))
    return Dense(name=site.name, in_shape=shape, out_shape=(n, out_f), params=params, out_features=out_f)


def dense_forward(L, xs, p):
    # y = x·Wᵀ + b
    (x,), w, b = xs, p["weight"], p.get("bias")
    y = x @ w.T
    return (y if b is None else y + b), (x, w, b is not None)


def dense_backward(L, dy, cache):
    # dx = dy·W ;  dW = dyᵀ·x ;  db = Σ_n dy
    x, w, has_bias = cache
    grads = {"weight": dy.T @ x}
    if has_bias:
        grads["bias"] = dy.sum(axis=0)
    return [dy @ w], grads


DENSE = LayerDecl("dense", "fully connected, (batch, in) -> (batch, out), weight (out, in); alias `linear`",
                  FIELDS, _build, dense_forward, dense_backward, accumulates=True, aliases=("linear",),
                  macs=lambda L: L.in_shape[0] * L.in_shape[1] * L.out_features)
DECLS = (DENSE,)
