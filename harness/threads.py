"""The thread policy's facts (README, "Threads"): a worker's share of the cores, and one thread for every
native pool. Which case gets more than one thread is protocol.threads_for."""
from __future__ import annotations

import os


def thread_limit() -> int | None:
    """GRADCONF_THREADS: a worker's share of the cores (`gradconf run -j N` and the pytest plugin under
    xdist set it on their workers: cores ÷ workers; a user's own setting wins). None: not set."""
    value = os.environ.get("GRADCONF_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container or `taskset` narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_NATIVE_POOLS_SET: set[str] = set()


def one_thread_native_pools(framework: str) -> None:
    """Once per framework and process, after it loaded: every BLAS and OpenMP pool loaded so far to one
    thread (threadpoolctl), so that no library's idle threads spin on the cores the other workers need.
    Adapters that want more for a large case ask for them per call (torch.set_num_threads, the
    reference's batch split)."""
    if framework not in _NATIVE_POOLS_SET:
        _NATIVE_POOLS_SET.add(framework)
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
