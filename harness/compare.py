"""Compare one array with its reference under an allowance. Pure: no statuses, no policy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tolerance import Allowance


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_err: float | None
    max_rel_err: float | None
    ratio: float | None            # worst error as a multiple of its allowance (<= 1 passes)
    worst_index: list[int] | None
    actual: float | None           # the two values at the worst element
    desired: float | None
    message: str
    non_finite: bool = False       # failed on inf/NaN where the reference is finite


TINY = np.finfo(np.float64).tiny


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def compare(actual, desired: np.ndarray, allow: Allowance, extra_atol: np.ndarray | None = None) -> Comparison:
    desired = np.asarray(desired, dtype=np.float64)
    try:
        actual = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return Comparison(False, None, None, None, None, None, None, f"not a numeric array: {e}")
    if actual.shape != desired.shape:
        if actual.size == desired.size == 1:
            actual = actual.reshape(desired.shape)
        else:
            return Comparison(False, None, None, None, None, None, None,
                              f"shape {list(actual.shape)} != reference shape {list(desired.shape)}")
    if desired.size == 0:
        return Comparison(True, 0.0, 0.0, 0.0, None, None, None, "")
    err = np.abs(actual - desired)
    worst_err = float(err.max())
    if not np.isfinite(worst_err):  # the rare path: is it the framework's inf or NaN, where the reference is finite?
        bad = ~np.isfinite(actual) & np.isfinite(desired)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), actual.shape)
            where = [int(i) for i in idx]
            return Comparison(False, None, None, None, where, _finite(actual[idx]), float(desired[idx]),
                              f"{int(bad.sum())} non-finite value(s) ({actual[idx]} at {where}, "
                              f"where the reference has {float(desired[idx]):.9g})", True)
    size = np.abs(desired)
    budget = allow.atol + allow.rtol * size
    if extra_atol is not None:
        budget = budget + extra_atol
    ratio = err / np.maximum(budget, TINY)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    nonzero = size != 0  # the relative error where it is defined (the largest absolute one if nowhere)
    rel = float(np.divide(err, size, out=np.zeros_like(err), where=nonzero).max()) if nonzero.any() else worst_err
    r = float(ratio[worst])
    msg = "" if r <= 1 else (f"{int((ratio > 1).sum())} of {ratio.size} element(s) off; worst at "
                             f"{list(map(int, worst))}: {actual[worst]:.9g} vs {desired[worst]:.9g} "
                             f"({r:.3g}x the allowance)")
    return Comparison(r <= 1, worst_err, rel, r, [int(i) for i in worst], float(actual[worst]),
                      float(desired[worst]), msg)
