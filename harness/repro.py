"""`gradconf repro ID --framework F` (SPEC §2): a failure as a standalone script for an upstream bug report.

The script needs only that framework and NumPy: the case's numbers are embedded (inputs, targets and
parameters exactly as every framework was given them), with the hand-written reference's values for each
tensor that differs and the allowance gradconf applied. Its framework part comes from the adapter, which
knows its framework's calls: the optional protocol method `script(case) -> str` (README, Adapters)
returns Python source defining `VERSION` and `run() -> {(step, quantity, tensor): array}` (canonical layout)
from the globals written here (DTYPE, STEPS, INPUTS, TARGETS, PARAMS, STATE). The script runs it, prints each
differing tensor beside the reference's values and the allowance, and exits 1 when the divergence shows.
"""
from __future__ import annotations

import base64
import datetime
import io

import numpy as np

from .case import Case
from .protocol import Initial, Trace
from .records import Record, Status

SHOWN = (Status.FAIL, Status.XFAIL)  # a comparison that went over its allowance (xfail: a catalogued one)
LITERAL_LIMIT = 64  # arrays up to this size are written as literals a reader can see; larger ones as .npy bytes


ORDER = ("loss", "output", "grad", "state", "param")  # within a step, in the order a step computes them


def differing(records: list[Record], framework: str) -> list[Record]:
    """The framework's comparisons with the reference that went over their allowance, the first step's first:
    where a divergence starts matters more than where it has grown largest."""
    bad = [r for r in records if r.framework == framework and r.status in SHOWN and r.quantity is not None
           and r.reference != "expected"]
    return sorted(bad, key=lambda r: (r.step, ORDER.index(r.quantity) if r.quantity in ORDER else 9, r.tensor or ""))


def array_source(a) -> str:
    """An exact float64 array as Python source: a literal when small and finite, else base64 .npy bytes."""
    a = np.asarray(a, dtype=np.float64)
    if a.size <= LITERAL_LIMIT and np.isfinite(a).all():
        return f"np.array({a.tolist()!r})"  # repr of a float round-trips exactly
    buffer = io.BytesIO()
    np.save(buffer, a, allow_pickle=False)
    return f'array("{base64.b64encode(buffer.getvalue()).decode()}")'


def _tensor_list(arrays) -> str:
    return "[" + ", ".join(array_source(a) for a in arrays) + "]"


def _numbers(case: Case, initial: Initial) -> str:
    inputs = [initial.input_at(k) for k in range(1, case.steps + 1)]
    targets = None if initial.target is None else [initial.target_at(k) for k in range(1, case.steps + 1)]
    params = "".join(f"    {name!r}: {array_source(a)},\n" for name, a in initial.params.items())
    state = "".join(f"    {name!r}: {array_source(a)},\n" for name, a in initial.state.items())
    return (f"DTYPE = {case.dtype!r}\nSTEPS = {case.steps}\n"
            f"INPUTS = {_tensor_list(inputs)}  # one per step, canonical layout (NCHW)\n"
            f"TARGETS = {'None' if targets is None else _tensor_list(targets)}  # the loss's target, one per step\n"
            f"PARAMS = {{  # canonical layouts: conv OIHW, transposed conv IOHW, dense (out, in)\n{params}}}\n"
            f"STATE = {{  # stateful layers' initial state (batch-norm running statistics)\n{state}}}\n")


def _lookup(trace: Trace, r: Record):
    s = trace.steps[r.step - 1]
    return {"loss": lambda: s.loss, "output": lambda: s.output}.get(r.quantity, lambda: (
        s.grads if r.quantity == "grad" else s.params if r.quantity == "param" else getattr(s, "state", {}))[r.tensor])()


def _expected(reference: Trace, shown: list[Record]) -> str:
    rows = "".join(f"    ({r.step}, {r.quantity!r}, {r.tensor!r}): ({array_source(_lookup(reference, r))}, "
                   f"{r.rtol!r}, {r.atol!r}),\n" for r in shown)
    return ("# What differs, as (step, quantity, tensor): the reference's value, rtol, atol. The reference is\n"
            "# a hand-written float64 NumPy forward and backward pass (no autodiff) from these same numbers;\n"
            "# an element differs where |value - reference| > atol + rtol * |reference|.\n"
            f"REFERENCE = {{\n{rows}}}\n")


_HEAD = '''#!/usr/bin/env python3
"""{title}

Written by `gradconf repro` on {date} from {origin}, with {framework} {version}.
Standalone: it needs only {framework} and NumPy. Run it with `python {{this file}}`; it prints each
tensor that differs beside the reference's values and exits 1 when the divergence shows.
{known}"""
import base64
import io
import sys

import numpy as np


def array(text):
    """An exact float64 array stored as .npy bytes in base64."""
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


'''

_TAIL = '''

def main():
    np.set_printoptions(precision=9, linewidth=110)
    results = run()
    differs = 0
    for (step, quantity, tensor), (reference, rtol, atol) in REFERENCE.items():
        value = np.asarray(results[step, quantity, tensor], dtype=np.float64)
        what = f"step {step} {quantity}" + (f" {tensor}" if tensor else "")
        if value.size != np.size(reference):
            differs += 1
            print(f"{what}: DIFFERS in shape: {FRAMEWORK} {list(value.shape)}, reference {list(np.shape(reference))}")
            continue
        value = value.reshape(np.shape(reference))
        allowed = atol + rtol * np.abs(reference)
        over = np.abs(value - reference) - allowed
        if not (over > 0).any() and np.isfinite(value).all() == np.isfinite(reference).all():
            print(f"{what}: within the allowance here (max |error| {np.abs(value - reference).max():.3g})")
            continue
        differs += 1
        worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(over), over, np.inf))), np.shape(over))
        print(f"{what}: DIFFERS in {int((~(over <= 0)).sum())} of {over.size} element(s); worst at "
              f"{[int(i) for i in worst]}: {FRAMEWORK} {float(value[worst])!r}, reference {float(reference[worst])!r}, "
              f"allowed |error| {float(allowed[worst]):.3g}")
        if value.size <= 64:
            print(f"  {FRAMEWORK}:\\n{value}\\n  reference:\\n{reference}")
    print(f"{differs} of {len(REFERENCE)} tensor(s) differ on {FRAMEWORK} {VERSION}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def script(case: Case, initial: Initial, reference: Trace, records: list[Record], adapter, version: str) -> str:
    """The standalone script reproducing `records`' differences of `adapter` on `case` (see the module doc)."""
    shown = differing(records, adapter.name)
    worst = max(shown, key=lambda r: r.ratio if r.ratio is not None else float("inf"))
    what = f"{worst.quantity}{' ' + worst.tensor if worst.tensor else ''} at step {worst.step}"
    size = "non-finite" if worst.ratio is None else f"{worst.ratio:.3g}x its allowance"
    title = (f"{adapter.name} {version} departs from a reference on `{case.id}`: {what} "
             f"(worst error {size}; {len(shown)} tensor(s) in all).")
    known = sorted({r.divergence or r.known or "" for r in shown} - {""})
    return (_HEAD.format(title=title, version=version, date=datetime.date.today().isoformat(), framework=adapter.name,
                         origin=f"{case.file}:{case.line}" if case.file else case.id,
                         known="".join(f"Catalogued by gradconf: {k}\n" for k in known))
            + f"FRAMEWORK = {adapter.name!r}\n" + _numbers(case, initial) + "\n" + _expected(reference, shown)
            + "\n\n" + adapter.script(case).strip() + "\n\n"
            + _TAIL)


def forward_lines(case, layers: dict, merges: dict, variables: str, indent: str, framework: str) -> list[str]:
    """An adapter's script writer's forward pass (its `script(case)`): one line per layer on `y`, each
    `layers[type](L, weight, bias)` or `merges[type](L, inputs)` an expression; a graph (SPEC §1.8) also keeps
    each layer's output in `h`, by name. `variables`: the script's name for its parameters' dict."""
    from .errors import Unsupported
    graph = any(L.sources for L in case.layers)
    lines, previous = [f"{indent}h = {{'input': y}}"] if graph else [], "input"
    for L, names in zip(case.layers, case.graph):
        ins = [f"h[{n!r}]" for n in names]
        if L.type in merges:
            expr = merges[L.type](L, ins)
        elif L.type in layers:
            if names != (previous,):
                lines.append(f"{indent}y = {ins[0]}")
            w = f"{variables}[{L.name + '.weight'!r}]" if L.param("weight") else "None"
            b = f"{variables}[{L.name + '.bias'!r}]" if L.param("bias") else "None"
            expr = layers[L.type](L, w, b)
        else:
            raise Unsupported(f"gradconf repro cannot write layer `{L.type}` ({L.name}) as {framework} calls yet")
        lines.append(f"{indent}y = {f'h[{L.name!r}] = ' if graph else ''}{expr}  # {L.name}: {L.type}")
        previous = L.name
    return lines
