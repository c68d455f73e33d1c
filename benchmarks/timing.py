"""The one timing rule of the benchmarks: warm up once, then the best of `repeat` runs."""
from __future__ import annotations

import time


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
