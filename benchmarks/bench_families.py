"""Throughput of the bundled families: variants per second through numpy, torch and tensorflow.

One `gradconf run`-equivalent pass over cases/families (every variant, every installed framework,
reports written); prints variants/second, and records/second.
"""
from __future__ import annotations

import tempfile
import time

from gradconf.adapters import builtin, known_names
from gradconf.loader import load_paths
from gradconf.report import write_reports
from gradconf.runner import Runner


def main(count: int | None = None) -> list[dict]:
    reference = builtin("numpy")
    frameworks = [a for a in (builtin(n) for n in known_names()) if not a.missing()]
    for fw in frameworks:
        fw.version()  # framework import excluded: paid once per process
    t0 = time.perf_counter()
    cases, errors = load_paths(["cases/families"], count)
    assert not errors
    runner = Runner(reference, frameworks)
    records = [r for c in cases for r in runner.run_case(c).records]
    with tempfile.TemporaryDirectory() as out:
        write_reports(records, {"command": "bench"}, out)
    wall = time.perf_counter() - t0
    return [{"benchmark": "bundled families", "variants": len(cases),
             "frameworks": ",".join(f.name for f in frameworks), "wall_s": wall,
             "variants_per_s": len(cases) / wall, "records_per_s": len(records) / wall}]


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(), headers="keys", floatfmt=".2f"))
