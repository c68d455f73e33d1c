"""The optimizers, with torch.optim's formulas: each its parameters and its update rule."""
from __future__ import annotations

import numpy as np

from ..case import Optimizer
from ..errors import CaseError, Conflict
from ..fields import boolean, number
from .base import REQUIRED, Field, OptimizerDecl

_NUMBER = {"type": "number", "minimum": 0}


def _lr_wd(p, path):
    if "lr" not in p:
        raise CaseError("missing `lr`", path)
    return number(p["lr"], path + ("lr",), min=0), number(p["weight_decay"], path + ("weight_decay",), min=0)


def _sgd(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    m = number(p["momentum"], path + ("momentum",), min=0)
    nesterov = boolean(p["nesterov"], path + ("nesterov",))
    if nesterov and m == 0:
        raise Conflict("nesterov needs a momentum > 0", path + ("nesterov",))
    return Optimizer("sgd", lr, momentum=m, nesterov=nesterov, weight_decay=wd)


def _adam(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    betas = p["betas"]
    if not isinstance(betas, list) or len(betas) != 2:
        raise CaseError("must be a list of two numbers [beta1, beta2]", path + ("betas",))
    b = tuple(number(x, path + ("betas", i), min=0) for i, x in enumerate(betas))
    for i, x in enumerate(b):
        if x >= 1:
            raise CaseError(f"must be < 1, got {x}", path + ("betas", i))
    eps = number(p["eps"], path + ("eps",), min=0, strict_min=True)
    return Optimizer("adam", lr, betas=b, eps=eps, weight_decay=wd)  # type: ignore[arg-type]


class SGD:
    def __init__(self, opt: Optimizer):
        self.opt, self.buf = opt, {}

    def update(self, name, p, g):
        o = self.opt
        g = g + o.weight_decay * p  # coupled L2
        if o.momentum:
            # b ← g (first step), then b ← μ·b + g ;  nesterov: step along g + μ·b
            b = self.buf[name] = g if name not in self.buf else o.momentum * self.buf[name] + g
            g = g + o.momentum * b if o.nesterov else b
        return p - o.lr * g


class Adam:
    def __init__(self, opt: Optimizer):
        self.opt, self.m, self.v, self.t = opt, {}, {}, {}

    def update(self, name, p, g):
        o, (b1, b2) = self.opt, self.opt.betas
        g = g + o.weight_decay * p  # coupled L2 (torch.optim.Adam)
        t = self.t[name] = self.t.get(name, 0) + 1
        m = self.m[name] = b1 * self.m.get(name, 0.0) + (1 - b1) * g
        v = self.v[name] = b2 * self.v.get(name, 0.0) + (1 - b2) * g * g
        # p ← p - lr · m̂ / (√v̂ + ε), with m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ)
        return p - o.lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + o.eps)


DECLS = (
    OptimizerDecl("sgd", "torch.optim.SGD: coupled L2 weight decay, momentum (first step: b = g), nesterov",
                  (Field("lr", _NUMBER, REQUIRED), Field("momentum", _NUMBER, 0.0), Field("nesterov", {"type": "boolean"},
                                                                                   False),
                   Field("weight_decay", _NUMBER, 0.0)), _sgd, SGD),
    OptimizerDecl("adam", "torch.optim.Adam: bias-corrected moments, ε outside the root, coupled L2 weight decay",
                  (Field("lr", _NUMBER, REQUIRED), Field("betas", {"type": "array", "items": {"type": "number"}},
                                                         [0.9, 0.999]),
                   Field("eps", {"type": "number"}, 1e-8), Field("weight_decay", _NUMBER, 0.0)), _adam, Adam),
)
