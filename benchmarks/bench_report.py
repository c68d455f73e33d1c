"""Report building is linear in the records: a quarter of them failing costs about what none failing does.

Synthetic records shaped like the bundled run's (3 frameworks, 12 records per case and framework), 141k of
them; in the failing set every record of one case in four fails (so 25% of the records and of the cases).
Timed side by side in interleaved rounds (benchmarks/timing.py): the summary alone (grouping, verdicts,
counts, families), and the whole report set (results.json, results.csv, report.md, report.html, charts).
Target: failing / passing <= 1.3 for the whole set.
"""
from __future__ import annotations

from gradconf.report import report_files
from gradconf.runner import Record
from gradconf.summary import summarize_records

from .timing import median_ratio

FRAMEWORKS = ("numpy", "torch", "tensorflow")
PER_CASE = 12  # records per (case, framework): loss, output, gradients and parameters of a 2-layer net


def records(n: int, failing: bool) -> list[Record]:
    out = []
    cases = n // (len(FRAMEWORKS) * PER_CASE)
    for c in range(cases):
        fails = failing and c % 4 == 1
        family = f"family_{c % 10}" if c % 3 else None
        for fw in FRAMEWORKS:
            for k in range(PER_CASE):
                ratio = 3.0 + k if fails else 1e-3 * (1 + (c * 7 + k) % 50)
                out.append(Record(f"case_{c}" + (f"[{c}]" if family else ""), fw, "numpy", 1 + k // 6,
                                  ("loss", "output", "grad", "param")[k % 4], None if k % 4 < 2 else f"l{k}.weight",
                                  [4, 3, 3, 3], "float32", ratio * 1e-6, ratio * 1e-5, [0, 1, 2, 1], 1e-5, 1e-6,
                                  "fail" if fails else "pass",
                                  f"12 of 108 element(s) off; worst at [0, 1, 2, 1]: {ratio:.4g} (x the allowance)"
                                  if fails else "", ratio, 1.0, 1.0 + ratio * 1e-6, family,
                                  f"cases/x/{c % 10}.yaml", 3 + k))
    return out


def main(n: int = 141_000) -> list[dict]:
    passing, failing = records(n, False), records(n, True)
    run = {"command": "bench", "reference": "numpy"}
    rows = []
    for what, build in (("summary", lambda rs: summarize_records(rs, run)),
                        ("report set", lambda rs: report_files(rs, run))):
        t_fail, t_pass, ratio = median_ratio(lambda: build(failing), lambda: build(passing), repeat=1, rounds=3)
        rows.append({"benchmark": f"report building: {what}", "records": len(passing),
                     "failing_records": sum(r.status == "fail" for r in failing), "none_failing_s": t_pass,
                     "quarter_failing_s": t_fail, "failing/passing": ratio, "target": "<= 1.3"})
    return rows


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(), headers="keys", floatfmt=".3f"))
