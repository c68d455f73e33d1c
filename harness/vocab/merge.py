"""Merges (SPEC §1.8–1.9): `add` (two or more inputs of exactly equal shapes) and `concat` (along `dim`,
the channel axis by default). Their inputs are named by `from:`; the backward hands each input its share."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Layer
from ..errors import ShapeError
from ..fields import integer
from .base import NAME, REQUIRED, Field, LayerDecl, Site

FROM = Field("from", {"type": "array", "items": {"type": "string"}, "minItems": 2}, REQUIRED,
             doc_default="required: two or more earlier names or `input`")
NAME_FIELD = Field("name", NAME, doc_default="<type>_<index>")


@dataclass(frozen=True, kw_only=True)
class Add(Layer):
    TYPE = "add"


@dataclass(frozen=True, kw_only=True)
class Concat(Layer):
    TYPE = "concat"
    dim: int  # canonical (NCHW) axis, non-negative


def _add(p: dict, site: Site) -> Add:
    first = site.shapes[0]
    for i, s in enumerate(site.shapes[1:], start=1):
        if s != first:
            raise ShapeError(f"add needs inputs of exactly equal shapes: {list(first)} and {list(s)} "
                             f"(no broadcasting)", site.path + ("from", i))
    return Add(name=site.name, in_shape=first, out_shape=first)


def _concat(p: dict, site: Site) -> Concat:
    first, rank = site.shapes[0], len(site.shapes[0])
    if rank == 0:
        raise ShapeError("concat needs inputs with at least one axis, got a scalar", site.path + ("from", 0))
    dim = p["dim"]
    if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank:
        raise ShapeError(f"dim must be an integer in [{-rank}, {rank}) for rank-{rank} inputs, got {dim!r}",
                         site.path + ("dim",))
    dim = integer(dim, site.path + ("dim",)) % rank
    for i, s in enumerate(site.shapes[1:], start=1):
        if len(s) != rank or s[:dim] + s[dim + 1:] != first[:dim] + first[dim + 1:]:
            raise ShapeError(f"concat along dim {dim} needs every other axis equal: {list(first)} and {list(s)}",
                             site.path + ("from", i))
    out = first[:dim] + (sum(s[dim] for s in site.shapes),) + first[dim + 1:]
    return Concat(name=site.name, in_shape=first, out_shape=out, dim=dim)


def add_forward(L, xs, p):
    # y = Σ_i x_i
    y = xs[0].copy()
    for x in xs[1:]:
        y += x
    return y, len(xs)


def add_backward(L, dy, cache):
    # dx_i = dy for every input
    return [dy.copy() for _ in range(cache)], {}


def concat_forward(L, xs, p):
    # y = [x_1 | x_2 | …] along dim
    return np.concatenate(xs, axis=L.dim), [x.shape[L.dim] for x in xs]


def concat_backward(L, dy, cache):
    # dx_i = the slice of dy that x_i filled
    return [a.copy() for a in np.split(dy, np.cumsum(cache)[:-1], axis=L.dim)], {}


ADD = LayerDecl("add", "elementwise sum of two or more inputs of exactly equal shapes (a residual)",
                (NAME_FIELD, FROM), _add, add_forward, add_backward, inputs=2)
CONCAT = LayerDecl("concat", "inputs joined along `dim` (canonical NCHW axis; 1: channels); other axes equal",
                   (NAME_FIELD, FROM, Field("dim", {"type": "integer"}, 1)), _concat, concat_forward, concat_backward, inputs=2)
DECLS = (ADD, CONCAT)
