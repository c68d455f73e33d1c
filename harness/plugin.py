"""pytest plugin (SPEC §4): every case file is a test module, every (case, framework) a test.

Which YAML files are case files (opt-in, so that a project's other YAML never breaks its session):
- any `*.yaml` / `*.yml` below a case folder: those the ini option `gradconf_paths` lists (relative to
  the rootdir), or, when it is not set, every folder named `cases`;
- anywhere else, a file whose name ends in `.case.yaml` / `.case.yml`;
- a YAML file named on the command line, whatever it holds (`pytest typo.yaml`).
A broken file that opted in is a loud collection error; nothing else is ever read.

Node ids are `<file>::<case id>[<framework>]`, the file relative to the project root: the rootdir when
pytest found an ini file, else the nearest folder above the file holding pyproject.toml, setup.cfg,
tox.ini, pytest.ini, setup.py or .git, else the folder above the topmost `cases` folder. So they do not
change with the folder pytest is started from or with `-n` (xdist), and junit's classnames, made from
them, do not either.

It runs through the same Runner as `gradconf run`; the reference runs once per case per process.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest

from .errors import CaseError
from .records import Status

CASE_SUFFIXES = (".case.yaml", ".case.yml")  # the opt-in outside a case folder
_PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", "tox.ini", "pytest.ini", "setup.py", ".git")


class _References:
    """(file, case id) -> the reference run of that case, shared by its framework tests in this process.

    Bounded by bytes, not entries: a shuffled order (pytest-randomly, `-p random-order`) puts a case's
    tests far apart, and all the bundled cases' references take ~12 MB, while one large case can take
    hundreds. Least recently used goes first; the newest is always kept.
    """

    def __init__(self, budget: int = 256 << 20):
        self.budget, self.held = budget, 0
        self._runs: OrderedDict = OrderedDict()  # key -> (reference, its bytes)

    def get(self, key, compute):
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key][0]
        reference = compute()
        size = reference.nbytes()
        self._runs[key] = (reference, size)
        self.held += size
        while self.held > self.budget and len(self._runs) > 1:
            _, (_, freed) = self._runs.popitem(last=False)
            self.held -= freed
        return reference


_REFERENCES = _References()
_ADAPTERS: dict = {}         # framework name -> adapter, one per process
_SESSION_RECORDS: list = []  # every test's records, gathered in the controlling process for the reports
_RECORDS_KEY = "gradconf_records"
_CASE_IDS = pytest.StashKey[dict]()  # case id -> the file that defined it, per session (ids are unique, SPEC §1)
_NAMED = pytest.StashKey[set]()       # the paths named on the command line, resolved


class CaseFailure(Exception):
    """A (case, framework) with failing records; shown by CaseItem.repr_failure, never as a traceback."""


def pytest_addoption(parser):
    group = parser.getgroup("gradconf")
    group.addoption("--gradconf-report", metavar="DIR", help="write gradconf's reports (json/csv/md/html) to DIR")
    group.addoption("--gradconf-frameworks", metavar="LIST",
                    help="comma-separated frameworks to test (default: numpy and every known adapter)")
    group.addoption("--gradconf-count", type=int, metavar="N", help="override every family's count")
    from .deadline import DEFAULT_TIME_LIMIT
    group.addoption("--gradconf-timeout", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                    help=f"seconds each (case, framework) test may take; past it, an error naming the limit "
                         f"(default {DEFAULT_TIME_LIMIT:g}; 0: none; off under --pdb)")
    parser.addini("gradconf_paths", type="paths",
                  help="folders whose YAML files are gradconf case files (default: every folder named `cases`); "
                       "elsewhere only *.case.yaml files and files named on the command line are")


# Native thread pools read these once, when their library loads: set before any worker starts.
_POOL_SIZE_VARIABLES = ("GRADCONF_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


_CONFIG = None  # the session's config, for hooks that are not handed it


def pytest_configure(config):
    global _CONFIG
    _CONFIG = config
    from . import registry
    for name in registry.known_names():
        config.addinivalue_line("markers", f"{name}: gradconf cases run through the {name} adapter")
    _frameworks(config)  # options are checked once, up front: a bad one is a usage error, not N collection errors
    count = config.getoption("gradconf_count")
    from .family import MAX_COUNT
    if count is not None and count < 1:
        raise pytest.UsageError(f"--gradconf-count: must be >= 1, got {count}")
    if count is not None and count > MAX_COUNT:
        raise pytest.UsageError(f"--gradconf-count: must be at most {MAX_COUNT:,} (gradconf's cap on a family's "
                                f"variants), got {count:,}")
    if not config.getoption("gradconf_timeout") >= 0:
        raise pytest.UsageError(f"--gradconf-timeout: must be >= 0 seconds (0: no limit), got "
                                f"{config.getoption('gradconf_timeout')}")
    out = config.getoption("gradconf_report")
    if out and not hasattr(config, "workerinput"):  # asked now, so that a long session never loses its report
        from .report import check_out_dir
        why = check_out_dir(out)
        if why:
            raise pytest.UsageError(f"--gradconf-report: {why}")
    workers = getattr(config.option, "numprocesses", None) or os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if str(workers).isdigit() and int(workers) > 0:
        # xdist: N workers on the same cores share them. Left alone, every worker starts a pool per
        # core in BLAS, OpenMP, torch and TF, and spinning idle threads steal the other workers' time.
        # The controller sets this before it spawns the workers, which inherit it; a user's own setting wins.
        share = str(max(1, (os.cpu_count() or 1) // int(workers)))
        for variable in _POOL_SIZE_VARIABLES:
            os.environ.setdefault(variable, share)


def is_case_file(path: Path, case_paths: list[Path] | None = None) -> bool:
    """Below a case folder (`case_paths`, or any folder named `cases`), or named `*.case.yaml`."""
    if path.suffix not in (".yaml", ".yml"):
        return False
    if path.name.endswith(CASE_SUFFIXES):
        return True
    if case_paths:
        resolved = path.resolve()
        return any(resolved.is_relative_to(p.resolve()) for p in case_paths)
    return "cases" in path.parent.parts


def project_root(config, path: Path) -> Path:
    """What node ids are relative to (module docstring): fixed for a file, wherever pytest starts."""
    if config.inipath is not None:
        return config.rootpath
    parents = path.resolve().parents
    for folder in parents:
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder
    cases = [folder for folder in parents if folder.name == "cases"]
    return cases[-1].parent if cases else config.rootpath  # no project marker: the topmost `cases` folder's parent


def _node_id(config, path: Path) -> str:
    root = project_root(config, path)
    resolved = path.resolve()
    rel = resolved.relative_to(root) if resolved.is_relative_to(root) else Path(os.path.relpath(resolved, root))
    return rel.as_posix()


def _named_on_command_line(config, path: Path) -> bool:
    """`pytest typo.yaml`: a YAML file the user names is meant as a case file, whatever it holds."""
    named = config.stash.get(_NAMED, None)
    if named is None:
        here = config.invocation_params.dir
        named = config.stash[_NAMED] = {(here / arg.split("::")[0]).resolve() for arg in config.args}
    return path.resolve() in named


def pytest_collect_file(file_path: Path, parent):
    config = parent.config
    if is_case_file(file_path, config.getini("gradconf_paths")) or (
            file_path.suffix in (".yaml", ".yml") and _named_on_command_line(config, file_path)):
        return CaseFile.from_parent(parent, path=file_path, nodeid=_node_id(config, file_path))
    return None


def _adapter(name: str):
    from . import registry
    if name not in _ADAPTERS:
        _ADAPTERS[name] = registry.builtin_or_unloadable(name)  # a broken plug-in: its tests error, others run
    return _ADAPTERS[name]


# Keras runs each case in a worker process per backend and builds a Keras model per case: 1–4 s of CPU a
# case against torch's 0.15 (README, pytest). Unless --gradconf-frameworks names frameworks, the plugin runs
# them on the fixed cases only; `gradconf run` (make run) runs them on every variant too.
SLOW_FRAMEWORKS = ("keras-tensorflow", "keras-jax", "keras-torch")


def _frameworks(config) -> list[str]:
    from . import registry
    chosen = config.getoption("gradconf_frameworks")
    names = [n.strip() for n in chosen.split(",") if n.strip()] if chosen else registry.known_names()
    for n in names:
        if n not in registry.known_names():
            raise pytest.UsageError(f"--gradconf-frameworks: unknown framework `{n}`; known: "
                                    f"{', '.join(registry.known_names())}")
    return names


class CaseFile(pytest.File):
    def collect(self):
        from .divergences import expectation
        from . import registry
        from .loader import load_file
        # Named as the user can open it from where pytest runs (the rootdir may be elsewhere).
        rel = os.path.relpath(self.path)
        try:
            cases = load_file(rel if not rel.startswith("..") else str(self.path),
                              self.config.getoption("gradconf_count"), registry.known_names())
        except CaseError as e:
            raise self.CollectError(str(e)) from None
        seen = self.config.stash.setdefault(_CASE_IDS, {})
        for case in cases:
            first = seen.setdefault(case.id, case.file)
            if first != case.file:  # as `gradconf run` says it: reports and records name cases by id
                raise self.CollectError(str(CaseError(f"case id `{case.id}` is also used by {first}", ("name",),
                                                      case.file, case.line_of("name"))))
        named = self.config.getoption("gradconf_frameworks")
        for case in cases:
            for fw in _frameworks(self.config):
                if case.family is not None and fw in SLOW_FRAMEWORKS and not named:
                    continue  # families' variants on Keras: `gradconf run` and sweeps (README, pytest)
                item = CaseItem.from_parent(self, name=f"{case.id}[{fw}]", case=case, framework=fw)
                item.add_marker(getattr(pytest.mark, fw))
                expected = expectation(case, fw)  # a known divergence, where it applies on this machine:
                if expected is not None and expected.applies:  # pytest's xfail (strict: a pass is XPASS(strict))
                    item.add_marker(pytest.mark.xfail(reason=expected.why, strict=expected.strict, raises=CaseFailure))
                item.extra_keyword_matches.update(case.tags)  # `-k conv2d` selects by tag
                yield item

    class CollectError(Exception):
        pass

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class CaseItem(pytest.Item):
    def __init__(self, *, case, framework, **kw):
        super().__init__(**kw)
        self.case, self.framework = case, framework

    def _reference(self, runner):
        from .runner import CaseResult
        return _REFERENCES.get((self.case.file, self.case.id),
                               lambda: runner.reference_trace(self.case, CaseResult(self.case)))

    def _time_limit(self) -> float | None:
        """--gradconf-timeout, unless a debugger may stop in the test."""
        option = self.config.option
        if getattr(option, "usepdb", False) or getattr(option, "trace", False):
            return None
        return self.config.getoption("gradconf_timeout") or None

    def runtest(self):
        from .deadline import TimeLimit, deadline
        from .records import note
        from .runner import CaseResult, Runner
        reference = _adapter("numpy")
        runner = Runner(reference, [])
        fw = _adapter(self.framework)
        try:
            with deadline(self._time_limit()):
                result = runner.run_case(self.case, [fw], reference=self._reference(runner))
            records = [r for r in result.records if r.framework == self.framework]
        except TimeLimit as e:
            records = Runner.apply_xfail(self.case, CaseResult(self.case, [note(
                self.case, self.framework, Status.ERROR, f"{self.framework} ran this case for more than {e.seconds:g} s, "
                "the time limit (--gradconf-timeout); pytest stopped it", reference.name)])).records
        if self.config.getoption("gradconf_report"):
            # Travels to the controller with the call report (under xdist, serialised by execnet in
            # pure Python): one JSON string is far cheaper to ship than a list of dicts.
            self.user_properties.append((_RECORDS_KEY, json.dumps([r.to_dict() for r in records])))
        statuses = {r.status for r in records}
        if statuses & {Status.FAIL, Status.ERROR, Status.XFAIL}:  # xfail: the marker set at collection reports it
            raise CaseFailure(records)
        if statuses & {Status.SKIPPED, Status.UNSUPPORTED}:
            pytest.skip(next(f"{r.status}: {r.message}" for r in records
                             if r.status in (Status.SKIPPED, Status.UNSUPPORTED)))

    def repr_failure(self, excinfo):
        if not isinstance(excinfo.value, CaseFailure):
            return super().repr_failure(excinfo)
        if self.get_closest_marker("xfail") and not self.config.option.runxfail:
            # An expected failure shows only its reason (`-rx`): skip building a table nobody sees.
            return f"{self.case.file}:{self.case.line}: case {self.case.id} [{self.framework}]: expected failure"
        from .diagnose import describe_failures
        return describe_failures(self.case, self.framework, excinfo.value.args[0])

    def reportinfo(self):
        return self.path, self.case.line - 1, f"{self.case.id}[{self.framework}]"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "teardown":  # pytest copies user_properties into every phase's report: ship them once
        report = outcome.get_result()
        report.user_properties = [p for p in report.user_properties if p[0] != _RECORDS_KEY]


def pytest_runtest_logreport(report):
    """Runs in the controlling process (also under xdist): gather every test's records."""
    for key, value in getattr(report, "user_properties", ()):
        if key == _RECORDS_KEY and report.when == "call":
            _SESSION_RECORDS.append(json.loads(value))
    if report.when == "???" and report.failed and _CONFIG and _CONFIG.getoption("gradconf_report"):
        crashed = _crash_record(report.nodeid, str(report.longrepr))  # xdist's report of a worker that died
        if crashed is not None:
            _SESSION_RECORDS.append([crashed])


def _crash_record(nodeid: str, why: str) -> dict | None:
    """The `error` record of the (case, framework) test `nodeid` whose xdist worker died running it."""
    from .runner import Record
    file, _, name = nodeid.partition("::")
    case_id, bracket, framework = name[:-1].rpartition("[") if name.endswith("]") else ("", "", "")
    if not bracket:
        return None  # not one of ours
    case = _find_case(file, case_id)
    message = (f"the pytest worker died while {framework} ran this case ({why}; a crash in native code, or a "
               f"hang past twice --gradconf-timeout); xdist went on in a fresh worker")
    return Record(case_id, framework, "numpy", None, None, None, None, case.dtype if case else "", None, None, None,
                  None, None, Status.ERROR, message, family=case.family if case else None,
                  file=case.file if case else file, line=case.line if case else None).to_dict()


def _find_case(file: str, case_id: str):
    """The case, read again in the controller for its dtype, family and line; None if that fails."""
    from .loader import load_file
    try:
        root = _CONFIG.rootpath if _CONFIG else Path(".")
        path = os.path.relpath(root / file)
        count = _CONFIG.getoption("gradconf_count") if _CONFIG else None
        return next((c for c in load_file(path, count) if c.id == case_id), None)
    except (CaseError, OSError):
        return None



def pytest_sessionfinish(session):
    out = session.config.getoption("gradconf_report")
    if not out or hasattr(session.config, "workerinput"):  # only the controller writes reports
        return
    import sys

    from .report import run_fingerprint, write_reports
    from .runner import Record
    records = [Record(**d) for batch in _SESSION_RECORDS for d in batch]
    names = sorted({r.framework for r in records})
    info = run_fingerprint("pytest " + " ".join(sys.argv[1:]), "numpy", [_adapter(n) for n in names])
    try:
        write_reports(records, info, out)
    except OSError as e:  # checked at the start, but a disk can fill up meanwhile: say so, keep pytest's outcome
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"gradconf: cannot write the reports to {out}: {e.strerror or e}"
        reporter.write_line(message, red=True) if reporter else print(message, file=sys.stderr)
