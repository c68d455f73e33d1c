"""Materialise a case's tensors once: seeded, rounded to the case dtype, read-only, float64-held."""
from __future__ import annotations

import zlib

import numpy as np

from .protocol import Initial
from .case import Case, TensorSpec


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to `dtype` and back, so every framework sees exactly representable numbers."""
    if dtype == "float64":
        return x.astype(np.float64)
    if dtype == "bfloat16":
        # bfloat16 is float32's top 16 bits: round to nearest even on the dropped 16 bits.
        bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return np.array(np.asarray(bits, dtype=np.uint32).view(np.float32), dtype=np.float64)  # 0-d stays an array
    return x.astype(dtype).astype(np.float64)


def draw(spec: TensorSpec, seed: int, name: str, dtype: str) -> np.ndarray:
    """One tensor. Random draws use (seed, name) so adding a layer never reshuffles the others."""
    if spec.values is not None:
        x = np.array(spec.values, dtype=np.float64)
    else:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        x = {
            "uniform": lambda: rng.uniform(spec.low, spec.high, spec.shape),
            "normal": lambda: rng.normal(spec.mean, spec.std, spec.shape),
            "zeros": lambda: np.zeros(spec.shape),
            "ones": lambda: np.ones(spec.shape),
            "arange": lambda: np.arange(int(np.prod(spec.shape)), dtype=np.float64).reshape(spec.shape),
        }[spec.init]()
    x = round_to(np.asarray(x, dtype=np.float64), dtype)
    x.flags.writeable = False
    return x


def materialize(case: Case) -> Initial:
    params = {p.name: draw(p.spec, case.seed, p.name, case.dtype) for p in case.params}
    target = None
    if case.loss.target is not None:
        # Class ids stay exact integers; everything else is a float tensor of the case dtype.
        rounding = "float64" if case.loss.kind == "cross_entropy" else case.dtype
        target = draw(case.loss.target, case.seed, "loss.target", rounding)
    return Initial(draw(case.input, case.seed, "input", case.dtype), params, target)
