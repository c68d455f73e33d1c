"""Graph models (SPEC §1.8), the merges `add` / `concat` and `embedding` (§1.9): the reference's backward
against central finite differences in float64, each with a planted bug the check must catch (error > 1e-3),
and the parse errors a graph can have, each naming file, line and field."""
import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters.numpy_ref import gradients
from gradconf.errors import CaseError
from gradconf import yamlio
from gradconf.parse import parse_case
from gradconf.tensors import materialize
from tests.conftest import make_case
from tests.planting import swap

H = 1e-4
TOL = 1e-7
BUG = 1e-3


def fd_error(case) -> float:
    """max |numeric − analytic| / max |analytic| over every parameter and (where it has one) the input,
    with the 4-point central stencil; the networks here are smooth (no kinks)."""
    init = materialize(case)
    x = np.array(init.input)
    params = {k: np.array(v) for k, v in init.params.items()}
    target = init.target
    grads = gradients(case, x, params, target)[2]
    arrays = [*params.items(), *((("input", x),) if case.input_grad else ())]
    assert ("input" in grads) == case.input_grad
    worst = 0.0
    for name, arr in arrays:
        scale = max(np.abs(grads[name]).max(), 1e-3)
        for idx in np.ndindex(arr.shape):
            keep, f = arr[idx], {}
            for k in (-2, -1, 1, 2):
                arr[idx] = keep + k * H
                f[k] = gradients(case, x, params, target)[0]
            arr[idx] = keep
            numeric = (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * H)
            worst = max(worst, abs(numeric - grads[name][idx]) / scale)
    return worst


def net(input_shape, *layers, loss=None, seed=0, init="normal", **extra):
    inp = input_shape if isinstance(input_shape, list) else {"shape": list(input_shape), "init": init, **extra}
    return make_case(input=inp, model=list(layers), loss=loss or {"grad_output": {"value": {"init": "normal"}}},
                     dtype="float64", seed=seed)


def residual():
    """Fan-out: `a`'s output feeds tanh `b` and the add; `input` feeds the first layer and the concat."""
    return net((2, 3, 4, 4),
               {"conv2d": {"name": "a", "out_channels": 3, "kernel_size": 3, "padding": 1}},
               {"tanh": {"name": "b"}},
               {"conv2d": {"name": "c", "out_channels": 3, "kernel_size": 3, "padding": 1}},
               {"add": {"name": "res", "from": ["c", "a", "a"]}},
               {"concat": {"name": "cat", "from": ["res", "input"], "dim": 1}},
               {"sigmoid": {}})


def unet():
    return net((2, 2, 4, 4),
               {"conv2d": {"name": "e", "out_channels": 2, "kernel_size": 3, "padding": 1}},
               {"sigmoid": {"name": "es"}},
               {"avg_pool2d": {"kernel_size": 2}},
               {"conv_transpose2d": {"name": "up", "out_channels": 3, "kernel_size": 2, "stride": 2}},
               {"concat": {"from": ["es", "up"]}},
               {"conv2d": {"name": "head", "out_channels": 1, "kernel_size": 1}})


def skipgram(ids=((1, 3, 1), (0, 1, 3))):
    return net([list(r) for r in ids], {"embedding": {"name": "emb", "num_embeddings": 4, "embedding_dim": 3}},
               {"flatten": {}}, {"dense": {"name": "fc", "out_features": 4}},
               loss={"cross_entropy": {"target": [2, 0]}})


# ---------------------------------------------------------------- finite differences

@pytest.mark.parametrize("make", [residual, unet, skipgram], ids=lambda f: f.__name__)
def test_graph_backward_matches_finite_differences(make):
    assert fd_error(make()) < TOL


def test_concat_other_axes_and_add_of_three():
    case = net((2, 3, 2), {"tanh": {"name": "t"}}, {"sigmoid": {"name": "s", "from": "input"}},
               {"concat": {"name": "c", "from": ["t", "s", "input"], "dim": -1}},
               {"concat": {"from": ["c", "c"], "dim": 0}})
    assert case.output_shape == (4, 3, 6)
    assert fd_error(case) < TOL


def test_embedding_repeated_ids_accumulate():
    """Row 1 is looked up three times and row 2 never: its gradient is the sum of three, and zero."""
    case = skipgram()
    init = materialize(case)
    grads = gradients(case, np.array(init.input), {k: np.array(v) for k, v in init.params.items()}, init.target)[2]
    assert "input" not in grads
    assert np.all(grads["emb.weight"][2] == 0) and np.abs(grads["emb.weight"][1]).min() > 0


def _planted(monkeypatch, kind, backward):
    table, name, decl = swap(vocab.LAYERS, kind, backward=backward)
    monkeypatch.setitem(table, name, decl)


def test_planted_add_gives_only_the_first_input_a_gradient(monkeypatch):
    _planted(monkeypatch, "add", lambda L, dy, n: ([dy.copy()] + [np.zeros_like(dy)] * (n - 1), {}))
    assert fd_error(residual()) > BUG


def test_planted_concat_split_in_reverse_order(monkeypatch):
    def wrong(L, dy, sizes):
        parts = np.split(dy, np.cumsum(sizes[::-1])[:-1], axis=L.dim)[::-1]
        return [p.copy() for p in parts], {}
    _planted(monkeypatch, "concat", wrong)
    assert fd_error(unet()) > BUG


def test_planted_embedding_overwrites_repeated_ids(monkeypatch):
    def wrong(L, dy, cache):  # dW[ids] = dy: the last occurrence wins, no accumulation
        ids, shape, dtype = cache
        dw = np.zeros(shape, dtype=dtype)
        dw[ids.reshape(-1)] = dy.reshape(-1, shape[1])
        return [None], {"weight": dw}
    _planted(monkeypatch, "embedding", wrong)
    assert fd_error(skipgram()) > BUG


def test_planted_graph_walk_without_fan_out_accumulation(monkeypatch):
    """A walk that keeps the last reader's gradient where one output feeds several layers (no sum)."""
    from gradconf.adapters import numpy_ref
    real = numpy_ref.backward

    def overwrite(case, caches, dy, rounding=None):
        class Last(dict):
            def __contains__(self, k):  # `name in pending` never true: each reader's gradient replaces the last
                return False
        grads, pending = {}, Last({case.layers[-1].name: dy})
        for L, names, cache in zip(reversed(case.layers), reversed(case.graph), reversed(caches)):
            dxs, g = numpy_ref.layer_backward(L, dict.pop(pending, L.name), cache)
            grads.update(g)
            pending.update({n: d for n, d in zip(names, dxs) if d is not None})
        return grads, dict(pending)
    assert fd_error(residual()) < TOL  # the real walk, first
    monkeypatch.setattr(numpy_ref, "backward", overwrite)
    assert fd_error(residual()) > BUG
    assert numpy_ref.backward is not real


# ---------------------------------------------------------------- parse errors: file, line, field

GRAPH = """\
name: g
dtype: float64
input: {{shape: [1, 2, 3, 3]}}
model:
  - conv2d: {{name: a, out_channels: 3, kernel_size: 1}}
  - relu: {{name: r}}
  - {layer}
  - relu: {{name: z}}
loss: {{sum: {{}}}}
"""


def load_text(text: str, file: str):
    data, lines = yamlio.load(text, file)
    try:
        return parse_case(data, file, lines)
    except CaseError as e:
        raise e.located(file, lines) from None


def _error(layer: str) -> str:
    with pytest.raises(CaseError) as e:
        load_text(GRAPH.format(layer=layer), "cases/g.yaml")
    return str(e.value)


@pytest.mark.parametrize("layer, field, words", [
    ("add: {name: s, from: [a, nowhere]}", "model[2].add.from[1]", "no layer is named `nowhere`"),
    ("add: {name: s, from: [a, z]}", "model[2].add.from[1]", "later layer (model[3])"),
    ("add: {name: s, from: [s, a]}", "model[2].add.from[0]", "this layer itself"),
    ("relu: {name: a}", "model[2].relu.name", "already used"),
    ("relu: {name: input}", "model[2].relu.name", "network input"),
    ("add: {name: s, from: [a]}", "model[2].add.from", "two or more"),
    ("add: {name: s}", "model[2].add", "needs `from:`"),
    ("relu: {from: [a, r]}", "model[2].relu.from", "takes one input"),
    ("add: {from: [a, input]}", "model[2].add.from[1]", "exactly equal shapes"),
    ("concat: {from: [a, input], dim: 2}", "model[2].concat.from[1]", "every other axis equal"),
    ("concat: {from: [a, r], dim: 4}", "model[2].concat.dim", "dim must be"),
])
def test_graph_errors_name_file_line_and_field(layer, field, words):
    message = _error(layer)
    assert message.startswith(f"cases/g.yaml:7: {field}:"), message
    assert words in message, message


def test_a_graph_parses_with_its_sources_and_shapes():
    case = load_text(GRAPH.format(layer="concat: {name: s, from: [a, input, r]}"), "cases/g.yaml")
    s = case.layers[2]
    assert s.sources == ("a", "input", "r") and s.out_shape == (1, 8, 3, 3)
    assert s.in_shapes == ((1, 3, 3, 3), (1, 2, 3, 3), (1, 3, 3, 3))
    assert case.graph[3] == ("s",) and case.graph[0] == ("input",)


EMB = """\
name: e
input: {input}
model:
{model}
loss: {{sum: {{}}}}
"""
TABLE = "  - embedding: {num_embeddings: 4, embedding_dim: 2}\n"


@pytest.mark.parametrize("inp, model, field, words", [
    ("[[0, 4]]", TABLE, "input", "id 4 is out of range"),
    ("[[0, 1.5]]", TABLE, "input", "fractions"),
    ("{shape: [2, 3], init: randint, low: 0, high: 5}", TABLE, "input.high", "out of range"),
    ("{shape: [2, 3], init: normal}", TABLE, "input.init", "integer ids"),
    ("{shape: [2, 3, 1], init: randint, high: 2}", TABLE, "model[0].embedding", "(N, L)"),
    ("[[0, 1]]", "  - relu: {}\n" + TABLE, "model[1].embedding", "must be the first layer"),
    ("[[0, 1]]", TABLE + "  - relu: {from: input}\n", "model[1].relu.from", "no other layer"),
])
def test_embedding_errors(inp, model, field, words):
    with pytest.raises(CaseError) as e:
        load_text(EMB.format(input=inp, model=model), "cases/e.yaml")
    assert f": {field}:" in str(e.value) and words in str(e.value), str(e.value)


def test_an_embedding_case_has_no_input_gradient_key():
    text = EMB.format(input="[[0, 3]]", model=TABLE) + "expect: {grad: {input: [[0, 0]]}}\n"
    with pytest.raises(CaseError, match="unknown key `input`|input"):
        load_text(text, "cases/e.yaml")


def test_conditioning_runs_leave_embedding_ids_alone():
    """The perturbed runs scale every value by 1 ± tiny; an id 3 scaled to 2.9999… would look up row 2."""
    from gradconf.tolerance import perturbed
    case = skipgram()
    init = materialize(case)
    for draw in range(2):
        shaken = perturbed(case, init, draw)
        assert np.array_equal(shaken.input, init.input)
        assert not np.array_equal(shaken.params["emb.weight"], init.params["emb.weight"])


def test_the_long_double_and_conditioning_paths_walk_the_graph():
    """run_precise (np.longdouble) agrees with run to float64 rounding on a fan-out graph; a float16 graph's
    conditioning run (every output and gradient stored in float16, sums of fan-out gradients too) stays near."""
    from gradconf.adapters.numpy_ref import NumpyReference
    from gradconf.tolerance import stored_in_dtype
    ref = NumpyReference()
    for case in (residual(), skipgram()):
        init = materialize(case)
        plain, precise = ref.run(case, init).steps[0].grads, ref.run_precise(case, init).steps[0].grads
        assert precise["a.weight" if "a.weight" in plain else "emb.weight"].dtype == np.longdouble
        for k, g in plain.items():
            assert np.allclose(np.asarray(precise[k], dtype=np.float64), g, rtol=1e-12, atol=1e-14), k
    half = make_case(**{**residual().source, "dtype": "float16"})
    init = materialize(half)
    plain = ref.run(half, init).steps[0].grads
    stored = ref.run_rounded(half, init, stored_in_dtype(half, 1.0)).steps[0].grads
    assert set(stored) == set(plain)
    for k, g in plain.items():
        assert np.allclose(stored[k], g, rtol=0.05, atol=0.05 * np.abs(g).max()), k
