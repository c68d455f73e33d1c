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
    bad = ~np.isfinite(actual) & np.isfinite(desired)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), actual.shape)
        where = [int(i) for i in idx]
        return Comparison(False, None, None, None, where, _finite(actual[idx]), float(desired[idx]),
                          f"{int(bad.sum())} non-finite value(s) ({actual[idx]} at {where}, "
                          f"where the reference has {float(desired[idx]):.9g})", True)
    err = np.abs(actual - desired)
    budget = allow.atol + allow.rtol * np.abs(desired)
    if extra_atol is not None:
        budget = budget + extra_atol
    ratio = err / np.maximum(budget, np.finfo(np.float64).tiny)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    nonzero = desired != 0
    rel = float(np.max(err[nonzero] / np.abs(desired[nonzero]))) if nonzero.any() else float(err.max())
    r = float(ratio[worst])
    msg = "" if r <= 1 else (f"{int((ratio > 1).sum())} of {ratio.size} element(s) off; worst at "
                             f"{list(map(int, worst))}: {actual[worst]:.9g} vs {desired[worst]:.9g} "
                             f"({r:.3g}x the allowance)")
    return Comparison(r <= 1, float(err.max()), rel, r, [int(i) for i in worst], float(actual[worst]),
                      float(desired[worst]), msg)
