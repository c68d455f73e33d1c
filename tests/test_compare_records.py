"""benchmarks/compare_records.py, the before/after proof of a refactor: no difference between a run and
itself; every planted change (a value's last bit, a status, a lost record, an extra one) is reported."""
import copy
import json

from benchmarks import compare_records
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_paths
from gradconf.reportfiles import report_files
from gradconf.runner import Runner
from tests.conftest import ROOT


def _results(tmp_path, name, records):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"run": {"started": name}, "records": records}))
    return str(path)


def test_a_run_equals_itself_and_every_planted_change_is_reported(tmp_path, capsys):
    cases, errors = load_paths([f"{ROOT}/cases/examples"])
    assert not errors
    runner = Runner(NumpyReference(), [NumpyReference()])
    records = [r for c in cases for r in runner.run_case(c).records]
    payload = json.loads(report_files(records, {"command": "test"}, charts=False)["results.json"])["records"]
    before = _results(tmp_path, "before", payload)
    assert compare_records.main([before, _results(tmp_path, "again", copy.deepcopy(payload))]) == 0
    assert "no difference" in capsys.readouterr().out
    changed = copy.deepcopy(payload)
    changed[3]["max_abs_err"] = (changed[3]["max_abs_err"] or 0.0) * (1 + 2 ** -52) + 5e-324  # one ulp
    changed[5]["status"] = "fail"
    lost = changed.pop(7)
    changed.append({**lost, "case": "no_such_case"})
    assert compare_records.main([before, _results(tmp_path, "after", changed)]) == 1
    out = capsys.readouterr().out
    assert "max_abs_err" in out and "status: 'pass' -> 'fail'" in out
    assert f"only in BEFORE: case={lost['case']}" in out and "only in AFTER: case=no_such_case" in out
    assert "4 difference(s)" in out
