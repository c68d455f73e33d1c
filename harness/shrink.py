"""Shrink a failing case to a small one that still fails, and write it as a plain case file.

Greedy and deterministic: try every simplification (fewer steps, drop a layer, batch 1, smaller
spatial size, fewer channels, simpler kernel geometry, no momentum ...) on the drawn case data,
keep the first one that is still a valid case and still fails, and start over until none
applies. Each candidate is validated by the loader and judged by the runner, so the result is
exactly a case that gradconf itself reports as failing.
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from . import files, yamlio
from .case import Case
from .errors import CaseError
from .loader import parse_case
from .runner import FAILING, Runner
from .records import Status

SMALL = 4  # spatial sizes and channels are pushed down towards this (and below where possible)


def _plain(source: dict) -> dict:
    """A case's (drawn) data without what a small standalone reproducer must not carry."""
    return {k: v for k, v in copy.deepcopy(source).items() if k not in ("count", "xfail", "expect")}


def _set(data: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _layer_params(data: dict) -> Iterator[tuple[int, str, dict]]:
    for i, item in enumerate(data.get("model", [])):
        if isinstance(item, dict):  # a bare word (`- relu`) has no parameters to simplify
            (kind, params), = item.items()
            yield i, kind, params or {}


def candidates(data: dict) -> Iterator[dict]:
    """Every one-step simplification of a case, biggest first."""
    steps = data.get("steps", 1)
    if steps > 1:
        yield _set(data, ("steps",), 1)
        yield _set(data, ("steps",), steps - 1)
    model = data["model"]
    for i in range(len(model)):  # drop a layer
        if len(model) > 1:
            yield _set(data, ("model",), model[:i] + model[i + 1:])
    inp = data.get("input")
    if isinstance(inp, dict) and isinstance(inp.get("shape"), list):
        shape = inp["shape"]
        for axis, size in enumerate(shape):
            for smaller in dict.fromkeys([1 if axis < 2 else SMALL, size // 2, size - 1]):
                if 1 <= smaller < size:
                    yield _set(data, ("input", "shape", axis), smaller)
    for i, kind, p in _layer_params(data):
        base = ("model", i, kind)
        for key, simpler in (("out_channels", 1), ("out_features", 1), ("groups", 1), ("stride", 1),
                             ("dilation", 1), ("padding", 0), ("output_padding", 0), ("kernel_size", 1),
                             ("count_include_pad", True), ("bias", False)):
            if key in p and p[key] != simpler and not isinstance(p.get("weight"), list):
                yield _set(data, base + (key,), simpler)
        for key in ("out_channels", "out_features", "kernel_size"):
            if isinstance(p.get(key), int) and p[key] > 1:
                yield _set(data, base + (key,), p[key] - 1)
    opt = data.get("optimizer")
    if isinstance(opt, dict) and len(opt) == 1:
        (kind, p), = opt.items()
        for key, simpler in (("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0)):
            if p and p.get(key) not in (None, simpler):
                candidate = _set(data, ("optimizer", kind, key), simpler)
                if key == "momentum":
                    candidate["optimizer"][kind].pop("nesterov", None)
                yield candidate
        if steps == 1:
            yield {k: v for k, v in data.items() if k != "optimizer"}


def _input_shape(data: dict) -> list:
    """The input's shape, whether written as `{shape: ...}` or as a literal nested list."""
    inp = data.get("input")
    return list(inp.get("shape", [])) if isinstance(inp, dict) else list(np.shape(inp))


def size(data: dict) -> tuple:
    """What shrinking minimises, in order: steps, layers, then the total input size."""
    shape = _input_shape(data)
    total = 1
    for s in shape:
        total *= s
    return (data.get("steps", 1), len(data["model"]), total)


def shrink(case: Case, fails: Callable[[Case], bool], budget_s: float = 60.0,
           log: Callable[[str], None] = lambda s: None) -> Case:
    """The smallest case found (within `budget_s`) for which `fails` still holds."""
    data = _plain(case.source)
    best, start = case, time.perf_counter()
    improved = True
    while improved and time.perf_counter() - start < budget_s:
        improved = False
        for cand in candidates(data):
            try:
                c = parse_case(cand, case.file, {}, case_id=case.id)
            except CaseError:
                continue
            if fails(c):
                data, best, improved = cand, c, True
                log(f"still failing at steps={size(cand)[0]} layers={size(cand)[1]} input={_input_shape(cand)}")
                break
    return best


def failing_predicate(runner: Runner, framework: str) -> Callable[[Case], bool]:
    """Whether `framework` fails on a case that the reference itself can run (a candidate that overflows
    its dtype, say, errors on every framework: that is not the failure being shrunk)."""
    chosen = [fw for fw in runner.frameworks if fw.name == framework]

    def fails(case: Case) -> bool:
        records = runner.run_case(case, chosen).records
        if any(r.framework == runner.reference.name and r.status == Status.ERROR for r in records):
            return False
        return any(r.framework == framework and r.status in FAILING for r in records)
    return fails


def regression_text(original: Case, small: Case, framework: str, reduced: bool = True) -> str:
    data = _plain(small.source)
    if not reduced and "expect" in original.source:  # the golden values still fit the case as drawn
        data["expect"] = copy.deepcopy(original.source["expect"])
    data["name"] = "regression_" + original.id.replace("[", "_").replace("]", "")
    data["description"] = (f"Shrunk from {original.id} ({original.file}): fails on {framework}. "
                           f"{original.description}").strip()
    data["tags"] = [t for t in data.get("tags", []) if t != "family"] + ["regression"]
    data["seed"] = original.seed
    what = ("smallest case found that still fails on" if reduced else
            "not reduced (no simplification still failed); the case as drawn, golden values kept, failing on")
    return f"# gradconf shrink {original.id}: {what} {framework}\n" + yamlio.dump(data)


def write_regression(text: str, name: str, out_dir: str) -> str:
    """`out_dir/<name>.yaml`, whatever `name` holds (a case id may hold `/` or `..`): the file name is
    made safe (files.safe_name; the id inside the file is kept as it is) and a symlink there is replaced."""
    os.makedirs(out_dir, exist_ok=True)
    return files.write_atomic(files.inside(out_dir, files.safe_name(name, ".yaml")), text)
