"""Thread policy: each adapter's run() with one thread against two, on a tiny case and on the large one
(benchmarks/cases/large_net.yaml: 16×3×64×64 input, two 32-channel convs), the measurement behind
"one thread per framework per worker" (README, "Threads").

TensorFlow fixes its pool sizes when it starts, so every (threads) setting runs in its own process
(GRADCONF_THREADS, which the adapters read); the settings take turns over `rounds` rounds, and each
round's ratio compares processes that ran next to each other. Printed: per adapter and case the median
over rounds of each side's best time and of the ratio t(2 threads) / t(1 thread).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {"tiny": os.path.join(ROOT, "cases", "examples", "net_5x5_f32.yaml"),
         "large": os.path.join(ROOT, "benchmarks", "cases", "large_net.yaml")}

_PROBE = """
import json, sys, time
sys.path.insert(0, ROOT)
from gradconf import adapters
from gradconf.loader import load_file
from gradconf.tensors import materialize
out = {}
for label, path in CASES.items():
    (case,) = load_file(path)
    init = materialize(case)
    for name in ("numpy", "torch", "tensorflow"):
        a = adapters.builtin(name)
        if a.missing():
            continue
        a.run(case, init)  # warm-up: imports, first-call set-up
        times = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            a.run(case, init)
            times.append(time.perf_counter() - t0)
        out[f"{name} {label}"] = min(times)
print(json.dumps(out))
"""


def _probe(threads: int, repeat: int) -> dict:
    env = {**os.environ, "GRADCONF_THREADS": str(threads)}
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(threads)
    code = f"ROOT = {ROOT!r}\nCASES = {CASES!r}\nREPEAT = {repeat}\n" + _PROBE
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(rounds: int = 3, repeat: int = 5) -> list[dict]:
    table = []
    for _ in range(int(rounds)):
        table.append({t: _probe(t, int(repeat)) for t in (1, 2)})
    rows = []
    for key in table[0][1]:
        one = [r[1][key] for r in table]
        two = [r[2][key] for r in table]
        rows.append({"benchmark": f"threads {key}", "one_thread_s": statistics.median(one),
                     "two_threads_s": statistics.median(two),
                     "ratio_2_over_1": statistics.median(b / a for a, b in zip(one, two)),
                     "ratio_range": f"{min(b / a for a, b in zip(one, two)):.2f}–{max(b / a for a, b in zip(one, two)):.2f}"})
    return rows


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(*sys.argv[1:]), headers="keys", floatfmt=".4f"))
