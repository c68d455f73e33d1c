"""`gradconf run -j N` (harness.pool): the same records in the same order for any N, crash isolation kept,
each worker on its share of the cores."""
import json
import os
import signal
import time

import pytest

from gradconf.adapters import usable_cores
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.pool import Pool, worker_share
from tests.test_cli import EXAMPLE_IDS, EXAMPLES, gradconf


class SlowOnTheFirstCase(NumpyReference):
    """The reference, half a second late on the first example: with two workers, later cases finish first."""
    name = "slow"

    def run(self, case, initial):
        if case.id == EXAMPLE_IDS[0]:
            time.sleep(0.5)
        return super().run(case, initial)


class SaysItsThreads(NumpyReference):
    """Fails every case with the thread share its process was given (GRADCONF_THREADS)."""
    name = "threads"

    def run(self, case, initial):
        raise RuntimeError(f"GRADCONF_THREADS={os.environ.get('GRADCONF_THREADS')}")


def _records(tmp_path, *args):
    out = tmp_path / "-".join(args)
    p = gradconf("run", EXAMPLES, "--frameworks", "numpy", "--out", str(out), "-q", *args)
    assert p.returncode in (0, 1), p.stderr
    return json.loads((out / "results.json").read_text())["records"]


def test_any_number_of_workers_gives_the_records_of_one_in_case_order(tmp_path):
    slow = ("--adapter", "tests.test_pool:SlowOnTheFirstCase", "--adapter", "tests.planted:Copy")
    one = _records(tmp_path, *slow, "-j", "1")
    assert len(one) > 50 and [r["case"] for r in one] == sorted((r["case"] for r in one), key=EXAMPLE_IDS.index)
    assert _records(tmp_path, *slow, "-j", "3") == one == _records(tmp_path, *slow, "--in-process")


@pytest.mark.parametrize("jobs", ["2", "5"])
def test_a_crash_costs_one_case_with_many_workers(tmp_path, jobs):
    records = _records(tmp_path, "--adapter", "tests.planted:CrashesOnSum3x3", "--adapter", "tests.planted:Copy",
                       "-j", jobs)
    crashed = [r for r in records if r["framework"] == "crashes" and r["case"] == "sum_3x3"]
    assert len(crashed) == 1 and "killed by SIGSEGV" in crashed[0]["message"]
    assert all(r["status"] == "pass" for r in records if r is not crashed[0])
    assert [r["case"] for r in records] == sorted((r["case"] for r in records), key=EXAMPLE_IDS.index)


def test_each_worker_gets_its_share_of_the_cores(tmp_path):
    records = _records(tmp_path, "--adapter", "tests.test_pool:SaysItsThreads", "-j", "2")
    said = {r["message"].split(" (at")[0] for r in records if r["framework"] == "threads"}
    assert said == {f"RuntimeError: GRADCONF_THREADS={max(1, usable_cores() // 2)}"}


def test_the_share_is_set_for_the_children_only_and_a_users_setting_wins(monkeypatch):
    monkeypatch.delenv("GRADCONF_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with worker_share(usable_cores() + 1):
        assert (os.environ["GRADCONF_THREADS"], os.environ["OMP_NUM_THREADS"]) == ("1", "7")
    assert "GRADCONF_THREADS" not in os.environ and os.environ["OMP_NUM_THREADS"] == "7"


@pytest.mark.parametrize("args,message", [(["-j", "0"], "-j: must be >= 1, got 0"),
                                          (["-j", "2", "--in-process"], "-j: --in-process runs every case")])
def test_bad_job_counts_exit_2(args, message):
    p = gradconf("run", EXAMPLES, "--frameworks", "numpy", *args)
    assert p.returncode == 2 and message in p.stderr, p.stderr


class SlowEverywhere(NumpyReference):
    name = "slow"

    def run(self, case, initial):
        time.sleep(0.3)
        return super().run(case, initial)


def test_a_stopped_run_kills_the_workers_still_in_a_case():
    from gradconf.loader import load_paths
    from gradconf.runner import Runner
    cases, _ = load_paths([EXAMPLES])
    pool = Pool(Runner(NumpyReference(), [SlowEverywhere()]), 2, finish=lambda: {"versions": "here"})
    results = pool.run(cases * 4)
    t0 = time.perf_counter()
    assert next(results)[0] is cases[0]
    processes = [c.process for c in pool.children]
    results.close()  # as a signal or an exception in the caller does
    assert time.perf_counter() - t0 < 1.0 and all(c.process is None for c in pool.children)
    assert all(not p.is_alive() for p in processes if p is not None)
    assert pool.finish() == {"versions": "here"}  # in a fresh child
    pool.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_every_finished_case_of_every_worker(tmp_path, signum):
    """With two workers, one hung on sum_3x3: the cases the other finished are kept, in case order."""
    from tests.processes import ORDER, gone, hanging_run, results, stray, wait_for
    proc, out, pidfile = hanging_run(tmp_path, "--timeout", "0", "-j", "2", start_new_session=True)
    child = wait_for(pidfile, proc)
    (os.killpg if signum == signal.SIGINT else os.kill)(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, stderr
    data = results(out)
    cut = data["run"]["interrupted"]  # the first case in flight: sum_3x3, or one the other worker was in
    partial = cut["partial"]
    assert ORDER.index(partial["case"]) <= ORDER.index("sum_3x3") and partial["finished"]
    assert {r["framework"] for r in data["records"] if r["case"] == partial["case"]} == set(partial["finished"])
    assert cut["cases_run"] + cut["cases_not_run"] == len(ORDER)
    cases = {r["case"] for r in data["records"]}
    assert cut["cases_run"] == len(cases) - 1
    # Before the partial case, only the one the other worker was still in (no framework done yet) can be missing.
    assert len(set(ORDER[:ORDER.index(partial["case"])]) - cases) <= 1
    seen = list(dict.fromkeys(r["case"] for r in data["records"]))
    assert seen == sorted(seen, key=ORDER.index)
    assert {r["status"] for r in data["records"]} == {"pass"}
    assert gone(child) and not stray(str(out))
