"""The `gradconf` command end to end: exit codes, reports, selection, plug-in adapters, lazy imports."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from gradconf.cli import main
from tests.conftest import ROOT

EXAMPLES = os.path.join(ROOT, "cases", "examples")
EXAMPLE_IDS = ["net_5x5", "net_5x5_delta", "net_5x5_f32", "sum_3x3", "sum_3x3_f32"]


def gradconf(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gradconf", *args], cwd=cwd, capture_output=True, text=True)


def test_numpy_run_passes_and_writes_all_reports(tmp_path):
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "--out", str(tmp_path), "-q"]) == 0
    assert sorted(os.listdir(tmp_path)) == [".runs", "latest", "report-heatmap.png", "report-heatmap.svg",
                                            "report-ratios.png", "report-ratios.svg", "report.html", "report.md",
                                            "results.csv", "results.json", "results.jsonl"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"started", "command", "platform", "python", "frameworks"} <= set(data["run"])
    assert data["run"]["frameworks"]["numpy"]
    golden = [r for r in data["records"] if r["reference"] == "expected"]
    assert len(golden) >= 10 and all(r["status"] == "pass" for r in golden)
    assert {"case", "framework", "reference", "step", "quantity", "tensor", "shape", "dtype", "max_abs_err",
            "max_rel_err", "worst_index", "rtol", "atol", "status", "message"} <= set(data["records"][0])
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "http" not in html.split("</style>")[0]


def test_changed_golden_number_fails_and_names_the_tensor(tmp_path):
    text = open(os.path.join(EXAMPLES, "sum_3x3.yaml")).read()
    (tmp_path / "sum_3x3.yaml").write_text(text.replace("[0.04, 3.88]", "[0.05, 3.88]"))
    p = gradconf("run", str(tmp_path), "--frameworks", "numpy", "--out", str(tmp_path / "out"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "conv.weight" in p.stdout and "param" in p.stdout
    md = (tmp_path / "out" / "report.md").read_text()
    failures = md.split("## Failures")[1]
    assert "conv.weight" in failures and "0.05" in failures and "0.04" in failures


def test_summary_leaves_absent_fields_blank():
    """A loss has no tensor and an error no step: the summary shows blanks, not pandas' `nan` / `1.0`."""
    from gradconf.cli import summarize
    from gradconf.runner import Record
    base = dict(case="c", framework="torch", reference="numpy", shape=[], dtype="float32", max_abs_err=1.0,
                max_rel_err=1.0, worst_index=[], rtol=0.0, atol=0.0, status="fail", message="off", ratio=3.0)
    text = summarize([Record(step=1, quantity="loss", tensor=None, **base),
                      Record(step=1, quantity="grad", tensor="fc.weight", **base),
                      Record(**{**base, "framework": "tensorflow", "status": "error", "message": "boom"},
                             step=None, quantity=None, tensor=None)])
    table = text.split("failing row(s):")[1].split("Who is wrong")[0]
    assert "nan" not in table and "1.0" not in table and "fc.weight" in table and "boom" in table


def test_malformed_corpus_exits_2_and_runs_nothing(tmp_path):
    p = gradconf("run", "tests/malformed", "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert "nothing was run" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_one_invalid_file_stops_a_run_before_anything_runs(tmp_path):
    shutil.copy(os.path.join(EXAMPLES, "sum_3x3.yaml"), tmp_path)
    (tmp_path / "bad.yaml").write_text("input: [[1]]\nmodel: [{sum: {}}]\nloss: {sum: {}}\nsteps: 0\n")
    p = gradconf("run", str(tmp_path), "--out", str(tmp_path / "out"))
    assert p.returncode == 2 and "bad.yaml:4: steps: must be >= 1, got 0" in p.stderr


@pytest.mark.parametrize("args,message", [
    (["--frameworks", "numpy,pytorch"], "unknown framework `pytorch`; did you mean `torch`?"),
    (["--reference", "mxnet"], "unknown reference `mxnet`"),
    (["--adapter", "nosuchmodule:Thing"], "cannot load adapter 'nosuchmodule:Thing'"),
    (["--count", "0"], "--count: must be >= 1, got 0"),
    (["-k", "conv and ("], "cannot parse -k expression"),
    (["--out", "README.md"], "--out: cannot write reports to README.md: it is a file, not a folder"),
    (["--out", "/proc/gradconf"], "--out: cannot write reports to /proc/gradconf: "),
])
def test_bad_options_exit_2(args, message):
    """Checked before anything runs (a report that cannot be written would lose a long run)."""
    p = gradconf("run", "cases/examples", "--frameworks", "numpy", *args)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert p.stderr.endswith("gradconf: 1 invalid option(s); nothing was run\n") and "Traceback" not in p.stderr


def test_reports_that_fail_to_write_after_the_run_keep_the_summary(tmp_path, monkeypatch, capsys):
    """(tests/test_outputs.py fills a real file system.)"""
    import gradconf.reportset

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(gradconf.reportset, "render", disk_full)
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "--out", str(tmp_path), "-q"]) == 2
    out, err = capsys.readouterr()
    assert "5 case(s)" in out and "0 failing" in out and "reports: none" in out
    assert f"cannot write reports to {tmp_path}: [Errno 28] No space left on device" in err
    assert "the records of every case finished before are in" in err


def test_a_framework_that_crashes_its_process_costs_one_case_not_the_run(tmp_path):
    """A segfault in native code cannot be caught: the run goes on in a fresh process, the crash is an
    error on that (case, framework), and every other record, the same case's included, is kept."""
    p = gradconf("run", "cases/examples", "--frameworks", "numpy", "--adapter", "tests.planted:CrashesOnSum3x3",
                 "--adapter", "tests.planted:Copy", "--out", str(tmp_path))
    assert p.returncode == 1, p.stderr
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    crashed = [r for r in records if r["framework"] == "crashes" and r["case"] == "sum_3x3"]
    assert len(crashed) == 1 and crashed[0]["status"] == "error"
    assert crashed[0]["message"].startswith("the process died (killed by SIGSEGV) while crashes ran this case")
    for fw in ("copy", "numpy"):
        assert {r["status"] for r in records if r["framework"] == fw and r["case"] == "sum_3x3"} == {"pass"}
    others = [r for r in records if r["case"] != "sum_3x3"]
    assert {r["case"] for r in others} == set(EXAMPLE_IDS) - {"sum_3x3"}
    assert {r["status"] for r in others} == {"pass"} and {r["framework"] for r in others} == {"numpy", "crashes", "copy"}
    assert [r["case"] for r in records] == sorted((r["case"] for r in records), key=EXAMPLE_IDS.index)  # in order


def test_in_process_run_gives_the_same_records(tmp_path):
    def records(*extra):
        out = tmp_path / "-".join(extra or ("isolated",))
        p = gradconf("run", "cases/examples", "--frameworks", "numpy", "--adapter", "tests.planted:Copy",
                     "--out", str(out), "-q", *extra)
        assert p.returncode == 0, p.stderr
        return json.loads((out / "results.json").read_text())["records"]
    isolated = records()
    assert len(isolated) > 50 and isolated == records("--in-process")


def test_numpy_only_run_and_validate_never_import_frameworks(tmp_path):
    code = ("import sys; from gradconf.cli import main; "
            f"rc = main(['run', 'cases/examples', '--frameworks', 'numpy', '--out', {str(tmp_path)!r}, '-q']); "
            "rc2 = main(['validate', 'cases']); "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc or rc2)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout


def test_missing_framework_is_skipped_not_a_crash(tmp_path, monkeypatch):
    from gradconf.adapters.torch_adapter import TorchAdapter
    monkeypatch.setattr(TorchAdapter, "missing", lambda self: "torch is not installed")
    assert main(["run", EXAMPLES, "--frameworks", "numpy,torch", "--out", str(tmp_path), "-q"]) == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    torch = [r for r in records if r["framework"] == "torch"]
    assert sorted(r["case"] for r in torch) == EXAMPLE_IDS and {r["status"] for r in torch} == {"skipped"}
    assert torch[0]["message"] == "torch is not installed"


def test_third_party_adapter(tmp_path, monkeypatch):
    (tmp_path / "my_adapter.py").write_text(
        "from gradconf.adapters.numpy_ref import NumpyReference\n"
        "class Doubling(NumpyReference):\n"
        "    name = 'doubling'\n"
        "    def run(self, case, initial):\n"
        "        t = super().run(case, initial)\n"
        "        for s in t.steps:\n"
        "            s.grads['input'] = 2 * s.grads['input']\n"
        "        return t\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["run", EXAMPLES, "--frameworks", "numpy,doubling", "--adapter", "my_adapter:Doubling",
               "--out", str(tmp_path / "out"), "-q"])
    assert rc == 1
    records = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    bad = {(r["case"], r["tensor"]) for r in records if r["framework"] == "doubling" and r["status"] == "fail"}
    assert bad == {(c, "input") for c in EXAMPLE_IDS}


def test_entry_point_adapters_run_by_default_and_a_broken_one_costs_only_its_records(tmp_path, monkeypatch):
    from gradconf import adapters, registry
    from gradconf.adapters.numpy_ref import NumpyReference
    monkeypatch.setattr(registry, "_entry_points", lambda: {"copy": "tests.planted:Copy",
                                                            "broken": "no_such_module_x:Adapter"})
    for name in ("torch", "tensorflow"):  # keep this test light: only the plug-ins and the reference
        monkeypatch.setattr(adapters.builtin(name).__class__, "missing", lambda self: "not in this test")
    sum_3x3 = os.path.join(EXAMPLES, "sum_3x3.yaml")
    assert main(["run", sum_3x3, "--out", str(tmp_path), "-q", "--in-process"]) == 1
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    by_fw = {fw: {r["status"] for r in records if r["framework"] == fw} for fw in ("numpy", "copy", "broken")}
    assert by_fw == {"numpy": {"pass"}, "copy": {"pass"}, "broken": {"error"}}
    assert "cannot load adapter 'no_such_module_x:Adapter'" in next(r["message"] for r in records
                                                                     if r["framework"] == "broken")
    # Asked for by name, a broken adapter is a bad option: exit 2, nothing run.
    assert main(["run", sum_3x3, "--frameworks", "broken", "--out", str(tmp_path / "b"), "-q"]) == 2
    assert issubclass(type(adapters.builtin("copy")), NumpyReference)


def test_list_and_keyword_selection():
    p = gradconf("list", "cases", "-k", "example and not delta")
    assert p.returncode == 0
    assert sorted(line.split("\t")[0] for line in p.stdout.splitlines()) == [i for i in EXAMPLE_IDS if "delta" not in i]
    p = gradconf("list", "cases/families/conv2d.yaml", "--count", "3")
    assert [line.split("\t")[0] for line in p.stdout.splitlines()] == [f"conv2d_random[{i}]" for i in range(3)]


def test_schema_is_json_and_names_every_top_level_key():
    p = gradconf("schema")
    schema = json.loads(p.stdout)
    assert p.returncode == 0 and {"input", "model", "loss", "count"} <= set(schema["properties"])
    assert schema["properties"]["dtype"]["anyOf"][0]["enum"] == ["float64", "float32", "float16", "bfloat16"]


def test_run_of_a_file_list_and_folder_mix(tmp_path):
    rc = main(["run", os.path.join(EXAMPLES, "sum_3x3.yaml"), os.path.join(ROOT, "cases", "conventions"),
               "--frameworks", "numpy", "--out", str(tmp_path), "-q"])
    assert rc == 0


def test_every_bundled_case_file_validates_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import glob

    from gradconf import yamlio
    schema = json.loads(gradconf("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(glob.glob(os.path.join(ROOT, "cases", "**", "*.yaml"), recursive=True))
    assert len(files) > 50
    for f in files:
        data, _ = yamlio.load(open(f).read(), f)
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (f, errors[:2])
    for bad in ({"input": [[1]], "modle": [], "loss": {"sum": {}}}, {"input": [[1]], "model": [{"conv3d": {}}],
                                                                     "loss": {"sum": {}}},
                {"input": [[1]], "model": ["relu"], "loss": {"sum": {}}, "dtype": "float31"}):
        assert list(validator.iter_errors(bad)), bad


def test_a_case_may_xfail_an_adapter_loaded_with_dash_dash_adapter(tmp_path, monkeypatch):
    (tmp_path / "halving.py").write_text(
        "from gradconf.adapters.numpy_ref import NumpyReference\n"
        "class Halving(NumpyReference):\n"
        "    name = 'halving'\n"
        "    def run(self, case, initial):\n"
        "        t = super().run(case, initial)\n"
        "        for s in t.steps:\n"
        "            s.grads['input'] = 0.5 * s.grads['input']\n"
        "        return t\n")
    text = open(os.path.join(EXAMPLES, "sum_3x3.yaml")).read().split("\nxfail:")[0] + \
        '\nxfail: {halving: "TEST: halves input gradients"}\n'
    (tmp_path / "case.yaml").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["run", str(tmp_path / "case.yaml"), "--frameworks", "numpy", "--adapter", "halving:Halving",
               "--out", str(tmp_path / "out"), "-q"])
    assert rc == 0
    records = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    assert "xfail" in {r["status"] for r in records if r["framework"] == "halving"}
