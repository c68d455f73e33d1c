"""`gradconf fuzz [PATH ...] --budget 10m`: fresh family variants on a time (or variant) budget, their
failures grouped by signature, one small reproducer per new signature.

Variants are drawn beyond each family's `count` (variant `i` of a family is `family[i]`, drawn from the
family's seed and `i` alone, so `gradconf freeze` / `shrink` / `run` reproduce any of them), the families
in turn, and run through the usual runner: on this machine's isolated workers (harness.pool, `-j`), or on a
Dask cluster (harness.dask_backend). A failing (case, framework) has one signature: the framework, the
quantity and layer type of its first failing record (earliest step; output, then loss, then gradients
from the layer nearest the output, then parameters), and the catalogued divergence it fits — the id an
applied `xfail:` mark or the adapter's `known_divergences` names — or `none`. A signature with none is
new unless a reproducer of it is already in the output folder; the first variant that showed each new
one is shrunk (harness.shrink, keeping that signature) and written there. Ctrl-C stops the campaign and
keeps what it found: the table, and each new signature's variant as drawn, unshrunk.
"""
from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .case import Case
from .errors import CaseError
from .runner import FAILING, Record, Runner

SIGNATURE_HEADER = "# gradconf fuzz signature: "
_QUANTITY_ORDER = {"output": 0, "loss": 1, "grad": 2, "param": 3, "state": 4}
FOUND = FAILING + ("xfail",)  # what is grouped: failures, and the known divergences that were expected


@dataclass(frozen=True, order=True)
class Signature:
    framework: str
    quantity: str    # loss, output, grad, param; or the status `error` / `xpass`
    layer: str       # the layer type the quantity belongs to (a loss's kind for `loss`), `-` for none
    divergence: str  # the catalogued id(s) it fits, or `none`

    def __str__(self) -> str:
        return f"{self.framework} | {self.quantity} | {self.layer} | {self.divergence}"

    @property
    def catalogued(self) -> bool:
        return self.divergence != "none"


def _layer_of(case: Case, r: Record) -> tuple[str, int]:
    """(layer type, depth) of what a record compares; depth orders gradients from the output back."""
    if r.quantity == "loss":
        return case.loss.kind, len(case.layers)
    if r.quantity == "output" or not case.layers:
        return (case.layers[-1].type if case.layers else "-"), len(case.layers)
    if r.tensor in (None, "input"):
        return case.layers[0].type, -1
    name = r.tensor.rpartition(".")[0]
    for depth, layer in enumerate(case.layers):
        if layer.name == name:
            return layer.type, depth
    return "-", -1


def _divergence(case: Case, r: Record) -> str:
    """The catalogued divergence a failing record fits: an applied mark's ids, or the adapter's hint."""
    from .divergences import CATALOGUE, cited_ids
    if r.status in ("xfail", "xpass"):
        ids = cited_ids(case.xfail.get(r.framework, "")) or []
        applied = (r.divergence or "").split("; non-strict")[0]
        shown = [i for i in ids if i in CATALOGUE and i in applied]
        return ", ".join(shown or ids) or "marked"  # free text: a divergence the case itself documents
    return r.known or "none"


def signature(case: Case, records: Sequence[Record]) -> Signature | None:
    """The signature of one (case, framework)'s records, or None if it has nothing to find."""
    bad = [r for r in records if r.status in FOUND]
    if not bad:
        return None
    if any(r.status == "error" and r.quantity is None for r in bad):  # it has no result to compare
        r = next(r for r in bad if r.status == "error" and r.quantity is None)
        return Signature(r.framework, "error", "-", _divergence(case, r))
    if all(r.status == "xpass" for r in bad):
        return Signature(bad[0].framework, "xpass", "-", _divergence(case, bad[0]))

    def order(r: Record):
        layer, depth = _layer_of(case, r)
        return (r.step or 0, _QUANTITY_ORDER.get(r.quantity, 9), -depth, r.tensor or "")
    first = min((r for r in bad if r.status != "xpass"), key=order)
    return Signature(first.framework, first.quantity or "-", _layer_of(case, first)[0], _divergence(case, first))


def signatures(case: Case, records: Sequence[Record]) -> list[Signature]:
    """One signature per failing (case, framework)."""
    by_framework: dict[str, list[Record]] = {}
    for r in records:
        by_framework.setdefault(r.framework, []).append(r)
    found = (signature(case, mine) for mine in by_framework.values())
    return [s for s in found if s is not None]


# ---------------------------------------------------------------- drawing

@dataclass
class Family:
    file: str
    data: dict
    lines: dict
    count: int
    name: str
    drawn: int = 0  # fresh variants drawn so far, beyond `count` + start


def families(paths: Sequence[str]) -> list[Family]:
    """Every family file under `paths` (plain cases are not drawn from). Raises CaseError."""
    from .family import is_family
    from .fields import integer
    from .loader import case_name, discover, read_file
    out = []
    for path in discover(paths):
        data, lines = read_file(path)
        if is_family(data):
            try:
                count = integer(data["count"], ("count",), min=1)
            except CaseError as e:
                raise e.located(path, lines) from None
            out.append(Family(path, data, lines, count, case_name(data, path)))
    return out


def fresh_variants(fams: Sequence[Family], start: int, keep: Callable[[Case], bool] | None,
                   skipped: list[str]) -> Iterator[Case]:
    """Variants count+start, count+start+1, ... of each family in turn, for ever (`keep`: -k). A draw that
    fails (no valid variant in its attempts) is noted in `skipped` and passed over."""
    from .family import draw_variant
    while fams:
        for fam in fams:
            index = fam.count + start + fam.drawn
            fam.drawn += 1
            try:
                case = draw_variant(fam.data, fam.file, fam.lines, index)
            except CaseError as e:
                skipped.append(f"{fam.name}[{index}]: {e.problem}")
                continue
            if keep is None or keep(case):
                yield case


# ---------------------------------------------------------------- the campaign

@dataclass
class Finding:
    signature: Signature
    count: int = 0
    first: Case | None = None           # the first variant that showed it: the one shrunk
    reproducer: str = ""                # the file written, or why none was


@dataclass
class Campaign:
    findings: dict[Signature, Finding] = field(default_factory=dict)
    variants: int = 0                   # run to the end
    failing: int = 0                    # variants with at least one signature
    seconds: float = 0.0
    stopped: str | None = None          # why the campaign ended early (a signal)
    signum: int | None = None
    skipped: list[str] = field(default_factory=list)

    def add(self, case: Case, records: Sequence[Record]) -> None:
        self.variants += 1
        found = signatures(case, records)
        self.failing += bool(found)
        for s in found:
            f = self.findings.setdefault(s, Finding(s, first=case))
            f.count += 1

    @property
    def rate(self) -> float:
        return self.variants / self.seconds if self.seconds else 0.0


def run_campaign(variants: Iterator[Case], run_batch: Callable[[list], Iterator[tuple]], budget_s: float | None,
                 max_variants: int | None, batch: int, campaign: Campaign,
                 on_case: Callable[[Case, list], None] = lambda case, records: None) -> Campaign:
    """Run batches of fresh variants until the budget (seconds, variants) is spent. The caller handles
    signals: whatever was added before one stays in `campaign`."""
    t0 = time.perf_counter()
    try:
        while max_variants is None or campaign.variants < max_variants:
            if budget_s is not None and time.perf_counter() - t0 >= budget_s:
                break
            size = batch if max_variants is None else min(batch, max_variants - campaign.variants)
            cases = [c for _, c in zip(range(size), variants)]
            if not cases:
                break
            results = run_batch(cases)
            try:
                for case, records in results:
                    campaign.add(case, records)
                    on_case(case, records)
                    if budget_s is not None and time.perf_counter() - t0 >= budget_s:
                        break
            finally:
                results.close()  # at the budget: the cases still in flight are dropped
    finally:
        campaign.seconds = time.perf_counter() - t0
    return campaign


# ---------------------------------------------------------------- reproducers

def known_signatures(out_dir: str) -> dict[str, str]:
    """Signature text -> the reproducer in `out_dir` that already shows it (written by an earlier fuzz)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "*.yaml"))):
        try:
            with open(path, encoding="utf-8") as fh:
                head = fh.readline()
        except OSError:
            continue
        if head.startswith(SIGNATURE_HEADER):
            found.setdefault(head[len(SIGNATURE_HEADER):].strip(), path)
    return found


def keeps_signature(runner, framework_adapter, target: Signature) -> Callable[[Case], bool]:
    """For harness.shrink: whether a candidate still fails with `target`'s signature (a candidate whose
    reference cannot run, say one that overflows, is not the failure being shrunk)."""
    reference = runner.reference.name

    def fails(case: Case) -> bool:
        records = runner.run_case(case, [framework_adapter]).records
        if any(r.framework == reference and r.status == "error" for r in records):
            return False
        return target in signatures(case, [r for r in records if r.framework == target.framework])
    return fails


def write_reproducer(finding: Finding, small: Case, out_dir: str) -> str:
    """The regression file of a finding (harness.shrink's format), headed by its signature."""
    from .shrink import regression_text, write_regression
    case = finding.first
    reduced = small is not case
    text = regression_text(case, small, finding.signature.framework, reduced)
    name = "regression_" + re.sub(r"[\[\]]", "_", case.id).rstrip("_")
    return write_regression(f"{SIGNATURE_HEADER}{finding.signature}\n" + text, name, out_dir)


def table(campaign: Campaign) -> str:
    from tabulate import tabulate
    rows = [(s.framework, s.quantity, s.layer, s.divergence, f.count, f.first.id if f.first else "",
             f.reproducer or ("catalogued" if s.catalogued else ""))
            for s, f in sorted(campaign.findings.items(), key=lambda kv: (kv[0].catalogued, -kv[1].count, kv[0]))]
    if not rows:
        return "no failures"
    return tabulate(rows, headers=["framework", "quantity", "layer", "divergence", "variants", "first",
                                   "reproducer"])


def parse_budget(text: str) -> float:
    """"10m", "90s", "1.5h", "600" (seconds) -> seconds. Raises ValueError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"takes a time such as 10m, 90s, 1h or 600 (seconds), got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ---------------------------------------------------------------- the command

def command(opts, reference, frameworks, fams: Sequence[Family], keep, cluster, isolated: bool, say=print) -> int:
    """`gradconf fuzz` once its options are parsed and its adapters and families loaded (harness.cli):
    run, tabulate, shrink the new signatures. Exit status: 0 every signature catalogued, 1 not, 130/143 stopped
    by a signal (what was found is kept)."""
    import sys

    from . import session
    from .pool import Pool
    runner = Runner(reference, frameworks)
    if cluster is not None:
        pool = cluster(runner, None, opts.timeout)
    elif isolated:
        pool = Pool(runner, opts.jobs, None, opts.timeout)
    else:
        pool = None

    def run_batch(batch):
        if pool is not None:
            return pool.run(batch)
        return ((c, runner.run_case(c).records) for c in batch)

    campaign = Campaign()
    cases = fresh_variants(fams, opts.start, keep, campaign.skipped)
    workers = opts.jobs if cluster is None else pool.threads()
    try:  # batches of several cases per worker: a worker idles only while the last cases of a batch finish
        with session.interrupts():
            run_campaign(cases, run_batch, opts.budget, opts.variants, max(16, 8 * workers), campaign)
    except session.Interrupted as e:
        campaign.stopped, campaign.signum = f"interrupted by {e}", e.signum
    finally:
        if pool is not None:
            pool.close()
    new = [f for s, f in campaign.findings.items() if not s.catalogued]
    seen = known_signatures(opts.out)
    for f in sorted(new, key=lambda f: -f.count):
        if str(f.signature) in seen:
            f.reproducer = f"seen before: {seen[str(f.signature)]}"
    fresh = [f for f in new if not f.reproducer]
    _reproduce(fresh, campaign, reference, frameworks, opts, isolated, say)
    say(table(campaign))
    rate = f"{campaign.rate:.2f} variants/s"
    next_start = opts.start + min(f.drawn for f in fams)
    families = f"{len(fams)} famil{'y' if len(fams) == 1 else 'ies'}"
    say(f"\n{campaign.variants} fresh variant(s) of {families} in {campaign.seconds:.0f} s ({rate}), "
        f"{campaign.failing} with a failure; {len(campaign.findings)} signature(s), {len(new)} not catalogued, "
        f"{len(fresh)} new; the next fresh variants: --start {next_start}")
    if campaign.skipped:
        say(f"{len(campaign.skipped)} draw(s) had no valid variant, e.g. {campaign.skipped[0]}")
    if campaign.stopped:
        say(campaign.stopped + ": what was found is kept" + ("; new signatures written as drawn, unshrunk"
                                                             if fresh else ""), file=sys.stderr)
        return 128 + campaign.signum
    return 1 if new else 0


def _reproduce(fresh: list[Finding], campaign: Campaign, reference, frameworks, opts, isolated: bool, say) -> None:
    """Shrink each new signature's first variant (unless stopped) and write it to opts.out; a signal
    while shrinking writes the rest as drawn."""
    import sys

    from . import isolate, session
    from .shrink import shrink
    stopped = campaign.stopped is not None
    for f in fresh:
        adapter = next((a for a in [reference, *frameworks] if a.name == f.signature.framework), None)
        small = f.first
        if not stopped and adapter is not None:
            runner = Runner(reference, [adapter] if adapter is not reference else [])
            child = isolate.IsolatedRunner(runner, time_limit=opts.timeout) if isolated else runner
            say(f"shrinking {f.first.id} ({f.signature})", file=sys.stderr)
            try:
                with session.interrupts():
                    small = shrink(f.first, keeps_signature(child, adapter, f.signature), opts.shrink_budget)
            except session.Interrupted as e:
                stopped, campaign.stopped, campaign.signum = True, f"interrupted by {e}", e.signum
            finally:
                if child is not runner:
                    child.close()
        try:
            f.reproducer = write_reproducer(f, small, opts.out)
        except OSError as e:
            f.reproducer = f"cannot write to {opts.out}: {e.strerror or e}"
