"""What a report says, computed once from the records: the content every report renders.

One pass over the records groups them by case; everything else (the case × framework statuses,
the counts, the families, who is wrong) works on one case's records at a time, so building a
summary is linear in the records however many fail. Plain Python, no pandas: a small run pays
no import for it. The console, report.md and report.html all render this one object, with the
same columns in the same order (`FAILURE_COLUMNS`, `FAMILY_COLUMNS`, `frameworks`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from .runner import FAILING, Record
from .records import Status

# Worst first: a (case, framework) cell shows its worst record's status.
SEVERITY = [Status.ERROR, Status.FAIL, Status.XPASS, Status.XFAIL, Status.UNSUPPORTED, Status.SKIPPED, Status.PASS]
NOT_RUN = "nothing compared"  # a (case, framework) cell with no record: not run, or a reference with no golden values

# The failing-records table, console, markdown and HTML alike: (header, what it shows).
FAILURE_COLUMNS = ("status", "case", "framework", "vs", "step", "quantity", "tensor", "max abs err",
                   "error/allowance", "worst at", "actual", "expected", "line", "message")
FAMILY_COLUMNS = ("group", "framework", "variants", "passed", "failed", "xfail", "skipped", "pass rate",
                  "worst error/allowance")
PASS_RATE = "pass rate = passed / (passed + failed); xfail, skipped and unsupported are not in it"


def worst(statuses: Iterable[str]) -> str:
    return min(statuses, key=SEVERITY.index)


def framework_order(names: Iterable[str], reference: str | None = None) -> list[str]:
    """Stable whatever order the records came in: the reference, the built-ins in registry order,
    then any other framework alphabetically."""
    from .registry import known_names  # the registry's order (names only: no adapter is imported)
    names = set(names)
    rank = {n: i for i, n in enumerate(known_names())}
    first = [reference] if reference in names else []
    return first + sorted(names - set(first), key=lambda n: (rank.get(n, len(rank)), n))


def group_of(r: Record) -> str:
    """A family's name, or for a single case its folder (`layers`, `optimizers`): the heat map's rows."""
    if r.family:
        return r.family
    folder = os.path.basename(os.path.dirname(r.file or "")) or "."
    return f"{folder}/"


@dataclass
class Row:
    """One row of the failing-records table; `cells` follows FAILURE_COLUMNS, formatted when rendered."""
    record: Record
    xpass_of: Sequence[Record] | None = None  # an xpass: every record of that (case, framework)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def cells(self) -> tuple:
        return _xpass_cells(self.xpass_of) if self.xpass_of else _failure_cells(self.record)


@dataclass
class CaseSummary:
    case: str
    group: str
    file: str | None
    line: int | None
    status: dict[str, str]             # framework -> worst status of its records
    ratio: dict[str, float | None]     # framework -> worst error/allowance of its comparisons
    records: list[Record]
    frameworks: Sequence[str] = ()     # the summary's framework order
    verdict: str = ""                  # who is wrong; empty for a case that passes

    @cached_property
    def rows(self) -> list[Row]:
        """Its failing rows, made when a report shows them (a report shows a bounded number)."""
        return case_rows(self.records, self.frameworks) if self.failing else []

    @cached_property
    def origins(self) -> dict[str, Record]:
        """framework -> its first failing record that says where the departure starts (harness.localise)."""
        out: dict[str, Record] = {}
        for r in self.records:
            if r.origin and r.status == Status.FAIL:
                out.setdefault(r.framework, r)
        return out

    @property
    def worst(self) -> str:
        return worst(self.status.values())

    @property
    def failing(self) -> bool:
        return self.worst in FAILING

    @property
    def worst_ratio(self) -> float | None:
        """Over the failing frameworks of a failing case (not its xfails), else over every framework."""
        judged = [fw for fw, st in self.status.items() if st in FAILING] or list(self.status)
        return max((self.ratio[fw] for fw in judged if self.ratio.get(fw) is not None), default=None)


@dataclass
class FamilyRow:
    group: str
    framework: str
    variants: int
    passed: int
    failed: int
    xfail: int
    skipped: int
    worst_ratio: float | None
    worst_judged: float | None = None  # over the cases that are not xfail: what the heat map colours

    @property
    def pass_rate(self) -> str:
        compared = self.passed + self.failed
        return f"{100 * self.passed / compared:.1f}%" if compared else "—"

    def cells(self) -> tuple:
        return (self.group, self.framework, self.variants, self.passed, self.failed, self.xfail, self.skipped,
                self.pass_rate, ratio_text(self.worst_ratio))


@dataclass
class Summary:
    run: dict
    frameworks: list[str]
    cases: list[CaseSummary]           # failing cases first (worst first), then the rest, in run order
    records: int

    @property
    def failing(self) -> list[CaseSummary]:
        return [c for c in self.cases if c.failing]

    @property
    def passing(self) -> list[CaseSummary]:
        return [c for c in self.cases if not c.failing]

    @cached_property
    def rows(self) -> list[Row]:
        return [row for c in self.failing for row in c.rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """framework -> status -> number of cases (a case × framework cell counts once, at its worst)."""
        out = {fw: dict.fromkeys([*SEVERITY[::-1], NOT_RUN], 0) for fw in self.frameworks}
        for c in self.cases:
            for fw in self.frameworks:
                out[fw][c.status.get(fw, NOT_RUN)] += 1
        return out

    def known_divergences(self) -> list[tuple[str, str, int]]:
        """(framework, the case's xfail reason, cases) for every xfail cell, most cases first."""
        seen: dict[tuple[str, str], int] = {}
        for c in self.cases:
            for fw, status in c.status.items():
                if status == Status.XFAIL:
                    why = next((r.message.rsplit(" [xfail: ", 1)[-1].rstrip("]") for r in c.records
                                if r.framework == fw and r.status == Status.XFAIL), "")
                    seen[(fw, why)] = seen.get((fw, why), 0) + 1
        return sorted(((fw, why, n) for (fw, why), n in seen.items()), key=lambda t: (-t[2], t[0], t[1]))

    def statuses_seen(self) -> list[str]:
        """The status columns worth a column: those some framework has."""
        counts = self.counts()
        return [s for s in [*SEVERITY[::-1], NOT_RUN] if any(counts[fw][s] for fw in self.frameworks)]

    def families(self) -> list[FamilyRow]:
        """Per group (family, or folder of single cases) and framework."""
        table: dict[tuple[str, str], FamilyRow] = {}
        for c in self.cases:
            for fw, status in c.status.items():
                row = table.setdefault((c.group, fw), FamilyRow(c.group, fw, 0, 0, 0, 0, 0, None))
                row.variants += 1
                row.passed += status == Status.PASS
                row.failed += status in FAILING
                row.xfail += status == Status.XFAIL
                row.skipped += status in (Status.SKIPPED, Status.UNSUPPORTED)
                r = c.ratio.get(fw)
                if r is not None and (row.worst_ratio is None or r > row.worst_ratio):
                    row.worst_ratio = r
                if r is not None and status != Status.XFAIL and (row.worst_judged is None or r > row.worst_judged):
                    row.worst_judged = r
        rank = {fw: i for i, fw in enumerate(self.frameworks)}
        return sorted(table.values(), key=lambda f: (f.group, rank[f.framework]))


def ratio_text(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}x"


def num_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _failure_cells(r: Record) -> tuple:
    where = f"{r.file}:{r.line}" if r.file and r.line else ""
    return (r.status, r.case, r.framework, r.reference or "", num_text(r.step), r.quantity or "", r.tensor or "",
            num_text(r.max_abs_err), ratio_text(r.ratio), "" if r.worst_index is None else str(list(r.worst_index)),
            num_text(r.actual), num_text(r.desired), where, r.message + (f" (fits known {r.known})" if r.known else ""))


def _xpass_cells(records: Sequence[Record]) -> tuple:
    """An xpass is every comparison of a (case, framework) passing: one row says so, not one per tensor."""
    first = records[0]
    worst_ratio = max((r.ratio for r in records if r.ratio is not None), default=None)
    why = first.message.removeprefix("expected to fail: ")
    message = (f"all {len(records)} comparison(s) passed, but the case marks {first.framework} as a known "
               f"divergence (xfail: {why}): it no longer shows; remove the mark or fix the case")
    return (Status.XPASS, first.case, first.framework, "", "", "", "", "", ratio_text(worst_ratio), "", "", "",
            f"{first.file}:{first.line}" if first.file else "", message)


def case_rows(records: Sequence[Record], frameworks: Sequence[str]) -> list[Row]:
    """A failing case's rows: its fail and error records, and one row per xpass framework."""
    rows = [Row(r) for r in records if r.status in (Status.FAIL, Status.ERROR)]
    for fw in frameworks:
        xpass = [r for r in records if r.framework == fw and r.status == Status.XPASS]
        if xpass:
            rows.append(Row(xpass[0], xpass))
    return rows


def summarize_records(records: Sequence[Record], run: dict | None = None) -> Summary:
    from .verdict import who_is_wrong
    run = run or {}
    by_case: dict[str, list[Record]] = {}
    for r in records:  # the one pass over every record
        by_case.setdefault(r.case, []).append(r)
    reference = run.get("reference") or next((r.reference for r in records if r.reference not in (None, "expected")),
                                             None)
    frameworks = framework_order({r.framework for r in records}, reference)
    cases = []
    for case, mine in by_case.items():
        status: dict[str, list[str]] = {}
        ratio: dict[str, float | None] = {}
        for r in mine:
            status.setdefault(r.framework, []).append(r.status)
            if r.ratio is not None and (ratio.get(r.framework) is None or r.ratio > ratio[r.framework]):
                ratio[r.framework] = r.ratio
        first = mine[0]
        line = min((r.line for r in mine if r.line), default=first.line)  # the case's own: its first, before its fields
        c = CaseSummary(case, group_of(first), first.file, line,
                        {fw: worst(status[fw]) for fw in frameworks if fw in status}, ratio, mine, frameworks)
        if c.failing:
            c.verdict = who_is_wrong(mine, reference)
        cases.append(c)
    # Failing cases first, the worst status and then the largest error first; the rest in run order.
    ranked = sorted(enumerate(cases), key=lambda ic: (0, SEVERITY.index(ic[1].worst), -(ic[1].worst_ratio or 0.0), ic[0])
                    if ic[1].failing else (1, 0, 0.0, ic[0]))
    return Summary(run, frameworks, [c for _, c in ranked], len(records))
