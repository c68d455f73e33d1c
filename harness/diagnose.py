"""A failing (case, framework) as a diagnosis a person can act on — shared by the CLI and pytest.

Columns are the reports' (harness.summary.FAILURE_COLUMNS) in their order, less the case and framework
the heading names; messages are wrapped, never cut."""
from __future__ import annotations

from tabulate import tabulate

from .summary import FAILURE_COLUMNS, num_text, ratio_text
from .records import Status

COLUMNS = [c for c in FAILURE_COLUMNS if c not in ("case", "framework", "message")] + ["message"]
MESSAGE_WIDTH = 60


def describe_failures(case, framework: str, records) -> str:
    bad = [r for r in records if r.status in (Status.FAIL, Status.ERROR, Status.XPASS, Status.XFAIL)]
    head = f"{case.file}:{case.line}: case {case.id} [{framework}]: {len(bad)} failing record(s)"
    rows, notes = [], []
    for r in bad:
        if r.quantity is None:  # an adapter error, or an xpass note
            notes.append(f"{r.status}: {r.message}")
            continue
        # the line a record points at (the golden value, or the layer holding the tensor), as the reports
        # show it; not the case's own line again, which the heading names
        where = f"{case.file}:{r.line}" if r.line and (r.reference == "expected" or r.line != case.line) else ""
        rows.append([r.status, r.reference, r.step, r.quantity, r.tensor or "", num_text(r.max_abs_err),
                     ratio_text(r.ratio), "" if r.worst_index is None else str(list(r.worst_index)),
                     num_text(r.actual), num_text(r.desired), where, r.message])
    parts = [head]
    if rows:
        parts.append(tabulate(rows, headers=COLUMNS, tablefmt="simple",
                              maxcolwidths=[None] * (len(COLUMNS) - 1) + [MESSAGE_WIDTH]))
    parts += notes
    known = next((r.known for r in bad if r.known), None)
    if known:
        parts.append(f"the case fits known divergence(s) of {framework}: {known} (docs/divergences.md)")
    return "\n".join(parts)
