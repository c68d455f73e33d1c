"""Field validators shared by the loader and the vocabulary's declarations: each turns one YAML value
into a typed one or raises CaseError naming the field's path. They know no layer, loss or optimizer."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .case import INITS, Padding, Pair, Param, Shape, TensorSpec
from .errors import CaseError, Conflict, ShapeError, did_you_mean, unknown

TENSOR_KEYS = ("shape", "init", "low", "high", "mean", "std")
MAX_ELEMENTS = 1 << 28  # per tensor: 2 GiB in float64, far beyond a conformance case; stops absurd sizes early


def kind_of(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(v), type(v).__name__)


def check_keys(d, allowed: Sequence[str], path, what: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise CaseError(f"{what} must be a mapping, got {kind_of(d)}", path)
    for k in d:
        if k not in allowed:
            if not allowed:
                raise CaseError(f"unknown key `{k}`: {what} take no keys", path + (k,))
            raise CaseError(unknown("key", k, allowed), path + (k,))
    return d


def finite(v) -> bool:
    """math.isfinite without the OverflowError a huge YAML integer (10**400) would raise."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def number(v, path, *, min=None, strict_min=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CaseError(f"must be a number, got {kind_of(v)} {v!r}" if isinstance(v, str) else
                        f"must be a number, got {kind_of(v)}", path)
    if not finite(v):
        raise CaseError(f"must be a finite number within float range, got {v!r:.40}", path)
    if min is not None and (v <= min if strict_min else v < min):
        raise CaseError(f"must be {'>' if strict_min else '>='} {min}, got {v}", path)
    return float(v)


def integer(v, path, *, min=None) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise CaseError(f"must be an integer, got {kind_of(v)} {v!r}", path)
    v = int(v)
    if min is not None and v < min:
        raise CaseError(f"must be >= {min}, got {v}", path)
    return v


def boolean(v, path) -> bool:
    if not isinstance(v, bool):
        raise CaseError(f"must be true or false, got {kind_of(v)} {v!r}", path)
    return v


def string(v, path) -> str:
    if not isinstance(v, str) or not v:
        raise CaseError(f"must be a non-empty string, got {kind_of(v)}", path)
    return v


def pair(v, path, *, min=0) -> Pair:
    if isinstance(v, list):
        if len(v) != 2:
            raise CaseError(f"must be an integer or a list of two, got a list of {len(v)}", path)
        return (integer(v[0], path + (0,), min=min), integer(v[1], path + (1,), min=min))
    x = integer(v, path, min=min)
    return (x, x)


def parse_padding(v, path, in_hw: Pair, k: Pair, s: Pair, d: Pair) -> Padding:
    """int | [ph, pw] | [[top, bottom], [left, right]] | valid | same (TensorFlow's: extra at bottom/right)."""
    if isinstance(v, str):
        if v == "valid":
            return ((0, 0), (0, 0))
        if v == "same":
            return tuple(same_padding(in_hw[i], k[i], s[i], d[i]) for i in range(2))  # type: ignore
        raise CaseError(f"must be an integer, a pair, per-side pairs, `valid` or `same`, got {v!r}"
                        f"{did_you_mean(v, ['valid', 'same'])}", path)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, list) for x in v):
        return tuple(pair(v[i], path + (i,)) for i in range(2))  # type: ignore
    ph, pw = pair(v, path)
    return ((ph, ph), (pw, pw))


def same_padding(size: int, k: int, s: int, d: int) -> Pair:
    """TensorFlow's SAME: total = max((ceil(n/s) - 1)·s + d·(k-1) + 1 - n, 0), the odd one after."""
    total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return (total // 2, total - total // 2)


# ---------------------------------------------------------------- tensors

def literal(v, path, what="tensor") -> np.ndarray:
    def check(x, p):
        if isinstance(x, list):
            for i, y in enumerate(x):
                check(y, p + (i,))
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            raise CaseError(f"entries must be numbers, got {kind_of(x)} {x!r}", p)
        elif not finite(x):
            raise CaseError(f"entries must be finite numbers within float range, got {x!r:.40}", p)
    check(v, path)
    try:
        arr = np.array(v, dtype=np.float64)
    except ValueError:
        raise CaseError("ragged nested list (rows of different lengths)", path) from None
    if 0 in arr.shape:
        raise CaseError("empty tensor", path)
    return arr


def tensor(v, path, shape: Shape | None = None, what="tensor") -> TensorSpec:
    """A literal nested list, a number (broadcast to `shape`), or {shape, init, low, high, mean, std}."""
    if isinstance(v, dict):
        check_keys(v, TENSOR_KEYS, path, what)
        if "shape" in v:
            if not isinstance(v["shape"], list):
                raise CaseError(f"must be a list of sizes, got {kind_of(v['shape'])}", path + ("shape",))
            got = check_size(tuple(integer(x, path + ("shape", i), min=1) for i, x in enumerate(v["shape"])),
                              path + ("shape",), what)
            if shape is not None and got != shape:  # ShapeError: in a family, another draw may fit
                raise ShapeError(f"shape {list(got)} does not match the expected {list(shape)}", path + ("shape",))
            shape = got
        if shape is None:
            raise CaseError("a random tensor needs `shape`", path)
        init = v.get("init", "uniform")
        if init not in INITS:
            raise CaseError(unknown("init", init, INITS), path + ("init",))
        if init == "randint":  # integers in [low, high): ids and class targets (SPEC §1.1)
            if "high" not in v:
                raise CaseError("`init: randint` needs `high` (integers are drawn in [low, high), low 0 by default)",
                                path)
            low, high = (integer(v.get(k, 0), path + (k,)) for k in ("low", "high"))
            if high <= low:
                raise Conflict(f"high ({high}) must be > low ({low}): randint draws from [low, high)", path + ("high",))
            return TensorSpec(shape, None, init, float(low), float(high))
        low = number(v.get("low", -1.0), path + ("low",))
        high = number(v.get("high", 1.0), path + ("high",))
        if high < low:
            raise Conflict(f"high ({high}) must be >= low ({low})", path + ("high",))
        std = number(v.get("std", 1.0), path + ("std",), min=0)
        return TensorSpec(shape, None, init, low, high, number(v.get("mean", 0.0), path + ("mean",)), std)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and shape is not None:
        return TensorSpec(shape, np.full(shape, number(v, path)))
    if not isinstance(v, (list, int, float)) or isinstance(v, bool):
        raise CaseError(f"must be a nested list of numbers or a mapping with `shape`, got {kind_of(v)}", path)
    arr = literal(v, path, what)
    if shape is not None and arr.shape != shape:
        raise ShapeError(f"shape {list(arr.shape)} does not match the expected {list(shape)}", path)
    return TensorSpec(arr.shape, arr)


def check_size(shape: Shape, path, what: str) -> Shape:
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise CaseError(f"{what} of shape {list(shape)} has {n:,} elements; the limit is {MAX_ELEMENTS:,} per tensor",
                        path)
    return shape


def default_param(shape: Shape, fan_in: int) -> TensorSpec:
    """PyTorch's default init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the case seed."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return TensorSpec(shape, None, "uniform", -bound, bound)




def out_size(n: int, pad: Pair, k: int, s: int, d: int) -> int:
    return (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def bias_params(p, path, name, n_out, fan_in) -> list[Param]:
    b = p.get("bias", True)
    if b is False:
        return []
    if b is True:
        return [Param(f"{name}.bias", default_param((n_out,), fan_in))]
    return [Param(f"{name}.bias", tensor(b, path + ("bias",), (n_out,), "bias"))]


def sizes_in_reach(p: dict, path, keys: tuple[str, ...]) -> None:
    """Sizes beyond any tensor gradconf can hold are refused before any arithmetic on them."""
    for key in keys:
        size = p.get(key)
        for x in (size if isinstance(size, list) else [size]):
            if isinstance(x, int) and not isinstance(x, bool) and x > MAX_ELEMENTS:
                raise CaseError(f"{x:,} is beyond any tensor gradconf can hold ({MAX_ELEMENTS:,} elements)",
                                path + (key,))
