"""The timing rules of the benchmarks: warm up, then the best of `repeat` runs.

This machine's speed drifts (by 20% and more within a minute), so two things compared as a ratio
are timed in alternating blocks, and the ratio is taken within each round, where both sides met
the same machine (`median_ratio`). Each block starts with an untimed call, because one library's
idle worker threads keep spinning for a while after it returns and slow down whatever runs next
(OpenBLAS and OpenMP both do).
"""
from __future__ import annotations

import statistics
import time


def best_of(fn, repeat: int) -> float:
    return rounds_of_each([fn], repeat, rounds=1)[0][0]


def rounds_of_each(fns, repeat: int, rounds: int) -> list[list[float]]:
    """Per round, each fn's best of `repeat` timed calls; within a round the fns take turns."""
    table = []
    for _ in range(rounds):
        row = []
        for fn in fns:
            fn()
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            row.append(min(times))
        table.append(row)
    return table


def best_of_each(fns, repeat: int, rounds: int = 3) -> list[float]:
    """Each fn's best time over every round."""
    return [min(col) for col in zip(*rounds_of_each(fns, repeat, rounds))]


def median_ratio(a, b, repeat: int, rounds: int = 5) -> tuple[float, float, float]:
    """(a's time, b's time, a/b): the median over rounds of each round's best times and their ratio."""
    table = rounds_of_each([a, b], repeat, rounds)
    return (statistics.median(r[0] for r in table), statistics.median(r[1] for r in table),
            statistics.median(r[0] / r[1] for r in table))
