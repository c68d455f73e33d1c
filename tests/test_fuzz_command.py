"""`gradconf fuzz` (harness.fuzz): fresh variants beyond each family's count, failures grouped by signature, one
shrunk reproducer per new signature; on conforming frameworks only catalogued signatures; Ctrl-C keeps all."""
import os
import signal
import time

import numpy as np

from gradconf.fuzz import Signature, parse_budget, signatures
from gradconf.loader import load_file, load_paths
from tests.conftest import ROOT
from tests.planted import ConvDxNoRotation
from tests.processes import start
from tests.test_cli import gradconf

CONV = os.path.join(ROOT, "cases", "families", "conv2d.yaml")
PLANTED = ["--frameworks", "numpy", "--adapter", "tests.planted:ConvDxNoRotation"]
SIGNATURE = "conv_dx_no_rotation | grad | conv2d | none"


def _table(stdout):
    """The signature rows of the printed table."""
    lines = stdout.split("reproducer\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [line.split() for line in lines]


def test_a_planted_bug_is_one_signature_with_a_shrunk_reproducer(tmp_path):
    out = tmp_path / "regressions"
    p = gradconf("fuzz", CONV, *PLANTED, "--variants", "12", "-j", "2", "-o", str(out))
    assert p.returncode == 1, p.stderr
    rows = _table(p.stdout)
    assert len(rows) == 1 and rows[0][:4] == ["conv_dx_no_rotation", "grad", "conv2d", "none"], p.stdout
    assert int(rows[0][4]) >= 6 and rows[0][5].startswith("conv2d_random[") and int(rows[0][5][14:-1]) >= 200
    assert "12 fresh variant(s) of 1 family" in p.stdout and "--start 12" in p.stdout
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"regression_conv2d_random_{rows[0][5][14:-1]}.yaml"]
    assert files[0].read_text().startswith(f"# gradconf fuzz signature: {SIGNATURE}\n")
    small, = load_file(str(files[0]))
    drawn, = [c for c in load_paths([CONV], 300)[0] if c.id == rows[0][5]]  # the variant it came from
    assert np.prod(small.input.shape) < np.prod(drawn.input.shape)  # shrunk
    # the reproducer fails on the planted bug, and on nothing else
    assert gradconf("run", str(out), *PLANTED, "-q", "--out", str(tmp_path / "r1")).returncode == 1
    assert gradconf("run", str(out), "--frameworks", "numpy", "--adapter", "tests.planted:Copy", "-q", "--out",
                    str(tmp_path / "r2")).returncode == 0
    # a second campaign finds the same signature and says where its reproducer already is
    again = gradconf("fuzz", CONV, *PLANTED, "--variants", "12", "-j", "2", "-o", str(out), "--start", "12")
    assert "seen before: " + str(files[0]) in again.stdout and "0 new" in again.stdout, again.stdout
    assert len(list(out.iterdir())) == 1


def test_conforming_frameworks_show_only_catalogued_signatures(tmp_path):
    family = os.path.join(ROOT, "cases", "families", "nets_adam_f64.yaml")
    p = gradconf("fuzz", family, "--frameworks", "numpy,tensorflow", "--adapter", "tests.planted:Copy",
                 "--variants", "8", "-j", "2", "-o", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    rows = _table(p.stdout)
    assert rows and all(r[0] == "tensorflow" and r[3].startswith("TF-") and r[-1] == "catalogued" for r in rows)
    assert "0 not catalogued, 0 new" in p.stdout and not list(tmp_path.iterdir())


def test_signatures_name_the_first_failing_quantity_and_its_layer():
    case, = [c for c in load_paths([os.path.join(ROOT, "cases", "families", "nets.yaml")], 3)[0] if "[2]" in c.id]
    from gradconf.adapters.numpy_ref import NumpyReference
    from gradconf.runner import Runner
    records = Runner(NumpyReference(), [ConvDxNoRotation()]).run_case(case).records
    found = signatures(case, records)
    # conv2's dX is wrong: conv1's gradients are the first wrong ones, nearest the output; not the input's
    assert found == [Signature("conv_dx_no_rotation", "grad", "conv2d", "none")]
    assert signatures(case, [r for r in records if r.framework == "numpy"]) == []
    # the same records, with only the input's gradient and the dense head's failing: the dense layer, nearest
    # the output, names it; with the step-1 output failing too, the output does
    import dataclasses
    head = case.layers[-1]
    assert head.type == "dense" and case.layers[0].type == "conv2d"
    mine = [dataclasses.replace(r, status="fail" if (r.step, r.quantity, r.tensor) in
                                {(1, "grad", "input"), (1, "grad", f"{head.name}.weight")} else "pass")
            for r in records if r.framework == "conv_dx_no_rotation"]
    assert signatures(case, mine) == [Signature("conv_dx_no_rotation", "grad", "dense", "none")]
    mine = [dataclasses.replace(r, status="fail") if (r.step, r.quantity) == (1, "output") else r for r in mine]
    assert signatures(case, mine) == [Signature("conv_dx_no_rotation", "output", "dense", "none")]


def test_budgets_read_as_times():
    assert [parse_budget(t) for t in ("10m", "90s", "1.5h", "600")] == [600, 90, 5400, 600]
    for bad in ("", "10 minutes", "-1m", "0"):
        try:
            parse_budget(bad)
        except ValueError as e:
            assert "takes a time" in str(e)
        else:
            raise AssertionError(bad)


def test_ctrl_c_keeps_what_was_found(tmp_path):
    log = tmp_path / "log"
    out = tmp_path / "regressions"
    p = start("fuzz", CONV, "--frameworks", "numpy", "--adapter", "tests.test_fuzz_command:SlowConvDx", "-j", "1",
              "--budget", "10m", "-o", str(out), env={"GRADCONF_TEST_FUZZ_LOG": str(log)}, start_new_session=True)
    end = time.monotonic() + 120
    while not log.exists() or len(log.read_text().splitlines()) < 8:
        assert p.poll() is None and time.monotonic() < end, p.communicate()
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    rows = _table(stdout)
    assert [r[:4] for r in rows] == [["slow_conv_dx", "grad", "conv2d", "none"]] and int(rows[0][4]) >= 3
    assert "interrupted by SIGINT: what was found is kept; new signatures written as drawn, unshrunk" in stderr
    written, = out.iterdir()
    assert "not reduced" in written.read_text().splitlines()[1]


class SlowConvDx(ConvDxNoRotation):
    name = "slow_conv_dx"

    def run(self, case, initial):
        with open(os.environ["GRADCONF_TEST_FUZZ_LOG"], "a") as fh:
            fh.write(case.id + "\n")
        time.sleep(0.1)
        return super().run(case, initial)
