"""Case files -> validated `Case` objects. All checking happens here, once, before anything runs."""
from __future__ import annotations

import difflib
import math
import os
import stat
from collections.abc import Iterable, Sequence

import numpy as np

from . import yamlio
from .case import (ACTIVATIONS, DTYPES, INITS, LOSSES, OPTIMIZERS, QUANTITIES, Activation, Case, Conv2d,
                   ConvTranspose2d, Dense, Expect, Flatten, Layer, Loss, Optimizer, Padding, Pair, Param,
                   Pool2d, Shape, Sum, TensorSpec, Tol)
from .errors import CaseError, CaseErrors, Conflict, ShapeError, did_you_mean, every_error, unknown
from .divergences import CATALOGUE, unknown_ids
from .tolerance import LARGEST

TOP_KEYS = ("name", "description", "tags", "dtype", "seed", "input", "model", "loss", "optimizer", "steps",
            "expect", "tolerance", "xfail", "count")
_CONV_KEYS = ("name", "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
              "bias", "weight")
LAYER_KEYS = {
    "conv2d": _CONV_KEYS,
    "conv_transpose2d": _CONV_KEYS + ("output_padding",),
    "max_pool2d": ("name", "kernel_size", "stride", "padding"),
    "avg_pool2d": ("name", "kernel_size", "stride", "padding", "count_include_pad"),
    "sigmoid": ("name",), "tanh": ("name",), "relu": ("name",), "flatten": ("name",), "sum": ("name",),
    "dense": ("name", "in_features", "out_features", "bias", "weight"),
    "linear": ("name", "in_features", "out_features", "bias", "weight"),
}
LOSS_KEYS = {"mse": ("target",), "half_sse": ("target",), "sum": (), "cross_entropy": ("target",),
             "grad_output": ("value",)}
OPT_KEYS = {"sgd": ("lr", "momentum", "nesterov", "weight_decay"),
            "adam": ("lr", "betas", "eps", "weight_decay")}
TENSOR_KEYS = ("shape", "init", "low", "high", "mean", "std")
TOL_KEYS = ("rtol", "atol")
CASE_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 2 << 20  # a case file is text written by hand: the bundled ones are below 2 KB
MAX_STEPS = 1000  # optimizer steps per case; the bundled ones take at most 4
MAX_ELEMENTS = 1 << 28  # per tensor: 2 GiB in float64, far beyond a conformance case; stops absurd sizes early


# ---------------------------------------------------------------- files

def discover(paths: Iterable[str]) -> list[str]:
    """Every case file under the given files and folders, sorted, each once."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, f) for f in sorted(files) if f.endswith(CASE_SUFFIXES)]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise CaseError("no such file or folder", (), path)
    return list(dict.fromkeys(os.path.normpath(f) for f in found))


def read_file(path: str) -> tuple[dict, dict]:
    try:  # O_NONBLOCK: opening a FIFO named x.yaml must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CaseError("not a regular file (a device, a FIFO or a socket?)", (), path)
            raw = fh.read(MAX_FILE_BYTES + 1)  # never more: a hostile file's size is not ours to read
    except OSError as e:
        raise CaseError(f"cannot read: {e.strerror or e}", (), path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CaseError(f"larger than {MAX_FILE_BYTES >> 20} MiB, the limit for a case file; draw large tensors "
                        "with {shape: [...], init: ...} instead of writing them out", (), path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaseError(f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8", (), path,
                        raw[:e.start].count(b"\n") + 1) from None
    data, lines = yamlio.load(text, path)
    if not isinstance(data, dict):
        raise CaseError(f"a case file holds a mapping (name:, input:, model:, ...), got {_kind(data)}", (), path, 1)
    return data, lines


def load_file(path: str, count: int | None = None) -> list[Case]:
    """One file -> its case, or its family's variants. Raises CaseError naming file, line and field."""
    from . import family  # families build on this module

    data, lines = read_file(path)
    try:
        if family.is_family(data):
            return family.expand(data, path, lines, count)
        return [parse_case(data, path, lines)]
    except CaseError as e:
        raise e.located(path, lines) from None


def load_paths(paths: Sequence[str], count: int | None = None) -> tuple[list[Case], list[CaseError]]:
    """Every case under `paths`; every invalid file is reported, not only the first."""
    cases, errors = [], []
    try:
        files = discover(paths)
    except CaseError as e:
        return [], [e]
    for f in files:
        try:
            cases += load_file(f, count)
        except CaseError as e:
            errors += every_error(e)
    seen: dict[str, str] = {}
    for c in cases:
        if c.id in seen:
            errors.append(CaseError(f"case id `{c.id}` is also used by {seen[c.id]}", ("name",), c.file,
                                    c.line_of("name")))
        seen.setdefault(c.id, c.file)
    return cases, errors


# ---------------------------------------------------------------- scalars

def _kind(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(v), type(v).__name__)


def _check_keys(d, allowed: Sequence[str], path, what: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise CaseError(f"{what} must be a mapping, got {_kind(d)}", path)
    for k in d:
        if k not in allowed:
            if not allowed:
                raise CaseError(f"unknown key `{k}`: {what} take no keys", path + (k,))
            raise CaseError(unknown("key", k, allowed), path + (k,))
    return d


def _finite(v) -> bool:
    """math.isfinite without the OverflowError a huge YAML integer (10**400) would raise."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _number(v, path, *, min=None, strict_min=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CaseError(f"must be a number, got {_kind(v)} {v!r}" if isinstance(v, str) else
                        f"must be a number, got {_kind(v)}", path)
    if not _finite(v):
        raise CaseError(f"must be a finite number within float range, got {v!r:.40}", path)
    if min is not None and (v <= min if strict_min else v < min):
        raise CaseError(f"must be {'>' if strict_min else '>='} {min}, got {v}", path)
    return float(v)


def _int(v, path, *, min=None) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise CaseError(f"must be an integer, got {_kind(v)} {v!r}", path)
    v = int(v)
    if min is not None and v < min:
        raise CaseError(f"must be >= {min}, got {v}", path)
    return v


def _bool(v, path) -> bool:
    if not isinstance(v, bool):
        raise CaseError(f"must be true or false, got {_kind(v)} {v!r}", path)
    return v


def _str(v, path) -> str:
    if not isinstance(v, str) or not v:
        raise CaseError(f"must be a non-empty string, got {_kind(v)}", path)
    return v


def _pair(v, path, *, min=0) -> Pair:
    if isinstance(v, list):
        if len(v) != 2:
            raise CaseError(f"must be an integer or a list of two, got a list of {len(v)}", path)
        return (_int(v[0], path + (0,), min=min), _int(v[1], path + (1,), min=min))
    x = _int(v, path, min=min)
    return (x, x)


def _padding(v, path, in_hw: Pair, k: Pair, s: Pair, d: Pair) -> Padding:
    """int | [ph, pw] | [[top, bottom], [left, right]] | valid | same (TensorFlow's: extra at bottom/right)."""
    if isinstance(v, str):
        if v == "valid":
            return ((0, 0), (0, 0))
        if v == "same":
            return tuple(same_padding(in_hw[i], k[i], s[i], d[i]) for i in range(2))  # type: ignore
        raise CaseError(f"must be an integer, a pair, per-side pairs, `valid` or `same`, got {v!r}"
                        f"{did_you_mean(v, ['valid', 'same'])}", path)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, list) for x in v):
        return tuple(_pair(v[i], path + (i,)) for i in range(2))  # type: ignore
    ph, pw = _pair(v, path)
    return ((ph, ph), (pw, pw))


def same_padding(size: int, k: int, s: int, d: int) -> Pair:
    """TensorFlow's SAME: total = max((ceil(n/s) - 1)·s + d·(k-1) + 1 - n, 0), the odd one after."""
    total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return (total // 2, total - total // 2)


# ---------------------------------------------------------------- tensors

def _literal(v, path, what="tensor") -> np.ndarray:
    def check(x, p):
        if isinstance(x, list):
            for i, y in enumerate(x):
                check(y, p + (i,))
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            raise CaseError(f"entries must be numbers, got {_kind(x)} {x!r}", p)
        elif not _finite(x):
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
        _check_keys(v, TENSOR_KEYS, path, what)
        if "shape" in v:
            if not isinstance(v["shape"], list):
                raise CaseError(f"must be a list of sizes, got {_kind(v['shape'])}", path + ("shape",))
            got = _check_size(tuple(_int(x, path + ("shape", i), min=1) for i, x in enumerate(v["shape"])),
                              path + ("shape",), what)
            if shape is not None and got != shape:  # ShapeError: in a family, another draw may fit
                raise ShapeError(f"shape {list(got)} does not match the expected {list(shape)}", path + ("shape",))
            shape = got
        if shape is None:
            raise CaseError("a random tensor needs `shape`", path)
        init = v.get("init", "uniform")
        if init not in INITS:
            raise CaseError(unknown("init", init, INITS), path + ("init",))
        low = _number(v.get("low", -1.0), path + ("low",))
        high = _number(v.get("high", 1.0), path + ("high",))
        if high < low:
            raise Conflict(f"high ({high}) must be >= low ({low})", path + ("high",))
        std = _number(v.get("std", 1.0), path + ("std",), min=0)
        return TensorSpec(shape, None, init, low, high, _number(v.get("mean", 0.0), path + ("mean",)), std)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and shape is not None:
        return TensorSpec(shape, np.full(shape, _number(v, path)))
    if not isinstance(v, (list, int, float)) or isinstance(v, bool):
        raise CaseError(f"must be a nested list of numbers or a mapping with `shape`, got {_kind(v)}", path)
    arr = _literal(v, path, what)
    if shape is not None and arr.shape != shape:
        raise ShapeError(f"shape {list(arr.shape)} does not match the expected {list(shape)}", path)
    return TensorSpec(arr.shape, arr)


def _check_size(shape: Shape, path, what: str) -> Shape:
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise CaseError(f"{what} of shape {list(shape)} has {n:,} elements; the limit is {MAX_ELEMENTS:,} per tensor",
                        path)
    return shape


def _default_param(shape: Shape, fan_in: int) -> TensorSpec:
    """PyTorch's default init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the case seed."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return TensorSpec(shape, None, "uniform", -bound, bound)


# ---------------------------------------------------------------- layers

def _out_size(n: int, pad: Pair, k: int, s: int, d: int) -> int:
    return (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def _conv(kind: str, p: dict, path, name: str, shape: Shape) -> Layer:
    transposed = kind == "conv_transpose2d"
    if len(shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(shape)}", path)
    n, c, h, w = shape
    if "in_channels" in p and _int(p["in_channels"], path + ("in_channels",), min=1) != c:
        raise ShapeError(f"in_channels is {p['in_channels']} but the incoming tensor has {c} channels "
                         f"(shape {list(shape)})", path + ("in_channels",))
    literal_w = p.get("weight") if isinstance(p.get("weight"), list) else None
    wshape = _literal(literal_w, path + ("weight",), "weight").shape if literal_w is not None else None
    if wshape is not None and len(wshape) != 4:
        raise CaseError(f"a {kind} weight is 4-D ({'IOHW' if transposed else 'OIHW'}), got shape {list(wshape)}",
                        path + ("weight",))
    groups = _int(p.get("groups", 1), path + ("groups",), min=1)
    if "out_channels" in p:
        out_c = _int(p["out_channels"], path + ("out_channels",), min=1)
    elif wshape is not None:
        out_c = wshape[1] * groups if transposed else wshape[0]
    else:
        raise CaseError("missing `out_channels`", path)
    if "kernel_size" in p:
        k = _pair(p["kernel_size"], path + ("kernel_size",), min=1)
    elif wshape is not None:
        k = (wshape[2], wshape[3])
    else:
        raise CaseError("missing `kernel_size`", path)
    s = _pair(p.get("stride", 1), path + ("stride",), min=1)
    d = _pair(p.get("dilation", 1), path + ("dilation",), min=1)
    if c % groups:
        raise ShapeError(f"in_channels {c} is not divisible by groups {groups}", path + ("groups",))
    if out_c % groups:
        raise ShapeError(f"out_channels {out_c} is not divisible by groups {groups}", path + ("groups",))
    if transposed:
        full = tuple((hw - 1) * s[i] + d[i] * (k[i] - 1) + 1 for i, hw in enumerate((h, w)))
        op = _pair(p.get("output_padding", 0), path + ("output_padding",))
        if p.get("padding") == "same":
            if op != (0, 0):
                raise ShapeError("output_padding must be 0 with padding `same` (the output is input·stride)",
                                path + ("output_padding",))
            # The transposed twin of a `same` conv on an input of size n·s.
            pad = tuple(same_padding(hw * s[i], k[i], s[i], d[i]) for i, hw in enumerate((h, w)))
            op = tuple(max(0, s[i] - d[i] * (k[i] - 1) - 1) for i in range(2))
        else:
            pad = _padding(p.get("padding", 0), path + ("padding",), (h, w), k, s, d)
        for i in range(2):
            if op[i] >= max(s[i], d[i]):
                raise ShapeError(f"output_padding {op[i]} must be smaller than stride or dilation "
                                f"({max(s[i], d[i])})", path + ("output_padding",))
        out_hw = tuple(full[i] - pad[i][0] - pad[i][1] + op[i] for i in range(2))
        wshape_expected = (c, out_c // groups, *k)
    else:
        pad = _padding(p.get("padding", 0), path + ("padding",), (h, w), k, s, d)
        out_hw = tuple(_out_size((h, w)[i], pad[i], k[i], s[i], d[i]) for i in range(2))
        wshape_expected = (out_c, c // groups, *k)
    if min(out_hw) < 1:
        raise ShapeError(f"output size would be {out_hw[0]}x{out_hw[1]} for a {h}x{w} input "
                         f"(kernel {k}, stride {s}, padding {pad}, dilation {d})", path)
    _check_size(wshape_expected, path + ("weight",), "the weight")
    fan_in = (c // groups if not transposed else out_c // groups) * k[0] * k[1]
    weight = (tensor(p["weight"], path + ("weight",), wshape_expected, "weight") if "weight" in p
              else _default_param(wshape_expected, fan_in))
    params = [Param(f"{name}.weight", weight)]
    params += _bias(p, path, name, out_c, fan_in)
    out_shape = (n, out_c, *out_hw)
    common = dict(name=name, in_shape=shape, out_shape=out_shape, params=tuple(params), out_channels=out_c,
                  kernel_size=k, stride=s, padding=pad, dilation=d, groups=groups)
    return ConvTranspose2d(**common, output_padding=op) if transposed else Conv2d(**common)


def _bias(p, path, name, n_out, fan_in) -> list[Param]:
    b = p.get("bias", True)
    if b is False:
        return []
    if b is True:
        return [Param(f"{name}.bias", _default_param((n_out,), fan_in))]
    return [Param(f"{name}.bias", tensor(b, path + ("bias",), (n_out,), "bias"))]


def _pool(kind: str, p: dict, path, name: str, shape: Shape) -> Layer:
    if len(shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(shape)}", path)
    if "kernel_size" not in p:
        raise CaseError("missing `kernel_size`", path)
    k = _pair(p["kernel_size"], path + ("kernel_size",), min=1)
    s = _pair(p.get("stride", list(k)), path + ("stride",), min=1)
    hw = shape[2:]
    pad = _padding(p.get("padding", 0), path + ("padding",), hw, k, s, (1, 1))
    out_hw = tuple(_out_size(hw[i], pad[i], k[i], s[i], 1) for i in range(2))
    if min(out_hw) < 1:
        raise ShapeError(f"output size would be {out_hw[0]}x{out_hw[1]} for a {hw[0]}x{hw[1]} input "
                         f"(kernel {k}, stride {s}, padding {pad})", path)
    for i in range(2):  # every window must hold at least one real cell
        if pad[i][0] >= k[i] or (out_hw[i] - 1) * s[i] >= pad[i][0] + hw[i]:
            raise ShapeError(f"padding {pad[i]} makes a pooling window lie entirely in padding", path + ("padding",))
    cip = _bool(p.get("count_include_pad", True), path + ("count_include_pad",))
    return Pool2d(name=name, in_shape=shape, out_shape=(*shape[:2], *out_hw), kind=kind[:3], kernel_size=k,
                  stride=s, padding=pad, count_include_pad=cip)


def _dense(p: dict, path, name: str, shape: Shape) -> Layer:
    if len(shape) != 2:
        raise ShapeError(f"dense needs a (batch, features) input, got shape {list(shape)}; add a `flatten` "
                         f"layer before it", path)
    n, fan_in = shape
    if "in_features" in p and _int(p["in_features"], path + ("in_features",), min=1) != fan_in:
        raise ShapeError(f"in_features is {p['in_features']} but the incoming tensor has {fan_in} features "
                         f"(shape {list(shape)})", path + ("in_features",))
    w = p.get("weight")
    if "out_features" in p:
        out_f = _int(p["out_features"], path + ("out_features",), min=1)
    elif isinstance(w, list):
        out_f = _literal(w, path + ("weight",), "weight").shape[0]
    else:
        raise CaseError("missing `out_features`", path)
    _check_size((out_f, fan_in), path + ("weight",), "the weight")
    weight = (tensor(w, path + ("weight",), (out_f, fan_in), "weight") if w is not None
              else _default_param((out_f, fan_in), fan_in))
    params = [Param(f"{name}.weight", weight)] + _bias(p, path, name, out_f, fan_in)
    return Dense(name=name, in_shape=shape, out_shape=(n, out_f), params=tuple(params), out_features=out_f)


def _layer(item, path, index: int, shape: Shape, names: set) -> Layer:
    if isinstance(item, str) and item in LAYER_KEYS:  # `- relu` for `- relu: {}`
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise CaseError("each layer is a one-key mapping such as `{conv2d: {...}}`", path)
    (kind, p), = item.items()
    if kind not in LAYER_KEYS:
        raise CaseError(unknown("layer type", kind, LAYER_KEYS), path + (kind,))
    path = path + (kind,)
    p = _check_keys(p, LAYER_KEYS[kind], path, f"{kind} parameters")
    name = _str(p["name"], path + ("name",)) if "name" in p else f"{kind}_{index}"  # as written: linear_0
    kind = "dense" if kind == "linear" else kind
    if name in names or name == "input":
        raise CaseError(f"layer name `{name}` is already used", path + ("name",))
    names.add(name)
    if kind in ("conv2d", "conv_transpose2d", "dense"):
        for key in ("out_channels", "out_features", "kernel_size"):  # before any arithmetic on them
            size = p.get(key)
            for x in (size if isinstance(size, list) else [size]):
                if isinstance(x, int) and not isinstance(x, bool) and x > MAX_ELEMENTS:
                    raise CaseError(f"{x:,} is beyond any tensor gradconf can hold ({MAX_ELEMENTS:,} elements)",
                                    path + (key,))
    if kind in ("conv2d", "conv_transpose2d"):
        layer = _conv(kind, p, path, name, shape)
    elif kind in ("max_pool2d", "avg_pool2d"):
        layer = _pool(kind, p, path, name, shape)
    elif kind == "dense":
        layer = _dense(p, path, name, shape)
    else:
        layer = None
    if layer is not None:
        _check_size(layer.out_shape, path, "the output")
        for param in layer.params:
            _check_size(param.spec.shape, path, param.name)
        return layer
    if kind in ACTIVATIONS:
        return Activation(name=name, in_shape=shape, out_shape=shape, kind=kind)
    if kind == "flatten":
        if len(shape) < 2:
            raise ShapeError(f"flatten keeps the batch axis and needs rank >= 2, got shape {list(shape)}", path)
        return Flatten(name=name, in_shape=shape, out_shape=(shape[0], int(np.prod(shape[1:]))))
    return Sum(name=name, in_shape=shape, out_shape=())


# ---------------------------------------------------------------- loss, optimizer, expectations

def _loss(v, out_shape: Shape) -> Loss:
    path = ("loss",)
    if not isinstance(v, dict) or len(v) != 1:
        raise CaseError(f"the loss is a one-key mapping such as `{{mse: {{target: 0}}}}`; one of {', '.join(LOSSES)}",
                        path)
    (kind, p), = v.items()
    if kind not in LOSS_KEYS:
        raise CaseError(unknown("loss", kind, LOSSES), path + (kind,))
    path += (kind,)
    p = _check_keys(p, LOSS_KEYS[kind], path, f"{kind} parameters")
    if kind == "sum":
        return Loss(kind)
    key = "value" if kind == "grad_output" else "target"
    if key not in p:
        raise CaseError(f"missing `{key}`", path)
    if kind == "cross_entropy":
        if len(out_shape) != 2:
            raise ShapeError(f"cross_entropy needs (batch, classes) logits, the model outputs shape {list(out_shape)}",
                             path)
        t = p[key]
        if not isinstance(t, list):
            raise CaseError("must be a list of integer class ids, one per batch row", path + (key,))
        ids = [_int(x, path + (key, i), min=0) for i, x in enumerate(t)]
        if len(ids) != out_shape[0]:
            raise ShapeError(f"{len(ids)} class ids for a batch of {out_shape[0]}", path + (key,))
        for i, x in enumerate(ids):
            if x >= out_shape[1]:
                raise ShapeError(f"class id {x} out of range for {out_shape[1]} classes", path + (key, i))
        return Loss(kind, TensorSpec((len(ids),), np.array(ids, dtype=np.float64)))
    return Loss(kind, tensor(p[key], path + (key,), out_shape, key))


def _optimizer(v) -> Optimizer | None:
    if v is None:
        return None
    path = ("optimizer",)
    if not isinstance(v, dict) or len(v) != 1:
        raise CaseError("the optimizer is a one-key mapping such as `{sgd: {lr: 0.1}}`", path)
    (kind, p), = v.items()
    if kind not in OPT_KEYS:
        raise CaseError(unknown("optimizer", kind, OPTIMIZERS), path + (kind,))
    path += (kind,)
    p = _check_keys(p, OPT_KEYS[kind], path, f"{kind} parameters")
    if "lr" not in p:
        raise CaseError("missing `lr`", path)
    lr = _number(p["lr"], path + ("lr",), min=0)
    wd = _number(p.get("weight_decay", 0.0), path + ("weight_decay",), min=0)
    if kind == "sgd":
        m = _number(p.get("momentum", 0.0), path + ("momentum",), min=0)
        nesterov = _bool(p.get("nesterov", False), path + ("nesterov",))
        if nesterov and m == 0:
            raise Conflict("nesterov needs a momentum > 0", path + ("nesterov",))
        return Optimizer("sgd", lr, momentum=m, nesterov=nesterov, weight_decay=wd)
    betas = p.get("betas", [0.9, 0.999])
    if not isinstance(betas, list) or len(betas) != 2:
        raise CaseError("must be a list of two numbers [beta1, beta2]", path + ("betas",))
    b = tuple(_number(x, path + ("betas", i), min=0) for i, x in enumerate(betas))
    for i, x in enumerate(b):
        if x >= 1:
            raise CaseError(f"must be < 1, got {x}", path + ("betas", i))
    eps = _number(p.get("eps", 1e-8), path + ("eps",), min=0, strict_min=True)
    return Optimizer("adam", lr, betas=b, eps=eps, weight_decay=wd)  # type: ignore[arg-type]


def _expect(v, steps: int, out_shape: Shape, params: dict[str, Shape], in_shape: Shape) -> Expect:
    path = ("expect",)
    v = _check_keys(v, QUANTITIES, path, "expect")
    loss = None
    if "loss" in v:
        raw = v["loss"] if isinstance(v["loss"], list) else [v["loss"]]
        if isinstance(v["loss"], list) and len(raw) != steps:  # a short list is more likely a slip than a choice
            raise CaseError(f"{len(raw)} loss(es) for {steps} step(s): give one per step, or a single number "
                            f"for step 1", path + ("loss",))
        loss = tuple(_number(x, path + ("loss", i) if isinstance(v["loss"], list) else path + ("loss",))
                     for i, x in enumerate(raw))
    output = None
    if "output" in v:
        output = _literal(v["output"], path + ("output",), "output")
        if output.shape != out_shape and not (out_shape == () and output.size == 1):
            raise ShapeError(f"shape {list(output.shape)} does not match the output shape {list(out_shape)}",
                             path + ("output",))
        output = output.reshape(out_shape)
    named = {"grad": {**params, "input": in_shape}, "param": params}
    tensors: dict[str, dict] = {}
    for q in ("grad", "param"):
        tensors[q] = {}
        d = _check_keys(v.get(q), list(named[q]), path + (q,), q)
        for name, value in d.items():
            tensors[q][name] = _literal(value, path + (q, name), name)
            if tensors[q][name].shape != named[q][name]:
                raise ShapeError(f"shape {list(tensors[q][name].shape)} does not match {name}'s "
                                 f"{list(named[q][name])}", path + (q, name))
    return Expect(loss, output, tensors["grad"], tensors["param"])


def _tolerance(v, params: Sequence[str]) -> dict[str, Tol]:
    """{rtol, atol} for the whole case, or keyed: default, loss, output, grad, param, grad.<tensor>, param.<tensor>."""
    path = ("tolerance",)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CaseError(f"must be a mapping, got {_kind(v)}", path)
    if set(v) <= set(TOL_KEYS):
        v = {"default": v}
        path_of = lambda key: path  # noqa: E731
    else:
        path_of = lambda key: path + (key,)  # noqa: E731
    keys = ["default", *QUANTITIES, *(f"grad.{p}" for p in (*params, "input")), *(f"param.{p}" for p in params)]
    out = {}
    for key, tol in v.items():
        if key not in keys:
            raise CaseError(f"unknown tolerance key `{key}`{did_you_mean(key, keys)} (keys: default, loss, output, "
                            f"grad, param, grad.<tensor>, param.<tensor>)", path + (key,))
        tol = _check_keys(tol, TOL_KEYS, path_of(key), "a tolerance")
        out[key] = Tol(*(None if tol.get(k) is None else _number(tol[k], path_of(key) + (k,), min=0)
                         for k in TOL_KEYS))
    return out


# ---------------------------------------------------------------- the case

def _fits_dtype(spec: TensorSpec, path, dtype: str) -> None:
    """Rounding to the case dtype turns a value beyond its largest into inf, silently: refuse it here."""
    if spec.values is not None:
        worst, field, what = float(np.max(np.abs(spec.values), initial=0.0)), path, "an entry"
    elif spec.init == "uniform":
        side = "high" if abs(spec.high) >= abs(spec.low) else "low"
        worst, field, what = abs(getattr(spec, side)), path + (side,), "the range"
    elif spec.init == "normal":
        worst, field, what = abs(spec.mean) + 6.0 * spec.std, path + ("std",), "six standard deviations from the mean"
    elif spec.init == "arange":
        worst, field, what = float(np.prod(spec.shape)) - 1.0, path + ("shape",), "the arange"
    else:
        return
    if worst > LARGEST[dtype]:
        raise Conflict(f"{what} reaches {worst:.4g}, beyond {dtype}'s largest value {LARGEST[dtype]:.6g} (it would "
                       f"be inf)", field)


def case_name(data: dict, file: str) -> str:
    """A case's (or family's) `name`, by default the file's stem. It becomes a pytest node id and, for a
    family, `name[i]`: the characters that delimit those would make ids that cannot be selected."""
    stem = os.path.splitext(os.path.basename(file))[0].removesuffix(".case")  # `x.case.yaml` (pytest opt-in) is x
    name = _str(data["name"], ("name",)) if "name" in data else stem
    clash = next((d for d in ("::", "[", "]") if d in name), None)
    if clash or not name.isprintable():
        which = f"name {name!r}" if "name" in data else f"the default name, the file's stem {name!r},"
        why = (f"holds `{clash}`; `::`, `[` and `]` delimit case ids (`family[3]`, pytest's `file::id`)"
               if clash else "holds a control character")
        raise CaseError(f"{which} {why}" + ("" if "name" in data else "; set `name:`"), ("name",))
    return name


class _Collect:
    """Gathers the errors of a case's independent parts, so that one file's every error is reported at once."""

    def __init__(self):
        self.errors: list[CaseError] = []

    def __call__(self, check, *args, **kw):
        """check(*args, **kw), or None after recording its error(s)."""
        try:
            return check(*args, **kw)
        except CaseError as e:
            self.errors += every_error(e)
            return None

    def raise_any(self, one_only: bool) -> None:
        """A family variant raises its first error alone (a Conflict there means: draw again)."""
        if self.errors:
            raise self.errors[0] if one_only or len(self.errors) == 1 else CaseErrors(self.errors)


def _top_keys(data: dict) -> None:
    unknown_keys = [CaseError(unknown("key", k, TOP_KEYS), (k,)) for k in data if k not in TOP_KEYS]
    if unknown_keys:
        raise CaseErrors(unknown_keys)


def _meta(data: dict, collect: _Collect) -> tuple:
    dtype = data.get("dtype", "float32")
    if dtype not in DTYPES:
        collect.errors.append(CaseError(unknown("dtype", dtype, DTYPES), ("dtype",)))
        dtype = "float32"  # the other checks go on as for the default
    seed = collect(_int, data.get("seed", 0), ("seed",), min=0) or 0
    tags = data.get("tags") or []  # `tags:` left empty is no tags
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list):
        collect.errors.append(CaseError("must be a list of words", ("tags",)))
        tags = []
    tags = tuple(t for t in (collect(_str, t, ("tags", i)) for i, t in enumerate(tags)) if t is not None)
    description = data.get("description") or ""
    if not isinstance(description, str):
        collect.errors.append(CaseError("must be a string", ("description",)))
        description = ""
    return dtype, seed, tags, description


def _network(data: dict, collect: _Collect):
    """(input, layers, output shape), or Nones where an error stops what depends on it."""
    inp = collect(tensor, data["input"], ("input",), None, "input")
    if not isinstance(data["model"], list) or not data["model"]:
        collect.errors.append(CaseError("must be a non-empty list of layers", ("model",)))
        return inp, None, None
    if inp is None:
        return None, None, None
    layers, names, shape = [], set(), inp.shape
    for i, item in enumerate(data["model"]):
        layer = collect(_layer, item, ("model", i), i, shape, names)
        if layer is None:  # later layers' shapes depend on this one
            return inp, None, None
        layers.append(layer)
        shape = layer.out_shape
    return inp, layers, shape


def _fits(data: dict, dtype: str, inp, layers, loss, collect: _Collect) -> None:
    if inp is not None:
        collect(_fits_dtype, inp, ("input",), dtype)
    for i, layer in enumerate(layers or ()):
        written = data["model"][i] if isinstance(data["model"][i], str) else next(iter(data["model"][i]))
        for p in layer.params:
            collect(_fits_dtype, p.spec, ("model", i, written, p.name.rsplit(".", 1)[1]), dtype)
    if loss is not None and loss.target is not None and loss.kind != "cross_entropy":  # class ids: not values
        collect(_fits_dtype, loss.target, ("loss", loss.kind, "value" if loss.kind == "grad_output" else "target"),
                dtype)


def _xfail(data: dict) -> dict:
    from gradconf.adapters import known_names
    xfail = _check_keys(data.get("xfail"), known_names(), ("xfail",), "xfail")
    for fw, why in xfail.items():
        _str(why, ("xfail", fw))
        bad = unknown_ids(why)
        if bad:
            raise CaseError(f"unknown divergence id(s) {', '.join(bad)}; the catalogue holds "
                            f"{', '.join(CATALOGUE)} (docs/divergences.md); any other text is a free-text reason",
                            ("xfail", fw))
    return dict(xfail)


def parse_case(data: dict, file: str, lines: dict, *, case_id: str | None = None, family: str | None = None) -> Case:
    """Validate one (already drawn) case mapping. Raises CaseError with the field path (CaseErrors: several,
    each part of the case that does not depend on a broken one is checked too)."""
    collect = _Collect()
    collect(_top_keys, data)
    # A variant's `f[i]` and a shrink candidate's id were made from names already checked.
    name = case_id or (data["name"] if family else collect(case_name, data, file))
    dtype, seed, tags, description = _meta(data, collect)
    # A misspelt key (`modle:`) already says what is missing: no second error for it.
    meant = {m for k in data if k not in TOP_KEYS for m in difflib.get_close_matches(str(k), TOP_KEYS, n=1, cutoff=0.6)}
    missing = [key for key in ("input", "model", "loss") if key not in data]
    collect.errors += [CaseError(f"missing `{key}` (every case needs `input`, `model` and `loss`)", ())
                       for key in missing if key not in meant]
    if missing:
        collect.raise_any(family is not None)
    inp, layers, shape = _network(data, collect)
    loss = collect(_loss, data["loss"], shape) if layers is not None else None
    optimizer = collect(_optimizer, data.get("optimizer"))
    steps = collect(_int, data.get("steps", 1), ("steps",), min=1) or 1
    if steps > MAX_STEPS:  # every step is run, compared and re-run for conditioning: a typo must not hang a run
        collect.errors.append(CaseError(f"{steps:,} steps is more than a case may take (the limit is {MAX_STEPS:,})",
                                        ("steps",)))
        steps = 1
    if steps > 1 and optimizer is None and data.get("optimizer") is None:
        collect.errors.append(Conflict(f"{steps} steps need an `optimizer` (without one every step is the same)",
                                       ("steps",)))
    expect = tolerance = None
    if layers is not None:
        params = {p.name: p.spec.shape for layer in layers for p in layer.params}
        expect = collect(_expect, data.get("expect"), steps, shape, params, inp.shape)
        if expect is not None and expect.param and data.get("optimizer") is None:
            collect.errors.append(Conflict("expected parameters need an `optimizer` (without one nothing is "
                                           "updated; gradients go under `expect.grad`)", ("expect", "param")))
        tolerance = collect(_tolerance, data.get("tolerance"), list(params))
    _fits(data, dtype, inp, layers, loss, collect)
    xfail = collect(_xfail, data)
    collect.raise_any(family is not None)
    return Case(id=case_id or name, file=file, line=lines.get((), 1), description=description, tags=tags,
                dtype=dtype, seed=seed, input=inp, layers=tuple(layers), loss=loss, optimizer=optimizer, steps=steps,
                expect=expect, tolerance=tolerance, xfail=xfail, family=family, source=data, lines=lines)
