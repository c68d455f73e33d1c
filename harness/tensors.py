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
            "randint": lambda: rng.integers(int(np.ceil(spec.low)), int(np.ceil(spec.high)), spec.shape).astype(float),
            "arange": lambda: np.arange(int(np.prod(spec.shape)), dtype=np.float64).reshape(spec.shape),
        }[spec.init]()
    x = round_to(np.asarray(x, dtype=np.float64), dtype)
    x.flags.writeable = False
    return x


CLASS_LOSSES = ("cross_entropy", "nll")  # targets are class ids


def materialize(case: Case) -> Initial:
    params = {p.name: draw(p.spec, case.seed, p.name, case.dtype) for p in case.params}
    # Class ids stay exact integers; everything else is a float tensor of the case dtype.
    rounding = "float64" if case.loss.kind in CLASS_LOSSES else case.dtype
    target = targets = None
    if case.loss.per_step is not None:  # step k's tensor is drawn as `<name>.step<k>`, step 1's under the plain name
        targets = tuple(draw(spec, case.seed, "loss.target" + (f".step{k}" if k > 1 else ""), rounding)
                        for k, spec in enumerate(case.loss.per_step, start=1))
        target = targets[0]
    elif case.loss.target is not None:
        target = draw(case.loss.target, case.seed, "loss.target", rounding)
    inputs = None
    ids = "float64" if not case.input_grad else case.dtype  # an embedding's ids stay exact integers
    if case.inputs is not None:
        inputs = tuple(draw(spec, case.seed, "input" + (f".step{k}" if k > 1 else ""), ids)
                       for k, spec in enumerate(case.inputs, start=1))
    x = inputs[0] if inputs else draw(case.input, case.seed, "input", ids)
    state = {p.name: draw(p.spec, case.seed, p.name, case.dtype) for p in case.states}
    return Initial(x, params, target, inputs, targets, state)
