"""The pytest plugin, through pytester: collection, outcomes, selection, diagnosis, xdist, reports."""
import json
import os
import shutil

import pytest

from tests.conftest import ROOT

# Runs that execute torch or TensorFlow go through a subprocess: pytester's in-process runs restore
# sys.modules afterwards, and a framework's lazily imported C extensions do not survive a second import.

SUM_3X3 = open(os.path.join(ROOT, "cases", "examples", "sum_3x3.yaml")).read().split("\nxfail:")[0] + "\n"  # its own Keras marks off: tests add theirs
TINY = "input: [[1.0, 2.0]]\nmodel: [{dense: {name: fc, out_features: 1}}]\nloss: {sum: {}}\n"


@pytest.fixture
def cases(pytester):
    d = pytester.mkdir("cases")
    (d / "sum_3x3.yaml").write_text(SUM_3X3)
    return d


def test_collects_one_test_per_case_and_framework(pytester, cases):
    result = pytester.runpytest("--collect-only", "-q", "cases")
    result.stdout.fnmatch_lines(["cases/sum_3x3.yaml::sum_3x3[[]numpy[]]", "cases/sum_3x3.yaml::sum_3x3[[]torch[]]",
                                 "cases/sum_3x3.yaml::sum_3x3[[]tensorflow[]]"])


def test_pass(pytester, cases):
    pytester.runpytest_subprocess("cases", "--gradconf-frameworks", "numpy,torch").assert_outcomes(passed=2)


def test_changed_golden_number_fails_with_a_diagnosis_not_a_traceback(pytester, cases):
    (cases / "sum_3x3.yaml").write_text(SUM_3X3.replace("[0.04, 3.88]", "[0.05, 3.88]"))
    result = pytester.runpytest_subprocess("cases", "--gradconf-frameworks", "torch")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "conv.weight" in out and "0.04 vs 0.05" in out and "cases/sum_3x3.yaml:19" in out
    assert "harness/" not in out and "Traceback" not in out and "runner.py" not in out


def test_xfail_with_reason(pytester, cases):
    body = SUM_3X3.replace("[0.04, 3.88]", "[0.05, 3.88]") + 'xfail: {torch: "TEST-1: a documented divergence"}\n'
    (cases / "sum_3x3.yaml").write_text(body)
    result = pytester.runpytest_subprocess("cases", "--gradconf-frameworks", "numpy,torch", "-rxX")
    result.assert_outcomes(failed=1, xfailed=1)  # numpy has no xfail: its golden mismatch fails
    result.stdout.fnmatch_lines(["*TEST-1: a documented divergence*"])
    # --runxfail: the expected failure is an ordinary failure again, with the full diagnosis
    result = pytester.runpytest_subprocess("cases", "--gradconf-frameworks", "torch", "--runxfail")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*conv.weight*0.04 vs 0.05*"])


def test_xpass_fails(pytester, cases):
    (cases / "sum_3x3.yaml").write_text(SUM_3X3 + 'xfail: {torch: "TEST-2: should differ"}\n')
    result = pytester.runpytest_subprocess("cases", "--gradconf-frameworks", "torch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*TEST-2: should differ*"])


def test_missing_framework_is_a_skip_with_the_reason(pytester, cases, monkeypatch):
    from gradconf.adapters.torch_adapter import TorchAdapter
    from gradconf import plugin
    monkeypatch.setattr(TorchAdapter, "missing", lambda self: "torch is not installed")
    monkeypatch.setattr(plugin, "_ADAPTERS", {})
    result = pytester.runpytest("cases", "--gradconf-frameworks", "torch", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*skipped: torch is not installed*"])


def test_invalid_case_file_is_a_collection_error_naming_file_and_field(pytester, cases):
    (cases / "bad.yaml").write_text("input: [[[[1]]]]\nmodel: [{conv2d: {out_channels: 1, kernel_size: 1, stride: 0}}]\n"
                                    "loss: {sum: {}}\n")
    result = pytester.runpytest("cases")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cases/bad.yaml:2: model[[]0[]].conv2d.stride: must be >= 1, got 0*"])
    assert "Traceback" not in result.stdout.str()


def test_keyword_and_marker_selection(pytester, cases):
    (cases / "tiny.yaml").write_text("tags: [dense_only]\n" + TINY)
    pytester.runpytest_subprocess("cases", "-m", "torch").assert_outcomes(passed=2)
    pytester.runpytest_subprocess("cases", "-k", "dense_only and numpy").assert_outcomes(passed=1)
    # numpy, torch, jax and keras-tensorflow (keras-jax and keras-torch: its marks' KERAS-*-X64, xfail or xpass)
    result = pytester.runpytest_subprocess("cases", "-k", "sum_3x3 and not keras", "-m", "not tensorflow")
    result.assert_outcomes(passed=3)


def test_yaml_outside_case_folders_is_collected_only_when_it_opts_in(pytester):
    """A project's own config with the three case keys is not a case (it once failed the whole session);
    `*.case.yaml` opts in anywhere."""
    configs = pytester.mkdir("configs")
    (configs / "model.yaml").write_text("input: {shape: [8, 3, 224, 224]}\nmodel: resnet50\nloss: cross_entropy\n")
    pytester.makefile(".yaml", ci="jobs: {build: {runs-on: ubuntu}}\n")
    pytester.makefile(".case.yaml", mine=TINY)
    result = pytester.runpytest("--gradconf-frameworks", "numpy", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*mine.case.yaml::mine[[]numpy[]] PASSED*"])


def test_gradconf_paths_names_the_case_folders(pytester):
    pytester.makeini("[pytest]\ngradconf_paths = conformance\n")
    pytester.mkdir("conformance")
    (pytester.path / "conformance" / "a.yaml").write_text(TINY)
    pytester.mkdir("cases")  # with gradconf_paths set, only the folders it names are case folders
    (pytester.path / "cases" / "b.yaml").write_text(TINY.replace("loss:", "modle: 1\nloss:"))
    result = pytester.runpytest("--gradconf-frameworks", "numpy", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["conformance/a.yaml::a[[]numpy[]]", "1 test collected*"])


def _ids(result) -> list[str]:
    return sorted(line.split(" ")[0] for line in result.stdout.lines if "::" in line)


def _junit(path) -> list[tuple[str, str]]:
    import xml.etree.ElementTree as ET
    return sorted((t.get("classname"), t.get("name")) for t in ET.parse(path).getroot().iter("testcase"))


@pytest.mark.parametrize("layout", ["cases folder, no project marker", "pyproject.toml and *.case.yaml"])
def test_node_ids_are_the_same_serially_under_xdist_and_from_another_folder(pytester, monkeypatch, layout):
    """`--deselect` and CI history need ids that do not move: relative to the project root, not to wherever
    pytest was started, with or without -n; junit's classnames likewise."""
    project = pytester.mkdir("userproj")
    if layout.startswith("pyproject"):
        (project / "pyproject.toml").write_text("[project]\nname = 'userproj'\n")
        folder, file = "tests", "x.case.yaml"
    else:
        folder, file = "cases", "x.yaml"
    (project / folder).mkdir()
    (project / folder / file).write_text(TINY)
    (project / "sub").mkdir()
    args = ["--gradconf-frameworks", "numpy", "-p", "no:randomly"]
    runs = {}
    for name, where, target, extra in (("serial", project, folder, []), ("xdist", project, folder, ["-n", "2"]),
                                       ("below", project / "sub", f"../{folder}", []),
                                       ("above", pytester.path, f"userproj/{folder}", ["-n", "2"]),
                                       ("inside", project / folder, ".", [])):
        monkeypatch.chdir(where)
        junit = pytester.path / f"{name}.xml"
        result = pytester.runpytest_subprocess(target, *args, *extra, f"--junitxml={junit}")
        assert result.ret == 0, result.stdout.str()
        runs[name] = _junit(junit)
    assert runs["serial"] == [(f"{folder}.{file}", "x[numpy]")]
    assert runs["xdist"] == runs["below"] == runs["above"] == runs["inside"] == runs["serial"]
    monkeypatch.chdir(project / "sub")
    deselected = pytester.runpytest_subprocess(f"../{folder}", *args, "--deselect", f"{folder}/{file}::x[numpy]")
    deselected.assert_outcomes(deselected=1)


def test_a_yaml_file_named_on_the_command_line_is_a_case_file_whatever_it_holds(pytester):
    """`pytest typo.yaml` means it: a misspelt key is a collection error naming it, not "not found"."""
    pytester.makefile(".yaml", typo=TINY.replace("model:", "modle:"))
    result = pytester.runpytest("typo.yaml", "--gradconf-frameworks", "numpy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["typo.yaml:2: modle: unknown key `modle`; did you mean `model`?*"])
    assert pytester.runpytest(".", "--gradconf-frameworks", "numpy").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_runs_from_a_folder_other_than_the_rootdir(pytester, cases, monkeypatch):
    """The rootdir (here: the ini file's folder) need not be where pytest runs; files are read
    wherever they are and named as the user can open them from there."""
    pytester.makeini("[pytest]\n")
    (cases / "broken.yaml").write_text(TINY.replace("out_features: 1", "out_features: 0"))
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest(str(cases), "--gradconf-frameworks", "numpy", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"{cases}/broken.yaml:2: model[[]0[]].dense.out_features: must be >= 1, got 0"])


def test_a_case_id_used_twice_is_a_collection_error_as_in_the_cli(pytester, cases):
    (cases / "copy.yaml").write_text(SUM_3X3.replace("description:", "# a tweaked copy\ndescription:"))
    result = pytester.runpytest("cases", "--gradconf-frameworks", "numpy", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)  # the first file to define the id keeps it
    result.stdout.fnmatch_lines(["cases/sum_3x3.yaml:2: name: case id `sum_3x3` is also used by cases/copy.yaml"])


def test_report_folder_that_cannot_be_written_is_a_usage_error(pytester, cases):
    pytester.makefile(".txt", taken="a file where the report folder should go")
    result = pytester.runpytest("cases", "--gradconf-frameworks", "numpy", "--gradconf-report", "taken.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gradconf-report: cannot write reports to taken.txt: it is a file, not a folder"])


@pytest.mark.parametrize("option, message", [
    (("--gradconf-frameworks", "numpy,mxnet"), "*--gradconf-frameworks: unknown framework `mxnet`; known: numpy, *"),
    (("--gradconf-count", "0"), "*--gradconf-count: must be >= 1, got 0"),
])
def test_bad_options_are_one_usage_error_not_a_collection_error_per_file(pytester, cases, option, message):
    result = pytester.runpytest("cases", *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_families_expand_and_count_overrides(pytester, cases):
    shutil.copy(os.path.join(ROOT, "cases", "families", "conv2d.yaml"), cases / "conv2d.yaml")
    result = pytester.runpytest("cases/conv2d.yaml", "--collect-only", "-q", "--gradconf-count", "3",
                                "--gradconf-frameworks", "numpy")
    result.stdout.fnmatch_lines(["cases/conv2d.yaml::conv2d_random[[]0[]][[]numpy[]]",
                                 "cases/conv2d.yaml::conv2d_random[[]2[]][[]numpy[]]", "3 tests collected*"])


def test_xdist_gives_the_same_results_and_merged_reports(pytester, cases):
    shutil.copy(os.path.join(ROOT, "cases", "families", "pool2d.yaml"), cases / "pool2d.yaml")
    args = ["cases", "--gradconf-count", "4", "--gradconf-frameworks", "numpy,torch"]
    serial = pytester.runpytest_subprocess(*args, "--gradconf-report", "serial")
    parallel = pytester.runpytest_subprocess(*args, "-n", "2", "--gradconf-report", "parallel")
    serial.assert_outcomes(passed=10)
    parallel.assert_outcomes(passed=10)

    def records(d):
        data = json.loads((pytester.path / d / "results.json").read_text())["records"]
        return sorted((r["case"], r["framework"], r["reference"], r["step"], r["quantity"], r["tensor"] or "",
                       r["max_abs_err"]) for r in data)
    assert records("serial") == records("parallel") and len(records("serial")) > 20
    assert (pytester.path / "parallel" / "report.html").exists()


COUNT_REFERENCES = """
import gradconf.runner

runs = []
_reference_trace = gradconf.runner.Runner.reference_trace


def counted(self, case, result):
    runs.append(case.id)
    return _reference_trace(self, case, result)


gradconf.runner.Runner.reference_trace = counted


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.framework)  # every numpy test, then every torch test: far apart


def pytest_unconfigure(config):
    print(f"\\nreference runs: {len(runs)} for {len(set(runs))} cases")
"""


def test_reference_runs_once_per_case_even_when_its_tests_are_far_apart(pytester, cases):
    shutil.copy(os.path.join(ROOT, "cases", "families", "pool2d.yaml"), cases / "pool2d.yaml")
    pytester.makeconftest(COUNT_REFERENCES)
    result = pytester.runpytest_subprocess("cases", "--gradconf-count", "80", "--gradconf-frameworks", "numpy,torch",
                                           "-s")
    result.assert_outcomes(passed=162)
    result.stdout.fnmatch_lines(["*reference runs: 81 for 81 cases*"])


class _Run:
    def __init__(self, size):
        self.size = size

    def nbytes(self):
        return self.size


def test_reference_cache_is_bounded_by_bytes_least_recently_used_first():
    from gradconf.plugin import _References
    cache, computed = _References(budget=100), []

    def get(key, size):
        return cache.get(key, lambda: computed.append(key) or _Run(size))
    get("a", 40), get("b", 40), get("a", 40)   # a hit: computed once, and now the most recent
    assert computed == ["a", "b"] and cache.held == 80
    get("c", 40)                                # over budget: b, the least recently used, goes
    get("a", 40)
    assert computed == ["a", "b", "c"] and cache.held == 80
    get("b", 40)
    assert computed == ["a", "b", "c", "b"]
    get("huge", 500)                            # larger than the budget alone: kept, everything else goes
    assert cache.held == 500 and get("huge", 500).size == 500 and computed[-1] == "huge"
