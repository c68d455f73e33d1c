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


KERAS_MODELS = [("sequential_cnn", "2,2,8,8"), ("functional_residual", "2,3,6,6")]


def _keras_own_numbers(model, initial, param_names):
    """The Keras model's own output and gradients on the case's input (NHWC), with the case's grad_output loss."""
    import tensorflow as tf
    x = tf.constant(np.transpose(initial.input, (0, 2, 3, 1)), dtype=tf.float32)
    variables = {v.path: v for v in model.trainable_variables}
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
        loss = tf.reduce_sum(y * tf.constant(initial.target, dtype=tf.float32))
    wanted = [variables[path] for path in param_names.values()]
    grads = tape.gradient(loss, [x, *wanted])
    dx = np.transpose(np.asarray(grads[0], dtype=np.float64), (0, 3, 1, 2))
    return float(loss), np.asarray(y, dtype=np.float64), dict(zip(param_names, grads[1:])), dx


@pytest.mark.parametrize("factory, shape", KERAS_MODELS, ids=[m[0] for m in KERAS_MODELS])
def test_a_keras_model_round_trips_and_runs_elsewhere(tmp_path, monkeypatch, factory, shape):
    """Keras' own layers against the tensorflow adapter's tf.nn composition of the imported case: the same
    numbers to float32 rounding (Keras' Conv2D and the adapter reach the same kernels; exact where they do)."""
    pytest.importorskip("tensorflow")
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    case, _ = _import(tmp_path, "keras", f"tests.models.keras_models:{factory}", shape)
    from gradconf.adapters.keras_import import import_model, load_model
    from gradconf.adapters.tensorflow_adapter import TensorflowAdapter
    spec = f"tests.models.keras_models:{factory}"
    model = load_model(spec)
    imported = import_model(model, None)
    initial = materialize(case)
    step = TensorflowAdapter().run(case, initial).steps[0]
    loss, y, grads, dx = _keras_own_numbers(model, initial, imported.param_names)
    close = dict(rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(step.loss, loss, **close)
    np.testing.assert_allclose(step.output, y, **close)
    np.testing.assert_allclose(step.grads["input"], dx, **close)
    assert grads
    for name, g in grads.items():  # Keras' layout back to the case's, by the importer's own rule
        kind = "conv" if g.shape.ndims == 4 else "dense" if g.shape.ndims == 2 else "bias"
        from gradconf.adapters.tf_layout import from_tf_layout
        mine = from_tf_layout(kind, np.asarray(g, dtype=np.float64))
        if name.endswith("fc.weight") and any(L.type == "flatten" for L in case.layers):
            from gradconf.adapters.keras_import import _flatten_order
            flat = next(L for L in case.layers if L.type == "flatten")
            h, w, c = flat.in_shape[2], flat.in_shape[3], flat.in_shape[1]
            mine = _flatten_order(mine, (h, w, c))
        np.testing.assert_allclose(step.grads[name], mine, **close, err_msg=name)
    from gradconf.adapters.torch_adapter import TorchAdapter
    records = Runner(NumpyReference(), [TorchAdapter()]).run_case(case).records
    assert records and not [r for r in records if r.status not in ("pass", "xfail")]


def test_every_unmappable_keras_layer_is_listed(monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    monkeypatch.chdir(__import__("tests.conftest", fromlist=["ROOT"]).ROOT)
    assert main(["import", "keras", "tests.models.keras_models:unmappable", "--input-shape", "2,2,4,4"]) == 2
    err = capsys.readouterr().err
    assert "3 layer(s)" in err and "Reshape" in err and "Conv3D" in err and "LayerNormalization" in err
