"""The one runner every front end uses (CLI, pytest plugin).

Per case: materialise tensors once, run the reference once, run each framework in isolation,
compare every quantity of every step against the reference and against the case's golden
values, then apply the case's `xfail:`. Nothing that goes wrong in one adapter or case loses
another's records.
"""
from __future__ import annotations

import dataclasses
import gc
import inspect
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import blame
from .protocol import Adapter, Initial, PreciseReference, Trace
from .case import Activation, Case
from .compare import compare
from .divergences import expectation
from .errors import Unsupported
from .tensors import materialize
from .tolerance import (HALF, LARGEST, NOISE_FACTOR, Allowance, ExactZeros, adam_slack, allowance, override,
                        perturbed, rounded_layers, stored_in_dtype)

FAILING = ("fail", "error", "xpass")
COMPARED = ("pass", "fail", "xfail", "xpass")  # a comparison was made


@dataclass
class Record:
    case: str
    framework: str
    reference: str | None          # "numpy" (or another reference) | "expected" for golden values
    step: int | None
    quantity: str | None           # loss | output | grad | param
    tensor: str | None             # "conv.weight", "input"; None for loss and output
    shape: list[int] | None
    dtype: str
    max_abs_err: float | None
    max_rel_err: float | None
    worst_index: list[int] | None
    rtol: float | None
    atol: float | None
    status: str                    # pass fail xfail xpass error unsupported skipped
    message: str = ""
    ratio: float | None = None     # worst error as a multiple of its allowance
    actual: float | None = None
    desired: float | None = None
    family: str | None = None
    file: str | None = None
    line: int | None = None
    # On a failing framework's records: the catalogued divergences (docs/divergences.md) whose
    # conditions the case meets, as the adapter declares them, e.g. "TF-ADAM-EPS, TF-HYPER32".
    known: str | None = None
    # Where the case marks this framework with `xfail:`: whether the mark applied here and why
    # (harness/divergences.py), e.g. "applied (non-strict): TF-ONEDNN-1CH (...)" or "not applied: ...".
    divergence: str | None = None
    # On a failing comparison with the reference: the other frameworks whose value there lies within
    # twice the allowance of this one's (harness.blame), e.g. "jax, tensorflow"; "" none; None not asked.
    agrees: str | None = None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _FIELDS}  # shallow: every field is a plain value


_FIELDS = tuple(Record.__dataclass_fields__)


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
        if callable(self.measure):  # first use (the golden values are compared right after the reference ran)
            self.measure = self.measure()
        return self.measure

    def nbytes(self) -> int:
        """Memory held by this run's arrays, for a caller that keeps it."""
        arrays = [self.initial.input, self.initial.target, *self.initial.params.values()] if self.initial else []
        arrays += [a for *_, a in _quantities(self.trace)] if self.trace else []
        return sum(np.asarray(a).nbytes for a in arrays if a is not None)


@dataclass
class CaseResult:
    case: Case
    records: list[Record] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # time inside each adapter's run()


def _note(case: Case, framework: str, status: str, message: str, reference: str | None = None) -> Record:
    return Record(case.id, framework, reference, None, None, None, None, case.dtype, None, None, None, None, None,
                  status, message, family=case.family, file=case.file, line=case.line)


def _brief(e: BaseException) -> str:
    """An adapter's exception as one line plus where it came from (no full harness traceback)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    try:
        text = str(e)
    except Exception as inner:  # an exception whose __str__ raises (a hostile plug-in's) is still named
        text = f"<its message could not be read: {type(inner).__name__}>"
    return f"{type(e).__name__}: {text[:2000]}{where}"


def _quantities(trace: Trace):
    """(step, quantity, tensor, array) for everything an adapter returned, reference order."""
    for i, s in enumerate(trace.steps, start=1):
        yield i, "loss", None, np.asarray(s.loss)
        yield i, "output", None, np.asarray(s.output)
        for name in sorted(s.grads):
            yield i, "grad", name, s.grads[name]
        for name in sorted(s.params):
            yield i, "param", name, s.params[name]


def _golden(case: Case):
    """(step, quantity, tensor, array) for the case's `expect:` values."""
    e = case.expect
    for i, v in enumerate(e.loss or (), start=1):
        yield i, "loss", None, np.asarray(v)
    if e.output is not None:
        yield 1, "output", None, e.output
    for name, v in e.grad.items():
        yield 1, "grad", name, v
    for name, v in e.param.items():
        yield case.steps, "param", name, v


def _golden_line(case: Case, step: int, quantity: str, tensor: str | None) -> int:
    """The line of the golden value itself (`input:` under `expect.grad`, a step's entry of a loss list)."""
    return case.line_of("expect", quantity, *((tensor,) if tensor else (step - 1,) if quantity == "loss" else ()))


def _lookup(trace: Trace, step: int, quantity: str, tensor: str | None):
    s = trace.steps[step - 1]
    if quantity == "loss":
        return s.loss
    if quantity == "output":
        return s.output
    return (s.grads if quantity == "grad" else s.params).get(tensor)


_SETTLED: set[str] = set()  # adapters whose first run (and so their framework's import) is behind us


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


def _accepts(function, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return False


def _settle(adapter: Adapter) -> None:
    """After an adapter's first run its framework is imported, and its objects live until exit.
    gc.freeze() takes them out of the cyclic collector's view: with torch and TF loaded (~5·10^5
    objects), each full collection (several per run, one in pytest's teardown, one at exit) would
    walk them all, ~0.3 s each."""
    if adapter.name not in _SETTLED:
        _SETTLED.add(adapter.name)
        gc.freeze()


def _malformed(actual, desired) -> str | None:
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


def _is_trace(trace) -> bool:
    """Shaped like a Trace: a list of steps, each with a loss, an output, and dicts of grads and params."""
    steps = getattr(trace, "steps", None)
    return isinstance(steps, (list, tuple)) and all(
        hasattr(s, "loss") and hasattr(s, "output") and isinstance(getattr(s, "grads", None), dict)
        and isinstance(getattr(s, "params", None), dict) for s in steps)


class Runner:
    def __init__(self, reference: Adapter, frameworks: list[Adapter], platform=None):
        self.reference = reference
        self.frameworks = frameworks
        self.platform = platform  # harness.hardware.Platform deciding hardware-dependent xfails; None: detected
        self._reference_rounds = _accepts(reference.run, "round_off")  # optional: see tolerance.rounded_layers
        self.on_adapter_start = None  # (case, adapter) -> None, before each adapter run (harness.isolate)
        # (case, framework name, its records, before xfail) -> None, as each framework's comparison ends:
        # an interrupted run keeps the finished frameworks of the case in flight (harness.session).
        self.on_framework_done = None
        self._versions: dict[str, str | None] = {}  # adapter name -> why its version() failed, or None

    def _version_error(self, adapter: Adapter) -> str | None:
        """Why `adapter.version()` fails, asked once per adapter: a run whose report cannot say what
        ran is that adapter's error, not a result."""
        if adapter.name not in self._versions:
            try:
                version = adapter.version()
                self._versions[adapter.name] = None if isinstance(version, str) else \
                    f"{adapter.name}.version() returned {type(version).__name__}, not a string"
            except Exception as e:
                self._versions[adapter.name] = f"{adapter.name}.version() raised {_brief(e)}"
        return self._versions[adapter.name]

    # -------------------------------------------------------------- comparing

    def _record(self, case, framework, reference, step, quantity, tensor, actual, desired, ref: Reference) -> Record:
        ref_step = ref.trace.steps[step - 1]
        magnitude = ref_step.magnitude.get(quantity) if tensor is None else None
        allow = allowance(case, quantity, tensor, step, desired, magnitude)
        what = f"{quantity}{' ' + tensor if tensor else ''} at step {step}"
        malformed = "nothing" if actual is None else _malformed(actual, desired)
        if malformed:  # not a result to compare: the adapter's own error, named
            return Record(case.id, framework, reference, step, quantity, tensor, list(np.shape(desired)), case.dtype,
                          None, None, None, allow.rtol, allow.atol, "error", f"{framework} returned {malformed} for "
                          f"{what}", family=case.family, file=case.file, line=case.line)
        extra = ref.slack.get((step, quantity, tensor), 0.0)
        if override(case, quantity, tensor).atol is not None:  # a case's own atol is applied exactly
            extra = None
        elif reference == "expected" and framework == self.reference.name:
            # The reference against golden values: at its own rounding level. The measured slack is
            # room for the frameworks' rounding, and it must not loosen what a golden value pins.
            extra = None
        cmp = compare(actual, desired, allow, extra)
        if cmp.non_finite and (magnitude or 0.0) > LARGEST[case.dtype]:
            cmp = dataclasses.replace(cmp, message=f"{cmp.message}; the terms it is computed from reach "
                                      f"{magnitude:.4g}, beyond {case.dtype}'s largest value "
                                      f"{LARGEST[case.dtype]:.6g}: an intermediate overflows (the case, "
                                      f"not the framework)")
        if extra is not None:  # the record states the atol applied (Adam's varies by element: its largest)
            allow = Allowance(allow.rtol, allow.atol + float(np.max(extra)))
        return Record(case.id, framework, reference, step, quantity, tensor, list(np.shape(desired)), case.dtype,
                      cmp.max_abs_err, cmp.max_rel_err, cmp.worst_index, allow.rtol, allow.atol,
                      "pass" if cmp.ok else "fail", cmp.message, cmp.ratio, cmp.actual, cmp.desired,
                      case.family, case.file, _golden_line(case, step, quantity, tensor) if reference == "expected"
                      else case.line)

    def compare_traces(self, case: Case, framework: str, trace: Trace, ref: Reference) -> list[Record]:
        if len(trace.steps) != len(ref.trace.steps):
            return [_note(case, framework, "error", f"{framework} returned {len(trace.steps)} step(s), "
                                                    f"expected {len(ref.trace.steps)}", self.reference.name)]
        return [self._record(case, framework, self.reference.name, step, q, t, _lookup(trace, step, q, t), desired,
                             ref)
                for step, q, t, desired in _quantities(ref.trace)]

    def compare_golden(self, case: Case, framework: str, trace: Trace, ref: Reference) -> list[Record]:
        if len(trace.steps) != len(ref.trace.steps):
            return []  # compare_traces reports it
        return [self._record(case, framework, "expected", step, q, t, _lookup(trace, step, q, t), desired, ref)
                for step, q, t, desired in _golden(case)]

    # -------------------------------------------------------------- running

    def _run_adapter(self, adapter: Adapter, case: Case, initial: Initial, result: CaseResult):
        """(trace, None) or (None, a record saying why there is no trace)."""
        if self.on_adapter_start is not None:  # before missing(): whatever this adapter does is on its clock
            self.on_adapter_start(case, adapter)
        try:
            why = adapter.missing()
        except Exception as e:  # a plug-in's availability check must not stop the run either
            return None, _note(case, adapter.name, "error", f"{adapter.name}.missing() raised {_brief(e)}")
        if why:
            return None, _note(case, adapter.name, "skipped", why)
        broken = self._version_error(adapter)
        if broken:
            return None, _note(case, adapter.name, "error", broken)
        t0 = time.perf_counter()
        try:
            trace = adapter.run(case, initial)
        except Unsupported as e:
            return None, _note(case, adapter.name, "unsupported", str(e))
        except Exception as e:  # an adapter bug must not lose the other results
            return None, _note(case, adapter.name, "error", _brief(e))
        except SystemExit as e:  # sys.exit() inside an adapter ends the adapter's run, not gradconf
            return None, _note(case, adapter.name, "error", f"{adapter.name} called sys.exit({e.code!r}) {_brief(e)}")
        finally:
            result.seconds[adapter.name] = time.perf_counter() - t0
        _settle(adapter)
        if not _is_trace(trace):  # a third-party adapter's slip is its own error, not the run's crash
            return None, _note(case, adapter.name, "error", f"{adapter.name} returned {type(trace).__name__}, not a "
                               "Trace of Steps with loss, output and grads (the adapter protocol, README)")
        return trace, None

    def reference_trace(self, case: Case, result: CaseResult) -> Reference:
        """Materialise once, run the reference once, and measure its conditioning (tolerance.perturbed)."""
        try:
            initial = materialize(case)
        except Exception as e:
            return Reference(None, None, {}, f"cannot materialise the case's tensors: {_brief(e)}")
        trace, note = self._run_adapter(self.reference, case, initial, result)
        if note is not None:
            return Reference(initial, None, {}, f"reference {self.reference.name} {note.status}: {note.message}")
        largest = LARGEST[case.dtype]
        for step, q, t, arr in _quantities(trace):
            what = f"{q}{' ' + t if t else ''} at step {step}"
            if not np.all(np.isfinite(arr)):
                return Reference(initial, None, {}, f"reference {self.reference.name} produced non-finite values "
                                                    f"in {what}")
            peak = float(np.max(np.abs(arr), initial=0.0))
            if peak > largest:  # a correct framework must overflow to inf there: nothing to compare
                return Reference(initial, None, {}, f"the case overflows {case.dtype}: the reference's {what} "
                                                    f"reaches {peak:.4g}, beyond its largest value {largest:.6g} "
                                                    f"(scale the inputs, weights or learning rate down)")
        return Reference(initial, trace, lambda: self._slack(case, trace, self._noise(case, initial, trace)))

    def _measure(self, case: Case, ref: Reference) -> None:
        """The reference's conditioning, measured once, when a comparison first needs it, and never where
        the case's own `atol` is every quantity's allowance. Announced as a reference run: harness.isolate
        then blames a crash or a time limit in it on the reference, not on the framework just run."""
        if not callable(ref.measure):
            return
        if all(override(case, q, t).atol is not None for _, q, t, _ in _quantities(ref.trace)):
            ref.measure = {}
            return
        if self.on_adapter_start is not None:
            self.on_adapter_start(case, self.reference)
        ref.measure = ref.measure()

    @staticmethod
    def _slack(case: Case, trace: Trace, noise: dict) -> dict:
        """Once per case, for every framework compared: measured movement, plus Adam's slack on parameters."""
        slack = {key: NOISE_FACTOR[case.dtype] * moved for key, moved in noise.items()}
        for step, q, t, _ in _quantities(trace):
            if q == "param":
                grads = [s.grads[t] for s in trace.steps[:step]]
                slack[(step, q, t)] = slack.get((step, q, t), 0.0) + adam_slack(case, t, grads)
        return slack

    def _noise(self, case: Case, initial: Initial, trace: Trace) -> dict:
        """(step, quantity, tensor) -> how far each element moves under rounding-level perturbations."""
        noise: dict = {}
        runs = [(perturbed(case, initial, draw), rounded_layers(case, draw)) for draw in range(2)]
        if self._reference_rounds and case.dtype in HALF:
            runs += [(initial, stored_in_dtype(case, shift)) for shift in (0.0, 0.5)]
        zeros = None
        if self._reference_rounds and any(isinstance(L, Activation) and L.kind == "relu" for L in case.layers):
            zeros = ExactZeros()  # where a ReLU's input is exactly 0, the given numbers decide it: keep it so
            try:
                self.reference.run(case, initial, round_off=zeros.record)
            except Exception:
                return {}
        for tensors, round_off in runs:
            rounding = {"round_off": zeros.pin(round_off) if zeros else round_off} if self._reference_rounds else {}
            try:
                other = self.reference.run(case, tensors, **rounding)
            except Exception:
                return {}
            for (step, q, t, a), (_, _, _, b) in zip(_quantities(trace), _quantities(other)):
                moved = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
                moved = float(np.max(np.where(np.isfinite(moved), moved, 0.0), initial=0.0))
                noise[(step, q, t)] = max(noise.get((step, q, t), 0.0), moved)
        return noise

    def run_case(self, case: Case, frameworks: list[Adapter] | None = None,
                 reference: Reference | None = None) -> CaseResult:
        """Every record of one case. `reference` lets a caller (the pytest plugin) reuse a reference run."""
        result = CaseResult(case)
        frameworks = self.frameworks if frameworks is None else frameworks
        ref = reference or self.reference_trace(case, result)
        names = list(dict.fromkeys([self.reference.name, *(fw.name for fw in frameworks)]))
        if ref.trace is None:
            result.records = [_note(case, name, "error", ref.why, self.reference.name) for name in names]
            return self.apply_xfail(case, result, self.platform)
        # The reference is always held to the golden values; the others to the reference and the golden values.
        records = self.compare_golden(case, self.reference.name, ref.trace, ref)
        self._finished(case, self.reference.name, records)
        traces = {}  # the frameworks', kept for harness.blame
        for fw in frameworks:
            if fw.name == self.reference.name:
                continue
            trace, note = self._run_adapter(fw, case, ref.initial, result)
            if note is not None:
                records.append(note)
                self._finished(case, fw.name, [note])
                continue
            self._measure(case, ref)
            mine = self.compare_traces(case, fw.name, trace, ref) + self.compare_golden(case, fw.name, trace, ref)
            if any(r.status == "fail" for r in mine):
                known = _known_divergences(fw, case)
                for r in (r for r in mine if r.status == "fail"):
                    r.known = known
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

    def _weigh(self, case: Case, ref: Reference, records: list[Record], traces: dict) -> list[Record]:
        """harness.blame: mark which frameworks fail alike, and, where nothing but the reference backs
        it, recheck the reference in long double. Returns the recheck's records ([] when none ran)."""
        values = {(step, q, t): a for step, q, t, a in _quantities(ref.trace)}
        blame.annotate_agreement(records, traces, _lookup, values)
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
        checked = self.compare_traces(case, name, ref.trace, Reference(ref.initial, precise, {}))
        for r in checked:
            r.reference = blame.HIGH
        return checked

    def _finished(self, case: Case, framework: str, records: list[Record]) -> None:
        if self.on_framework_done is not None:
            self.on_framework_done(case, framework, records)

    @staticmethod
    def apply_xfail(case: Case, result: CaseResult, platform=None) -> CaseResult:
        """`xfail: {fw: why}` as harness.divergences.expectation reads it on this platform. Where it applies, a
        (case, framework) with any failure turns its failures into xfail; one with none is an xpass (the
        documented divergence did not show up), or for a non-strict entry a pass that says so. Where a
        catalogue id's conditions are not met, the mark does not apply and every record says why.
        `platform`: harness.hardware.Platform (None: this machine's, detected)."""
        for fw in case.xfail:
            mine = [r for r in result.records if r.framework == fw]
            if not mine or any(r.status in ("skipped", "unsupported") for r in mine):
                continue
            expected = expectation(case, fw, platform)
            decision = ("not applied" if not expected.applies else "applied" if expected.strict
                        else "applied (non-strict)")
            for r in mine:
                r.divergence = f"{decision}: {expected.why}"
            if not expected.applies:
                for r in mine:
                    r.message = f"{r.message} [xfail not applied: {expected.why}]".strip()
                continue
            failed = any(r.status in ("fail", "error") for r in mine)
            for r in mine:
                if failed and r.status in ("fail", "error"):
                    r.status, r.message = "xfail", f"{r.message} [xfail: {expected.why}]".strip()
                elif not failed and r.status == "pass":
                    if expected.strict:
                        r.status, r.message = "xpass", f"expected to fail: {expected.why}"
                    else:
                        r.message = f"the known divergence did not show (not strict): {expected.why}"
        return result
