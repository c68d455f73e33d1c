"""The reference update rules, learning-rate schedules and gradient clipping of SPEC §1.4 / §1.10.

PyTorch's definitions (torch.optim, torch.optim.lr_scheduler, torch.nn.utils.clip_grad_*), written out by
hand, vectorised, float64. An optimizer is made from its hyperparameters (a mapping with every key
filled in) and keeps its state per parameter name; `update(name, p, g, lr)` returns the new parameter,
`lr` being the scheduled learning rate of this step. tests/test_optimizers_math.py holds each rule to a
textbook formulation over several steps and to torch.optim itself.
"""
from __future__ import annotations

import math

import numpy as np


class _Rule:
    def __init__(self, hp: dict):
        self.hp, self.state = hp, {}

    def _slot(self, name: str, p) -> dict:
        return self.state.setdefault(name, {"t": 0})


class SGD(_Rule):
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
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

    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
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
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
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
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
        t = s["t"] = s["t"] + 1
        g = g + h["weight_decay"] * p  # coupled L2
        clr = lr / (1 + (t - 1) * h["lr_decay"])  # lr / (1 + (t − 1)·lr_decay)
        acc = s["acc"] = s.get("acc", h["initial_accumulator_value"]) + g * g  # Σ g², from the initial value
        return p - clr * g / (np.sqrt(acc) + h["eps"])


class Adamax(_Rule):
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
        b1, b2 = h["betas"]
        t = s["t"] = s["t"] + 1
        g = g + h["weight_decay"] * p  # coupled L2
        m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        u = s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g) + h["eps"])  # u ← max(β2·u, |g| + ε)
        return p - lr / (1 - b1 ** t) * m / u  # p ← p − lr/(1 − β1ᵗ) · m/u


class NAdam(_Rule):
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
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


RULES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "adamax": Adamax,
         "nadam": NAdam}


def scheduled_lr(lr: float, schedule: tuple[str, dict] | None, step: int) -> float:
    """The learning rate of optimizer step `step` (1-based): the scheduler steps after each optimizer step."""
    if schedule is None:
        return lr
    kind, s = schedule
    k = step - 1  # scheduler steps taken before this optimizer step
    if kind == "step":
        return lr * s["gamma"] ** (k // s["step_size"])  # StepLR: lr·γ^⌊k / step_size⌋
    if kind == "exponential":
        return lr * s["gamma"] ** k  # ExponentialLR: lr·γᵏ
    # CosineAnnealingLR: η_min + (lr − η_min)·(1 + cos(π·k / T_max))/2 (on past T_max, as PyTorch)
    return s["eta_min"] + (lr - s["eta_min"]) * (1 + math.cos(math.pi * k / s["t_max"])) / 2


def clipped(grads: dict[str, np.ndarray], clip: tuple[str, float] | None) -> dict[str, np.ndarray]:
    """The parameter gradients the optimizer steps with (the compared ones stay those before clipping)."""
    if clip is None:
        return grads
    kind, limit = clip
    if kind == "value":
        return {k: np.clip(g, -limit, limit) for k, g in grads.items()}  # clamp to [−V, V]
    if kind == "norm":  # clip_grad_norm_: × min(1, MAX / (‖g‖ + 1e-6)), ‖g‖ over every gradient together
        total = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        coef = min(1.0, limit / (total + 1e-6))
        return {k: g * coef for k, g in grads.items()}
    out = {}  # norm_per_param (Keras' clipnorm): each gradient × min(1, MAX / ‖g‖)
    for k, g in grads.items():
        norm = math.sqrt(float(np.sum(g * g)))
        out[k] = g * (limit / norm) if norm > limit else g
    return out
