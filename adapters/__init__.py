"""The adapters: one module per framework (numpy_ref, torch_adapter, tensorflow_adapter, jax_adapter).

The protocol they implement is the harness's (gradconf.protocol), and so is the registry that finds and
loads them (gradconf.registry); both are re-exported here. An adapter runs a `Case` from its materialised initial tensors and returns a `Trace`: per step the
loss, the output, the gradient of every parameter and of the input, and every parameter after the
update — all NumPy arrays in the canonical layout (NCHW, OIHW, IOHW, dense (out, in)).
Adapters only compute; the runner compares and decides statuses.

A third-party adapter is any object with the attributes below, exposed as `module:attr` (an
instance, or a class / factory called with no arguments) through `--adapter` or the
`gradconf.adapters` entry-point group.
"""
from __future__ import annotations

import importlib.util

from gradconf.protocol import (LARGE_CASE_MACS, Adapter, Initial, LayerTrace, Step, Tables, Trace, Unsupported,  # noqa: F401
                               case_macs, run_layers, threads_for)
from gradconf.registry import (ENTRY_POINT_GROUP, Unloadable, all_specs, builtin,  # noqa: F401
                               builtin_or_unloadable, known_names, load_adapter)
from gradconf.threads import one_thread_native_pools, thread_limit, usable_cores  # noqa: F401

# The protocol (gradconf.protocol) and the registry (gradconf.registry) live in the harness; these names stay
# for adapters and code written against them.
__all__ = ["Adapter", "Initial", "Step", "Tables", "Trace", "Unsupported", "builtin", "known_names", "load_adapter",
           "run_layers"]


def module_missing(module: str) -> str | None:
    """A cheap installed-or-not check that never imports the framework."""
    return None if importlib.util.find_spec(module) is not None else f"{module} is not installed"
