"""What gradconf writes survives kills, full disks, concurrent runs and hostile names and files: whole
report sets, streamed records, safe paths, the user's umask, limits before parsing."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.processes import EXAMPLES, ORDER, gone, hanging_run, results, start, wait_for


def test_a_killed_run_leaves_the_previous_set_and_report_rebuilds_its_stream(tmp_path):
    out = tmp_path / "out"
    p = start("run", "cases/examples", "--frameworks", "numpy", "--out", str(out), "-q", "-k", "net_5x5_delta")
    assert p.wait(timeout=120) == 0
    before = {n: (out / n).read_text() for n in ("results.json", "results.csv", "report.md", "report.html")}
    proc, _, pidfile = hanging_run(tmp_path, "--timeout", "0", "-j", "1")  # the stream of one worker
    child = wait_for(pidfile, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert gone(child)
    # DIR still shows the first run, all of it.
    assert {n: (out / n).read_text() for n in before} == before
    # What the killed run streamed becomes a report set, marked interrupted.
    p = subprocess.run([sys.executable, "-m", "gradconf", "report", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "2 case(s) not run" in p.stdout
    data = results(out)
    assert data["run"]["interrupted"]["cases_not_run"] == 2 and "Hangs" in data["run"]["command"]
    assert [c for c in ORDER if c in {r["case"] for r in data["records"]}] == ORDER[:3]
    assert {r["framework"] for r in data["records"]} == {"numpy", "hangs", "copy"}
    assert "Hangs" in (out / "report.md").read_text() and "net_5x5_f32" in (out / "results.csv").read_text()


def test_concurrent_runs_into_one_folder_never_mix(tmp_path):
    from gradconf import reportset
    out = tmp_path / "out"
    runs = [start("run", "cases/examples", "--frameworks", "numpy", "--out", str(out), "-q", "-k", k)
            for k in ("sum_3x3", "net_5x5") for _ in range(2)]
    assert [p.wait(timeout=120) for p in runs] == [0, 0, 0, 0]
    command = results(out)["run"]["command"]
    selection = command.split("-k ")[1]
    assert selection in (out / "report.md").read_text()
    cases = {r["case"] for r in results(out)["records"]}
    assert cases == {c for c in ORDER if selection in c}
    csv_cases = {line.split(",")[0] for line in (out / "results.csv").read_text().splitlines()[1:]}
    assert csv_cases == cases
    # Four complete sets: the newest KEEP by start are kept, and the one shown (the last to finish).
    kept = os.listdir(out / ".runs")
    assert len(kept) <= reportset.KEEP + 1 and os.path.basename(os.readlink(out / "latest")) in kept


def test_reports_are_created_with_the_users_umask(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"u{umask:o}"
        p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy",
                            "--out", str(out), "-q", "-k", "sum_3x3_f32"], cwd=ROOT, capture_output=True,
                           preexec_fn=lambda u=umask: os.umask(u))
        assert p.returncode == 0
        for name in ("results.json", "results.csv", "report.md", "report.html", "results.jsonl"):
            assert os.stat(out / name).st_mode & 0o777 == mode, (name, oct(os.stat(out / name).st_mode))


# ---------------------------------------------------------------- full disks

@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 2 MiB (tmpfs), or a skip saying why there is none."""
    mount = tmp_path / "disk"
    mount.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {p.stderr.strip() or p.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_whose_report_cannot_fit_is_refused_before_it_runs(small_disk):
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/families/conv2d.yaml", "--frameworks",
                        "numpy", "--out", str(small_disk / "out"), "-q"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "MB free, and a report of this run takes about" in p.stderr, p.stderr
    assert "nothing was run" in p.stderr and not os.path.exists(small_disk / "out" / ".runs")


def test_a_disk_that_fills_during_the_run_stops_it_and_keeps_what_was_streamed(small_disk):
    out = small_disk / "out"
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy", "--out",
                        str(out), "-q", "-k", "sum_3x3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    before = (out / "report.md").read_text()
    filler = small_disk / "filler"
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy",
                        "--adapter", "tests.planted:FillsDisk", "--out", str(out), "-q", "-j", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "GRADCONF_TEST_FILL": str(filler)})
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "No space left on device" in p.stderr
    assert "not run" in p.stdout  # the summary of what ran still prints
    assert (out / "report.md").read_text() == before  # the previous set, whole
    os.unlink(filler)
    p = subprocess.run([sys.executable, "-m", "gradconf", "report", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    data = results(out)
    assert data["run"]["interrupted"]["cases_run"] >= 1 and "FillsDisk" in data["run"]["command"]


# ---------------------------------------------------------------- where files go

def _failing_case(folder, name):
    text = open(os.path.join(EXAMPLES, "sum_3x3.yaml")).read().replace("[0.04, 3.88]", "[0.05, 3.88]")
    (folder / "c.yaml").write_text(text.replace("name: sum_3x3", f"name: {json.dumps(name)}"))


@pytest.mark.parametrize("name", ["x/../../../../escaped", "a/b", "..", "-rf *"])
def test_shrink_writes_inside_its_folder_whatever_the_case_name(tmp_path, name):
    cases, out = tmp_path / "cases", tmp_path / "deep" / "er" / "out"
    cases.mkdir()
    _failing_case(cases, name)
    p = subprocess.run([sys.executable, "-m", "gradconf", "shrink", name, "--paths", str(cases), "--frameworks",
                        "numpy", "--out", str(out), "--budget", "5"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    (written,) = os.listdir(out)
    assert not written.startswith(".") and "/" not in written and written.endswith(".yaml")
    found = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file())
    assert found == ["cases/c.yaml", f"deep/er/out/{written}"]
    from gradconf.loader import load_file
    (case,) = load_file(str(out / written))
    assert case.id == "regression_" + name  # the id inside the file is kept


def test_shrink_and_freeze_replace_a_planted_symlink_instead_of_following_it(tmp_path):
    cases, out, target = tmp_path / "cases", tmp_path / "out", tmp_path / "precious"
    cases.mkdir()
    out.mkdir()
    target.write_text("keep me\n")
    _failing_case(cases, "sum_3x3")
    os.symlink(target, out / "regression_sum_3x3.yaml")
    p = subprocess.run([sys.executable, "-m", "gradconf", "shrink", "sum_3x3", "--paths", str(cases), "--frameworks",
                        "numpy", "--out", str(out), "--budget", "5"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert target.read_text() == "keep me\n" and not os.path.islink(out / "regression_sum_3x3.yaml")
    os.symlink(target, tmp_path / "frozen.yaml")
    p = subprocess.run([sys.executable, "-m", "gradconf", "freeze", "conv2d_random[3]", "-o",
                        str(tmp_path / "frozen.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert target.read_text() == "keep me\n" and "conv2d_random[3]" in (tmp_path / "frozen.yaml").read_text()
    p = subprocess.run([sys.executable, "-m", "gradconf", "freeze", "conv2d_random[3]", "-o",
                        str(tmp_path / "no" / "such" / "dir.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "-o: cannot write" in p.stderr and "Traceback" not in p.stderr


def test_safe_names():
    from gradconf.files import safe_name
    assert safe_name("regression_net_random_3", ".yaml") == "regression_net_random_3.yaml"
    odd = [safe_name(n, ".yaml") for n in ("a/b", "a_b", "a:b", "../..", "x" * 400, "é")]
    assert len(set(odd)) == len(odd)
    assert all("/" not in n and not n.startswith(".") and len(n) <= 120 for n in odd)
    assert odd[1] == "a_b.yaml"  # unchanged names stay as they are


# ---------------------------------------------------------------- hostile input

@pytest.mark.parametrize("body,message", [
    ("steps: 1000000000\noptimizer: {sgd: {lr: 0.1}}\ninput: [[1.0]]\n",
     "steps: 1,000,000,000 steps is more than a case may take (the limit is 1,000)"),
    ("count: 1000000000\n", "count: 1,000,000,000 variants is more than gradconf draws for one family (the cap is "
                            "10,000)"),
    ("input: [" + ", ".join(["0.5"] * 3_000_000) + "]\n", "larger than 2 MiB, the limit for a case file"),
    ("input: [" + ", ".join(["0"] * 400_000) + "]\n", "more than 100,000 values written in one file (the limit)"),
    ("input: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(f"a{i}: &a{i} [*{'a' if i == 0 else f'a{i-1}'}, "
                                                          f"*{'a' if i == 0 else f'a{i-1}'}]\n" for i in range(40)),
     "values (YAML aliases"),
])
def test_validate_answers_a_hostile_file_within_seconds(tmp_path, body, message):
    (tmp_path / "hostile.yaml").write_text("model: [{sum: {}}]\nloss: {sum: {}}\n" + body)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "gradconf", "validate", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and elapsed < 20  # a bound against hangs, not a speed target


def test_count_cap_applies_to_the_option_too():
    p = subprocess.run([sys.executable, "-m", "gradconf", "list", "cases/families/conv2d.yaml", "--count", "10001"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "--count: must be at most 10,000" in p.stderr


# ---------------------------------------------------------------- adapters that raise where they should not

def test_an_adapter_whose_missing_or_version_raises_is_an_error_not_a_skip(tmp_path):
    from gradconf.cli import main
    for spec, frameworks, message in (
            ("tests.planted:MissingRaises", ["--frameworks", "numpy"], "missing_raises.missing() raised RuntimeError: "
                                                                      "probe exploded"),
            ("tests.planted:VersionRaises", ["--frameworks", "numpy"], "version_raises.version() raised RuntimeError: no version here")):
        out = tmp_path / spec.rsplit(":")[1]
        rc = main(["run", EXAMPLES, *frameworks, "--adapter", spec, "--out", str(out), "-q", "--in-process",
                   "-k", "sum_3x3"])
        assert rc == 1
        mine = [r for r in results(out)["records"] if r["framework"] != "numpy"]
        assert len(mine) == 2 and {r["status"] for r in mine} == {"error"}
        assert all(r["message"].startswith(message) for r in mine)


def test_an_installed_adapter_whose_missing_raises_does_not_crash_the_run(tmp_path, monkeypatch):
    """Without --frameworks every installed adapter is asked whether it is missing: one that raises
    is an error on its cases, not a traceback."""
    from gradconf import adapters, registry
    from gradconf.cli import main
    monkeypatch.setattr(registry, "_entry_points", lambda: {"missing_raises": "tests.planted:MissingRaises"})
    for name in ("torch", "tensorflow"):
        monkeypatch.setattr(adapters.builtin(name).__class__, "missing", lambda self: "not in this test")
    assert main(["run", EXAMPLES, "--out", str(tmp_path), "-q", "--in-process", "-k", "sum_3x3_f32"]) == 1
    (record,) = [r for r in results(tmp_path)["records"] if r["framework"] == "missing_raises"]
    assert record["status"] == "error" and "probe exploded" in record["message"]


def test_a_stream_cut_or_corrupted_midway_rebuilds_what_came_before(tmp_path):
    from gradconf import reportset
    from gradconf.runner import Record
    folder = reportset.RunFolder.create(str(tmp_path))
    folder.begin({"command": "gradconf run x"}, ["a", "b", "c"])
    record = Record("a", "numpy", "expected", 1, "loss", None, [], "float64", 0.0, 0.0, [], 1e-9, 1e-9, "pass")
    folder.add("a", [record])
    folder.close()
    with open(folder.stream_path, "ab") as fh:  # a case half written when the writer was killed, then junk
        fh.write(b'{"record": {"case": "b", "framework": "numpy", "status": "fail"}}\n[1, 2]\n{"case": "b"}\n')
    records, run = reportset.read_stream(folder.path)
    assert [r.case for r in records] == ["a"] and records[0] == record
    assert run["interrupted"]["cases_run"] == 1 and run["interrupted"]["cases_not_run"] == 2
    with open(folder.stream_path, "ab") as fh:
        fh.write(b'{"record": {"case": "c", "framew')  # cut mid-line
    assert reportset.read_stream(folder.path)[0] == records


def test_reports_replace_planted_symlinks_instead_of_following_them(tmp_path):
    out, precious = tmp_path / "out", tmp_path / "precious"
    out.mkdir()
    precious.write_text("keep me\n")
    for name in ("results.json", "report.md", "latest"):
        os.symlink(precious, out / name)
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy", "--out",
                        str(out), "-q", "-k", "sum_3x3_f32"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert precious.read_text() == "keep me\n" and results(out)["records"]
    assert os.readlink(out / "results.json") == os.path.join("latest", "results.json")
    # A run-folder root planted as a symlink would take the run folders out of DIR: refused.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(elsewhere, other / ".runs")
    p = subprocess.run([sys.executable, "-m", "gradconf", "run", "cases/examples", "--frameworks", "numpy", "--out",
                        str(other), "-q", "-k", "sum_3x3_f32"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "is a symlink; gradconf writes its run folders only inside" in p.stderr
    assert os.listdir(elsewhere) == []
