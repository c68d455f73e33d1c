"""Honest outcomes: malformed adapter output is that adapter's error, a run that compared nothing fails,
a framework that is not installed is a visible `skipped`, and -k takes pytest's expressions."""
import json
import os

import numpy as np
import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.cli import main
from gradconf.errors import CaseError
from gradconf.runner import Runner
from gradconf.select import compile_expr
from tests.conftest import ROOT, make_case

SUM_3X3 = os.path.join(ROOT, "cases", "examples", "sum_3x3.yaml")


class Changed(NumpyReference):
    def __init__(self, name, change):
        self.name, self.change = name, change

    def run(self, case, initial):
        trace = super().run(case, initial)
        for s in trace.steps:
            s.grads["input"] = self.change(s.grads["input"])
        return trace


@pytest.mark.parametrize("change, named", [
    (lambda g: g.astype(np.complex128) + 0j, "complex values (dtype complex128)"),   # passed before: imag dropped
    (lambda g: g.astype(np.complex128) + 1e-3j, "complex values"),
    (lambda g: np.rint(g).astype(np.int64), "dtype int64, not floating-point"),
    (lambda g: g.astype(bool), "dtype bool"),
    (lambda g: g.reshape(-1), "shape [6] where the reference has [1, 6]"),
    (lambda g: g.T, "shape [6, 1]"),
    (lambda g: None, "returned nothing for grad input"),
    (lambda g: np.array(["x"] * g.size).reshape(g.shape), "dtype <U1"),
])
def test_malformed_adapter_output_is_that_adapters_error_naming_it(change, named):
    case = make_case(dtype="float64", input={"shape": [1, 6]}, model=[{"tanh": {}}], loss={"sum": {}})
    records = Runner(NumpyReference(), [Changed("odd", change)]).run_case(case).records
    (bad,) = [r for r in records if r.framework == "odd" and r.tensor == "input"]
    assert bad.status == "error" and named in bad.message and "grad input at step 1" in bad.message
    assert {r.status for r in records if r.framework == "odd" and r.tensor != "input"} == {"pass"}


def test_a_scalar_may_come_back_as_a_one_element_array():
    case = make_case(dtype="float64", input={"shape": [1, 3]}, model=[{"sum": {}}], loss={"sum": {}})
    records = Runner(NumpyReference(), [Changed("ok", lambda g: g)]).run_case(case).records
    assert {r.status for r in records} == {"pass"}


def test_a_run_that_compares_nothing_fails_saying_so(tmp_path, capsys):
    plain = tmp_path / "plain.yaml"  # no expect:, and only the reference runs
    plain.write_text("input: [[1.0, 2.0]]\nmodel: [{sum: {}}]\nloss: {sum: {}}\n")
    assert main(["run", str(plain), "--frameworks", "numpy", "--out", str(tmp_path / "r"), "-q"]) == 1
    assert "nothing was compared" in capsys.readouterr().err
    # golden values are a comparison: the same run with them passes
    assert main(["run", SUM_3X3, "--frameworks", "numpy", "--out", str(tmp_path / "g"), "-q"]) == 0


def test_a_framework_that_is_not_installed_is_a_skipped_record_in_the_summary(tmp_path, monkeypatch, capsys):
    from gradconf import adapters
    for name in ("torch", "tensorflow"):
        monkeypatch.setattr(adapters.builtin(name).__class__, "missing", lambda self, n=name: f"{n} is not installed")
    assert main(["run", SUM_3X3, "--out", str(tmp_path), "-q", "--in-process"]) == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    skipped = {r["framework"]: r["message"] for r in records if r["status"] == "skipped"}
    assert skipped == {"torch": "torch is not installed", "tensorflow": "tensorflow is not installed"}
    out = capsys.readouterr().out
    assert "torch skipped: torch is not installed" in out and "tensorflow skipped: tensorflow is not installed" in out


IDS = ["sum_3x3", "sum_3x3_f32", "net_5x5", "net_5x5_f32", "conv2d_random[3]"]


def _select(expr):
    cases = [make_case(name=i.replace("[", "_").replace("]", ""), input=[[1.0]], model=[{"sum": {}}],
                       loss={"sum": {}}, tags=["conv2d"] if "conv" in i else ["example"]) for i in IDS]
    pred = compile_expr(expr)
    return [c.id for c in cases if pred(c)]


@pytest.mark.parametrize("expr, chosen", [
    ("not sum_3x3", ["net_5x5", "net_5x5_f32", "conv2d_random_3"]),
    ("(sum or net) and not f32", ["sum_3x3", "net_5x5"]),
    ("not (sum or net)", ["conv2d_random_3"]),
    ("((example)) and not not f32", ["sum_3x3_f32", "net_5x5_f32"]),
    ("SUM_3X3", ["sum_3x3", "sum_3x3_f32"]),          # case-insensitive, as pytest's -k
    ("conv2d_random_3 or nothing", ["conv2d_random_3"]),
    ("", IDS[:4] + ["conv2d_random_3"]),
])
def test_keyword_expressions_as_pytest_reads_them(expr, chosen):
    assert _select(expr) == chosen


@pytest.mark.parametrize("expr", ["conv and (", "not", "a or", "(a", "a)", "a b", "a and or b", "a = b"])
def test_a_malformed_keyword_expression_is_an_invalid_option(expr):
    with pytest.raises(CaseError, match="cannot parse -k expression"):
        compile_expr(expr)
