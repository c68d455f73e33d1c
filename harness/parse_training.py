"""Parsing the training loop's keys (SPEC §1.10): `schedule:`, `clip:`, `{per_step: [...]}` tensors, the
golden values of `expect.step.K` and `expect.tolerance`. Each raises CaseError naming the field's path; a
Conflict (a value valid alone that does not fit the rest) lets a family draw again."""
from __future__ import annotations

import numpy as np

from .case import QUANTITIES, Clip, Golden, Schedule, Shape, TensorSpec, Tol
from .errors import CaseError, Conflict, ShapeError, unknown
from .fields import check_keys, integer, kind_of, literal, number, tensor

SCHEDULES = {"step": {"step_size": None, "gamma": 0.1}, "exponential": {"gamma": None},
             "cosine": {"t_max": None, "eta_min": 0.0}}  # None: required
CLIPS = ("norm", "norm_per_param", "value")
TOL_KEYS = ("rtol", "atol")


def _one(v, path, what: str, names, example: str) -> tuple[str, object]:
    if not isinstance(v, dict) or len(v) != 1:
        raise CaseError(f"{what} is a one-key mapping such as `{example}`; one of {', '.join(names)}", path)
    (kind, p), = v.items()
    if kind not in names:
        raise CaseError(unknown(what, kind, names), path + (kind,))
    return kind, p


def schedule(v) -> Schedule | None:
    """`{step: {step_size, gamma [0.1]}}`, `{exponential: {gamma}}` or `{cosine: {t_max, eta_min [0]}}`."""
    if v is None:
        return None
    path = ("schedule",)
    kind, p = _one(v, path, "schedule", SCHEDULES, "{step: {step_size: 2, gamma: 0.5}}")
    path += (kind,)
    p = check_keys(p, tuple(SCHEDULES[kind]), path, f"{kind} schedule parameters")
    out = {}
    for key, default in SCHEDULES[kind].items():
        if key not in p and default is None:
            raise CaseError(f"missing `{key}`", path)
        value = p.get(key, default)
        if key in ("step_size", "t_max"):
            out[key] = integer(value, path + (key,), min=1)
        else:
            out[key] = number(value, path + (key,), min=0)
    return Schedule(kind, out)


def clip(v) -> Clip | None:
    """`{norm: MAX}`, `{norm_per_param: MAX}` or `{value: V}`, each > 0."""
    if v is None:
        return None
    path = ("clip",)
    kind, limit = _one(v, path, "clip", CLIPS, "{norm: 1.0}")
    return Clip(kind, number(limit, path + (kind,), min=0, strict_min=True))


def is_per_step(v) -> bool:
    return isinstance(v, dict) and "per_step" in v


def per_step(v, path, shape: Shape | None, what: str, one=None) -> tuple[TensorSpec, tuple[TensorSpec, ...] | None]:
    """A tensor, or `{per_step: [t1, t2, ...]}` of one shape: (step 1's spec, every step's or None).
    `one(value, path, shape)` parses one tensor (default: fields.tensor); check_steps() checks the count."""
    one = one or (lambda x, p, s: tensor(x, p, s, what))
    if not is_per_step(v):
        return one(v, path, shape), None
    check_keys(v, ("per_step",), path, what)
    items = v["per_step"]
    if not isinstance(items, list) or not items:
        raise CaseError(f"`per_step` takes a list of tensors, one per step, got {kind_of(items)}", path + ("per_step",))
    first = one(items[0], path + ("per_step", 0), shape)
    rest = [one(x, path + ("per_step", i), first.shape) for i, x in enumerate(items[1:], start=1)]
    return first, (first, *rest)


def check_steps(specs: tuple | None, steps: int, path) -> None:
    """A per-step list holds exactly one tensor per step (in a family, another draw of `steps` may fit)."""
    if specs is not None and len(specs) != steps:
        raise Conflict(f"{len(specs)} tensor(s) for {steps} step(s): give exactly one per step", path + ("per_step",))


def _tolerance(v, path) -> Tol:
    v = check_keys(v, TOL_KEYS, path, "a tolerance")
    return Tol(*(None if v.get(k) is None else number(v[k], path + (k,), min=0) for k in TOL_KEYS))


def expect_tolerance(v) -> Tol | None:
    """`expect.tolerance: {rtol, atol}`: how exact the golden values are (framework comparisons keep the policy)."""
    return None if v is None else _tolerance(v, ("expect", "tolerance"))


def expect_steps(v, steps: int, out_shape: Shape, named: dict[str, dict[str, Shape]]) -> tuple[Golden, ...]:
    """`expect.step: {K: {loss, output, grad: {...}, param: {...}}}`, K from 1 to `steps`.
    `named`: quantity -> {tensor name -> shape} (grad: parameters and input; param: parameters)."""
    if v is None:
        return ()
    path = ("expect", "step")
    if not isinstance(v, dict):
        raise CaseError(f"must be a mapping of step numbers to golden values, got {kind_of(v)}", path)
    out = []
    for k, entry in v.items():
        step = integer(int(k) if isinstance(k, str) and k.isdigit() else k, path + (k,), min=1)  # keys read as text
        if step > steps:
            raise Conflict(f"step {step} is beyond the case's {steps} step(s)", path + (k,))
        here = path + (k,)
        entry = check_keys(entry, [q for q in QUANTITIES if q in ("loss", "output", "grad", "param", "state")], here,
                           f"step {step}'s golden values")
        if "loss" in entry:
            out.append(Golden(step, "loss", None, np.asarray(number(entry["loss"], here + ("loss",))), here + ("loss",)))
        if "output" in entry:
            arr = literal(entry["output"], here + ("output",), "output")
            if arr.shape != out_shape and not (out_shape == () and arr.size == 1):
                raise ShapeError(f"shape {list(arr.shape)} does not match the output shape {list(out_shape)}",
                                 here + ("output",))
            out.append(Golden(step, "output", None, arr.reshape(out_shape), here + ("output",)))
        for q in ("grad", "param", "state"):
            for name, value in check_keys(entry.get(q), list(named.get(q, {})), here + (q,), q).items():
                arr = literal(value, here + (q, name), name)
                if arr.shape != named[q][name]:
                    raise ShapeError(f"shape {list(arr.shape)} does not match {name}'s {list(named[q][name])}",
                                     here + (q, name))
                out.append(Golden(step, q, name, arr, here + (q, name)))
    return tuple(out)
