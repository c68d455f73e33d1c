"""PyTorch's own losses (torch.nn.functional), optimizers (torch.optim), schedules (torch.optim.lr_scheduler) and
clipping (torch.nn.utils), configured to a case's numbers: one function per entry, keyed by its name.

Options come as plain mappings with every key filled in (the loader's defaults): a loss's options include
`reduction`; an optimizer's hyperparameters include `lr`.
"""
from __future__ import annotations

import numpy as np

from . import Unsupported


def _F():
    import torch.nn.functional as F
    return F


def _weight(o, key, like):
    import torch
    return None if o.get(key) is None else torch.as_tensor(np.asarray(o[key], dtype=np.float64), dtype=like.dtype)


# f(y, target, options) -> loss; options: the case's loss options with `reduction`
LOSSES = {
    "mse": lambda y, t, o: _F().mse_loss(y, t, reduction=o["reduction"]),
    "l1": lambda y, t, o: _F().l1_loss(y, t, reduction=o["reduction"]),
    "smooth_l1": lambda y, t, o: _F().smooth_l1_loss(y, t, reduction=o["reduction"], beta=o["beta"]),
    "huber": lambda y, t, o: _F().huber_loss(y, t, reduction=o["reduction"], delta=o["delta"]),
    "bce": lambda y, t, o: _F().binary_cross_entropy(y, t, reduction=o["reduction"]),
    "bce_with_logits": lambda y, t, o: _F().binary_cross_entropy_with_logits(
        y, t, reduction=o["reduction"], pos_weight=_weight(o, "pos_weight", y)),
    "nll": lambda y, t, o: _F().nll_loss(y, t, weight=_weight(o, "weight", y), reduction=o["reduction"]),
    "cross_entropy": lambda y, t, o: _F().cross_entropy(
        y, t, weight=_weight(o, "weight", y), reduction=o["reduction"], label_smoothing=o["label_smoothing"]),
    "half_sse": lambda y, t, o: 0.5 * ((t - y) ** 2).sum(),
    "sum": lambda y, t, o: y.sum(),
    "grad_output": lambda y, t, o: (y * t).sum(),
}
CLASS_TARGETS = ("nll", "cross_entropy")  # int64 targets


def loss(kind: str, options: dict, y, t):
    return LOSSES[kind](y, t, options)


def _optim():
    import torch.optim
    return torch.optim


def _adam(name):
    return lambda h, params: getattr(_optim(), name)(params, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                                     weight_decay=h["weight_decay"], amsgrad=h["amsgrad"])


# f(hyperparameters (Optimizer.hp), parameters) -> a torch.optim optimizer
OPTIMIZERS = {
    "sgd": lambda h, params: _optim().SGD(params, lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                                          nesterov=h["nesterov"], weight_decay=h["weight_decay"]),
    "adam": _adam("Adam"),
    "adamw": _adam("AdamW"),
    "rmsprop": lambda h, params: _optim().RMSprop(params, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                                  weight_decay=h["weight_decay"], momentum=h["momentum"],
                                                  centered=h["centered"]),
    "adagrad": lambda h, params: _optim().Adagrad(params, lr=h["lr"], lr_decay=h["lr_decay"],
                                                  weight_decay=h["weight_decay"], eps=h["eps"],
                                                  initial_accumulator_value=h["initial_accumulator_value"]),
    "adamax": lambda h, params: _optim().Adamax(params, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                                weight_decay=h["weight_decay"]),
    "nadam": lambda h, params: _optim().NAdam(params, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                              weight_decay=h["weight_decay"], momentum_decay=h["momentum_decay"]),
}


def optimizer(kind: str, hp: dict, params: list):
    if kind not in OPTIMIZERS:
        raise Unsupported(f"no torch.optim mapping for optimizer {kind}")
    return OPTIMIZERS[kind](hp, params)


def scheduler(schedule, opt):
    """torch.optim.lr_scheduler for `schedule: {kind: {...}}` (None: none); step it after each opt.step()."""
    if schedule is None:
        return None
    import torch
    kind, s = schedule
    lrs = torch.optim.lr_scheduler
    if kind == "step":
        return lrs.StepLR(opt, step_size=s["step_size"], gamma=s["gamma"])
    if kind == "exponential":
        return lrs.ExponentialLR(opt, gamma=s["gamma"])
    return lrs.CosineAnnealingLR(opt, T_max=s["t_max"], eta_min=s["eta_min"])


def clip(clip_spec, params: list) -> None:
    """In place on each parameter's .grad, between backward() and step(), as a torch user writes it."""
    if clip_spec is None:
        return
    import torch
    kind, limit = clip_spec
    if kind == "norm":
        torch.nn.utils.clip_grad_norm_(params, limit)
    elif kind == "value":
        torch.nn.utils.clip_grad_value_(params, limit)
    else:  # torch has no per-parameter clip but clip_grad_norm_ on each one alone (its +1e-6 included)
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], limit)
