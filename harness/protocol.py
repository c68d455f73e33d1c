"""The adapter protocol, defined by the harness and implemented by the adapters (gradconf.adapters
re-exports every name here). An adapter runs a `Case` from its materialised `Initial` tensors and
returns a `Trace`: per step the loss, the output, the gradient of every parameter and of the input,
and every parameter after the update — NumPy arrays in the canonical layout (NCHW, OIHW, IOHW,
dense (out, in)). Adapters only compute; the runner compares and decides statuses.

An adapter keeps one function per vocabulary entry, in tables keyed by the declaration's name
(`Tables`); `Tables.check(case)` makes every entry a table lacks `unsupported`, and `run_layers`
is the forward walk every framework shares.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from . import threads, vocab
from .errors import Unsupported

__all__ = ["Adapter", "Initial", "LayerTrace", "Rounding", "Step", "Tables", "Trace", "Unsupported", "LARGE_CASE_MACS",
           "case_macs", "rounds_off", "run_layers", "threads_for"]


@dataclass(frozen=True)
class Initial:
    """What every framework starts from: float64 arrays already rounded to the case dtype."""
    input: np.ndarray
    params: dict[str, np.ndarray]
    target: np.ndarray | None  # loss target / grad_output value / class ids (as floats)
    # `{per_step: [...]}` (SPEC §1.10): one input / target per step, the first being `input` / `target`
    inputs: tuple[np.ndarray, ...] | None = None
    targets: tuple[np.ndarray, ...] | None = None
    state: dict[str, np.ndarray] = field(default_factory=dict)  # stateful layers' initial state, by full name

    def input_at(self, step: int) -> np.ndarray:
        """The input of step `step` (1-based)."""
        return self.input if self.inputs is None else self.inputs[step - 1]

    def target_at(self, step: int) -> np.ndarray | None:
        return self.target if self.targets is None else self.targets[step - 1]


@dataclass
class Step:
    loss: np.ndarray                 # 0-d
    output: np.ndarray
    grads: dict[str, np.ndarray]     # every parameter, and "input"
    params: dict[str, np.ndarray] = field(default_factory=dict)  # after this step's update (empty: no optimizer)
    # Optional, from a reference: the size of the terms a scalar was summed from ("loss", "output"),
    # so that a result that is small by cancellation is judged against the terms, not itself.
    magnitude: dict[str, float] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)  # running statistics after this step, by full name


@dataclass
class Trace:
    steps: list[Step]


@dataclass
class LayerTrace:
    """The first step layer by layer, from the optional `trace_layers(case, initial) -> LayerTrace`
    (harness.localise): each layer's output and the loss's gradient with respect to it, by layer name, as
    NumPy arrays in the canonical layout. A layer whose output gradient a framework does not expose may be
    left out of `output_grads`."""
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    output_grads: dict[str, np.ndarray] = field(default_factory=dict)


def traces_layers(adapter) -> bool:
    """Whether an adapter implements the optional `trace_layers` (harness.localise)."""
    return callable(getattr(adapter, "trace_layers", None))


@runtime_checkable
class Adapter(Protocol):
    name: str  # "numpy", "torch", ...

    def missing(self) -> str | None:
        """Why this framework cannot run here (e.g. not installed), or None. Must not import it."""

    def version(self) -> str:
        """The framework's version (may import it)."""

    def run(self, case, initial: Initial) -> Trace:
        """Run `case.steps` steps; raise `Unsupported(reason)` for a case it cannot express faithfully.
        Optional: `known_divergences(case) -> {id: gist}`, the docs/divergences.md entries whose
        conditions the case meets (named on its failures); for a reference, `run_rounded` (rounds_off);
        `script(case) -> str`, the case as standalone framework code for `gradconf repro` (harness/repro.py);
        `trace_layers(case, initial) -> LayerTrace`, step 1 layer by layer (harness/localise.py)."""


class Rounding:
    """What a conditioning run rounds, in place, in a reference that implements `run_rounded` (README,
    Tolerance policy; tolerance.RoundedLayers, StoredInDtype, ExactZeros). This base rounds nothing.
    `output(a, layer, terms=None)`: each layer's output (a flatten's is a view of its input: not called);
    where `wants_terms`, a layer that accumulates (conv, dense) also gets `terms`, the sum of the absolute
    values of the terms each output element adds up. `before_bias(a)`: such a layer's output before its
    bias; `softmax(a)`: cross-entropy's softmax sum and probabilities; `normalised(a)`: a norm layer's x̂,
    which its backward reads; `gradient(a)`: each gradient the
    backward pass stores; `param(a)`: each updated parameter. `splits_bias`: the reference computes a biased
    layer's output as (x − b) + b to offer `before_bias` its value; False for a rounding that only looks
    (ExactZeros), whose run must give the reference's own numbers to the last bit."""
    wants_terms = False
    splits_bias = True

    def output(self, a: np.ndarray, layer, terms: np.ndarray | None = None) -> None:
        pass

    def before_bias(self, a: np.ndarray) -> None:
        pass

    def softmax(self, a: np.ndarray) -> None:
        pass

    def normalised(self, a: np.ndarray) -> None:
        pass

    def gradient(self, a: np.ndarray) -> None:
        pass

    def param(self, a: np.ndarray) -> None:
        pass


def rounds_off(reference) -> bool:
    """Whether a reference implements the optional `run_rounded(case, initial, rounding: Rounding) -> Trace`:
    the conditioning runs then round its intermediate results; without it they are measured from perturbed
    initial tensors alone."""
    return callable(getattr(reference, "run_rounded", None))


@runtime_checkable
class PreciseReference(Protocol):
    """A reference that can also run a case in higher precision than float64 (the NumPy reference, in
    np.longdouble): harness.blame's recheck, before a framework is blamed on the reference's word alone."""

    def run_precise(self, case, initial: Initial) -> Trace:
        """The reference's own computation, every array in the higher precision."""


@dataclass(frozen=True)
class Tables:
    """One framework's functions, keyed by vocabulary name: a layer's `f(L, xs, p) -> y` (xs: its input
    tensors, p: its parameters by kind, "weight" / "bias"), a loss's `f(y, target) -> loss`, an
    optimizer's `f(opt, ...)`, whatever the framework's run loop passes it."""
    framework: str
    layers: dict[str, Callable]
    losses: dict[str, Callable]
    optimizers: dict[str, Callable]

    def check(self, case) -> None:
        """Unsupported, naming each entry of `case` this framework has no function for."""
        lacking = [f"layer `{L.type}` ({L.name})" for L in case.layers if L.type not in self.layers]
        if case.loss.kind not in self.losses:
            lacking.append(f"loss `{case.loss.kind}`")
        if case.optimizer is not None and case.optimizer.kind not in self.optimizers:
            lacking.append(f"optimizer `{case.optimizer.kind}`")
        if lacking:
            raise Unsupported(f"{self.framework} has no function for {', '.join(lacking)}")


def own_params(L, params: dict, states: dict | None = None) -> dict:
    """The layer's parameters by kind ("weight", "bias"), from the case's by full name; with `states`, its
    state too ("running_mean", "running_var")."""
    own = {p.name.rsplit(".", 1)[1]: params[p.name] for p in L.params if p.name in params}
    return own if not states else {**own, **{s.name.rsplit(".", 1)[1]: states[s.name] for s in L.state}}


def run_layers(case, layers: dict[str, Callable], x, params: dict, keep: dict | None = None, *,
               states: dict | None = None):
    """The model's output (the last layer's): each layer's function from `layers`, in order, on the tensors
    of any framework, fed the outputs its `from:` names (SPEC §1.8; `input` is `x`). `params` by full name
    ("conv.weight"). `keep`, if given, receives every layer's output by name (`trace_layers`). `states` (by
    full name) is the stateful layers' (batch-norm running statistics): a layer's function gets its own in `p`
    and replaces it there (`p["running_mean"] = ...`), and this writes it back."""
    outputs, y = {"input": x}, x
    for L, names in zip(case.layers, case.graph):
        p = own_params(L, params, states)
        y = outputs[L.name] = layers[L.type](L, [outputs[n] for n in names], p)
        for s in L.state if states is not None else ():
            states[s.name] = p[s.name.rsplit(".", 1)[1]]
        if keep is not None:
            keep[L.name] = y
    return y


# The thread policy (README, "Threads"): one thread per framework per worker. Measured
# (benchmarks/bench_threads.py): a second thread makes every bundled case slower, whatever the
# framework — a pool's threads meet after every small op, and on a busy machine a late core stalls
# them all — so only a case whose largest layer takes this many multiply-adds gets the worker's share.
LARGE_CASE_MACS = 1 << 24
case_macs = vocab.case_macs


def threads_for(case) -> int:
    """The threads a framework runs `case` on: 1, or for a large case the worker's share of the cores."""
    return (threads.thread_limit() or threads.usable_cores()) if case_macs(case) >= LARGE_CASE_MACS else 1
