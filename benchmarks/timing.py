"""The timing rules of the benchmarks: warm up once, then the best of `repeat` runs.

This machine's speed drifts (by 20% and more over a minute), so two things compared as a ratio are
timed in alternating blocks (`best_of_each`): a slow stretch then costs both sides alike. Each block
starts with an untimed call, because one library's idle worker threads keep spinning for a while
after it returns and slow down whatever runs next (OpenBLAS and OpenMP both do).
"""
from __future__ import annotations

import time


def best_of(fn, repeat: int) -> float:
    return best_of_each([fn], repeat, rounds=1)[0]


def best_of_each(fns, repeat: int, rounds: int = 3) -> list[float]:
    """Each fn's best time: `rounds` rounds in which each fn in turn runs once untimed, then `repeat` times."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            fn()
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t0)
    return best
