"""Catalogue entries of the training loop (SPEC §1.10): optimizers, schedules, clipping, loss options.

Each was measured (tests/test_training_frameworks.py drives every framework's optimizer with a gradient
sequence in float64 and asserts that each of these shows, and nothing else) and is described, with its
source, in docs/divergences.md. harness.divergences adds them to the catalogue.
"""
from __future__ import annotations

import numpy as np

from .case import Case
from .hardware import Platform
from .training import scheduled_lr

SHOWS, MAY = "shows", "may"
# Keras 3 on each backend: its optimizers and losses are the tensorflow row's, so are their divergences
KERAS = ("keras-tensorflow", "keras-jax", "keras-torch")


def _opt(case: Case, *kinds: str):
    opt = case.optimizer
    return opt if opt is not None and opt.kind in kinds else None


def _gradient_floor(case: Case) -> float | None:
    """The smallest |dL/dy| the case gives (a literal `grad_output` value, every step's), else None."""
    if case.loss.kind != "grad_output":
        return None
    specs = case.loss.per_step or (case.loss.target,)
    if any(s is None or s.values is None for s in specs):
        return None
    return float(min(np.min(np.abs(s.values)) for s in specs))


def _eps_visible(case: Case, eps: float, scale: float, what: str):
    """An ε placed differently changes the step by about ε/scale relative: far above float64's rounding;
    for float32 it shows where the given gradients are small enough (scale from the gradient floor)."""
    if case.dtype == "float64":
        return SHOWS, f"{what} in float64: the ε placement is far above float64 rounding"
    floor = _gradient_floor(case)
    if floor is not None and eps / max(scale * floor * floor, 1e-300) >= 1e-4:
        return SHOWS, f"{what} with given gradients down to {floor:.3g}: ε = {eps:.3g} is not negligible"
    return MAY, f"{what}: visible where gradients come near √ε"


def _lr_changes(case: Case) -> bool:
    opt = case.optimizer
    if opt is None or case.schedule is None:
        return False
    lrs = {scheduled_lr(opt.lr, case.schedule, k) for k in range(1, case.steps + 1)}
    return len(lrs) > 1


def _tf_momentum_lr(case: Case, p: Platform):
    opt = _opt(case, "sgd", "rmsprop")
    if opt is None or not opt.momentum:
        return None, "no SGD or RMSprop momentum"
    if not _lr_changes(case):
        return None, "the learning rate is the same at every step taken"
    return SHOWS, f"{opt.kind} momentum with a learning rate that changes between steps"


def _jax_rmsprop_momentum_lr(case: Case, p: Platform):
    opt = _opt(case, "rmsprop")
    if opt is None or not opt.momentum:
        return None, "no RMSprop momentum"
    if not _lr_changes(case):
        return None, "the learning rate is the same at every step taken"
    return SHOWS, "RMSprop momentum with a learning rate that changes between steps"


def _tf_rmsprop_eps(case: Case, p: Platform):
    opt = _opt(case, "rmsprop")
    return (None, "no RMSprop") if opt is None else _eps_visible(case, opt.eps, 1.0 - opt.alpha, "RMSprop")


def _adagrad_eps(case: Case, p: Platform):
    opt = _opt(case, "adagrad")
    if opt is None:
        return None, "no Adagrad"
    if case.dtype != "float64" and opt.initial_accumulator_value and opt.eps / opt.initial_accumulator_value < 1e-4:
        return MAY, "Adagrad with an initial accumulator that dwarfs ε"
    return _eps_visible(case, opt.eps, 1.0, "Adagrad")


def _tf_adamax_eps(case: Case, p: Platform):
    opt = _opt(case, "adamax")
    if opt is None:
        return None, "no Adamax"
    if case.steps < 2:
        return None, "one step: u = |g| + ε either way"
    if case.dtype == "float64":
        return SHOWS, "Adamax in float64 over 2+ steps, where the decayed β2·u wins the max"
    return MAY, "Adamax: visible where the decayed β2·u wins the max and |g| comes near ε"


def _tf_nadam(case: Case, p: Platform):
    opt = _opt(case, "nadam")
    if opt is None:
        return None, "no NAdam"
    if opt.momentum_decay != 1.0:
        return SHOWS, f"momentum_decay {opt.momentum_decay}: Keras' schedule is 0.96^t (momentum_decay 1)"
    if case.dtype == "float64":
        return SHOWS, "NAdam in float64: Keras' μ product takes 0.96 through float32"
    return None, "momentum_decay 1 in float32: Keras' schedule"


def _jax_nadam(case: Case, p: Platform):
    return (SHOWS, "NAdam") if _opt(case, "nadam") else (None, "no NAdam")


def _jax_amsgrad(case: Case, p: Platform):
    opt = _opt(case, "adam", "adamw")
    if opt is None or not opt.amsgrad:
        return None, "no AMSGrad"
    if case.steps < 2:
        return None, "one step: the largest v is v itself"
    return SHOWS, "AMSGrad over 2+ steps, where the second moment shrinks"


def _clipnorm_eps(case: Case, p: Platform):
    if case.clip is None or case.clip[0] != "norm":
        return None, "no global-norm clip"
    return SHOWS, f"global-norm clip at {case.clip[1]}: 1e-6 relative to the norm where the clip binds"


def _torch_clipnorm_eps(case: Case, p: Platform):
    if case.clip is None or case.clip[0] != "norm_per_param":
        return None, "no per-parameter norm clip"
    return SHOWS, f"per-parameter norm clip at {case.clip[1]}: 1e-6 relative to the norm where the clip binds"


def _cosine_clamp(case: Case, p: Platform):
    s, opt = case.schedule, case.optimizer
    if s is None or s[0] != "cosine" or opt is None:
        return None, "no cosine schedule"
    if case.steps - 1 <= s[1]["t_max"]:
        return None, f"{case.steps} steps stay within t_max {s[1]['t_max']}"
    held = s[1]["eta_min"]  # where Keras and optax stay past t_max
    if all(abs(scheduled_lr(opt.lr, s, k) - held) <= 1e-12 * max(abs(held), opt.lr)
           for k in range(s[1]["t_max"] + 2, case.steps + 1)):
        return None, "past t_max the cosine is at η_min at every step taken (lr = η_min, or t_max reached again)"
    return SHOWS, f"{case.steps} steps run past t_max {s[1]['t_max']}, where the learning rates part"


def _ce_weight_smoothing(case: Case, p: Platform):
    o = case.loss.options
    if case.loss.kind != "cross_entropy" or o.get("weight") is None or not o.get("label_smoothing"):
        return None, "no cross-entropy with both class weights and label smoothing"
    if len(set(o["weight"])) == 1:
        return None, "equal class weights: per-sample and per-class weighting agree"
    return SHOWS, "cross-entropy with unequal class weights and label smoothing"


def entries(Entry):
    """The entries, built with harness.divergences.Entry (passed in: that module imports this one)."""
    loose = "it shows only where the clip binds, which the given numbers decide"
    return [
        Entry("TF-MOMENTUM-LR", ("tensorflow", *KERAS), "Keras' SGD and RMSprop keep the learning rate inside the momentum "
              "buffer; torch.optim multiplies it outside", _tf_momentum_lr),
        Entry("JAX-RMSPROP-MOMENTUM-LR", ("jax",), "optax's rmsprop traces the lr-scaled step (lr inside the momentum); "
              "torch.optim multiplies outside", _jax_rmsprop_momentum_lr),
        Entry("TF-RMSPROP-EPS", ("tensorflow", *KERAS), "Keras' RMSprop adds ε inside the square root, torch.optim outside",
              _tf_rmsprop_eps),
        Entry("TF-ADAGRAD-EPS", ("tensorflow", *KERAS), "Keras' Adagrad adds ε inside the square root, torch.optim outside",
              _adagrad_eps),
        Entry("JAX-ADAGRAD-EPS", ("jax",), "optax's adagrad adds ε inside the square root, torch.optim outside",
              _adagrad_eps),
        Entry("TF-ADAMAX-EPS", ("tensorflow", *KERAS), "Keras' Adamax adds ε to u, torch.optim to |g| inside the max",
              _tf_adamax_eps, strict=False,
              not_strict_because="it shows only where the decayed β2·u wins the max, which the gradients decide"),
        Entry("TF-NADAM", ("tensorflow", *KERAS), "Keras' Nadam schedules μ_t with 0.96^t (torch: 0.96^(t·momentum_decay)) and "
              "takes 0.96 through float32", _tf_nadam),
        Entry("JAX-NADAM", ("jax",), "optax's nadam is Nesterov-Adam without the μ_t schedule", _jax_nadam),
        Entry("JAX-AMSGRAD", ("jax",), "optax's amsgrad keeps the largest bias-corrected v̂, torch.optim the largest v",
              _jax_amsgrad, strict=False,
              not_strict_because="it shows only where the second moment shrinks, which the gradients decide"),
        Entry("CLIPNORM-EPS", ("tensorflow", "jax", *KERAS), "clip_by_global_norm scales by MAX/‖g‖, torch's clip_grad_norm_ by "
              "MAX/(‖g‖ + 1e-6)", _clipnorm_eps, strict=False, not_strict_because=loose),
        Entry("TORCH-CLIPNORM-EPS", ("torch",), "torch has no per-parameter clip but clip_grad_norm_ on each, with its "
              "+1e-6", _torch_clipnorm_eps, strict=False, not_strict_because=loose),
        Entry("COSINE-CLAMP", ("tensorflow", "jax", *KERAS), "Keras' and optax's cosine decay hold η_min past t_max; PyTorch's "
              "CosineAnnealingLR rises again", _cosine_clamp),
        Entry("CE-WEIGHT-SMOOTHING", ("tensorflow", "jax", *KERAS), "a class weight as a per-sample weight w[t] scales the whole "
              "smoothed loss; PyTorch weights each class's term by w_c", _ce_weight_smoothing),
    ]
