"""The pytest plugin: speed-up of `pytest -n 2 cases/` over `pytest cases/`, and the plugin's overhead
over a direct `gradconf run` of the same cases. Wall times of whole commands (imports included).
Targets: speed-up >= 1.6x on 2 cores; overhead <= 10%.

This machine's speed drifts by 20% over minutes, so one round of three commands can compare a slow
minute with a fast one. The three commands run interleaved, `rounds` times, after one warm-up import
of the frameworks (so that no command pays for a cold disk cache); each ratio uses each command's
best time.
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
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return elapsed


def main(paths: str = "cases", rounds: int = 2) -> list[dict]:
    py = sys.executable
    wall([py, "-c", "import torch, tensorflow, keras"])
    # --in-process: like the plugin, no child process (the default CLI run adds ~1.5% for its crash isolation)
    commands = {"gradconf_run_s": [py, "-m", "gradconf", "run", paths, "-q", "--in-process", "--out"],
                "pytest_s": [py, "-m", "pytest", paths, "-q"],
                "pytest_n2_s": [py, "-m", "pytest", paths, "-q", "-n", "2"]}
    best = {name: float("inf") for name in commands}
    for _ in range(int(rounds)):
        for name, args in commands.items():
            with tempfile.TemporaryDirectory() as out:
                best[name] = min(best[name], wall(args + [out] if args[-1] == "--out" else args))
    return [{"benchmark": "pytest plugin", **best, "xdist_speedup": best["pytest_s"] / best["pytest_n2_s"],
             "plugin_overhead": best["pytest_s"] / best["gradconf_run_s"] - 1.0}]


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(*sys.argv[1:]), headers="keys", floatfmt=".3f"))
