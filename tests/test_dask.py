"""`gradconf run --scheduler` / `--dask local` (harness.dask_backend) on real Dask processes: the records of
a local run, a lost worker's case retried once, a case that takes its worker down twice an `error`."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from tests.conftest import ROOT
from tests.processes import start

pytest.importorskip("distributed", reason="the `dask` extra is not installed")

FAMILY = os.path.join(ROOT, "cases", "families", "conv2d.yaml")
RUN = [FAMILY, "--count", "14", "--frameworks", "numpy", "--adapter", "tests.test_dask:SaysWhereItRuns", "-q"]
LOG = "GRADCONF_TEST_DASK_LOG"


class SaysWhereItRuns(NumpyReference):
    """The reference, 0.2 s slow, writing `<its parent's pid> <case id>` to $GRADCONF_TEST_DASK_LOG when it
    starts a case: under a Dask worker, the parent of the isolated child is the worker process."""
    name = "says"

    def run(self, case, initial):
        with open(os.environ[LOG], "a") as fh:
            fh.write(f"{os.getppid()} {case.id}\n")
        time.sleep(0.2)
        return super().run(case, initial)


class KillsItsWorker(SaysWhereItRuns):
    """As SaysWhereItRuns, and on conv2d_random[3] it kills the process that runs it, the Dask worker (not
    only its own isolated child): as a worker lost to the OOM killer or a dead host."""
    name = "killer"

    def run(self, case, initial):
        trace = super().run(case, initial)
        if case.id == "conv2d_random[3]":
            os.kill(os.getppid(), signal.SIGKILL)
        return trace


def _dask(*args, env):
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _by_case(records):
    out = {}
    for r in records:
        out.setdefault(r["case"], []).append(r)
    return out


def _local(tmp_path, log, *args):
    p = start("run", *RUN, *args, "-j", "1", "--out", str(tmp_path / "local"), env={LOG: str(log)})
    p.communicate(timeout=300)
    assert p.returncode == 0
    return json.loads((tmp_path / "local" / "results.json").read_text())["records"]


def test_a_cluster_that_loses_a_worker_gives_the_records_of_a_local_run(tmp_path):
    """A scheduler and two worker processes on loopback; one worker is killed mid-run."""
    env = {**os.environ, "PYTHONPATH": ROOT, LOG: str(tmp_path / "cluster.log"),
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    address_file = tmp_path / "scheduler.json"
    scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                      str(address_file), env=env)
    workers = []
    try:
        end = time.monotonic() + 60
        while not address_file.exists():
            assert scheduler.poll() is None and time.monotonic() < end, scheduler.stderr.read()
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        workers = [_dask("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", env=env)
                   for _ in range(2)]
        out = tmp_path / "cluster"
        run = start("run", *RUN, "--scheduler", address, "--out", str(out), env=env)
        log = tmp_path / "cluster.log"
        end = time.monotonic() + 240
        while True:  # once each worker has started two cases (its frameworks loaded), kill the first
            said = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
            if all(sum(pid == str(w.pid) for pid, _ in said) >= 2 for w in workers):
                break
            assert run.poll() is None and time.monotonic() < end, run.communicate()
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        lost = [case for pid, case in said if pid == str(workers[0].pid)][-1]  # what it was running then
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode in (0, 1), stderr
        assert workers[0].wait(5) == -signal.SIGKILL and workers[1].poll() is None
        said = [line.split() for line in log.read_text().splitlines()]
        assert len(said) < 14 + 3 and sum(pid == str(workers[0].pid) for pid, _ in said) < 14  # killed mid-run
        cluster = _by_case(json.loads((out / "results.json").read_text())["records"])
    finally:
        for p in [*workers, scheduler]:
            p.kill()
            p.wait()
    local = _by_case(_local(tmp_path, tmp_path / "local.log"))
    assert list(cluster) == list(local)  # every case, in case order
    differ = [case for case in local if cluster[case] != local[case]]
    assert all(case == lost for case in differ)  # every case but the retried one, exactly
    retried = [pid for pid, case in said if case == lost]
    assert retried[0] == str(workers[0].pid) and (len(retried) == 2 or differ)  # it ran again on the other worker
    for case in differ:  # ... or, where the retry was lost too, an error for each framework, saying so
        assert {r["status"] for r in cluster[case]} == {"error"} and "Dask worker" in cluster[case][0]["message"]


def test_a_case_that_takes_down_every_worker_it_meets_is_retried_once_then_an_error(tmp_path):
    """--dask local: a LocalCluster of two worker processes, whose nannies restart a killed one."""
    run = [*RUN[:-3], "--adapter", "tests.test_dask:KillsItsWorker", "-q"]
    env = {"PYTHONPATH": ROOT, LOG: str(tmp_path / "cluster.log")}
    p = start("run", *run, "--dask", "local", "-j", "2", "--out", str(tmp_path / "cluster"), env=env)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stderr
    cluster = _by_case(json.loads((tmp_path / "cluster" / "results.json").read_text())["records"])
    killer = cluster.pop("conv2d_random[3]")
    assert {r["framework"] for r in killer} == {"numpy", "killer"} and {r["status"] for r in killer} == {"error"}
    assert "the Dask worker running this case was lost 2 time(s)" in killer[0]["message"]
    said = [line.split()[1] for line in (tmp_path / "cluster.log").read_text().splitlines()]
    assert said.count("conv2d_random[3]") == 2  # the first try and one retry
    # here it would kill gradconf itself, the isolated child's parent: the other cases only
    p = start("run", *run, "-k", "not conv2d_random[3]", "-j", "1", "--out", str(tmp_path / "local"), env=env)
    p.communicate(timeout=300)
    assert p.returncode == 0
    assert cluster == _by_case(json.loads((tmp_path / "local" / "results.json").read_text())["records"])


def test_fuzz_on_a_local_cluster_finds_a_planted_bug(tmp_path):
    from tests.test_cli import gradconf
    p = gradconf("fuzz", FAMILY, "--frameworks", "numpy", "--adapter", "tests.planted:ConvDxNoRotation", "--dask",
                 "local", "-j", "2", "--variants", "10", "--shrink-budget", "10", "-o", str(tmp_path))
    assert p.returncode == 1, p.stderr
    assert "conv_dx_no_rotation  grad        conv2d   none" in p.stdout and "10 fresh variant(s)" in p.stdout
    assert len(list(tmp_path.iterdir())) == 1
