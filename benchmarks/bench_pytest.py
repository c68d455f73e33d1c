"""The pytest plugin: speed-up of `pytest -n 2 cases/` over `pytest cases/`, and the plugin's overhead
over a direct `gradconf run` of the same cases. Wall times of whole commands (imports included),
one run each. Targets: speed-up >= 1.6x on 2 cores; overhead <= 10%.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode not in (0,):
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return elapsed


def main(paths: str = "cases") -> list[dict]:
    py = sys.executable
    with tempfile.TemporaryDirectory() as out:
        direct = wall([py, "-m", "harness", "run", paths, "-q", "--out", out])
    serial = wall([py, "-m", "pytest", paths, "-q", "-p", "no:randomly"])
    parallel = wall([py, "-m", "pytest", paths, "-q", "-n", "2"])
    return [{"benchmark": "pytest plugin", "gradconf_run_s": direct, "pytest_s": serial, "pytest_n2_s": parallel,
             "xdist_speedup": serial / parallel, "plugin_overhead": serial / direct - 1.0}]


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(*sys.argv[1:]), headers="keys", floatfmt=".3f"))
