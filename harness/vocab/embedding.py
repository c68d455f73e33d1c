"""embedding (SPEC §1.9): a lookup table. The network input holds integer ids (N, L); the output is the
weight's rows, (N, L, D). Repeated ids accumulate in the weight gradient; ids have no gradient."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Layer, Param, TensorSpec
from ..errors import CaseError, ShapeError
from ..fields import check_size, integer, tensor
from .base import INT, NAME, REQUIRED, TENSOR, Field, LayerDecl, Site  # noqa: F401

FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("num_embeddings", INT, REQUIRED),
          Field("embedding_dim", INT, REQUIRED), Field("weight", TENSOR, doc_default="normal(0, 1), PyTorch's"))


@dataclass(frozen=True, kw_only=True)
class Embedding(Layer):
    TYPE = "embedding"
    INPUT_GRAD = False
    num_embeddings: int
    embedding_dim: int


def _build(p: dict, site: Site) -> Embedding:
    path, shape = site.path, site.shape
    if len(shape) != 2:
        raise ShapeError(f"embedding takes integer ids of shape (N, L), got shape {list(shape)}", path)
    for key in ("num_embeddings", "embedding_dim"):
        if key not in p:
            raise CaseError(f"missing `{key}`", path)
    v, d = (integer(p[k], path + (k,), min=1) for k in ("num_embeddings", "embedding_dim"))
    check_size((v, d), path + ("weight",), "the weight")
    w = p.get("weight")
    weight = tensor(w, path + ("weight",), (v, d), "weight") if w is not None else TensorSpec((v, d), None, "normal")
    return Embedding(name=site.name, in_shape=shape, out_shape=(*shape, d), params=(Param(f"{site.name}.weight",
                     weight),), num_embeddings=v, embedding_dim=d)


def embedding_forward(L, xs, p):
    # y[n, l] = W[ids[n, l]]
    ids = np.asarray(xs[0]).astype(np.intp)
    return p["weight"][ids], (ids, p["weight"].shape, p["weight"].dtype)


def embedding_backward(L, dy, cache):
    # dW[v] = Σ_{(n, l): ids[n, l] = v} dy[n, l]   (repeated ids accumulate); ids: no gradient
    ids, shape, dtype = cache
    dw = np.zeros(shape, dtype=dtype)
    np.add.at(dw, ids.reshape(-1), dy.reshape(-1, shape[1]))
    return [None], {"weight": dw}


EMBEDDING = LayerDecl("embedding", "rows of `weight` (num_embeddings, embedding_dim) for integer ids (N, L) -> "
                      "(N, L, D); the first layer; no input gradient", FIELDS, _build, embedding_forward,
                      embedding_backward)
DECLS = (EMBEDDING,)
