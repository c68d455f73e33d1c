"""Judging: measurements -> records. Each quantity of each step an adapter returned, against the
reference's (or a golden `expect:` value), under the tolerance policy's allowance plus the measured slack."""
from __future__ import annotations

import dataclasses

import numpy as np

from .case import Case
from .compare import compare
from .protocol import Trace
from .records import Record, Status, note
from .tolerance import LARGEST, Allowance, allowance, takes_slack


def quantities(trace: Trace):
    """(step, quantity, tensor, array) for everything an adapter returned, reference order."""
    for i, s in enumerate(trace.steps, start=1):
        yield i, "loss", None, np.asarray(s.loss)
        yield i, "output", None, np.asarray(s.output)
        for name in sorted(s.grads):
            yield i, "grad", name, s.grads[name]
        for name in sorted(s.params):
            yield i, "param", name, s.params[name]
        for name in sorted(s.state):
            yield i, "state", name, s.state[name]


def golden(case: Case):
    """(step, quantity, tensor, array, YAML path) for the case's `expect:` values: the first-step / last-step
    shorthand of SPEC §1.5 and every `expect.step.K` entry (§1.10)."""
    e = case.expect
    for i, v in enumerate(e.loss or (), start=1):  # a loss list's entry, or the single number (line_of falls back)
        yield i, "loss", None, np.asarray(v), ("expect", "loss", i - 1)
    if e.output is not None:
        yield 1, "output", None, e.output, ("expect", "output")
    for name, v in e.grad.items():
        yield 1, "grad", name, v, ("expect", "grad", name)
    for name, v in e.param.items():
        yield case.steps, "param", name, v, ("expect", "param", name)
    for name, v in e.state.items():
        yield case.steps, "state", name, v, ("expect", "state", name)
    for g in e.at:
        yield g.step, g.quantity, g.tensor, g.value, g.path


def declared_at(case: Case, quantity: str, tensor: str | None) -> tuple | None:
    """The YAML path of what a quantity compared with the reference comes from: the layer holding the tensor,
    `input:` for its gradient, `loss:` for the loss; None (the case's own line) for the output, and for a
    family variant, whose drawn layers have no line of their own."""
    if case.family is not None:
        return None
    if quantity == "loss":
        return ("loss",)
    if tensor == "input":
        return ("input",)
    if tensor is None:
        return None
    layer = tensor.rsplit(".", 1)[0]
    return next((("model", i) for i, L in enumerate(case.layers) if L.name == layer), None)


def lookup(trace: Trace, step: int, quantity: str, tensor: str | None):
    s = trace.steps[step - 1]
    if quantity == "loss":
        return s.loss
    if quantity == "output":
        return s.output
    return {"grad": s.grads, "param": s.params, "state": s.state}[quantity].get(tensor)


def malformed(actual, desired) -> str | None:
    """What is wrong with an adapter's array, or None: it must be real, floating-point and of the
    reference's shape (a one-element array stands for a scalar). Converting a complex array to float
    would drop its imaginary part with only a ComplexWarning, and an integer one hides a truncation."""
    try:
        a = np.asarray(actual)
    except Exception as e:
        return f"something that is not an array ({type(e).__name__}: {e})"
    if np.iscomplexobj(a):
        return f"complex values (dtype {a.dtype}), not real ones"
    if a.dtype.kind != "f" and "float" not in a.dtype.name:  # ml_dtypes' bfloat16 is a float of kind 'V'
        return f"an array of dtype {a.dtype}, not floating-point"
    if a.shape != np.shape(desired) and not (a.size == 1 == np.size(desired)):
        return f"shape {list(a.shape)} where the reference has {list(np.shape(desired))}"
    return None


@dataclasses.dataclass(frozen=True)
class Judge:
    """Records of one framework's trace on one case. `reference`: the reference's trace (its magnitudes);
    `slack(step, quantity, tensor)`: the measured extra atol; `at_own_rounding`: the reference itself,
    held to golden values without the frameworks' slack."""
    case: Case
    framework: str
    reference_name: str
    reference: Trace
    slack: object  # (key) -> float or array, measured on first use (reference.Reference.slack)

    def record(self, against: str, step: int, quantity: str, tensor: str | None, actual, desired,
               at_own_rounding: bool = False, path: tuple | None = None) -> Record:
        case, framework = self.case, self.framework
        magnitude = self.reference.steps[step - 1].magnitude.get(quantity) if tensor is None else None
        allow = allowance(case, quantity, tensor, step, desired, magnitude)
        stated = case.expect.tolerance if against == "expected" else None  # `expect.tolerance`: goldens only
        if stated is not None:
            allow = Allowance(allow.rtol if stated.rtol is None else stated.rtol,
                              allow.atol if stated.atol is None else stated.atol)
        what = f"{quantity}{' ' + tensor if tensor else ''} at step {step}"
        bad = "nothing" if actual is None else malformed(actual, desired)
        if bad:  # not a result to compare: the adapter's own error, named
            return Record(case.id, framework, against, step, quantity, tensor, list(np.shape(desired)), case.dtype,
                          None, None, None, allow.rtol, allow.atol, Status.ERROR, f"{framework} returned {bad} for "
                          f"{what}", family=case.family, file=case.file, line=case.line)
        # The reference against golden values: at its own rounding level. The measured slack is room for
        # the frameworks' rounding, and it must not loosen what a golden value pins.
        extra = self.slack().get((step, quantity, tensor), 0.0) \
            if takes_slack(case, quantity, tensor) and not at_own_rounding and stated is None else None
        cmp = compare(actual, desired, allow, extra)
        if cmp.non_finite and (magnitude or 0.0) > LARGEST[case.dtype]:
            cmp = dataclasses.replace(cmp, message=f"{cmp.message}; the terms it is computed from reach "
                                      f"{magnitude:.4g}, beyond {case.dtype}'s largest value "
                                      f"{LARGEST[case.dtype]:.6g}: an intermediate overflows (the case, "
                                      f"not the framework)")
        if extra is not None:  # the record states the atol applied (Adam's varies by element: its largest)
            allow = Allowance(allow.rtol, allow.atol + float(np.max(extra)))
        return Record(case.id, framework, against, step, quantity, tensor, list(np.shape(desired)), case.dtype,
                      cmp.max_abs_err, cmp.max_rel_err, cmp.worst_index, allow.rtol, allow.atol,
                      Status.PASS if cmp.ok else Status.FAIL, cmp.message, cmp.ratio, cmp.actual, cmp.desired,
                      case.family, case.file, case.line_of(*path) if path else case.line)

    def against_reference(self, trace: Trace) -> list[Record]:
        if len(trace.steps) != len(self.reference.steps):
            return [self.step_mismatch(trace)]
        return [self.record(*c) for c in self.reference_comparisons(trace)]

    def against_golden(self, trace: Trace, at_own_rounding: bool = False) -> list[Record]:
        if len(trace.steps) != len(self.reference.steps):
            return []  # against_reference reports it
        return [self.record(*c) for c in self.golden_comparisons(trace, at_own_rounding)]

    def step_mismatch(self, trace: Trace) -> Record:
        return note(self.case, self.framework, Status.ERROR, f"{self.framework} returned {len(trace.steps)} "
                    f"step(s), expected {len(self.reference.steps)}", self.reference_name)

    def reference_comparisons(self, trace: Trace) -> list[tuple]:
        """record()'s arguments for each quantity of `trace` against the reference's, reference order."""
        return [(self.reference_name, step, q, t, lookup(trace, step, q, t), desired, False,
                 declared_at(self.case, q, t)) for step, q, t, desired in quantities(self.reference)]

    def golden_comparisons(self, trace: Trace, at_own_rounding: bool = False) -> list[tuple]:
        """record()'s arguments for each of the case's golden values."""
        return [("expected", step, q, t, lookup(trace, step, q, t), desired, at_own_rounding, path)
                for step, q, t, desired, path in golden(self.case)]
