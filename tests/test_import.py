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
