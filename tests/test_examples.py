"""The worked examples: the reference reproduces every hand-derived golden value to 1e-12."""
import os

import numpy as np
import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_file
from gradconf.tensors import materialize
from tests.conftest import ROOT

EXAMPLES = ["sum_3x3", "net_5x5", "net_5x5_delta"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_reference_reproduces_golden_values(name):
    (case,) = load_file(os.path.join(ROOT, "cases", "examples", f"{name}.yaml"))
    assert case.dtype == "float64"
    trace = NumpyReference().run(case, materialize(case))
    e, first, last = case.expect, trace.steps[0], trace.steps[-1]
    checked = 0
    if e.loss:
        np.testing.assert_allclose([s.loss for s in trace.steps[:len(e.loss)]], e.loss, rtol=0, atol=1e-12)
        checked += 1
    if e.output is not None:
        np.testing.assert_allclose(first.output, e.output, rtol=0, atol=1e-12)
        checked += 1
    for k, v in e.grad.items():
        np.testing.assert_allclose(first.grads[k], v, rtol=0, atol=1e-12)
        checked += 1
    for k, v in e.param.items():
        np.testing.assert_allclose(last.params[k], v, rtol=0, atol=1e-12)
        checked += 1
    assert checked >= 2


def test_published_3x3_kernel():
    (case,) = load_file(os.path.join(ROOT, "cases", "examples", "sum_3x3.yaml"))
    trace = NumpyReference().run(case, materialize(case))
    np.testing.assert_allclose(trace.steps[0].params["conv.weight"][0, 0], [[2.52, 1.36], [0.04, 3.88]],
                               rtol=0, atol=1e-12)
