"""The command line tells the truth: where a golden value is wrong, what shrink did, how far a run is,
and what a small run imports."""
import dataclasses
import json
import os
import subprocess
import sys

from gradconf.progress import Progress
from tests.conftest import ROOT

SUM_3X3 = open(os.path.join(ROOT, "cases", "examples", "sum_3x3.yaml")).read()
BLOCK_GOLDEN = """name: golden_lines
dtype: float64
input: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]]
model:
  - conv2d: {name: conv, out_channels: 1, kernel_size: 2, bias: false, weight: [[[[3, 2], [1, 5]]]]}
  - sum: {}
loss: {mse: {target: 230}}
expect:
  grad:
    conv.weight: [[[[48, 64], [96, 112]]]]
    input: [[[[0, 0, 0], [0, 0, 0], [0, 0, 1]]]]
"""


def gradconf(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gradconf", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_a_wrong_input_golden_points_at_its_own_line(tmp_path):
    """The conv.weight golden is right, the input one wrong: the failure names line 11 (`input:`)."""
    (tmp_path / "g.yaml").write_text(BLOCK_GOLDEN)
    p = gradconf("run", str(tmp_path), "--frameworks", "numpy", "--out", str(tmp_path / "out"), "-q")
    assert p.returncode == 1
    records = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    (bad,) = [r for r in records if r["status"] == "fail"]
    assert (bad["quantity"], bad["tensor"], bad["line"]) == ("grad", "input", 11)
    assert f"{tmp_path / 'g.yaml'}:11" in p.stdout


def test_shrink_of_a_passing_case_exits_0_saying_there_is_nothing_to_shrink(tmp_path):
    p = gradconf("shrink", "sum_3x3", "--paths", "cases/examples", "--frameworks", "numpy", "--out", str(tmp_path),
                 "--in-process")
    assert p.returncode == 0, p.stderr
    assert "nothing to shrink: sum_3x3 passes on numpy" in p.stdout
    assert os.listdir(tmp_path) == []


def test_shrink_that_reduces_nothing_says_not_reduced_and_names_the_framework_asked_about(tmp_path):
    """A wrong golden value fails the reference and torch alike, and no smaller case carries it: the case is
    written as drawn, golden values kept, so that the reproducer fails as the case did."""
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "sum_3x3.yaml").write_text(SUM_3X3.replace("[0.04, 3.88]", "[0.05, 3.88]"))
    p = gradconf("shrink", "sum_3x3", "--paths", str(tmp_path / "cases"), "--frameworks", "torch",
                 "--out", str(tmp_path / "out"), "--budget", "20", "--in-process")
    assert p.returncode == 0, p.stderr
    assert "shrinking sum_3x3, failing on torch (asked about: torch; reference numpy)" in p.stderr
    assert "failing on numpy" not in p.stderr
    assert p.stdout.startswith("not reduced: no simplification of sum_3x3 still fails on torch; wrote ")
    assert "smallest case" not in p.stdout + p.stderr
    assert "gradconf repro regression_sum_3x3 --framework torch --paths " in p.stdout  # offered for an upstream report
    (written,) = os.listdir(tmp_path / "out")
    text = (tmp_path / "out" / written).read_text()
    assert text.startswith("# gradconf shrink sum_3x3: not reduced") and "[0.05, 3.88]" in text
    from gradconf.adapters.numpy_ref import NumpyReference
    from gradconf.loader import load_file
    from gradconf.runner import Runner
    (case,) = load_file(str(tmp_path / "out" / written))  # the reproducer still fails, as the case did
    assert any(r.status == "fail" for r in Runner(NumpyReference(), []).run_case(case).records)


def test_progress_lines_when_not_on_a_terminal_give_elapsed_eta_and_failures(tmp_path):
    p = gradconf("run", "cases/examples", "--frameworks", "numpy", "--out", str(tmp_path),
                 env={"GRADCONF_PROGRESS_SECONDS": "0"})
    lines = [line for line in p.stderr.splitlines() if line.startswith("gradconf: ")]
    assert len(lines) == 5, p.stderr
    assert lines[0].startswith("gradconf: 1/5 cases (20%), 00:0") and "elapsed, ETA 00:" in lines[0]
    assert lines[-1].endswith("5/5 cases (100%)") or "5/5 cases (100%)" in lines[-1]
    assert all(line.endswith("0 failing so far") for line in lines)


def test_a_run_on_a_terminal_shows_a_bar_with_elapsed_eta_and_failures(tmp_path):
    import pty
    import select
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy",
                          "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=follower,
                         env={k: v for k, v in os.environ.items() if k != "CI"})
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    assert p.wait(60) == 0
    text = seen.decode(errors="replace")
    assert "5/5 cases" in text and "elapsed" in text and "ETA" in text and "0 failing" in text, text


class _Records:
    def __init__(self, *statuses):
        self.records = [type("R", (), {"status": s})() for s in statuses]


def test_progress_counts_failing_cases_and_prints_every_so_often():
    import io
    now = [0.0]
    out = io.StringIO()
    progress = Progress(4, "lines", out, every=10.0, clock=lambda: now[0])
    case = type("C", (), {"id": "c"})()
    for t, statuses in ((1.0, ("pass",)), (12.0, ("fail", "pass")), (13.0, ("xfail",)), (30.0, ("error",))):
        now[0] = t
        progress.step(case, _Records(*statuses).records)
    assert out.getvalue().splitlines() == [
        "gradconf: 2/4 cases (50%), 00:12 elapsed, ETA 00:12, 1 failing so far",
        "gradconf: 4/4 cases (100%), 00:30 elapsed, ETA 00:00, 2 failing so far",
    ]


def test_progress_bar_on_a_terminal_shows_elapsed_eta_and_failures():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    out = Terminal()
    progress = Progress.for_stream(3, out)
    case = type("C", (), {"id": "conv_random[3]"})()
    progress.step(case, _Records("fail").records)
    text = out.getvalue()
    assert "1/3 cases" in text and "elapsed" in text and "ETA" in text and "1 failing · conv_random[3]" in text
    progress.close()


def test_a_numpy_run_imports_no_pandas_and_only_the_report_imports_matplotlib(tmp_path):
    code = f"""
import sys
from gradconf.cli import main
from gradconf import summary, render, report
rc = main(["validate", "cases/examples"])
assert "matplotlib" not in sys.modules, "validate imported matplotlib"
rc = main(["run", "cases/examples", "--frameworks", "numpy", "--out", {str(tmp_path)!r}, "-q", "--in-process"])
print(rc, "pandas" in sys.modules, "matplotlib" in sys.modules)
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "0 False True"


def test_a_pytest_failure_diagnosis_shows_the_whole_message_under_the_reports_column_names():
    import re

    from gradconf.diagnose import describe_failures
    from gradconf.runner import Record
    from tests.conftest import make_case
    case = make_case(input=[[1.0, 2.0]], model=[{"dense": {"name": "fc", "out_features": 1}}], loss={"sum": {}})
    message = ("9 of 9 element(s) off; worst at [0, 0, 1, 1]: 112 vs -28 (7.81e+10x the allowance); the "
               "reference meets the golden values, so this framework's gradient is the one to look at")
    record = Record(case.id, "torch", "numpy", 1, "grad", "fc.weight", [1, 2], "float32", 140.0, 5.0, [0, 1],
                    1e-6, 1e-6, "fail", message, 7.81e10, 112.0, -28.0)
    text = describe_failures(case, "torch", [record])
    header = text.splitlines()[1]
    assert header.split()[:2] == ["status", "vs"] and "error/allowance" in header and "err/allowed" not in text
    flat = " ".join(re.sub(r"\s+", " ", text).split())
    assert all(word in flat for word in message.split())


def test_a_pytest_failure_diagnosis_names_the_line_of_the_layer_a_reference_comparison_points_at():
    """As the reports do: a failing weight gradient's row names its layer's line; a row on the case's own line
    (the output, a family variant) leaves it to the heading."""
    from gradconf.diagnose import describe_failures
    from gradconf.runner import Record
    from tests.conftest import make_case
    case = make_case(input=[[1.0, 2.0]], model=[{"dense": {"name": "fc", "out_features": 1}}], loss={"sum": {}})
    case = dataclasses.replace(case, file="cases/net.yaml", line=1)

    def failing(tensor, line):
        return Record(case.id, "torch", "numpy", 1, "grad", tensor, [1, 2], "float32", 1.0, 1.0, [0, 1], 1e-6,
                      1e-6, "fail", "off", 1e6, 1.0, 0.0, file=case.file, line=line)
    text = describe_failures(case, "torch", [failing("fc.weight", 7), failing("input", 1)])
    rows = text.splitlines()[3:]
    assert "cases/net.yaml:7" in rows[0] and "cases/net.yaml:1" not in rows[1]
