"""Reports: who-is-wrong verdicts, atomic writes, standalone HTML."""
import os
import re

import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf import report
from gradconf.runner import Runner
from gradconf.summary import summarize_records
from tests.conftest import make_case


class Scaled(NumpyReference):
    def __init__(self, name, factor):
        self.name, self.factor = name, factor

    def run(self, case, initial):
        trace = super().run(case, initial)
        for s in trace.steps:
            s.grads["input"] = self.factor * s.grads["input"]
        return trace


def _case(**extra):
    return make_case(input=[[1.0, 2.0]], model=[{"dense": {"name": "fc", "out_features": 1, "bias": False,
                                                           "weight": [[3.0, 4.0]]}}],
                     loss={"sum": {}}, dtype="float64", **extra)


class PlainReference:
    """The NumPy reference without its long-double recheck (gradconf.protocol.PreciseReference): the
    verdict's rules for a reference nothing can recheck."""
    name = "numpy"

    def __init__(self):
        self._reference = NumpyReference()

    def missing(self):
        return None

    def version(self):
        return "plain"

    def run(self, case, initial):
        return self._reference.run(case, initial)

    def run_rounded(self, case, initial, rounding):
        return self._reference.run_rounded(case, initial, rounding)


def _verdict(case, frameworks, reference=None):
    summary = summarize_records(Runner(reference or PlainReference(), frameworks).run_case(case).records)
    return next((c.verdict for c in summary.cases if c.case == case.id), "")


def test_the_odd_framework_out_is_named():
    v = _verdict(_case(), [Scaled("good", 1.0), Scaled("bad", 0.5)])
    assert v == "bad: differs from the reference, which good match(es)"
    v = _verdict(_case(), [Scaled("good", 1.0), Scaled("bad", 0.5)], NumpyReference())  # and it is rechecked
    assert v == "bad: differs from the reference, which good match(es) and which recomputed in long double stands"


def test_a_golden_value_that_everyone_misses_is_named():
    v = _verdict(_case(expect={"output": [[12.0]]}), [Scaled("a", 1.0), Scaled("b", 1.0)])
    assert v == "the golden value (output): the reference and every framework matching it miss it"


def test_when_no_framework_matches_the_reference_the_reference_is_suspect():
    v = _verdict(_case(), [Scaled("a", 0.5), Scaled("b", 0.5)])
    assert v == "the reference or the case: no framework matches the reference"


def test_frameworks_that_all_differ_from_a_reference_that_meets_the_golden_values_are_named():
    """Hand-derived values back the reference: the frameworks, not the reference, are then suspect."""
    for reference in (PlainReference(), NumpyReference()):  # golden values outweigh a recheck
        v = _verdict(_case(expect={"output": [[11.0]]}), [Scaled("a", 0.5), Scaled("b", 0.5)], reference)
        assert v == "a, b: differs from the reference, which meets the case's golden values"


def test_one_framework_that_differs_from_an_unconfirmed_reference_leaves_both_suspect():
    v = _verdict(_case(), [Scaled("a", 0.5)])
    assert v == "a or the reference: the one framework compared differs from the reference"


def test_passing_cases_have_no_verdict():
    assert _verdict(_case(), [Scaled("a", 1.0)]) == ""


def _shown(folder):
    """What a reader of `folder` sees: each report file's text."""
    return {name: (folder / name).read_text() for name in ("results.json", "results.csv", "report.md", "report.html")}


def test_a_report_set_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    from gradconf import files, reportset
    records = Runner(NumpyReference(), [Scaled("x", 1.0)]).run_case(_case()).records
    report.write_reports(records, {"command": "first"}, str(tmp_path))
    first = _shown(tmp_path)
    assert all("first" in text for name, text in first.items() if name != "results.csv")
    real_create = files.create_new

    def disk_fills_at_the_markdown(path):  # the second set gets two files in, then the disk is full
        if path.endswith("report.md"):
            raise OSError(28, "No space left on device")
        return real_create(path)
    monkeypatch.setattr(files, "create_new", disk_fills_at_the_markdown)
    with pytest.raises(OSError):
        report.write_reports(records, {"command": "second"}, str(tmp_path))
    assert _shown(tmp_path) == first
    monkeypatch.undo()

    def killed_at_the_switch(tmp, path):
        raise KeyboardInterrupt
    real_replace = reportset.os.replace
    monkeypatch.setattr(reportset.os, "replace",
                        lambda a, b: killed_at_the_switch(a, b) if b.endswith("latest") else real_replace(a, b))
    with pytest.raises(KeyboardInterrupt):
        report.write_reports(records, {"command": "third"}, str(tmp_path))
    assert _shown(tmp_path) == first
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]  # nothing left behind
    monkeypatch.undo()
    report.write_reports(records, {"command": "fourth"}, str(tmp_path))
    assert "fourth" in _shown(tmp_path)["report.md"]
    assert len(os.listdir(tmp_path / ".runs")) == reportset.KEEP  # older sets are pruned


def test_results_json_is_strict_json_where_a_record_holds_inf_or_nan(tmp_path):
    import dataclasses
    import json
    from gradconf import reportset
    (good, *_), infinite = Runner(NumpyReference(), [Scaled("x", 1.0)]).run_case(_case()).records, float("inf")
    odd = dataclasses.replace(good, framework="y", max_abs_err=infinite, actual=float("nan"),
                              layers=[["fc", "dense", infinite, 0.5]])
    report.write_reports([good, odd], {"command": "t"}, str(tmp_path))

    def strict(text):  # JSON has no inf or NaN: Python's json would accept them, a browser's would not
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in results.json"))
    written = strict((tmp_path / "results.json").read_text())["records"]
    assert written[0]["max_abs_err"] == good.max_abs_err
    assert (written[1]["max_abs_err"], written[1]["actual"], written[1]["layers"]) == (None, None, [["fc", "dense", None, 0.5]])
    folder = reportset.RunFolder.create(str(tmp_path / "streamed"))
    folder.add(good.case, [good, odd])
    folder.close()
    streamed = [strict(line) for line in open(folder.stream_path, encoding="utf-8")]
    assert [e["record"]["max_abs_err"] for e in streamed if "record" in e] == [good.max_abs_err, None]


def test_html_is_standalone_and_failures_come_first(tmp_path):
    records = Runner(NumpyReference(), [Scaled("bad", 0.5)]).run_case(_case()).records
    report.write_reports(records, {"command": "t"}, str(tmp_path))
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page) and "<script" not in page
    assert page.index("Who is wrong") < page.index("Failures") < page.index("Passing cases")
    assert "background:#ffccd5" in page  # failures are coloured
