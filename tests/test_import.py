"""`gradconf import`: real models to cases. The round trip — the imported case run by gradconf on the source
framework — reproduces the model's own loss, output and gradients exactly; the case then runs on the others."""
import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.cli import main
from gradconf.loader import load_file
from gradconf.runner import Runner
from gradconf.tensors import materialize

torch = pytest.importorskip("torch")

MODELS = "tests.models.torch_models"
TORCH_MODELS = [("plain_residual", "2,3,6,6", ()), ("tiny_unet", "2,2,4,4", ()),
                ("basic_block", "2,3,6,6", ("batch_norm2d",))]


def _import(tmp_path, source, model, shape, *extra):
    out = tmp_path / "imported.yaml"
    assert main(["import", source, model, "--input-shape", shape, "-o", str(out), *extra]) == 0
    (case,) = load_file(str(out))
    return case, out


def _own_numbers(model, case, initial, param_names):
    """The module's own forward and backward on the case's input, with the case's loss (grad_output)."""
    x = torch.tensor(initial.input, dtype=torch.float32, requires_grad=True)
    y = model(x)
    loss = (y * torch.tensor(initial.target, dtype=torch.float32)).sum()
    loss.backward()
    grads = {name: dict(model.named_parameters())[path].grad.double().numpy() for name, path in param_names.items()}
    return loss.detach().double().numpy(), y.detach().double().numpy(), grads, x.grad.double().numpy()


@pytest.mark.parametrize("factory, shape, needs", TORCH_MODELS, ids=[m[0] for m in TORCH_MODELS])
def test_a_torch_module_round_trips_exactly_and_runs_elsewhere(tmp_path, monkeypatch, factory, shape, needs):
    missing = [n for n in needs if n not in vocab.LAYERS]
    if missing:
        pytest.skip(f"the vocabulary has no {', '.join(missing)} yet")
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    case, _ = _import(tmp_path, "torch", f"{MODELS}:{factory}", shape)
    from gradconf.adapters.torch_adapter import TorchAdapter
    from gradconf.adapters.torch_import import import_model, load_module
    model = load_module(f"{MODELS}:{factory}")
    initial = materialize(case)
    step = TorchAdapter().run(case, initial).steps[0]
    loss, y, grads, dx = _own_numbers(model, case, initial, import_model(f"{MODELS}:{factory}", None).param_names)
    assert np.array_equal(step.loss, loss) and np.array_equal(step.output, y)
    assert np.array_equal(step.grads["input"], dx)
    assert grads and all(np.array_equal(step.grads[name], g) for name, g in grads.items())
    others = [a for a in _other_frameworks()]
    records = Runner(NumpyReference(), others).run_case(case).records
    assert records and not [r for r in records if r.status not in ("pass", "xfail")], \
        [(r.framework, r.quantity, r.tensor, r.message) for r in records if r.status not in ("pass", "xfail")]


def _other_frameworks():
    out = []
    for module, cls in (("gradconf.adapters.tensorflow_adapter", "TensorflowAdapter"),
                        ("gradconf.adapters.jax_adapter", "JaxAdapter")):
        adapter = getattr(__import__(module, fromlist=[cls]), cls)()
        if adapter.missing() is None:
            out.append(adapter)
    return out


def test_every_unmappable_node_is_listed_with_its_type_and_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert main(["import", "torch", f"{MODELS}:Unmappable", "--input-shape", "2,2,2,1"]) == 2
    err = capsys.readouterr().err
    assert "2 layer(s) or op(s)" in err and "InstanceNorm2d at norm" in err and "cumsum" in err
    assert "torch_models.py:" in err and "`fc`" not in err  # what reads an unmappable node is not blamed


def test_reinit_leaves_the_parameters_to_the_case_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    case, out = _import(tmp_path, "torch", f"{MODELS}:plain_residual", "2,3,6,6", "--reinit", "--optimizer", "sgd")
    assert "weight:" not in out.read_text() and case.optimizer.kind == "sgd"
    assert [L.type for L in case.layers] == ["conv2d", "tanh", "conv2d", "relu", "conv2d", "add", "flatten", "dense"]


def test_bad_import_options_name_the_option(capsys):
    assert main(["import", "torch", "no_such_module:f", "--input-shape", "2,3"]) == 2
    assert "MODEL" in capsys.readouterr().err
    assert main(["import", "torch", "x:f", "--input-shape", "2,0,3"]) == 2
    assert "--input-shape" in capsys.readouterr().err


# (factory, input shape, exact forward): a Flatten of an image before a Dense sums the Dense's terms in Keras'
# (h, w, c) order where the case has (c, h, w): the output and loss then agree to the reordered sum's rounding.
KERAS_MODELS = [("sequential_cnn", "2,2,8,8", False), ("functional_residual", "2,3,6,6", False),
                ("gap_head", "2,3,5,5", True)]

# Run in a fresh process with gradconf's thread policy for Keras (keras_worker._import_backend: one thread, as
# the keras-tensorflow adapter's worker runs): the Keras model's own loss, output and gradients, and the imported
# case run by the keras-tensorflow adapter's own code (keras_worker.run), each difference in ulps of the largest
# |value|, every gradient in the case's layout by the importer's own rules (tf_layout, _flatten_order).
_KERAS_ROUND_TRIP = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np
from gradconf.adapters import keras_worker
keras_worker._import_backend("tensorflow")
import tensorflow as tf
from gradconf.adapters.keras_import import _flatten_order, import_model, load_model
from gradconf.adapters.tf_layout import from_tf_layout
from gradconf.cli import main
from gradconf.loader import load_file
from gradconf.tensors import materialize
spec, shape, out = sys.argv[1:4]
assert main(["import", "keras", spec, "--input-shape", shape, "-o", out]) == 0
(case,) = load_file(out)
model = load_model(spec)
names = import_model(model, None).param_names
initial = materialize(case)
step = keras_worker.run("tensorflow", case, initial).steps[0]
x = tf.constant(np.transpose(initial.input, (0, 2, 3, 1)), dtype=tf.float32)
variables = {v.path: v for v in model.trainable_variables}
with tf.GradientTape() as tape:
    tape.watch(x)
    y = model(x, training=False)
    loss = tf.reduce_sum(y * tf.constant(initial.target, dtype=tf.float32))
grads = tape.gradient(loss, [x] + [variables[path] for path in names.values()])
flat = next((L for L in case.layers if L.type == "flatten"), None)

def ulps(mine, theirs):
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    assert mine.shape == theirs.shape, (mine.shape, theirs.shape)
    return float(np.abs(mine - theirs).max() / (np.abs(theirs).max() * 2.0 ** -23))

res = {"loss": ulps(step.loss, loss), "output": ulps(step.output, y),
       "input": ulps(step.grads["input"], np.transpose(np.asarray(grads[0]), (0, 3, 1, 2)))}
for name, g in zip(names, grads[1:]):
    kind = {4: "conv", 2: "dense"}.get(len(g.shape), "bias")
    theirs = from_tf_layout(kind, np.asarray(g, dtype=np.float64))
    if kind == "dense" and flat is not None:
        theirs = _flatten_order(theirs, (flat.in_shape[2], flat.in_shape[3], flat.in_shape[1]))
    res[name] = ulps(step.grads[name], theirs)
print(json.dumps(res))
"""


def _keras_round_trip(tmp_path, spec, shape) -> dict:
    import json
    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    p = subprocess.run([sys.executable, "-c", _KERAS_ROUND_TRIP, spec, shape, str(tmp_path / "round_trip.yaml")],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("factory, shape, exact_forward", KERAS_MODELS, ids=[m[0] for m in KERAS_MODELS])
def test_a_keras_model_round_trips_exactly_and_runs_elsewhere(tmp_path, monkeypatch, factory, shape, exact_forward):
    """The imported case on Keras itself (the keras-tensorflow adapter's layers) gives the model's own input and
    parameter gradients bit for bit, and its output and loss too where no Flatten reorders a Dense's sum (else
    within 4 ulps of the largest value); then it runs on torch, judged against the reference."""
    pytest.importorskip("tensorflow")
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    ulps = _keras_round_trip(tmp_path, f"tests.models.keras_models:{factory}", shape)
    grads = {k: v for k, v in ulps.items() if k not in ("loss", "output")}
    assert len(grads) > 3 and set(grads.values()) == {0.0}, ulps
    if exact_forward:
        assert ulps["output"] == ulps["loss"] == 0.0, ulps
    else:
        assert ulps["output"] <= 4 and ulps["loss"] <= 8, ulps
    case, _ = _import(tmp_path, "keras", f"tests.models.keras_models:{factory}", shape)
    from gradconf.adapters.torch_adapter import TorchAdapter
    records = Runner(NumpyReference(), [TorchAdapter(), *_other_frameworks()]).run_case(case).records
    assert records and not [r for r in records if r.status not in ("pass", "xfail")], \
        [(r.framework, r.quantity, r.tensor, r.message) for r in records if r.status not in ("pass", "xfail")]


def test_every_unmappable_keras_layer_is_listed(monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert main(["import", "keras", "tests.models.keras_models:unmappable", "--input-shape", "2,2,4,4"]) == 2
    err = capsys.readouterr().err
    assert "3 layer(s)" in err and "Reshape" in err and "Conv3D" in err and "LayerNormalization" in err
