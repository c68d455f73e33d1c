"""erf and erfc, vectorised, to a few float64 ulps (tests/test_activations.py checks them against math.erf
and math.erfc on a dense grid). NumPy has no erf, and SciPy is no dependency of the reference (it is only
there as one of JAX's); `math.erf` is scalar, and np.vectorize of it costs a Python call per element.

    erf t  = (2/√π)·Σ_k (−1)^k t^(2k+1) / (k!·(2k+1))     (0 ≤ t < 1: Horner in t², 22 terms)
    erfc t = e^(−t²) / (√π·(t + ½/(t + 1/(t + (3/2)/(t + 2/(t + …))))))   (t ≥ 1: the continued fraction, 200 deep)

and by symmetry erf(−t) = −erf t, erfc(−t) = 2 − erfc t. Each form is used where it keeps its relative
accuracy: erfc from the continued fraction never subtracts from 1, so e^(−t²)-sized tails (GELU's far left)
stay accurate to the last bits; e^(−t²) is taken as e^(−h²)·e^(−(t−h)(t+h)) with h = t rounded to 1/16, so
that h² is exact and the rounding of t² is not amplified by the exponential.
"""
from __future__ import annotations

import math

import numpy as np

_SQRT_PI = math.sqrt(math.pi)
_TAYLOR = tuple((-1) ** k / (math.factorial(k) * (2 * k + 1)) for k in range(22))  # 1/(21!·43) < 2^-80
_FRACTION_DEPTH = 200  # t ≥ 1: converged to an ulp at t = 1 (100 deep leaves 2e-12 there)
_SPLIT = 1.0
_HUGE = 27.5  # erfc t < 1e-330 beyond: 0 in float64


def _exp_neg_square(t):
    # e^(−t²) = e^(−h²)·e^(−(t−h)(t+h)), h = round(16t)/16 (h² exact)
    h = np.round(t * 16.0) / 16.0
    return np.exp(-h * h) * np.exp(-(t - h) * (t + h))


def _erf_small(t):
    # erf t = (2/√π)·t·Σ_k c_k (t²)^k,  c_k = (−1)^k / (k!·(2k+1)),  0 ≤ t < 1 (terms fall by t²/k: little cancellation)
    t2, total = t * t, np.zeros_like(t)
    for c in reversed(_TAYLOR):
        total = total * t2 + c
    return (2.0 / _SQRT_PI) * t * total


def _erfc_large(t):
    # erfc t = e^(−t²) / (√π·f),  f = t + (1/2)/(t + (2/2)/(t + (3/2)/(…))),  t ≥ 1
    t = np.minimum(t, _HUGE)
    f = t.copy()
    for k in range(_FRACTION_DEPTH, 0, -1):
        f = t + (0.5 * k) / f
    return _exp_neg_square(t) / (_SQRT_PI * f)


def _split(x):
    """(|x|, the elements below _SPLIT) — NaN goes with the small ones and stays NaN."""
    t = np.abs(np.asarray(x))
    return t, ~(t >= _SPLIT)


def erf(x) -> np.ndarray:
    """erf x, elementwise, in x's floating dtype (float64, or long double for the reference's recheck)."""
    t, small = _split(x)
    out = np.empty_like(t, dtype=np.result_type(t, np.float64))
    out[small] = _erf_small(t[small])
    out[~small] = 1.0 - _erfc_large(t[~small])  # erfc ≤ 0.16 here: 1 − erfc loses nothing
    return np.copysign(out, x)


def erfc(x) -> np.ndarray:
    """erfc x = 1 − erf x, elementwise, accurate to a few ulps relative even where it is tiny (x ≫ 1)."""
    x = np.asarray(x)
    t, small = _split(x)
    tail = np.empty_like(t, dtype=np.result_type(t, np.float64))  # erfc |x|
    tail[small] = 1.0 - _erf_small(t[small])
    tail[~small] = _erfc_large(t[~small])
    return np.where(x < 0, 2.0 - tail, tail)
