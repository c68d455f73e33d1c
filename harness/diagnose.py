"""A failing (case, framework) as a diagnosis a person can act on — shared by the CLI and pytest."""
from __future__ import annotations

from tabulate import tabulate


def _num(v) -> str:
    return "" if v is None else f"{v:.9g}"


def describe_failures(case, framework: str, records) -> str:
    bad = [r for r in records if r.status in ("fail", "error", "xpass", "xfail")]
    head = f"{case.file}:{case.line}: case {case.id} [{framework}]: {len(bad)} failing record(s)"
    rows, notes = [], []
    for r in bad:
        if r.quantity is None:  # an adapter error, or an xpass note
            notes.append(f"{r.status}: {r.message}")
            continue
        where = f"{case.file}:{r.line}" if r.reference == "expected" else ""
        rows.append([r.status, r.reference, r.step, r.quantity, r.tensor or "", _num(r.max_abs_err),
                     "" if r.ratio is None else f"{r.ratio:.3g}x", r.worst_index,
                     f"{_num(r.actual)} vs {_num(r.desired)}", where or r.message[:70]])
    parts = [head]
    if rows:
        parts.append(tabulate(rows, headers=["status", "vs", "step", "quantity", "tensor", "max abs err",
                                             "err/allowed", "worst at", "actual vs expected", "note"],
                              tablefmt="simple"))
    parts += notes
    known = next((r.known for r in bad if r.known), None)
    if known:
        parts.append(f"the case fits known divergence(s) of {framework}: {known} (docs/divergences.md)")
    return "\n".join(parts)
