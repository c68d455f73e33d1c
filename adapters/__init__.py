"""The adapter protocol: one small interface, one module per framework.

An adapter runs a `Case` from its materialised initial tensors and returns a `Trace`: per step the
loss, the output, the gradient of every parameter and of the input, and every parameter after the
update — all NumPy arrays in the canonical layout (NCHW, OIHW, IOHW, dense (out, in)).
Adapters only compute; the runner compares and decides statuses.

A third-party adapter is any object with the attributes below, exposed as `module:attr` (an
instance, or a class / factory called with no arguments) through `--adapter` or the
`gradconf.adapters` entry-point group.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from gradconf.errors import Unsupported  # re-exported: adapters raise it

__all__ = ["Adapter", "Initial", "Step", "Trace", "Unsupported", "builtin", "known_names", "load_adapter"]


@dataclass(frozen=True)
class Initial:
    """What every framework starts from: float64 arrays already rounded to the case dtype."""
    input: np.ndarray
    params: dict[str, np.ndarray]
    target: np.ndarray | None  # loss target / grad_output value / class ids (as floats)


@dataclass
class Step:
    loss: np.ndarray                 # 0-d
    output: np.ndarray
    grads: dict[str, np.ndarray]     # every parameter, and "input"
    params: dict[str, np.ndarray] = field(default_factory=dict)  # after this step's update (empty: no optimizer)
    # Optional, from a reference: the size of the terms a scalar was summed from ("loss", "output"),
    # so that a result that is small by cancellation is judged against the terms, not itself.
    magnitude: dict[str, float] = field(default_factory=dict)


@dataclass
class Trace:
    steps: list[Step]


@runtime_checkable
class Adapter(Protocol):
    name: str  # "numpy", "torch", ...

    def missing(self) -> str | None:
        """Why this framework cannot run here (e.g. not installed), or None. Must not import it."""

    def version(self) -> str:
        """The framework's version (may import it)."""

    def run(self, case, initial: Initial) -> Trace:
        """Run `case.steps` steps; raise `Unsupported(reason)` for a case it cannot express faithfully.
        A reference may also take `round_off=` (see NumpyReference.run and tolerance.rounded_layers).
        Optional too: `known_divergences(case) -> {id: gist}`, the docs/divergences.md entries whose
        conditions the case meets (named on its failures)."""


_BUILTIN = {"numpy": "gradconf.adapters.numpy_ref:NumpyReference", "torch": "gradconf.adapters.torch_adapter:TorchAdapter",
            "tensorflow": "gradconf.adapters.tensorflow_adapter:TensorflowAdapter", "jax": "gradconf.adapters.jax_adapter:JaxAdapter"}
ENTRY_POINT_GROUP = "gradconf.adapters"


@functools.lru_cache(maxsize=1)  # scanning installed distributions costs milliseconds; once is enough
def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution must not break the harness
        return {}


_LOADED: dict[str, str] = {}  # name -> spec of adapters loaded by `module:attr` in this process


def known_names() -> list[str]:
    """Every framework name a case may mention (in `xfail:`): built-ins, installed plug-ins, and any
    adapter loaded with --adapter."""
    return list(dict.fromkeys([*_BUILTIN, *_entry_points(), *_LOADED]))


def load_adapter(spec: str) -> Adapter:
    """`module:attr` -> an adapter instance. Raises ValueError with a readable reason."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--adapter wants `module:attr`, got {spec!r}")
    try:  # a third party's module may raise anything while it imports: name it, don't trace back
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load adapter {spec!r}: {e}") from None
    except Exception as e:
        raise ValueError(f"cannot load adapter {spec!r}: importing {module_name} raised "
                         f"{type(e).__name__}: {e}") from None
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "run")):  # a class or a factory
        try:
            obj = obj()
        except Exception as e:
            raise ValueError(f"adapter {spec!r}: calling it to make the adapter raised "
                             f"{type(e).__name__}: {e}") from None
    adapter = obj
    for attr_name in ("name", "missing", "version", "run"):
        if not hasattr(adapter, attr_name):
            raise ValueError(f"adapter {spec!r} lacks `{attr_name}` (see the adapter protocol in the README)")
    if not isinstance(adapter.name, str) or not adapter.name.isprintable() or not adapter.name.strip() \
            or any(c in adapter.name for c in ",[]:"):  # it becomes a --frameworks item, a test id, a key
        raise ValueError(f"adapter {spec!r}: `name` must be a short plain string, got {adapter.name!r:.60}")
    _LOADED.setdefault(adapter.name, spec)
    return adapter


def builtin(name: str) -> Adapter:
    return load_adapter(all_specs()[name])


class Unloadable:
    """Stands in for an installed adapter (an entry point) that fails to load when nobody asked for it
    by name: the other frameworks still run, and every case gets one `error` record saying why."""

    def __init__(self, name: str, why: str):
        self.name, self.why = name, why

    def missing(self) -> str | None:
        return None

    def version(self) -> str:
        return f"unloadable ({self.why})"

    def run(self, case, initial: Initial) -> Trace:
        raise RuntimeError(self.why)


def builtin_or_unloadable(name: str) -> Adapter:
    try:
        return builtin(name)
    except ValueError as e:
        return Unloadable(name, str(e))


def all_specs() -> dict[str, str]:
    return {**_entry_points(), **_BUILTIN}


def module_missing(module: str) -> str | None:
    """A cheap installed-or-not check that never imports the framework."""
    return None if importlib.util.find_spec(module) is not None else f"{module} is not installed"


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


# The thread policy (README, "Threads"): one thread per framework per worker. Measured
# (benchmarks/bench_threads.py): a second thread makes every bundled case slower, whatever the
# framework — a pool's threads meet after every small op, and on a busy machine a late core stalls
# them all — so only a case whose largest layer takes this many multiply-adds gets the worker's share.
LARGE_CASE_MACS = 1 << 24


def case_macs(case) -> int:
    """Multiply-adds of the case's largest layer (forward pass; a backward costs about twice as much)."""
    from gradconf.case import Conv2d, ConvTranspose2d, Dense
    largest = 0
    for L in case.layers:
        if isinstance(L, Conv2d):  # a transposed conv: every input pixel meets every tap
            pixels = L.in_shape if isinstance(L, ConvTranspose2d) else L.out_shape
            fan = (L.out_channels if isinstance(L, ConvTranspose2d) else L.in_shape[1]) // L.groups
            largest = max(largest, int(np.prod(pixels)) * fan * L.kernel_size[0] * L.kernel_size[1])
        elif isinstance(L, Dense):
            largest = max(largest, int(np.prod(L.in_shape)) * L.out_features)
    return largest


def threads_for(case) -> int:
    """The threads a framework runs `case` on: 1, or for a large case the worker's share of the cores."""
    return (thread_limit() or usable_cores()) if case_macs(case) >= LARGE_CASE_MACS else 1


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
