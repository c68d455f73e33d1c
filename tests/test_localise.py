"""Localisation (harness/localise.py): a bug planted in one layer of a 6-layer net is named, forward or backward.

Each planted adapter is the NumPy reference with one layer's declaration swapped for a wrong one, for that
layer only (the other layers of the same type stay right), so a wrong verdict cannot hide behind a bug that
every layer of a type shares. The runner localises every failing framework that traces layers.
"""
import dataclasses

import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.localise import localise
from gradconf.runner import Runner
from gradconf.tensors import materialize
from tests.conftest import make_case
from tests.planting import Planted

NET = dict(
    name="six_layers", dtype="float64", seed=4, input={"shape": [2, 2, 6, 6], "init": "normal"},
    model=[{"conv2d": {"name": "c1", "out_channels": 3, "kernel_size": 3, "padding": 1}},
           {"relu": {"name": "r1"}},
           {"conv2d": {"name": "c2", "out_channels": 2, "kernel_size": 3}},
           {"tanh": {"name": "t1"}},
           {"flatten": {"name": "flat"}},
           {"dense": {"name": "fc", "out_features": 3}}],
    loss={"mse": {"target": {"init": "normal"}}}, optimizer={"sgd": {"lr": 0.1}})


class OneLayer(Planted):
    """The reference with layer `layer`'s forward or backward replaced by `wrong(decl, L, ...)`."""

    def __init__(self, kind, layer, forward=None, backward=None):
        self.kind, self.layer, self.wrong_forward, self.wrong_backward = kind, layer, forward, backward
        self.bug = f"{layer}: {'forward' if forward else 'backward'}"

    def patches(self, case):
        decl = vocab.LAYERS[self.kind]
        fwd, bwd = decl.forward, decl.backward

        def forward(L, xs, p, **kw):
            y, cache = fwd(L, xs, p, **kw)
            return (self.wrong_forward(L, xs, p, y) if self.wrong_forward and L.name == self.layer else y), cache

        def backward(L, dy, cache):
            dxs, grads = bwd(L, dy, cache)
            if self.wrong_backward and L.name == self.layer:
                dxs, grads = self.wrong_backward(L, dy, cache, dxs, grads)
            return dxs, grads
        return [(vocab.LAYERS, self.kind, dataclasses.replace(decl, forward=forward, backward=backward))]


def _scaled_dx(factor):
    return lambda L, dy, cache, dxs, grads: ([d * factor for d in dxs], grads)


PLANTED = [  # (adapter, the layer it must name, the stage)
    (OneLayer("conv2d", "c2", forward=lambda L, xs, p, y: y * 1.01), "c2", "forward"),
    (OneLayer("dense", "fc", forward=lambda L, xs, p, y: y - p["bias"]), "fc", "forward"),    # bias left out
    (OneLayer("conv2d", "c2", backward=_scaled_dx(0.9)), "c2", "backward"),                 # input gradient
    (OneLayer("conv2d", "c1", backward=lambda L, dy, cache, dxs, grads:                    # dW's kernel flipped
              (dxs, {**grads, "weight": grads["weight"][..., ::-1, ::-1]})), "c1", "backward"),
    (OneLayer("tanh", "t1", backward=lambda L, dy, cache, dxs, grads:                      # 1 - y for 1 - y²
              ([dy * (1.0 - cache[1])], grads)), "t1", "backward"),
    (OneLayer("relu", "r1", backward=lambda L, dy, cache, dxs, grads: ([dy], grads)), "r1", "backward"),  # no mask
    (OneLayer("flatten", "flat", backward=lambda L, dy, cache, dxs, grads:                 # column-major unflatten
              ([np.asarray(dy).reshape(dxs[0].shape, order="F")], grads)), "flat", "backward"),
]


@pytest.mark.parametrize("planted, layer, stage", PLANTED, ids=[p[0].bug for p in PLANTED])
def test_the_verdict_names_the_layer_a_bug_sits_in(planted, layer, stage):
    case = make_case(**NET)
    records = Runner(NumpyReference(), [planted]).run_case(case).records
    failing = [r for r in records if r.framework == "planted" and r.status == "fail"]
    assert failing, "the planted bug must fail the case"
    where = localise(case, planted.trace_layers(case, materialize(case)),
                     NumpyReference().trace_layers(case, materialize(case)),
                     planted.run(case, materialize(case)), NumpyReference().run(case, materialize(case)))
    assert (where.layer, where.stage) == (layer, stage), where.detail
    assert all(r.origin == where.detail for r in failing)  # the runner put it on every failing record
    assert [row[0] for row in failing[0].layers] == ["c1", "r1", "c2", "t1", "flat", "fc"]


def test_an_optimizer_bug_is_not_blamed_on_a_layer():
    from gradconf.vocab import optimizers

    class WrongLr(Planted):
        def patches(self, case):
            sgd = vocab.OPTIMIZERS["sgd"]
            return [(vocab.OPTIMIZERS, "sgd", dataclasses.replace(sgd, make=lambda opt: _Doubled(sgd.make(opt))))]

    class _Doubled:
        def __init__(self, inner):
            self.inner, self.hp = inner, inner.hp

        def update(self, name, p, g, lr):
            return self.inner.update(name, p, g, 2 * lr)

    assert optimizers  # the table patched above
    case = make_case(**NET)
    records = Runner(NumpyReference(), [WrongLr()]).run_case(case).records
    origins = {r.origin for r in records if r.status == "fail"}
    assert len(origins) == 1 and "update" in origins.pop()


def test_a_passing_framework_gets_no_origin():
    case = make_case(**NET)
    records = Runner(NumpyReference(), [Planted()]).run_case(case).records
    assert all(r.origin is None and r.layers is None for r in records)


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
@pytest.mark.parametrize("net", ["six_layers", "resnet_block_f32"])
def test_frameworks_trace_every_layer_as_the_reference_does(framework, net):
    """A passing case traced layer by layer agrees everywhere (outputs NCHW, a gradient for every layer)."""
    pytest.importorskip(framework)
    from gradconf.loader import load_file
    from tests.conftest import ROOT
    if framework == "torch":
        from gradconf.adapters.torch_adapter import TorchAdapter as Adapter
    elif framework == "jax":
        from gradconf.adapters.jax_adapter import JaxAdapter as Adapter
    else:
        from gradconf.adapters.tensorflow_adapter import TensorflowAdapter as Adapter
    case = make_case(**NET) if net == "six_layers" else load_file(f"{ROOT}/cases/models/resnet_block_f32.yaml")[0]
    initial, adapter, ref = materialize(case), Adapter(), NumpyReference()
    where = localise(case, adapter.trace_layers(case, initial), ref.trace_layers(case, initial),
                     adapter.run(case, initial), ref.run(case, initial))
    assert where.stage == "none", where.detail
    assert [row[0] for row in where.profile] == [L.name for L in case.layers]
    assert all(f is not None and b is not None and f <= 1 and b <= 1 for _, _, f, b in where.profile), where.profile


def test_the_report_says_where_it_starts_and_draws_the_profile(tmp_path):
    from gradconf.report import write_reports
    case = make_case(**NET)
    planted, layer, _ = PLANTED[2]
    records = Runner(NumpyReference(), [planted]).run_case(case).records
    write_reports(records, {"command": "test", "reference": "numpy"}, str(tmp_path))
    md, html = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert "## Where it starts" in md and f"{layer} (conv2d): the input gradient it gives r1 departs" in md
    assert "where it starts:" in html and html.count('<div class="profile"><svg') == 1


def _jax_one_layer(kind, layer, wrong):
    """jax_adapter.LAYERS' entry for `kind`, computing `wrong(f, L, xs, p)` in layer `layer` alone."""
    from gradconf.adapters import jax_adapter as J
    right = J.LAYERS[kind]
    return J.LAYERS, kind, lambda L, xs, p: wrong(right, L, xs, p) if L.name == layer else right(L, xs, p)


def _jax_tanh_derivative_1_minus_y(right, L, xs, p):  # 1 - y for 1 - y² (tests/planted_jax.py's _with_vjp)
    from tests.planted_jax import _with_vjp
    return _with_vjp(lambda x: right(L, [x], p), lambda x, y: 1.0 - y)(xs[0])


def _jax_relu_without_mask(right, L, xs, p):
    from tests.planted_jax import _with_vjp
    return _with_vjp(lambda x: right(L, [x], p), lambda x, y: 1.0)(xs[0])


JAX_PLANTED = [  # (layer type, layer, wrong computation, the stage)
    ("conv2d", "c2", lambda right, L, xs, p: right(L, xs, p) * 1.01, "forward"),
    ("tanh", "t1", _jax_tanh_derivative_1_minus_y, "backward"),
    ("relu", "r1", _jax_relu_without_mask, "backward"),
]


@pytest.mark.parametrize("kind, layer, wrong, stage", JAX_PLANTED, ids=[f"{p[1]}: {p[3]}" for p in JAX_PLANTED])
def test_jax_traces_layers_so_a_bug_in_its_own_tables_is_named(monkeypatch, kind, layer, wrong, stage):
    pytest.importorskip("jax")
    from gradconf.adapters.jax_adapter import JaxAdapter
    table, key, planted = _jax_one_layer(kind, layer, wrong)
    monkeypatch.setitem(table, key, planted)
    case = make_case(**NET)
    records = Runner(NumpyReference(), [JaxAdapter()]).run_case(case).records
    failing = [r for r in records if r.framework == "jax" and r.status == "fail"]
    assert failing, "the planted bug must fail the case"
    initial = materialize(case)
    where = localise(case, JaxAdapter().trace_layers(case, initial), NumpyReference().trace_layers(case, initial),
                     JaxAdapter().run(case, initial), NumpyReference().run(case, initial))
    assert (where.layer, where.stage) == (layer, stage), where.detail
    assert all(r.origin == where.detail for r in failing)  # the runner localised it on jax too
