"""The optimizers (SPEC §1.4, §1.10), with torch.optim's formulas: each its parameters and its update rule.

An optimizer's rule is made from its hyperparameters (`Optimizer.hp`, every key filled in) and keeps its
state per parameter name; `update(name, p, g, lr=None)` returns the parameter after one step, `lr` being the
scheduled learning rate of this step (default: the optimizer's own). tests/test_optimizers_math.py holds each
rule to a textbook formulation over several steps and to torch.optim itself.
"""
from __future__ import annotations

import numpy as np

from ..case import Optimizer
from ..errors import CaseError, Conflict
from ..fields import boolean, number
from .base import REQUIRED, Field, OptimizerDecl

_NUMBER = {"type": "number", "minimum": 0}
_BOOL = {"type": "boolean"}
_BETAS = {"type": "array", "items": {"type": "number"}}


class _Rule:
    def __init__(self, hp):
        self.hp = hp.hp if isinstance(hp, Optimizer) else hp
        self.state = {}

    def _lr(self, lr):
        return self.hp["lr"] if lr is None else lr

    def _slot(self, name: str, p) -> dict:
        return self.state.setdefault(name, {"t": 0})


class SGD(_Rule):
    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        g = g + h["weight_decay"] * p  # coupled L2
        mu, damp = h["momentum"], h.get("dampening", 0.0)
        if mu:
            # b ← g (first step), then b ← μ·b + (1 − dampening)·g ;  nesterov: step along g + μ·b
            b = s["b"] = g if "b" not in s else mu * s["b"] + (1.0 - damp) * g
            g = g + mu * b if h["nesterov"] else b
        return p - lr * g


class Adam(_Rule):
    """Adam, and AdamW when `decoupled`: p ← p·(1 − lr·λ) before the step instead of λ·p in the gradient."""
    decoupled = False

    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        b1, b2 = h["betas"]
        if self.decoupled:
            p = p * (1.0 - lr * h["weight_decay"])  # decoupled decay
        else:
            g = g + h["weight_decay"] * p  # coupled L2
        t = s["t"] = s["t"] + 1
        m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g  # m ← β1·m + (1 − β1)·g
        v = s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g  # v ← β2·v + (1 − β2)·g²
        if h.get("amsgrad"):
            v = s["vmax"] = np.maximum(s.get("vmax", 0.0), v)  # amsgrad: the largest v so far (not bias-corrected)
        # p ← p − lr · m̂ / (√v̂ + ε), with m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ)
        return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + h["eps"])


class AdamW(Adam):
    decoupled = True


class RMSprop(_Rule):
    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        a = h["alpha"]
        g = g + h["weight_decay"] * p  # coupled L2
        v = s["v"] = a * s.get("v", 0.0) + (1 - a) * g * g  # v ← α·v + (1 − α)·g²
        if h["centered"]:
            ga = s["ga"] = a * s.get("ga", 0.0) + (1 - a) * g  # ḡ ← α·ḡ + (1 − α)·g
            avg = np.sqrt(v - ga * ga) + h["eps"]  # √(v − ḡ²) + ε   (ε outside the root)
        else:
            avg = np.sqrt(v) + h["eps"]
        if h["momentum"]:
            b = s["b"] = h["momentum"] * s.get("b", 0.0) + g / avg  # b ← μ·b + g/avg ;  p ← p − lr·b
            return p - lr * b
        return p - lr * g / avg


class Adagrad(_Rule):
    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        t = s["t"] = s["t"] + 1
        g = g + h["weight_decay"] * p  # coupled L2
        clr = lr / (1 + (t - 1) * h["lr_decay"])  # lr / (1 + (t − 1)·lr_decay)
        acc = s["acc"] = s.get("acc", h["initial_accumulator_value"]) + g * g  # Σ g², from the initial value
        return p - clr * g / (np.sqrt(acc) + h["eps"])


class Adamax(_Rule):
    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        b1, b2 = h["betas"]
        t = s["t"] = s["t"] + 1
        g = g + h["weight_decay"] * p  # coupled L2
        m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        u = s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g) + h["eps"])  # u ← max(β2·u, |g| + ε)
        return p - lr / (1 - b1 ** t) * m / u  # p ← p − lr/(1 − β1ᵗ) · m/u


class NAdam(_Rule):
    def update(self, name, p, g, lr=None):
        h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
        b1, b2 = h["betas"]
        psi = h["momentum_decay"]
        t = s["t"] = s["t"] + 1
        g = g + h["weight_decay"] * p  # coupled L2
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))  # μ_t = β1·(1 − ½·0.96^(tψ))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = s["prod"] = s.get("prod", 1.0) * mu  # Π_{i ≤ t} μ_i
        m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2 ** t)) + h["eps"]
        # p ← p − lr·(1 − μ_t)/(1 − Πμ)·g/denom − lr·μ_{t+1}/(1 − Πμ·μ_{t+1})·m/denom
        p = p - lr * (1 - mu) / (1 - prod) * g / denom
        return p - lr * mu_next / (1 - prod * mu_next) * m / denom



# ---------------------------------------------------------------- declarations: parameters and checks

def _lr_wd(p, path):
    if "lr" not in p:
        raise CaseError("missing `lr`", path)
    return number(p["lr"], path + ("lr",), min=0), number(p["weight_decay"], path + ("weight_decay",), min=0)


def _betas(p, path):
    betas = p["betas"]
    if not isinstance(betas, list) or len(betas) != 2:
        raise CaseError("must be a list of two numbers [beta1, beta2]", path + ("betas",))
    b = tuple(number(x, path + ("betas", i), min=0) for i, x in enumerate(betas))
    for i, x in enumerate(b):
        if x >= 1:
            raise CaseError(f"must be < 1, got {x}", path + ("betas", i))
    return b


def _eps(p, path) -> float:
    return number(p["eps"], path + ("eps",), min=0, strict_min=True)


def _below_one(p, key, path) -> float:
    x = number(p[key], path + (key,), min=0)
    if x >= 1:
        raise CaseError(f"must be < 1, got {x}", path + (key,))
    return x


def _sgd(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    m = number(p["momentum"], path + ("momentum",), min=0)
    damp = number(p["dampening"], path + ("dampening",), min=0)
    nesterov = boolean(p["nesterov"], path + ("nesterov",))
    if nesterov and (m == 0 or damp != 0):  # torch.optim.SGD refuses it
        raise Conflict("nesterov needs a momentum > 0 and no dampening", path + ("nesterov",))
    return Optimizer("sgd", lr, momentum=m, nesterov=nesterov, weight_decay=wd, dampening=damp)


def _adam(kind):
    def build(p, path) -> Optimizer:
        lr, wd = _lr_wd(p, path)
        return Optimizer(kind, lr, betas=_betas(p, path), eps=_eps(p, path), weight_decay=wd,  # type: ignore[arg-type]
                         amsgrad=boolean(p["amsgrad"], path + ("amsgrad",)))
    return build


def _rmsprop(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    return Optimizer("rmsprop", lr, alpha=_below_one(p, "alpha", path), eps=_eps(p, path),
                     momentum=_below_one(p, "momentum", path), centered=boolean(p["centered"], path + ("centered",)),
                     weight_decay=wd)


def _adagrad(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    return Optimizer("adagrad", lr, lr_decay=number(p["lr_decay"], path + ("lr_decay",), min=0), eps=_eps(p, path),
                     initial_accumulator_value=number(p["initial_accumulator_value"],
                                                      path + ("initial_accumulator_value",), min=0), weight_decay=wd)


def _adamax(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    return Optimizer("adamax", lr, betas=_betas(p, path), eps=_eps(p, path), weight_decay=wd)  # type: ignore[arg-type]


def _nadam(p, path) -> Optimizer:
    lr, wd = _lr_wd(p, path)
    return Optimizer("nadam", lr, betas=_betas(p, path), eps=_eps(p, path), weight_decay=wd,  # type: ignore[arg-type]
                     momentum_decay=number(p["momentum_decay"], path + ("momentum_decay",), min=0))


_LR = Field("lr", _NUMBER, REQUIRED)
_WD = Field("weight_decay", _NUMBER, 0.0)
_B = Field("betas", _BETAS, [0.9, 0.999])
_E = Field("eps", {"type": "number", "exclusiveMinimum": 0}, 1e-8)
_AMS = Field("amsgrad", _BOOL, False)
DECLS = (
    OptimizerDecl("sgd", "torch.optim.SGD: coupled L2 weight decay, momentum (first step: b = g), dampening, nesterov",
                  (_LR, Field("momentum", _NUMBER, 0.0), Field("dampening", _NUMBER, 0.0),
                   Field("nesterov", _BOOL, False), _WD), _sgd, SGD),
    OptimizerDecl("adam", "torch.optim.Adam: bias-corrected moments, ε outside the root, coupled L2, amsgrad",
                  (_LR, _B, _E, _WD, _AMS), _adam("adam"), Adam),
    OptimizerDecl("adamw", "torch.optim.AdamW: Adam with decoupled decay p ← p·(1 − lr·λ)",
                  (_LR, _B, _E, Field("weight_decay", _NUMBER, 0.01), _AMS), _adam("adamw"), AdamW),
    OptimizerDecl("rmsprop", "torch.optim.RMSprop: ε outside the root, centered, momentum, coupled L2",
                  (_LR, Field("alpha", _NUMBER, 0.99), _E, Field("momentum", _NUMBER, 0.0),
                   Field("centered", _BOOL, False), _WD), _rmsprop, RMSprop),
    OptimizerDecl("adagrad", "torch.optim.Adagrad: accumulator from `initial_accumulator_value`, lr / (1 + (t−1)·lr_decay)",
                  (_LR, Field("lr_decay", _NUMBER, 0.0), Field("initial_accumulator_value", _NUMBER, 0.0),
                   Field("eps", {"type": "number", "exclusiveMinimum": 0}, 1e-10), _WD), _adagrad, Adagrad),
    OptimizerDecl("adamax", "torch.optim.Adamax: u ← max(β2·u, \\|g\\| + ε)", (_LR, _B, _E, _WD), _adamax, Adamax),
    OptimizerDecl("nadam", "torch.optim.NAdam: μ_t = β1(1 − ½·0.96^(t·momentum_decay))",
                  (_LR, _B, _E, _WD, Field("momentum_decay", _NUMBER, 0.004)), _nadam, NAdam),
)
RULES = {d.name: d.make for d in DECLS}
