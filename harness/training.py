"""The training loop's schedules and clipping (SPEC §1.10), PyTorch's definitions written out by hand:
torch.optim.lr_scheduler's StepLR / ExponentialLR / CosineAnnealingLR, stepped after each optimizer step, and
torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (and Keras' per-parameter clipnorm). Held to torch in
tests/test_optimizers_math.py."""
from __future__ import annotations

import math

import numpy as np


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
