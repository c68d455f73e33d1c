"""The divergence catalogue is tied to the cases: every xfail cites it, and each divergence is real."""
import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_file, load_paths
from gradconf.divergences import cited_ids, expectation, known
from gradconf.hardware import detect
from gradconf.runner import Runner
from tests.conftest import ROOT
from tests.test_hardware import measured_cpu

CATALOGUE = open(os.path.join(ROOT, "docs", "divergences.md")).read()
IDS = set(re.findall(r"^\| ([A-Z0-9-]+) \|", CATALOGUE, re.M))


def _skip_where_tensorflow_cannot_run(case):
    """A bfloat16 case where the detected platform leaves TensorFlow no bfloat16 kernels (the adapter
    reports it `unsupported`, harness.hardware.Platform.tf_bfloat16_blocked)."""
    blocked = detect().tf_bfloat16_blocked() if case.dtype == "bfloat16" else None
    if blocked:
        pytest.skip(blocked)


def _onednn_case():
    return load_file(os.path.join(ROOT, "cases", "divergences", "tf_onednn_single_channel_conv.yaml"))[0]


def test_every_bundled_xfail_cites_a_catalogue_id():
    cases, _ = load_paths([os.path.join(ROOT, "cases")], 2)
    marked = [(c.id, fw, why) for c in cases for fw, why in c.xfail.items()]
    assert marked
    for case_id, fw, why in marked:
        cited = set(re.findall(r"\b[A-Z]+-[A-Z0-9-]+\b", why))
        assert cited and cited <= IDS, (case_id, fw, why)


def test_adapters_name_the_divergences_that_bundled_xfail_marks_cite():
    """An adapter's `known_divergences(case)` (the hint on a failure nobody marked) agrees with the
    catalogue and with the marks: every cited id is named for its case, and every named id is real."""
    from gradconf import adapters
    cases, _ = load_paths([os.path.join(ROOT, "cases")], 12)
    named, per_mark = set(), {}  # a free-text mark cites what any variant may show: compare the union
    for case in cases:
        for fw in ("torch", "tensorflow", "jax", "keras-tensorflow", "keras-jax", "keras-torch"):
            ids = set(adapters.builtin(fw).known_divergences(case))
            named |= ids
            if fw in case.xfail and cited_ids(case.xfail[fw]) is None:
                per_mark.setdefault((case.family or case.id, fw, case.xfail[fw]), set()).update(ids)
            elif fw in case.xfail and expectation(case, fw).applies:  # an id mark: where it applies, it is named
                shown = {i for i in cited_ids(case.xfail[fw]) if i in expectation(case, fw).why}
                assert shown and shown <= ids, (case.id, fw, shown, ids)
    assert per_mark
    for (name, fw, why), ids in per_mark.items():
        assert set(re.findall(r"\b[A-Z]+-[A-Z0-9-]+\b", why)) <= ids, (name, fw, ids)
    platform_dependent = {"TF-ONEDNN-1CH"} - set(known("tensorflow", _onednn_case()))  # absent where its path is
    assert named <= IDS and {"TF-ADAM-EPS", "TF-HYPER32", "TF-WD", "TF-ADAM-BF16", "HALF-ADAM", "TF-ONEDNN-1CH",
                             "TF-BF16-BIASADD", "JAX-BF16-BCAST-GRAD"} - platform_dependent <= named
    (plain,) = load_file(os.path.join(ROOT, "cases", "examples", "sum_3x3.yaml"))  # float64 SGD, no momentum
    assert adapters.builtin("tensorflow").known_divergences(plain) == {}


def test_catalogue_lists_its_ids():
    assert {"TF-ADAM-EPS", "TF-HYPER32", "TF-WD", "TF-LR32", "TF-ADAM-BF16", "HALF-ADAM", "TF-ONEDNN-1CH",
            "TF-BF16-BIASADD", "JAX-BF16-BCAST-GRAD"} <= IDS
    for path in re.findall(r"`(cases/[^`*]+\.yaml)`", CATALOGUE):
        assert os.path.exists(os.path.join(ROOT, path)), path


@pytest.mark.parametrize("name", ["tf_adam_eps_tiny_gradients", "tf_adam_weight_decay", "tf_momentum_float64",
                                  "tf_weight_decay_float64", "tf_adam_bfloat16", "half_adam_underflow",
                                  "tf_onednn_single_channel_conv", "tf_bfloat16_bias_gradient",
                                  "tf_batch_norm_biased_variance"])
def test_unmarked_divergence_is_a_failure(name):
    tf_adapter = pytest.importorskip("gradconf.adapters.tensorflow_adapter")
    pytest.importorskip("tensorflow")
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", f"{name}.yaml"))
    _skip_where_tensorflow_cannot_run(case)
    runner = Runner(NumpyReference(), [tf_adapter.TensorflowAdapter()])
    marked = {r.status for r in runner.run_case(case).records if r.framework == "tensorflow"}
    unmarked = {r.status for r in runner.run_case(dataclasses.replace(case, xfail={})).records
                if r.framework == "tensorflow"}
    expected = expectation(case, "tensorflow")
    if not expected.applies:  # a hardware-dependent entry on a machine where its code path does not run
        assert marked == unmarked == {"pass"}, expected.why
        return
    if not expected.strict and not measured_cpu():  # it may or may not show here; either is a passing run
        assert marked <= {"pass", "xfail"}
        return
    assert "xfail" in marked and "fail" not in marked
    assert "fail" in unmarked


@pytest.mark.parametrize("name", ["tf_adam_eps_tiny_gradients", "tf_adam_weight_decay", "tf_momentum_float64",
                                  "tf_weight_decay_float64", "tf_adam_bfloat16", "tf_onednn_single_channel_conv",
                                  "tf_bfloat16_bias_gradient", "tf_batch_norm_biased_variance"])
def test_torch_conforms_on_the_divergence_cases(name):
    torch_adapter = pytest.importorskip("gradconf.adapters.torch_adapter")
    pytest.importorskip("torch")
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", f"{name}.yaml"))
    records = Runner(NumpyReference(), [torch_adapter.TorchAdapter()]).run_case(case).records
    assert {r.status for r in records} == {"pass"}


def test_tf_lr32_is_real_and_avoided():
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")

    def step(floatx):
        previous = keras.config.floatx()
        keras.config.set_floatx(floatx)
        try:
            opt = keras.optimizers.SGD(learning_rate=0.01)
        finally:
            keras.config.set_floatx(previous)
        v = tf.Variable(np.array([1.0]))
        opt.apply_gradients([(tf.constant([96.0], tf.float64), v)])
        return v.numpy()[0]

    assert step("float32") != 1.0 - 0.01 * 96  # 0.0400000214576721 with a float32 learning rate
    assert abs(step("float32") - 0.04) > 1e-8
    assert step("float64") == 1.0 - 0.01 * 96  # the adapter's configuration: exact


def test_half_adam_diverges_in_torch_too():
    torch_adapter = pytest.importorskip("gradconf.adapters.torch_adapter")
    pytest.importorskip("torch")
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", "half_adam_underflow.yaml"))
    runner = Runner(NumpyReference(), [torch_adapter.TorchAdapter()])
    unmarked = [r for r in runner.run_case(dataclasses.replace(case, xfail={})).records if r.framework == "torch"]
    assert any(r.status == "fail" and r.quantity == "param" for r in unmarked)


def test_tf_strided_1x1_conv_whose_input_runs_past_the_last_window_runs_clean(tmp_path):
    """TF 2.21's CPU filter gradient of a strided 1x1 conv corrupts the heap when some input columns
    are read by no window; the adapter crops them. Run in a child process with glibc's heap checks on,
    so that a regression is a clean test failure, not a crashed test session."""
    pytest.importorskip("tensorflow")
    env = {**os.environ, "MALLOC_CHECK_": "3"}
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/layers/strided_1x1_conv_f32.yaml",
                        "--frameworks", "tensorflow", "--out", str(tmp_path), "-q"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])


def test_the_adapter_adds_a_bias_as_keras_does_and_gets_keras_bias_gradients():
    """Keras 3 adds a layer's bias with tf.nn.bias_add, whose gradient of 4096 ones stalls at 256 in
    bfloat16 (TF-BF16-BIASADD) and is exact in float16; a broadcast `y + b` would do the opposite
    (2048 in float16, where 2048 + 1 rounds back to 2048). The adapter must match Keras in both."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from gradconf.adapters import tensorflow_adapter
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", "tf_bfloat16_bias_gradient.yaml"))
    _skip_where_tensorflow_cannot_run(case)
    conv = case.layers[0]

    def bias_grads(dtype):
        layer = keras.layers.Conv2D(2, 1, dtype=dtype)
        ones = tf.ones((1, 64, 64, 1), dtype)
        b = tf.Variable(tf.zeros([2], dtype))
        w = tf.ones((1, 1, 1, 2), dtype)
        with tf.GradientTape(persistent=True) as tape:
            y_keras = layer(ones)
            y_adapter = tensorflow_adapter.LAYERS["conv2d"](conv, [ones], {"weight": w, "bias": b})
            y_broadcast = ones * w + b
        return [float(tape.gradient(y, v)[0]) for y, v in
                ((y_keras, layer.bias), (y_adapter, b), (y_broadcast, b))]

    assert bias_grads("bfloat16") == [256.0, 256.0, 4096.0]
    assert bias_grads("float16") == [4096.0, 4096.0, 2048.0]


def test_family_marks_are_catalogue_ids_that_apply_per_variant():
    """No family is marked as a whole: each marked family has variants its ids apply to and variants, of the
    same framework, that are compared as any other. The one exception is Keras' float64 → float32 promotion
    on jax / torch (KERAS-*-X64), a property of the backend that every float64 variant with a Keras loss
    has: there the strict ids must still apply per variant, and the X64 entry is non-strict (a pass passes)."""
    from gradconf.divergences import CATALOGUE
    cases, _ = load_paths([os.path.join(ROOT, "cases", "families")], None)
    applied = {}
    for case in cases:
        for fw in case.xfail:
            ids = cited_ids(case.xfail[fw])
            assert ids, (case.id, case.xfail[fw])  # ids, not free text (which applies always)
            strict = [i for i in ids if not i.endswith("-X64")]
            if len(strict) < len(ids) and strict:  # the X64 id aside: the strict ones apply per variant
                assert not CATALOGUE[ids[-1]].strict
                case = dataclasses.replace(case, xfail={**case.xfail, fw: ", ".join(strict)})
            elif not strict:
                continue
            applied.setdefault((case.family, fw), set()).add(expectation(case, fw).applies)
    assert len(applied) >= 3 and all(v == {True, False} for v in applied.values()), applied


def test_an_unknown_catalogue_id_is_an_invalid_case():
    from gradconf.errors import CaseError
    from tests.conftest import make_case
    base = dict(input=[[[[1.0]]]], model=[{"sum": {}}], loss={"sum": {}})
    with pytest.raises(CaseError, match=r"xfail.tensorflow: unknown divergence id\(s\) TF-NOPE"):
        make_case(**base, xfail={"tensorflow": "TF-ADAM-EPS, TF-NOPE"})
    assert make_case(**base, xfail={"tensorflow": "TF-NOPE: a free-text reason"}).xfail  # free text: applies always
    case = make_case(**base, xfail={"tensorflow": "TF-ADAM-EPS"})  # no Adam here: the mark does not apply
    assert not expectation(case, "tensorflow").applies
