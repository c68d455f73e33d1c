"""The reference's side of a case: its run (materialised once, shared by every framework), the checks
that it can stand as the answer (finite, within the dtype), and the tolerance conditioning it is
measured for — re-runs from rounding-level changes (harness.tolerance), made once, on first use."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .case import Case
from .judge import quantities
from .protocol import Adapter, Initial, Trace, rounds_off
from .running import AdapterRuns, brief
from .tensors import materialize
from .tolerance import (HALF, LARGEST, NOISE_FACTOR, ExactZeros, adam_slack, perturbed, rounded_layers, stored_in_dtype,
                        takes_slack)

KINKED = ("relu", "leaky_relu", "elu")  # a derivative that jumps at 0, where an exact 0 decides it (SPEC §1.9)


@dataclass
class Reference:
    """The reference's run of one case, shared by every framework compared against it."""
    initial: Initial | None
    trace: Trace | None
    # (step, quantity, tensor) -> extra atol the reference's conditioning warrants; or what measures it,
    # called on first use: a case whose frameworks all skip, and that has no golden values, never pays it.
    measure: dict | Callable[[], dict]
    why: str = ""        # why there is no trace

    @property
    def slack(self) -> dict:
        if callable(self.measure):
            self.measure = self.measure()
        return self.measure

    def nbytes(self) -> int:
        """Memory held by this run's arrays, for a caller that keeps it."""
        arrays = [self.initial.input, self.initial.target, *self.initial.params.values()] if self.initial else []
        arrays += [a for *_, a in quantities(self.trace)] if self.trace else []
        return sum(np.asarray(a).nbytes for a in arrays if a is not None)


def _cannot_stand(case: Case, name: str, trace: Trace) -> str | None:
    """Why the reference's trace cannot be the answer: non-finite values, or values beyond the dtype."""
    largest = LARGEST[case.dtype]
    for step, q, t, arr in quantities(trace):
        what = f"{q}{' ' + t if t else ''} at step {step}"
        if not np.all(np.isfinite(arr)):
            return f"reference {name} produced non-finite values in {what}"
        peak = float(np.max(np.abs(arr), initial=0.0))
        if peak > largest:  # a correct framework must overflow to inf there: nothing to compare
            return (f"the case overflows {case.dtype}: the reference's {what} reaches {peak:.4g}, beyond its "
                    f"largest value {largest:.6g} (scale the inputs, weights or learning rate down)")
    return None


class Conditioning:
    """How far rounding alone moves each reference result (README, Tolerance policy): the slack added to
    the frameworks' allowances, measured by re-running the reference."""

    def __init__(self, reference: Adapter):
        self.reference = reference
        self.rounds = rounds_off(reference)  # optional: see protocol.rounds_off

    def slack(self, case: Case, trace: Trace, initial: Initial, zeros: ExactZeros | None) -> dict:
        """Once per case, for every framework compared: measured movement, plus Adam's slack on parameters.
        `zeros`: the exact zeros recorded by the run that made `trace`, held in every conditioning run (None:
        no kink to hold, or a reference that cannot round)."""
        slack = {key: NOISE_FACTOR[case.dtype] * moved
                 for key, moved in self.noise(case, initial, trace, zeros).items()}
        for step, q, t, _ in quantities(trace):
            if q == "param":
                grads = [s.grads[t] for s in trace.steps[:step]]
                slack[(step, q, t)] = slack.get((step, q, t), 0.0) + adam_slack(case, t, grads)
        return slack

    def _run(self, case, initial, rounding):
        return self.reference.run_rounded(case, initial, rounding) if rounding is not None else \
            self.reference.run(case, initial)

    def noise(self, case: Case, initial: Initial, trace: Trace, zeros: ExactZeros | None) -> dict:
        """(step, quantity, tensor) -> how far each element moves under rounding-level perturbations."""
        noise: dict = {}
        runs = [(perturbed(case, initial, draw), rounded_layers(case, draw)) for draw in range(2)]
        if self.rounds and case.dtype in HALF:
            runs += [(initial, stored_in_dtype(case, shift)) for shift in (0.0, 0.5)]
        for tensors, rounding in runs:
            rounding = (zeros.pin(rounding) if zeros else rounding) if self.rounds else None
            try:
                other = self._run(case, tensors, rounding)
            except Exception:
                return {}
            for (step, q, t, a), (_, _, _, b) in zip(quantities(trace), quantities(other)):
                moved = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
                moved = float(np.max(np.where(np.isfinite(moved), moved, 0.0), initial=0.0))
                noise[(step, q, t)] = max(noise.get((step, q, t), 0.0), moved)
        return noise


def reference_run(runs: AdapterRuns, reference: Adapter, case: Case, seconds: dict) -> Reference:
    """Materialise once, run the reference once, check it can stand as the answer; its conditioning is
    measured when a comparison first needs it."""
    try:
        initial = materialize(case)
    except Exception as e:
        return Reference(None, None, {}, f"cannot materialise the case's tensors: {brief(e)}")
    # where a ReLU's (leaky_relu's, elu's) input is exactly 0, the given numbers decide it: the conditioning keeps it so
    zeros = ExactZeros() if rounds_off(reference) and any(L.type in KINKED for L in case.layers) else None
    trace, note = runs.run(reference if zeros is None else _NotingZeros(reference, zeros), case, initial, seconds)
    if note is not None:
        return Reference(initial, None, {}, f"reference {reference.name} {note.status}: {note.message}")
    why = _cannot_stand(case, reference.name, trace)
    if why:
        return Reference(initial, None, {}, why)
    conditioning = Conditioning(reference)
    return Reference(initial, trace, lambda: conditioning.slack(case, trace, initial, zeros))


class _NotingZeros:
    """The reference's first run, through `run_rounded` with ExactZeros: the same numbers (ExactZeros rounds
    nothing), and on the way the exact zeros that the conditioning runs hold at a kink, which would
    otherwise take a run of their own (4 reference runs of a case with a ReLU, now 3)."""

    def __init__(self, reference: Adapter, zeros: ExactZeros):
        self.reference, self.zeros, self.name = reference, zeros, reference.name

    def missing(self):
        return self.reference.missing()

    def version(self):
        return self.reference.version()

    def run(self, case: Case, initial: Initial) -> Trace:
        return self.reference.run_rounded(case, initial, self.zeros)


def measure(runs: AdapterRuns, reference: Adapter, case: Case, ref: Reference) -> None:
    """The reference's conditioning, measured once, when a comparison first needs it, and never where
    the case's own `atol` is every quantity's allowance. Announced as a reference run: harness.isolate
    then blames a crash or a time limit in it on the reference, not on the framework just run."""
    if not callable(ref.measure):
        return
    if not any(takes_slack(case, q, t) for _, q, t, _ in quantities(ref.trace)):
        ref.measure = {}
        return
    if runs.on_start is not None:
        runs.on_start(case, reference)
    ref.measure = ref.measure()

