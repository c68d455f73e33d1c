"""Orchestration: the one runner every front end uses (CLI, pytest plugin).

Per case: the reference's run (harness.reference: materialised once, checked, its conditioning measured
on first use), each framework run contained (harness.running), judged quantity by quantity
(harness.judge), then the case's `xfail:` applied (harness.xfail) and the agreement weighed
(harness.blame: which frameworks fail alike; a reference nothing backs rechecked); a failing framework's
first departing layer is found (harness.localise). Nothing that goes wrong in one
adapter or case loses another's records.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import blame
from . import reference as refs
from .case import Case
from .divergences import expectation
from .judge import Judge, lookup, quantities
from .localise import localise
from .protocol import Adapter, PreciseReference, traces_layers
from .records import COMPARED, FAILING, Record, Status, note
from .reference import Reference
from .running import AdapterRuns
from .xfail import apply_xfail

__all__ = ["COMPARED", "FAILING", "CaseResult", "Record", "Reference", "Runner", "Status", "note"]


@dataclass
class CaseResult:
    case: Case
    records: list[Record] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # time inside each adapter's run()


def _known_divergences(adapter: Adapter, case: Case) -> str | None:
    """The ids an adapter's optional `known_divergences(case)` names, or None."""
    declare = getattr(adapter, "known_divergences", None)
    if declare is None:
        return None
    try:
        ids = sorted(declare(case))
    except Exception:  # a hint must never cost a result
        return None
    return ", ".join(ids) or None


class Runner:
    def __init__(self, reference: Adapter, frameworks: list[Adapter], platform=None):
        self.reference = reference
        self.frameworks = frameworks
        self.platform = platform  # harness.hardware.Platform deciding hardware-dependent xfails; None: detected
        self.runs = AdapterRuns()
        # (case, framework name, its records, before xfail) -> None, as each framework's comparison ends:
        # an interrupted run keeps the finished frameworks of the case in flight (harness.session).
        self.on_framework_done = None

    @property
    def on_adapter_start(self):
        """(case, adapter) -> None, before each adapter run, the reference's conditioning included (harness.isolate)."""
        return self.runs.on_start

    @on_adapter_start.setter
    def on_adapter_start(self, hook) -> None:
        self.runs.on_start = hook

    def reference_trace(self, case: Case, result: CaseResult) -> Reference:
        """Materialise once, run the reference once (its conditioning is measured on first use)."""
        return refs.reference_run(self.runs, self.reference, case, result.seconds)

    def _judged(self, case: Case, framework: str, ref: Reference, trace) -> list[Record]:
        """One framework's records against the reference and the golden values. The measured slack only
        widens an allowance, so it can change only a verdict that fails without it: the conditioning re-runs
        are paid (once per case) only then, just the failing comparisons are judged again with it, and a
        record that passes states the allowance it passed."""
        plain = Judge(case, framework, self.reference.name, ref.trace, lambda: {})
        if len(trace.steps) != len(ref.trace.steps):
            return [plain.step_mismatch(trace)]
        comparisons = plain.reference_comparisons(trace) + plain.golden_comparisons(trace)
        mine = [plain.record(*c) for c in comparisons]
        failing = [i for i, r in enumerate(mine) if r.status == Status.FAIL]
        if not failing:
            return mine
        refs.measure(self.runs, self.reference, case, ref)
        wide = dataclasses.replace(plain, slack=lambda: ref.slack)
        for i in failing:
            mine[i] = wide.record(*comparisons[i])
        return mine

    def run_case(self, case: Case, frameworks: list[Adapter] | None = None,
                 reference: Reference | None = None) -> CaseResult:
        """Every record of one case. `reference` lets a caller (the pytest plugin) reuse a reference run."""
        result = CaseResult(case)
        frameworks = self.frameworks if frameworks is None else frameworks
        ref = reference or self.reference_trace(case, result)
        names = list(dict.fromkeys([self.reference.name, *(fw.name for fw in frameworks)]))
        if ref.trace is None:
            result.records = [note(case, name, Status.ERROR, ref.why, self.reference.name) for name in names]
            return self.apply_xfail(case, result, self.platform)
        # The reference is always held to the golden values (at its own rounding level); the others to the
        # reference and the golden values.
        own = Judge(case, self.reference.name, self.reference.name, ref.trace, lambda: {})  # no slack: its own rounding
        records = own.against_golden(ref.trace, at_own_rounding=True)
        self._finished(case, self.reference.name, records)
        traces = {}  # the frameworks', kept for harness.blame
        for fw in frameworks:
            if fw.name == self.reference.name:
                continue
            trace, why = self.runs.run(fw, case, ref.initial, result.seconds)
            if why is not None:
                records.append(why)
                self._finished(case, fw.name, [why])
                continue
            mine = self._judged(case, fw.name, ref, trace)
            if any(r.status == Status.FAIL for r in mine):
                known = _known_divergences(fw, case)
                where = None if self._expected(case, fw.name) else self._localise(fw, case, ref, trace)
                for r in (r for r in mine if r.status == Status.FAIL):
                    r.known = known
                    if where is not None:
                        r.origin, r.layers = where.detail, [list(row) for row in where.profile]
            records += mine
            traces[fw.name] = trace
            self._finished(case, fw.name, mine)
        result.records = records
        self.apply_xfail(case, result, self.platform)
        recheck = self._weigh(case, ref, result.records, traces)  # after the marks: a known divergence is no question
        if recheck:
            result.records += recheck
            self._finished(case, self.reference.name, recheck)
        return result

    def _expected(self, case: Case, framework: str) -> bool:
        """Whether the case's xfail mark for this framework applies here: a catalogued divergence is not
        localised (its catalogue entry says where it is, and tracing every layer again costs a run)."""
        if framework not in case.xfail:
            return False
        try:
            return expectation(case, framework, self.platform).applies
        except Exception:  # noqa: BLE001 — a mark that cannot be read is applied (and reported) by apply_xfail
            return False

    def _localise(self, fw: Adapter, case: Case, ref: Reference, trace):
        """harness.localise for a failing framework, where it and the reference both trace layers; None
        where either cannot, or tracing fails (the comparison stands without it)."""
        if not (traces_layers(fw) and traces_layers(self.reference)):
            return None
        try:
            return localise(case, fw.trace_layers(case, ref.initial), self.reference.trace_layers(case, ref.initial),
                            trace, ref.trace)
        except Exception:  # noqa: BLE001 — a localisation that cannot run leaves the records as they are
            return None

    def _weigh(self, case: Case, ref: Reference, records: list[Record], traces: dict) -> list[Record]:
        """harness.blame: mark which frameworks fail alike, and, where nothing but the reference backs
        it, recheck the reference in long double. Returns the recheck's records ([] when none ran)."""
        values = {(step, q, t): a for step, q, t, a in quantities(ref.trace)}
        blame.annotate_agreement(records, traces, lookup, values)
        name = self.reference.name
        if not (isinstance(self.reference, PreciseReference) and blame.in_question(records, name)
                and blame.small_enough(ref.initial)):
            return []
        if self.on_adapter_start is not None:  # a crash or time limit here is the reference's
            self.on_adapter_start(case, self.reference)
        try:
            precise = self.reference.run_precise(case, ref.initial)
        except Exception:  # a recheck that cannot run leaves the verdict to the other rules
            return []
        checked = Judge(case, name, name, precise, lambda: {}).against_reference(ref.trace)
        for r in checked:
            r.reference = blame.HIGH
        return checked

    def _finished(self, case: Case, framework: str, records: list[Record]) -> None:
        if self.on_framework_done is not None:
            self.on_framework_done(case, framework, records)

    @staticmethod
    def apply_xfail(case: Case, result: CaseResult, platform=None) -> CaseResult:
        """harness.xfail.apply_xfail on a CaseResult's records."""
        apply_xfail(case, result.records, platform)
        return result
