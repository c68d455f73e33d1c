"""The Keras 3 frameworks (adapters/keras_adapter.py): each backend in its own worker process, Keras' layers
conforming, a planted bug in a Keras layer caught, a dead worker an `error` and the next run a fresh one,
and what Keras cannot express `unsupported` with the reason."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gradconf import adapters
from gradconf.loader import load_file
from gradconf.runner import Runner
from tests.conftest import ROOT, make_case

pytest.importorskip("keras")
BACKENDS = [b for b in ("tensorflow", "jax", "torch") if not adapters.builtin(f"keras-{b}").missing()]


def _statuses(records, framework):
    return {r.status for r in records if r.framework == framework}


def test_each_backend_is_a_framework_of_its_own():
    assert {"keras-tensorflow", "keras-jax", "keras-torch"} <= set(adapters.known_names())
    for b in ("tensorflow", "jax", "torch"):
        assert adapters.builtin(f"keras-{b}").name == f"keras-{b}"


def test_every_backend_runs_in_its_own_process_and_conforms():
    """One case (a padded conv, relu, flatten, dense) on every installed backend: three worker processes,
    each on the backend it names, none of them this one, and every comparison passes."""
    from gradconf.adapters.numpy_ref import NumpyReference
    (case,) = load_file(os.path.join(ROOT, "cases", "layers", "per_side_padding_f32.yaml"))
    chosen = [adapters.builtin(f"keras-{b}") for b in BACKENDS]
    try:
        records = Runner(NumpyReference(), chosen).run_case(case).records
        pids = {a.name: a._worker.process.pid for a in chosen}
        for a in chosen:
            assert _statuses(records, a.name) == {"pass"}, [r for r in records if r.framework == a.name]
            assert a.backend in a.version()
            assert os.getpgid(pids[a.name]) == os.getpgid(0)  # gradconf's time limit kills the group: it goes too
        assert len(set(pids.values())) == len(chosen) and os.getpid() not in pids.values()
    finally:
        for a in chosen:
            a.close()


class _Abort:
    """Unpickled in the worker, it aborts it: a crash in native code, in the middle of a run."""
    def __reduce__(self):
        return os.abort, ()


def test_a_dead_worker_is_that_runs_error_and_the_next_run_starts_a_fresh_one():
    from gradconf.adapters.numpy_ref import NumpyReference
    adapter = adapters.builtin(f"keras-{BACKENDS[-1]}")
    (case,) = load_file(os.path.join(ROOT, "cases", "layers", "sum_layer_f32.yaml"))
    runner = Runner(NumpyReference(), [adapter])
    try:
        with pytest.raises(RuntimeError, match=r"worker process died \(killed by SIGABRT\) during this run"):
            adapter.run(case, _Abort())
        again = [r for r in runner.run_case(case).records if r.framework == adapter.name]
        assert {r.status for r in again} == {"pass"}, [r.message for r in again]
        first = adapter._worker.process.pid
        os.kill(first, signal.SIGKILL)  # between runs: the next run starts a fresh worker, and is not lost
        adapter._worker.process.wait()
        assert {r.status for r in runner.run_case(case).records if r.framework == adapter.name} == {"pass"}
        assert adapter._worker.process.pid != first
    finally:
        adapter.close()


def test_what_keras_cannot_express_is_unsupported_with_the_reason():
    from gradconf.errors import Unsupported
    adapter = adapters.builtin("keras-torch")
    grouped = make_case(input={"shape": [1, 4, 3, 3]}, model=[{"conv_transpose2d": {
        "name": "up", "out_channels": 2, "kernel_size": 2, "groups": 2}}], loss={"sum": {}})
    from gradconf.tensors import materialize
    try:
        with pytest.raises(Unsupported, match=r"Conv2DTranspose has no `groups` \(up: groups 2\)"):
            adapter.run(grouped, materialize(grouped))
    finally:
        adapter.close()


# A Keras porting bug, planted in the worker's table: Flatten on channels_last features without the Permute
# back to channels first (the features come out in HWC order, not the canonical CHW).
_PLANT = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
from gradconf.adapters import keras_layers, keras_worker
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_file
from gradconf.runner import Runner
if sys.argv[2] == "planted":
    keras_layers.LAYERS["flatten"] = lambda L, xs, p: __import__("keras").layers.Flatten()(xs[0])
class InProcess:
    name, missing, version = "keras-" + sys.argv[1], lambda self: None, lambda self: "in process"
    def run(self, case, initial):
        return keras_worker.run(sys.argv[1], case, initial)
(case,) = load_file("cases/layers/dense_after_flatten_f32.yaml")
records = Runner(NumpyReference(), [InProcess()]).run_case(case).records
print(sorted({str(r.status) for r in records if r.framework.startswith("keras")}))
print(max((r.ratio or 0) for r in records if r.framework.startswith("keras") and r.ratio == r.ratio))
"""


def _script_output(script: str, backend: str, mode: str) -> str:
    """stdout of `script` run as `python -c script BACKEND MODE` (a fresh process: Keras fixes its backend at import)."""
    p = subprocess.run([sys.executable, "-c", script, backend, mode], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bug_planted_in_a_keras_layer_is_caught(backend):
    def run(mode):
        statuses, worst = _script_output(_PLANT, backend, mode).strip().splitlines()[-2:]
        return statuses, float(worst)
    assert run("clean")[0] == "['pass']"
    statuses, worst = run("planted")
    assert "fail" in statuses and worst > 1e3, (statuses, worst)


# Keras' BatchNormalization momentum weighs the old value, 1 − PyTorch's: the worker's mapping, checked on
# the running mean after one step (the running variance is Keras' biased one, TF-BN-BIASED-VAR); planted:
# the case's momentum passed through as Keras' (a porter's slip).
_BN = """
import dataclasses, os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
import numpy as np
from gradconf.adapters import keras_layers, keras_more, keras_worker
from gradconf.tensors import materialize
from tests.conftest import make_case
if sys.argv[2] == "planted":
    keras_layers.LAYERS["batch_norm2d"] = lambda L, xs, p: keras_more.batch_norm2d(
        dataclasses.replace(L, momentum=1.0 - L.momentum), xs, p)
x = np.arange(16.0).reshape(2, 2, 2, 2) ** 1.5 / 10
case = make_case(input=x.tolist(), model=[{"batch_norm2d": {"name": "bn", "momentum": 0.25,
                 "running_mean": [1.0, -1.0], "running_var": [2.0, 0.5]}}], loss={"sum": {}})
state = keras_worker.run(sys.argv[1], case, materialize(case)).steps[0].state
mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # biased: Keras' moving variance takes it
print(np.abs(state["bn.running_mean"] - (0.75 * np.array([1.0, -1.0]) + 0.25 * mean)).max(),
      np.abs(state["bn.running_var"] - (0.75 * np.array([2.0, 0.5]) + 0.25 * var)).max())
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_batch_norm_momentum_is_one_minus_torchs(backend):
    def run(mode):
        return [float(v) for v in _script_output(_BN, backend, mode).split()[-2:]]
    assert max(run("clean")) < 1e-5
    assert min(run("planted")) > 0.1


def _run_on_keras(case, backends=BACKENDS):
    from gradconf.adapters.numpy_ref import NumpyReference
    chosen = [adapters.builtin(f"keras-{b}") for b in backends]
    try:
        return Runner(NumpyReference(), chosen).run_case(case).records
    finally:
        for a in chosen:
            a.close()


_CONV = {"name": "c", "out_channels": 2, "kernel_size": 3, "padding": [[1, 2], [2, 1]]}


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_a_conv_pads_in_its_padding_mode(mode):
    """Keras' Conv2D pads with zeros only: the adapter gathers the mode's cells first (it had zero-padded:
    conv_padding_modes failed on every backend)."""
    case = make_case(dtype="float64", input={"shape": [1, 2, 4, 5], "init": "normal"},
                     model=[{"conv2d": {**_CONV, "padding_mode": mode}}], loss={"grad_output": {"value": {"init": "normal"}}})
    records = _run_on_keras(case)
    for b in BACKENDS:
        assert _statuses(records, f"keras-{b}") == {"pass"}, [r.message for r in records if r.status != "pass"]


@pytest.mark.parametrize("dtype, deconv", [
    ("float32", {"kernel_size": 1, "stride": 2}),  # k < s: Keras' "valid" alone is (i - 1)·s + s long
    ("float32", {"kernel_size": 2, "stride": 3, "padding": [[0, 1], [1, 0]], "output_padding": [1, 2]}),
])
def test_a_transposed_conv_has_pytorchs_geometry(dtype, deconv):
    case = make_case(dtype=dtype, input={"shape": [2, 2, 3, 4], "init": "normal"},
                     model=[{"conv_transpose2d": {"name": "up", "out_channels": 2, **deconv}}],
                     loss={"grad_output": {"value": {"init": "normal"}}})
    records = _run_on_keras(case)
    for b in BACKENDS:
        assert _statuses(records, f"keras-{b}") == {"pass"}, [r.message for r in records if r.status != "pass"]


def test_a_layer_gets_its_input_in_its_dtype_as_keras_call_casts_it():
    """On jax Keras' float64 tanh returns float32 (KERAS-JAX-X64); a Keras model's next layer casts it back in
    `__call__`, which stateless_call skips: the adapter casts (lax.conv had refused the float32/float64 mix)."""
    case = make_case(dtype="float64", input={"shape": [1, 2, 4, 3], "init": "normal"},
                     model=[{"tanh": {"name": "a"}}, {"conv_transpose2d": {"name": "up", "out_channels": 2,
                                                                            "kernel_size": 3, "padding": 1}}],
                     loss={"grad_output": {"value": {"init": "normal"}}})  # unmarked: a mark makes an error xfail
    records = _run_on_keras(case)
    for b in BACKENDS:  # jax: float32 rounding (KERAS-JAX-X64) may fail a comparison; none may be an error
        allowed = {"pass", "fail"} if b == "jax" else {"pass"}
        assert _statuses(records, f"keras-{b}") <= allowed, [r.message for r in records if r.status != "pass"]


def test_a_dilated_transposed_conv_is_unsupported_on_keras_tensorflow_with_the_reason():
    from gradconf.errors import Unsupported
    from gradconf.tensors import materialize
    if "tensorflow" not in BACKENDS:
        pytest.skip("no TensorFlow")
    adapter = adapters.builtin("keras-tensorflow")
    case = make_case(input={"shape": [1, 1, 3, 3], "init": "normal"}, loss={"sum": {}},
                     model=[{"conv_transpose2d": {"name": "up", "out_channels": 1, "kernel_size": 2, "dilation": 2}}])
    try:
        with pytest.raises(Unsupported, match=r"dilation_rate > 1 on CPU .*up: dilation \[2, 2\]"):
            adapter.run(case, materialize(case))
    finally:
        adapter.close()


def test_keras_torch_averages_copies_of_the_edge_into_an_uneven_same_pool():
    """KERAS-TORCH-AVGPOOL-SAME: marked, keras-torch's mismatch is an xfail; unmarked, a failure; the other
    backends exclude the padding and pass."""
    import dataclasses
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", "keras_torch_avg_pool_same.yaml"))
    records = _run_on_keras(case)
    for b in set(BACKENDS) - {"torch"}:
        assert _statuses(records, f"keras-{b}") == {"pass"}, [r.message for r in records if r.framework == f"keras-{b}"]
    if "torch" not in BACKENDS:
        return
    assert _statuses(records, "keras-torch") == {"xfail"}, [r.message for r in records if r.framework == "keras-torch"]
    unmarked = _run_on_keras(dataclasses.replace(case, xfail={}), ["torch"])
    assert "fail" in _statuses(unmarked, "keras-torch")


def test_the_uneven_same_pool_divergence_names_a_ceil_mode_pool_without_extra_cells():
    """With ceil_mode but no clipped window (Keras' "same" padding never leaves one), the Keras rows pool with
    Keras' own "same": the divergence's conditions must say it shows there (they skipped every ceil_mode pool
    while Keras refused one)."""
    from gradconf.divergences_layers import SHOWS, _keras_torch_avg_same
    pool = {"name": "pool", "kernel_size": 3, "stride": 2, "padding": [[0, 1], [0, 1]], "count_include_pad": False,
            "ceil_mode": True}
    same = make_case(input={"shape": [1, 1, 4, 4], "init": "normal"}, model=[{"avg_pool2d": pool}], loss={"sum": {}})
    assert same.layers[0].extra == (0, 0) and _keras_torch_avg_same(same, None)[0] == SHOWS


def test_a_group_norm_of_a_conv1d_activation_groups_its_channels():
    """conv1d's activations stay NCL on the Keras rows: GroupNormalization on axis 1, not the last (it built
    gamma along the length and failed: graph_norm[2] errored on every backend)."""
    case = make_case(dtype="float32", input={"shape": [2, 4, 5], "init": "normal"},
                     model=[{"conv1d": {"name": "c", "out_channels": 4, "kernel_size": 3, "padding": 1}},
                            {"group_norm": {"name": "g", "num_groups": 2, "weight": {"init": "normal"},
                                            "bias": {"init": "normal"}}}],
                     loss={"grad_output": {"value": {"init": "normal"}}})
    records = _run_on_keras(case)
    for b in BACKENDS:
        assert _statuses(records, f"keras-{b}") == {"pass"}, [r.message for r in records if r.status != "pass"]


def _passes_on_every_backend(case, golden=False):
    """Every comparison of every installed Keras row passes (golden: some of them against `expect:`)."""
    records = _run_on_keras(case)
    for b in BACKENDS:
        mine = [r for r in records if r.framework == f"keras-{b}"]
        assert mine and {r.status for r in mine} == {"pass"}, [r.message for r in mine if r.status != "pass"]
        assert not golden or any(r.reference == "expected" for r in mine)


@pytest.mark.parametrize("name", ["maxpool_ceil_mode_drops_window", "avgpool_ceil_mode_divisor",
                                  "avgpool_ceil_mode_exclude_pad"])
def test_a_pools_ceil_mode_is_composed_on_every_backend(name):
    """Keras has no ceil_mode: the clipped windows are extra cells (−∞ for max) and a "valid" pool, an average
    divided by its counted cells. The convention cases' hand-derived values pin the window PyTorch drops and
    the divisor of a clipped window."""
    (case,) = load_file(os.path.join(ROOT, "cases", "conventions", f"{name}.yaml"))
    _passes_on_every_backend(case, golden=True)


def test_a_max_pools_ceil_mode_window_past_the_input_is_kept_on_every_backend():
    """Width 5, kernel 2, stride 2, no padding: ceil_mode keeps a third window of one real cell (an extra −∞
    cell past the input), which a plain "valid" pool drops."""
    case = make_case(dtype="float32", input=[[[[1.0, 5.0, 2.0, 4.0, 3.0]]]],
                     model=[{"max_pool2d": {"name": "p", "kernel_size": [1, 2], "ceil_mode": True}}],
                     loss={"sum": {}}, expect={"output": [[[[5.0, 4.0, 3.0]]]],
                                               "grad": {"input": [[[[0.0, 1.0, 0.0, 1.0, 1.0]]]]}})
    _passes_on_every_backend(case, golden=True)


def test_a_dilated_max_pool_routes_each_gradient_to_the_first_maximum_on_every_backend():
    """Keras' pools take no dilation: the first maximum over the strided tap slices. Ties in every window (the
    input's values repeat) pin PyTorch's rule, the first tap in row-major order, against the reference."""
    rows = [[1.0, 2.0, 1.0, 2.0, 1.0, 2.0], [2.0, 1.0, 2.0, 1.0, 2.0, 1.0]] * 3
    case = make_case(dtype="float32", input=[[rows]],
                     model=[{"max_pool2d": {"name": "p", "kernel_size": 2, "dilation": 2, "stride": 1,
                                            "padding": [[1, 0], [0, 1]], "ceil_mode": True}}],
                     loss={"mse": {"target": {"init": "normal"}}})
    _passes_on_every_backend(case)
