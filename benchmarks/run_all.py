"""Every benchmark, one run each, ratios printed (`make bench`). See README, "Benchmarks".

    python benchmarks/run_all.py            # all
    python benchmarks/run_all.py conv pytest  # some: conv, overhead, adapters, pytest, families, report, threads

Against the commit before the speed work, side by side: benchmarks/compare_baseline.py (`make compare`).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tabulate import tabulate  # noqa: E402

from benchmarks import (bench_adapters, bench_conv, bench_families, bench_overhead, bench_pytest,  # noqa: E402
                        bench_report, bench_threads)

BENCHMARKS = {"conv": bench_conv, "overhead": bench_overhead, "adapters": bench_adapters, "pytest": bench_pytest,
              "families": bench_families, "report": bench_report, "threads": bench_threads}


def main(names: list[str]) -> None:
    for name in names or list(BENCHMARKS):
        print(f"\n== {name}: {BENCHMARKS[name].__doc__.strip().splitlines()[0]}")
        print(tabulate(BENCHMARKS[name].main(), headers="keys", floatfmt=".3f"))


if __name__ == "__main__":
    main(sys.argv[1:])
