"""The vocabulary (gradconf.vocab): the loader, the schema, the reference, the adapters and the README's
table all follow its declarations, so that a new entry is one declaration plus one function per framework."""
import dataclasses
import importlib
import json
import os
import re

import numpy as np
import pytest

from gradconf import protocol, schema, vocab
from gradconf.case import Layer
from gradconf.errors import CaseError, Unsupported
from gradconf.runner import Runner
from gradconf.tensors import materialize
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.vocab.base import NAME, Field, LayerDecl
from tests.conftest import ROOT, make_case

ADAPTERS = ("torch_adapter", "tensorflow_adapter", "jax_adapter")


def test_the_readme_table_is_the_registrys():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    found = re.search(r"<!-- vocab table: .*? -->\n(.*?)\n<!-- end of vocab table -->", readme, re.S)
    assert found, "README.md lacks the vocabulary table's markers"
    assert found.group(1) == vocab.docs_table(), "README's vocabulary table is stale: paste vocab.docs_table()"


def test_the_readme_check_fails_on_a_stale_table(monkeypatch):
    """A new declaration changes the table: the check above would fail until the README is updated."""
    before = vocab.docs_table()
    monkeypatch.setitem(vocab.LAYERS, "double", _DOUBLE)
    assert vocab.docs_table() != before and "`double`" in vocab.docs_table()


@pytest.mark.parametrize("module", ADAPTERS)
def test_every_builtin_adapter_has_a_function_for_every_declaration(module):
    """Importing an adapter module imports no framework; its tables are keyed by declaration name."""
    tables = importlib.import_module(f"gradconf.adapters.{module}").TABLES
    assert set(tables.layers) == {d.name for d in vocab.LAYERS.values()}
    assert set(tables.losses) == set(vocab.LOSSES)
    assert set(tables.optimizers) == set(vocab.OPTIMIZERS)


def test_a_name_missing_from_an_adapters_table_is_unsupported():
    tables = protocol.Tables("toy", {"conv2d": None}, {"sum": None}, {})
    case = make_case(input={"shape": [1, 1, 3, 3]}, loss={"mse": {"target": 0}}, optimizer={"sgd": {"lr": 0.1}},
                     model=[{"conv2d": {"name": "c", "out_channels": 1, "kernel_size": 2}}, {"tanh": {}}])
    with pytest.raises(Unsupported, match=r"toy has no function for layer `tanh` \(tanh_1\), loss `mse`, "
                                          r"optimizer `sgd`"):
        tables.check(case)


def test_a_framework_lacking_an_entry_gives_unsupported_records(monkeypatch):
    pytest.importorskip("torch")
    from gradconf.adapters import torch_adapter
    monkeypatch.delitem(torch_adapter.LAYERS, "tanh")
    case = make_case(model=[{"dense": {"name": "d", "out_features": 2}}, {"tanh": {}}], input={"shape": [2, 3]},
                     loss={"sum": {}})
    records = Runner(NumpyReference(), [torch_adapter.TorchAdapter()]).run_case(case).records
    torch_records = [r for r in records if r.framework == "torch"]
    assert [r.status for r in torch_records] == ["unsupported"]
    assert "torch has no function for layer `tanh`" in torch_records[0].message


# ---------------------------------------------------------------- a new layer is one declaration

def _double_forward(L, xs, p):
    # y = 2x
    return 2.0 * xs[0], None


def _double_backward(L, dy, cache):
    # dx = 2·dy
    return [2.0 * dy], {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Double(Layer):
    TYPE = "double"


_DOUBLE = LayerDecl("double", "2x", (Field("name", NAME),),
                    lambda p, site: Double(name=site.name, in_shape=site.shape, out_shape=site.shape),
                    _double_forward, _double_backward)


def test_a_registered_declaration_is_parsed_validated_schemed_and_run_by_the_reference(monkeypatch):
    monkeypatch.setitem(vocab.LAYERS, "double", _DOUBLE)
    case = make_case(model=[{"dense": {"name": "d", "out_features": 2}}, "double"], input={"shape": [2, 3]},
                     loss={"sum": {}})
    assert case.layers[1].type == "double" and case.layers[1].name == "double_1"
    with pytest.raises(CaseError, match=r"unknown key `factor`"):
        make_case(model=[{"double": {"factor": 3}}], input={"shape": [2, 3]}, loss={"sum": {}})
    assert '"required": ["double"]' in json.dumps(schema.case_schema())
    trace = NumpyReference().run(case, materialize(case))
    init = materialize(case)
    w = init.params["d.weight"]
    np.testing.assert_allclose(trace.steps[0].grads["d.bias"], [4.0, 4.0])  # d(Σ 2y)/db = 2 per row, 2 rows
    np.testing.assert_allclose(trace.steps[0].grads["input"], 2.0 * w.sum(axis=0)[None].repeat(2, axis=0))
