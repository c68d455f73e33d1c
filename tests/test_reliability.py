"""Runs that survive hangs, signals, kills and hostile adapters: real processes, real signals, a real
hanging adapter, and `ps` to check that no child is left behind."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.processes import EXAMPLES, ORDER, alive, gone, hanging_run, reportset_rebuilt, results, stray, wait_for


def test_a_hanging_adapter_costs_its_case_an_error_naming_the_limit(tmp_path):
    proc, out, pidfile = hanging_run(tmp_path, "--timeout", "1.5")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    records = results(out)["records"]
    (hung,) = [r for r in records if r["framework"] == "hangs" and r["case"] == "sum_3x3"]
    assert hung["status"] == "error" and hung["message"].startswith(
        "hangs ran this case for more than 1.5 s, the time limit (--timeout); gradconf stopped it")
    # The same case's other frameworks, and every later case, ran in a fresh child.
    assert {r["status"] for r in records if r["case"] == "sum_3x3" and r["framework"] != "hangs"} == {"pass"}
    assert {r["status"] for r in records if r["case"] != "sum_3x3"} == {"pass"}
    assert {r["case"] for r in records if r["framework"] == "hangs"} == set(ORDER)
    assert not alive(int(pidfile.read_text())) and not stray(str(out))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_and_keeps_every_finished_case(tmp_path, signum):
    proc, out, pidfile = hanging_run(tmp_path, "--timeout", "0", "-j", "1", start_new_session=True)  # no limit
    child = wait_for(pidfile, proc)
    if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole process group, the child too
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr + stdout
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: 2 of 5 case(s) not run (sum_3x3 in part: numpy, copy finished" in stdout
    data = results(out)
    assert data["run"]["interrupted"] == {"why": f"interrupted by {name}", "cases_run": 3, "cases_not_run": 2,
                                          "partial": {"case": "sum_3x3", "finished": ["numpy", "copy"]}}
    assert [c for c in ORDER if c in {r["case"] for r in data["records"]}] == ORDER[:4]
    assert {r["framework"] for r in data["records"] if r["case"] == "sum_3x3"} == {"numpy", "copy"}
    assert {r["status"] for r in data["records"]} == {"pass"}
    assert results(out)["records"] == reportset_rebuilt(out)  # what was streamed holds the same
    assert gone(child) and not stray(str(out))


@pytest.mark.parametrize("prctl", [True, False], ids=["pdeathsig", "parent-poll"])
def test_sigkill_of_the_run_takes_its_child_along(tmp_path, prctl):
    """The child notices its parent is gone: by the kernel's parent-death signal, or where that is not
    available, by polling its parent's pid."""
    out, pidfile = tmp_path / "out", tmp_path / "pid"
    code = (f"import sys; from gradconf import isolate; isolate._USE_PRCTL = {prctl}; from gradconf.cli import main; "
            f"sys.exit(main(['run', 'cases/examples', '--frameworks', 'numpy', '--adapter', 'tests.planted:Hangs', "
            f"'--out', {str(out)!r}, '-q', '--timeout', '0']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ,
                            "GRADCONF_TEST_PIDFILE": str(pidfile)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = wait_for(pidfile, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert gone(child, 5.0), f"child {child} outlived its parent"
    assert not stray(str(out))


@pytest.mark.parametrize("spec,message", [
    ("tests.planted:ScribblesOnSockets", "the process broke its pipe to gradconf ("),
    ("tests.planted:ClosesItsFiles", "the process broke its pipe to gradconf (it closed its pipe to gradconf) while "
                                     "closes ran this case"),
    ("tests.planted:ExitsQuietly", "exits called sys.exit(3)"),
])
def test_hostile_adapters_cost_only_their_own_case(tmp_path, spec, message):
    """Each within seconds (--timeout 2): none hangs the run, none loses another case's records."""
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy",
                        "--adapter", spec, "--adapter", "tests.planted:Copy", "--out", str(tmp_path), "-q",
                        "--timeout", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    records = results(tmp_path)["records"]
    bad = [r for r in records if r["status"] != "pass"]
    assert [(r["case"], r["status"]) for r in bad] == [("sum_3x3", "error")]
    assert bad[0]["message"].startswith(message), bad[0]["message"]
    assert {r["case"] for r in records} == set(ORDER)
    assert not stray(str(tmp_path))


def test_an_adapter_that_hangs_while_loading_is_a_clear_error(tmp_path):
    """Loading happens in the parent, which no child protects: it runs under the time limit too."""
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy",
                        "--adapter", "tests.planted:hangs_while_loading", "--out", str(tmp_path), "--timeout", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--adapter: loading the adapters, or asking them whether they are installed, took " \
                                  "more than 1 s, the time limit (--timeout)" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------- under pytest

SUM_3X3 = open(os.path.join(EXAMPLES, "sum_3x3.yaml")).read()
PLANTED_FRAMEWORKS = """
from gradconf import registry
registry._entry_points = lambda: {"hangs": "tests.planted:Hangs", "crashes": "tests.planted:CrashesOnSum3x3"}
"""


@pytest.fixture
def planted(pytester, monkeypatch):
    """A pytest project whose installed adapters include the planted hanging and crashing ones."""
    monkeypatch.setenv("PYTHONPATH", ROOT)
    pytester.makeconftest(PLANTED_FRAMEWORKS)
    cases = pytester.mkdir("cases")
    (cases / "sum_3x3.yaml").write_text(SUM_3X3)
    (cases / "other.yaml").write_text(SUM_3X3.replace("name: sum_3x3", "name: other"))
    return pytester


def test_pytest_stops_a_hanging_test_at_the_time_limit(planted):
    result = planted.runpytest_subprocess("cases", "--gradconf-frameworks", "numpy,hangs", "--gradconf-timeout",
                                          "1", "--gradconf-report", "out", timeout=120)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*hangs ran this case for more than 1 s, the time limit (--gradconf-timeout)*"])
    (hung,) = [r for r in results(planted.path / "out")["records"] if r["framework"] == "hangs"
               and r["case"] == "sum_3x3"]
    assert hung["status"] == "error" and "more than 1 s" in hung["message"]


def test_a_crashed_xdist_worker_is_an_error_record_in_the_merged_report(planted):
    result = planted.runpytest_subprocess("cases", "--gradconf-frameworks", "numpy,crashes", "-n", "2", "-p", "xdist",
                                          "--gradconf-report", "out", timeout=120)
    result.assert_outcomes(passed=3, failed=1)
    records = results(planted.path / "out")["records"]
    (crashed,) = [r for r in records if r["framework"] == "crashes" and r["case"] == "sum_3x3"]
    assert crashed["status"] == "error" and crashed["message"].startswith(
        "the pytest worker died while crashes ran this case (worker 'gw")
    from gradconf.loader import load_file
    (case,) = load_file(str(planted.path / "cases" / "sum_3x3.yaml"))
    assert [crashed[k] for k in ("file", "dtype", "line")] == ["cases/sum_3x3.yaml", "float64", case.line]
    assert {(r["case"], r["framework"]) for r in records if r["status"] == "pass"} == {
        ("sum_3x3", "numpy"), ("other", "numpy"), ("other", "crashes")}
    assert "## Failures (1 row(s) in 1 case(s))" in (planted.path / "out" / "report.md").read_text()


# ---------------------------------------------------------------- the Child abstraction itself

def _serve_part_then_hang(conn, marker):
    for request in iter(conn.recv, None):
        conn.send(("start", "c", "fw"))
        conn.send(("part", "c", "fw", [request]))
        open(marker, "w").close()
        while True:
            time.sleep(0.05)


class _LaggingConnection:
    """The child's pipe, as a parent sees it that a signal interrupts before it read anything."""

    def __init__(self, real):
        self.real, self.interrupted = real, False

    def poll(self, timeout=0.0):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return self.real.poll(timeout)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_child_times_out_keeps_its_parts_and_is_gone(tmp_path):
    from gradconf.isolate import Child
    child = Child(_serve_part_then_hang, (str(tmp_path / "marker"),), time_limit=0.5)
    answer = child.ask("hello")
    assert (answer.kind, answer.value, answer.running) == ("timeout", 0.5, ("c", "fw"))
    assert child.parts == [("c", "fw", ["hello"])] and child.process is None


def test_an_interrupted_parent_still_reads_what_its_child_sent(tmp_path):
    """The child sent a finished framework's records, then hung; the signal reached the parent before it
    read them: they are read before the child is killed, so an interrupted run reports them."""
    from gradconf.isolate import Child
    marker = tmp_path / "marker"
    child = Child(_serve_part_then_hang, (str(marker),), time_limit=None)
    child.send("hello")
    while not marker.exists():
        time.sleep(0.01)
    pid, child.connection = child.process.pid, _LaggingConnection(child.connection)
    with pytest.raises(KeyboardInterrupt):
        child.poll(None)
    assert child.parts == [("c", "fw", ["hello"])] and child.process is None and not alive(pid)
