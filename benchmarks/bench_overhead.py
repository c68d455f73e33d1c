"""Harness overhead: the share of a `gradconf run` spent outside the adapters' own run() calls.

Runs the bundled cases the way `gradconf run` does (load, run every case through every installed
framework, write the four reports) and splits the wall time into adapter compute (each adapter's
run(), summed, the reference's first run included) and everything else (framework imports reported apart): loading and validating,
materialising tensors, the reference's two conditioning re-runs, comparisons, reports.
Target: overhead <= 30% of the total.
"""
from __future__ import annotations

import tempfile
import time

from gradconf.adapters import builtin, known_names
from gradconf.loader import load_paths
from gradconf.report import write_reports
from gradconf.runner import Runner


def main(paths=("cases",), count: int | None = None) -> list[dict]:
    t0 = time.perf_counter()
    cases, errors = load_paths(list(paths), count)
    assert not errors, errors[:3]
    reference = builtin("numpy")
    frameworks = [a for a in (builtin(n) for n in known_names()) if not a.missing()]
    for fw in frameworks:  # imports happen once per process, not per case; count them apart
        if fw.name != "numpy":
            fw.version()
    t_import = time.perf_counter() - t0
    runner = Runner(reference, frameworks)
    adapter_s = {}
    records = []
    for case in cases:
        result = runner.run_case(case)
        records += result.records
        for name, s in result.seconds.items():
            adapter_s[name] = adapter_s.get(name, 0.0) + s
    with tempfile.TemporaryDirectory() as out:
        write_reports(records, {"command": "bench"}, out)
    total = time.perf_counter() - t0
    compute = sum(adapter_s.values())
    # Importing torch / TensorFlow is the frameworks' own start-up (adapters import lazily), so it is
    # counted with them; the fraction including it is printed too.
    return [{"benchmark": "harness overhead", "cases": len(cases), "total_s": total,
             "framework_imports_s": t_import, "adapter_compute_s": compute,
             "overhead_fraction": (total - compute - t_import) / total,
             "overhead_incl_imports": (total - compute) / total,
             **{f"{k}_s": v for k, v in adapter_s.items()}}]


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(), headers="keys", floatfmt=".3f"))
