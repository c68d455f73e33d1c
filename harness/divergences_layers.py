"""Catalogue entries of the activations and pools (SPEC §1.9), each measured and described, with its source, in
docs/divergences.md (tests/test_activations.py and tests/test_keras_adapter.py show them on the frameworks);
harness.divergences adds them.

Each shows wherever its layer meets its dtype and option, except TF-GELU-TANH-CONST32 (non-strict: the data decide
whether its 1.5e-9·x³ clears float64's rounding) and one the given numbers decide:
JAX-LEAKY-RELU-KINK needs an exact 0 at a leaky_relu's input, which the case fixes only where that layer
reads the network input as given (a literal holding a 0, or `zeros`); a 0 computed from integer-valued data
may or may not be exact, and is named as a hint only.
"""
from __future__ import annotations

import numpy as np

from .case import Case, graph
from .fields import same_padding
from .hardware import Platform

SHOWS, MAY = "shows", "may"
NONNEGATIVE = ("relu", "sigmoid", "softplus", "softmax")  # a layer after these sees no negative input


def _f32_inexact(x: float) -> bool:
    return x != float(np.float32(x))


def _inputs(case: Case, i: int) -> tuple:
    """The types of layer i's inputs ("input": the network input), along the case's graph (SPEC §1.8)."""
    types = {L.name: L.type for L in case.layers}
    return tuple(types.get(name, "input") for name in graph(case.layers)[i])


def _read(case: Case) -> set:
    """The layers the output depends on: a layer no later layer reads (a graph's dead end) cannot show anything."""
    g, live = graph(case.layers), {case.layers[-1].name}
    for L, srcs in zip(reversed(case.layers), reversed(g)):
        if L.name in live:
            live.update(srcs)
    return live


def _gelus(case: Case, form: str) -> list:
    live = _read(case)
    return [L for L in case.layers if L.type == "gelu" and L.approximate == form and L.name in live] \
        if case.dtype == "float64" else []


def _tf_gelu32(case: Case, p: Platform):
    exact = _gelus(case, "none")
    if not exact:
        return None, "no float64 gelu of the exact form"
    return SHOWS, f"gelu {exact[0].name} in float64: its constant √½ is taken through float32 (2e-8 relative)"


def _tf_gelu_tanh32(case: Case, p: Platform):
    if _gelus(case, "none"):
        return None, "an exact-form gelu: TF-GELU-CONST32 shows anyway"
    tanh = _gelus(case, "tanh")
    if not tanh:
        return None, "no float64 gelu of the tanh form"
    return SHOWS, f"gelu {tanh[0].name} in float64: its constant 0.044715 is taken through float32"


def _tf_leaky32(case: Case, p: Platform):
    if case.dtype != "float64":
        return None, "not float64"
    live = _read(case)
    for i, L in enumerate(case.layers):
        if L.type == "leaky_relu" and L.name in live and _f32_inexact(L.negative_slope) and \
                not set(_inputs(case, i)) <= set(NONNEGATIVE):
            return SHOWS, f"leaky_relu {L.name}: negative_slope {L.negative_slope} is not a float32 number (float64)"
    return None, "no float64 leaky_relu the output reads, with a slope float32 cannot hold and negative inputs"


def _given_zero(case: Case) -> bool:
    spec = case.input
    if spec.values is not None:
        return bool(np.any(spec.values == 0))
    return spec.init == "zeros"


def _jax_leaky_kink(case: Case, p: Platform):
    leaky = [i for i, L in enumerate(case.layers) if L.type == "leaky_relu" and L.negative_slope != 1.0]
    if not leaky:
        return None, "no leaky_relu"
    reads_input = [i for i in leaky if "input" in _inputs(case, i)]
    if reads_input and _given_zero(case):
        return SHOWS, f"leaky_relu {case.layers[reads_input[0]].name} reads an input holding exact zeros"
    integers = case.input.values is not None or case.input.init in ("randint", "arange", "zeros", "ones")
    if integers:
        return MAY, "leaky_relu after layers of given numbers: a computed 0 may be exact"
    return None, "no exact 0 reaches a leaky_relu from random real-valued data"


def _keras_torch_avg_same(case: Case, p: Platform):
    """Keras' torch backend pads an uneven "same" pool (on any axis) by replicating the edge cells, on every axis,
    then averages with padding 0: a window holding padding weighs its edge cell as often as it is repeated. Along
    an axis of kernel 2 that window is the edge cell alone (its mean is its own); kernel 3+ mixes cells unevenly."""
    for L in case.layers:
        if L.type != "avg_pool2d" or L.count_include_pad or L.extra != (0, 0):  # extra cells: composed, no "same"
            continue
        same = tuple(same_padding(L.in_shape[2 + i], L.kernel_size[i], L.stride[i], 1) for i in range(2))
        if tuple(map(tuple, L.padding)) != same or all(a == b for a, b in same):
            continue
        mixed = [i for i in range(2) if L.kernel_size[i] >= 3 and sum(same[i])]
        if mixed:
            return SHOWS, (f"avg_pool2d {L.name}: padding {[list(s) for s in same]} excluded is Keras' uneven \"same\", "
                           f"which Keras' torch backend fills with copies of the edge cells and averages in (kernel "
                           f"{list(L.kernel_size)})")
    return None, "no avg_pool2d excluding an uneven Keras \"same\" padding along a kernel of 3+"


# Keras 3 calls the same functions on its backends (keras/src/backend/tensorflow/nn.py: tf.nn.gelu,
# tf.nn.leaky_relu; jax/nn.py: jax.nn.leaky_relu), so each shows on the keras-* row of that backend too.
def entries(Entry):
    """The entries, built with harness.divergences.Entry (passed in: that module imports this one)."""
    return [
        Entry("TF-GELU-CONST32", ("tensorflow", "keras-tensorflow"), "tf.nn.gelu(approximate=False) takes its constant √½ through float32 "
              "in float64", _tf_gelu32),
        Entry("TF-GELU-TANH-CONST32", ("tensorflow", "keras-tensorflow"), "tf.nn.gelu(approximate=True) takes its constant 0.044715 through "
              "float32 in float64", _tf_gelu_tanh32, strict=False,
              not_strict_because="the error is 1.5e-9·x³ in the cubic term: it clears float64's rounding only where the "
                                 "gelu's inputs are large enough, which the data decide"),
        Entry("TF-LEAKY-ALPHA32", ("tensorflow", "keras-tensorflow"), "tf.nn.leaky_relu's alpha is a float32 op attribute, so a float64 "
              "slope such as 0.01 is rounded to float32", _tf_leaky32, strict=False,
              not_strict_because="the rounded slope reaches the output only through negative inputs that the rest of "
                                 "the net passes on: a max pool whose windows each hold a positive cell drops them all, "
                                 "which the data decide (graph_vocab[778])"),
        Entry("JAX-LEAKY-RELU-KINK", ("jax", "keras-jax"), "jax.nn.leaky_relu is where(x >= 0, x, slope·x): its derivative at 0 "
              "is 1, PyTorch's (and TF's) the slope", _jax_leaky_kink),
        Entry("KERAS-TORCH-AVGPOOL-SAME", ("keras-torch",), "Keras' AveragePooling2D(padding=\"same\") on torch pads "
              "an uneven padding with replicated edge cells and averages them in", _keras_torch_avg_same),
    ]
