"""This tree against a baseline commit (default 519fb2c, the commit before issue 21), side by side in one run.

    python benchmarks/compare_baseline.py                      # every row (about 10 minutes on 2 quiet cores)
    python benchmarks/compare_baseline.py --rounds 3 --only run,reference
    python benchmarks/compare_baseline.py --baseline HEAD~5

The baseline is extracted with `git archive` into a temporary folder and run with the same Python
(this tree's venv, its `PYTHONPATH` pointing at the baseline first: for a baseline of the `gradconf` layout, at a
folder where `gradconf` links to its harness/, which the venv's editable install would otherwise shadow). Every row times the same work in
both trees, in rounds whose order alternates (baseline first, then this tree first, ...), so that
both sides meet the same machine; a row's figure is the median over rounds of each round's ratio, and
the range is printed beside it. Both trees run the baseline's `cases/` folder, so their records are
comparable. Rows:

- run: `gradconf run cases -q` (this tree: the default `-j`, the usable cores), wall and CPU seconds
  (all processes); the records are checked to have the same keys and statuses.
- test: `pytest -n 2 -q` (= `make test` after set-up), each tree's own test suite (not the same work once
  the suite has grown). The session runs each tree's own pytest plugin, which the venv's entry point would
  otherwise give as this checkout's; a baseline suite's own pytester and subprocess sessions still get this
  checkout's through that entry point.
- test-cases: the bundled-case part of `make test`, the same work in both: `pytest -n 2 -q` over the
  baseline's `cases/` with the baseline's frameworks (numpy, torch, tensorflow); the outcome counts are checked
  to be equal.
- overhead: one process runs the cases the way `gradconf run --in-process` does; the share of its time
  spent outside the adapters' run() calls and the framework imports (conditioning re-runs,
  comparisons, records, reports) — what each core pays on top of the adapters' own work.
- reference: benchmarks/cases/large_net.yaml (16×3×64×64, two 32-channel convs): the reference
  including its conditioning re-runs over the slower framework's run(), in CPU seconds of the process
  (best of 3 each; a framework's idle threads spinning count, as they take a core from someone).
- reports: reports and summary for 141k synthetic records with a quarter of the cases failing, over
  the same with none failing.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "519fb2c"

_OVERHEAD = """
import json, time, tempfile
t0 = time.perf_counter()
from gradconf import adapters
from gradconf.loader import load_paths
from gradconf.report import write_reports
from gradconf.runner import Runner
cases, errors = load_paths(["cases"], COUNT)
frameworks = [a for a in (adapters.builtin(n) for n in ("torch", "tensorflow")) if not a.missing()]
for fw in frameworks:
    fw.version()  # the framework's import, counted apart
imports = time.perf_counter() - t0
runner = Runner(adapters.builtin("numpy"), frameworks)
records, compute = [], 0.0
for case in cases:
    result = runner.run_case(case)
    records += result.records
    compute += sum(result.seconds.values())
with tempfile.TemporaryDirectory() as out:
    write_reports(records, {"command": "bench"}, out)
total = time.perf_counter() - t0
print(json.dumps({"total": total, "imports": imports, "adapters": compute, "cases": len(cases)}))
"""

_REFERENCE = """
import json, time
from gradconf import adapters
from gradconf.loader import load_file
from gradconf.runner import CaseResult, Runner
from gradconf.tensors import materialize
(case,) = load_file(LARGE)
init = materialize(case)
reference = adapters.builtin("numpy")
frameworks = [a for a in (adapters.builtin(n) for n in ("torch", "tensorflow")) if not a.missing()]
runner = Runner(reference, frameworks)

def with_conditioning():
    ref = runner.reference_trace(case, CaseResult(case))
    ref.slack  # measured on first use in newer trees, at once in older ones

def best(fn):  # CPU seconds of this process: one thread each under the policy, and robust to a busy machine
    fn()
    times = []
    for _ in range(3):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)

out = {"reference": best(with_conditioning)}
for fw in frameworks:
    out[fw.name] = best(lambda: fw.run(case, init))
print(json.dumps(out))
"""

_REPORTS = """
import json, time, tempfile
from gradconf.report import write_reports
from gradconf.runner import Record
from gradconf.cli import summarize

def records(failing_share, n=141_000, per_case=30):
    out = []
    cases = n // per_case
    for c in range(cases):
        fails = c < cases * failing_share
        for i in range(per_case):
            fw = ("numpy", "torch", "tensorflow")[i % 3]
            bad = fails and fw == "torch" and i % 6 == 1
            out.append(Record(f"case_{c}", fw, "numpy", 1 + i // 15, "grad", f"t{i % 5}", [3, 3], "float32",
                              1e-3 if bad else 1e-9, 1e-3, [0, 1], 1e-6, 1e-8, "fail" if bad else "pass",
                              "max error 1e-3" if bad else "", 12.0 if bad else 0.1, 1.0, 1.001,
                              f"family_{c % 7}", "cases/x.yaml", 3))
    return out

out = {}
for label, share in (("none", 0.0), ("quarter", 0.25)):
    rs = records(share)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_reports(rs, {"command": "bench"}, d)
    summarize(rs)
    out[label] = time.perf_counter() - t0
print(json.dumps(out))
"""


def _timed(args, cwd, env) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of every process it waited for, the completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


class Tree:
    def __init__(self, label: str, path: str, cases: str, package: str = "gradconf", path_entry: str | None = None):
        self.label, self.path, self.cases, self.package = label, path, cases, package
        self.env = {**os.environ, "PYTHONPATH": path_entry or path}
        # pytest finds a plugin through the venv's entry point, which is this checkout's `gradconf.plugin`: a
        # baseline of the `harness` layout must name its own instead (xdist's workers take the same flags)
        self.plugin_args = () if package == "gradconf" else ("-p", "no:gradconf", "-p", "harness.plugin")
        for variable in ("GRADCONF_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env.pop(variable, None)  # each tree's own thread policy

    def command(self, *args) -> tuple[float, float, subprocess.CompletedProcess]:
        return _timed([sys.executable, *args], self.path, self.env)

    def spelled(self, code: str) -> str:
        """`code` in this tree's module names: before the `gradconf` package, `harness` and `adapters`."""
        if self.package == "gradconf":
            return code
        return code.replace("from gradconf import adapters", "import adapters").replace("gradconf.", "harness.")

    def probe(self, code: str, **constants) -> dict:
        head = "".join(f"{k} = {v!r}\n" for k, v in constants.items())
        wall, cpu, done = self.command("-c", head + self.spelled(code))
        if done.returncode != 0:
            raise RuntimeError(f"{self.label}: probe failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _rounds(trees, rounds: int, measure) -> list[dict]:
    """measure(tree) per tree per round, the order alternating between rounds."""
    table = []
    for r in range(rounds):
        row = {}
        for tree in (trees if r % 2 == 0 else trees[::-1]):
            row[tree.label] = measure(tree)
        table.append(row)
    return table


def _ratio_row(name: str, table: list[dict], key, target: str, unit: str = "s") -> dict:
    ratios = [key(r["this"]) / key(r["baseline"]) for r in table]
    return {"benchmark": name, "baseline": f"{statistics.median(key(r['baseline']) for r in table):.2f}{unit}",
            "this tree": f"{statistics.median(key(r['this']) for r in table):.2f}{unit}",
            "ratio (median)": round(statistics.median(ratios), 3),
            "range": f"{min(ratios):.2f}–{max(ratios):.2f}", "rounds": len(ratios), "target": target}


def _record_keys(path: str) -> list[tuple]:
    with open(os.path.join(path, "results.json"), encoding="utf-8") as fh:
        records = json.load(fh)["records"]
    return [(r["case"], r["framework"], r["reference"], r["step"], r["quantity"], r["tensor"], r["status"])
            for r in records]


def bench_run(trees, rounds: int) -> list[dict]:
    outs = {}

    def measure(tree):
        out = tempfile.mkdtemp(prefix=f"gradconf-bench-{tree.label}-")
        wall, cpu, done = tree.command("-m", tree.package, "run", tree.cases, "-q", "--out", out)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{tree.label}: gradconf run exited {done.returncode}:\n{done.stderr[-3000:]}")
        keys = _record_keys(out)
        shutil.rmtree(out, ignore_errors=True)
        outs.setdefault(tree.label, keys)
        return {"wall": wall, "cpu": cpu}
    table = _rounds(trees, rounds, measure)
    same = outs["this"] == outs["baseline"]
    differ = sum(a != b for a, b in zip(outs["this"], outs["baseline"])) + abs(len(outs["this"]) - len(outs["baseline"]))
    note = "same records" if same else f"{differ} of {len(outs['baseline'])} records differ in key or status"
    return [{**_ratio_row("gradconf run cases: wall", table, lambda m: m["wall"], "≤ 0.5"), "note": note},
            _ratio_row("gradconf run cases: CPU, all processes", table, lambda m: m["cpu"], "—")]


def bench_test(trees, rounds: int) -> list[dict]:
    """Each tree's own suite: not the same work once the suite has grown (the `test-cases` row is)."""
    def measure(tree):
        wall, cpu, done = tree.command("-m", "pytest", *tree.plugin_args, "-n", "2", "-q")
        if done.returncode != 0:
            raise RuntimeError(f"{tree.label}: pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
        return {"wall": wall, "cpu": cpu}
    table = _rounds(trees, rounds, measure)
    return [_ratio_row("make test (pytest -n 2 -q), each tree's own suite: wall", table, lambda m: m["wall"], "—"),
            _ratio_row("make test: CPU, all processes", table, lambda m: m["cpu"], "—")]


def bench_test_cases(trees, rounds: int) -> list[dict]:
    """The bundled-case half of `make test`, the same work in both trees: `pytest -n 2 -q` over the baseline's
    cases/, each tree's own plugin, the baseline's frameworks (numpy, torch, tensorflow)."""
    outcomes = {}

    def measure(tree):
        wall, cpu, done = tree.command("-m", "pytest", *tree.plugin_args, "-n", "2", "-q", "--gradconf-frameworks",
                                       "numpy,torch,tensorflow", tree.cases)
        if done.returncode != 0:
            raise RuntimeError(f"{tree.label}: pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
        summary = done.stdout.strip().splitlines()[-1]  # "3081 passed, 174 xfailed, 2 warnings in 38.2s"
        outcomes.setdefault(tree.label, re.findall(r"(\d+) (passed|failed|xfailed|xpassed|skipped|errors?)\b", summary))
        return {"wall": wall, "cpu": cpu}
    table = _rounds(trees, rounds, measure)
    note = "same outcomes" if outcomes["this"] == outcomes["baseline"] else \
        f"outcomes differ: {outcomes['baseline']} against {outcomes['this']}"
    return [{**_ratio_row("pytest -n 2 over the baseline's cases (make test's cases): wall", table,
                          lambda m: m["wall"], "≤ 0.6"), "note": note},
            _ratio_row("same: CPU, all processes", table, lambda m: m["cpu"], "—")]


def bench_overhead(trees, rounds: int, count: int = 10) -> list[dict]:
    table = _rounds(trees, rounds, lambda tree: tree.probe(_OVERHEAD, COUNT=count))
    rows = []
    for label in ("baseline", "this"):
        shares = [(m[label]["total"] - m[label]["imports"] - m[label]["adapters"])
                  / (m[label]["total"] - m[label]["imports"]) for m in table]
        rows.append({"benchmark": f"harness overhead, per core ({label}; cases, families at --count {count})",
                     "ratio (median)": round(statistics.median(shares), 3),
                     "range": f"{min(shares):.3f}–{max(shares):.3f}", "rounds": len(shares),
                     "target": "≤ 0.10" if label == "this" else "—"})
    return rows


def bench_reference(trees, rounds: int) -> list[dict]:
    large = os.path.join(ROOT, "benchmarks", "cases", "large_net.yaml")
    table = _rounds(trees, rounds, lambda tree: tree.probe(_REFERENCE, LARGE=large))
    rows = []
    for label in ("baseline", "this"):
        ratios = [m[label]["reference"] / max(v for k, v in m[label].items() if k != "reference") for m in table]
        seconds = {k: statistics.median(m[label][k] for m in table) for k in table[0][label]}
        rows.append({"benchmark": f"large net: reference incl. conditioning / slower framework ({label})",
                     "ratio (median)": round(statistics.median(ratios), 3),
                     "range": f"{min(ratios):.2f}–{max(ratios):.2f}", "rounds": len(ratios),
                     "target": "≤ 0.7" if label == "this" else "—",
                     "note": ", ".join(f"{k} {v:.3f}s" for k, v in seconds.items())})
    return rows


def bench_reports(trees, rounds: int) -> list[dict]:
    table = _rounds(trees, rounds, lambda tree: tree.probe(_REPORTS))
    rows = []
    for label in ("baseline", "this"):
        ratios = [m[label]["quarter"] / m[label]["none"] for m in table]
        rows.append({"benchmark": f"reports, 141k records: 25% failing / none failing ({label})",
                     "ratio (median)": round(statistics.median(ratios), 3),
                     "range": f"{min(ratios):.2f}–{max(ratios):.2f}", "rounds": len(ratios),
                     "target": "≤ 1.3" if label == "this" else "—",
                     "note": f"none failing: {statistics.median(m[label]['none'] for m in table):.1f}s"})
    return rows


BENCHMARKS = {"run": (bench_run, 2), "test": (bench_test, 1), "test-cases": (bench_test_cases, 2),
              "overhead": (bench_overhead, 2), "reference": (bench_reference, 2), "reports": (bench_reports, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help=f"the commit to compare against (default {BASELINE})")
    p.add_argument("--only", help=f"comma-separated rows: {', '.join(BENCHMARKS)} (default: all)")
    p.add_argument("--rounds", type=int, help="rounds per row (default: 2, or 1 for test and reports)")
    args = p.parse_args(argv)
    from tabulate import tabulate
    with tempfile.TemporaryDirectory(prefix="gradconf-baseline-") as base:
        archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        cases = os.path.join(base, "cases")
        package = _package(base)
        trees = [Tree("baseline", base, cases, package=package, path_entry=_importable(base, package)),
                 Tree("this", ROOT, cases)]
        for tree in trees:  # a warm disk cache for both: the first import of torch and TF from cold is slow
            tree.probe("import json, torch, tensorflow, keras\nprint(json.dumps({}))")
        rows = []
        for name in (args.only.split(",") if args.only else BENCHMARKS):
            bench, rounds = BENCHMARKS[name.strip()]
            t0 = time.perf_counter()
            rows += bench(trees, args.rounds or rounds)
            print(f"{name}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print(f"this tree {_head()} against {args.baseline}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} "
          f"at the end")
    print(tabulate(rows, headers="keys", tablefmt="github"))


def _package(tree: str) -> str:
    """The import name of the harness in `tree`: `gradconf` since the layout refactor, `harness` before it."""
    with open(os.path.join(tree, "pyproject.toml")) as f:
        return "gradconf" if '"gradconf.adapters" = "adapters"' in f.read() else "harness"


def _importable(tree: str, package: str) -> str:
    """A PYTHONPATH entry under which `import gradconf` is `tree`'s. A tree of the `gradconf` layout maps the
    package onto harness/ and adapters/ (pyproject's package-dir), which only an install sees, and this venv's
    editable install would answer for it with this checkout: so `tree/.importable/gradconf` links to harness/,
    with adapters/ linked inside it (`tree` is a throwaway extract)."""
    if package != "gradconf":
        return tree  # `harness` and `adapters` import from the tree's root
    os.symlink(os.path.join(tree, "adapters"), os.path.join(tree, "harness", "adapters"))
    entry = os.path.join(tree, ".importable")
    os.mkdir(entry)
    os.symlink(os.path.join(tree, "harness"), os.path.join(entry, "gradconf"))
    return os.pathsep.join([entry, tree])


def _head() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    main()
