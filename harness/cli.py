"""The `gradconf` command (SPEC §2): run, validate, list, freeze, schema.

Exit status: 0 all passed (xfail counts as passed); 1 a mismatch, an xpass or an adapter error;
2 an invalid case file or option (nothing is run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tabulate import tabulate

from . import __version__
from .errors import COMMAND_LINE, CaseError

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradconf", description="Gradient conformance across NumPy, PyTorch, TensorFlow.")
    p.add_argument("--version", action="version", version=f"gradconf {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run cases and write reports")
    run.add_argument("paths", nargs="*", default=["cases"], help="case files or folders (default: cases/)")
    run.add_argument("--frameworks", help="comma-separated, e.g. numpy,torch,tensorflow (default: every one installed)")
    run.add_argument("--reference", default="numpy", help="the adapter everything is compared against")
    run.add_argument("--out", default="reports", help="report folder (default: reports/)")
    run.add_argument("-k", dest="keyword", help="select cases by id substring or tag: 'conv and not slow'")
    run.add_argument("--adapter", action="append", default=[], metavar="MODULE:ATTR", help="a third-party adapter")
    run.add_argument("--count", type=int, help="override every family's count")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    in_process = dict(action="store_true", help="run the frameworks in this process (for a debugger); by default "
                      "they run in a child process, so that one that crashes costs its case, not the run")
    run.add_argument("--in-process", **in_process)

    for name, helptext in (("validate", "check case files, run nothing"), ("list", "list case ids")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("paths", nargs="*", default=["cases"])
        sp.add_argument("--count", type=int, help="override every family's count")
        if name == "list":
            sp.add_argument("-k", dest="keyword", help="select cases by id substring or tag")
            sp.add_argument("-v", "--verbose", action="store_true", help="also print each case's file and tags")

    fr = sub.add_parser("freeze", help="write one family variant as a standalone case file")
    fr.add_argument("id", help="e.g. conv_random[17]")
    fr.add_argument("-o", "--output", help="file to write (default: stdout)")
    fr.add_argument("--paths", nargs="*", default=["cases"], help="where to find the family (default: cases/)")

    sh = sub.add_parser("shrink", help="reduce a failing case to a small one that still fails")
    sh.add_argument("id", help="a case id, e.g. net_random[17]")
    sh.add_argument("--paths", nargs="*", default=["cases"], help="where to find the case (default: cases/)")
    sh.add_argument("--frameworks", help="frameworks to try (default: every one installed); the first failing one is used")
    sh.add_argument("--reference", default="numpy")
    sh.add_argument("--adapter", action="append", default=[], metavar="MODULE:ATTR")
    sh.add_argument("--out", default=os.path.join("cases", "regressions"), help="where to write the small case")
    sh.add_argument("--budget", type=float, default=60.0, help="seconds to spend shrinking (default 60)")
    sh.add_argument("--in-process", **in_process)

    sub.add_parser("schema", help="print the JSON Schema of a case file")
    return p


def _err(msg: str) -> None:
    print(f"gradconf: {msg}", file=sys.stderr)


def _load(paths, count=None):
    from .loader import load_paths
    if count is not None and count < 1:
        raise CaseError(f"must be >= 1, got {count}", ("--count",), COMMAND_LINE)
    cases, errors = load_paths(paths, count)
    return cases, errors


def _report_invalid(errors) -> int:
    for e in errors:
        print(str(e), file=sys.stderr)
    files = len({e.file for e in errors if e.file != COMMAND_LINE})
    options = sum(e.file == COMMAND_LINE for e in errors)
    what = [f"{files} invalid case file(s)"] * bool(files) + [f"{options} invalid option(s)"] * bool(options)
    _err(f"{' and '.join(what)}; nothing was run")
    return EXIT_INVALID


def cmd_validate(args) -> int:
    try:
        cases, errors = _load(args.paths, args.count)
    except CaseError as e:
        return _report_invalid([e])
    if errors:
        return _report_invalid(errors)
    print(f"{len(cases)} case(s) in {len({c.file for c in cases})} file(s): all valid")
    return EXIT_OK


class _Invalid(Exception):
    """Invalid case files or options: reported together, nothing is run."""

    def __init__(self, errors):
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def _selected_cases(args) -> list:
    """The cases under args.paths (families at --count), filtered by -k. Raises _Invalid."""
    from .select import compile_expr
    try:
        cases, errors = _load(args.paths, args.count)
        pred = compile_expr(args.keyword) if args.keyword else None
    except CaseError as e:
        raise _Invalid([e]) from None
    if errors:
        raise _Invalid(errors)
    return [c for c in cases if pred is None or pred(c)]


def cmd_list(args) -> int:
    try:
        cases = _selected_cases(args)
    except _Invalid as e:
        return _report_invalid(e.errors)
    for c in cases:
        print(f"{c.id}\t{c.file}\t{','.join(c.tags)}" if args.verbose else c.id)
    return EXIT_OK


def cmd_schema(args) -> int:
    from .schema import case_schema
    print(json.dumps(case_schema(), indent=2))
    return EXIT_OK


def cmd_freeze(args) -> int:
    from .freeze import freeze
    try:
        text = freeze(args.id, args.paths)
    except CaseError as e:
        return _report_invalid([e])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def find_case(case_id: str, paths):
    """A case by id: a family variant is drawn directly, whatever the family's count."""
    from .family import draw_variant, split_id
    from .freeze import find_family
    parsed = split_id(case_id)
    if parsed is not None:
        try:
            file, data, lines = find_family(parsed[0], paths)
        except CaseError:
            file = None
        if file is not None:
            try:
                return draw_variant(data, file, lines, parsed[1])
            except CaseError as e:
                raise e.located(file, lines) from None
    cases, errors = _load(paths)
    for c in cases:
        if c.id == case_id:
            return c
    raise CaseError(f"no case `{case_id}` under {', '.join(paths)}" + (f" ({len(errors)} invalid file(s) skipped)"
                                                                        if errors else ""), ("ID",), COMMAND_LINE)


def cmd_shrink(args) -> int:
    from .runner import FAILING, Runner
    from .shrink import failing_predicate, regression_text, shrink, write_regression
    try:
        reference, frameworks = select_adapters(args.frameworks, args.reference, args.adapter)
        case = find_case(args.id, args.paths)
    except CaseError as e:
        return _report_invalid([e])
    from . import isolate
    runner = Runner(reference, frameworks)
    if isolate.available() and not args.in_process:  # a crash is a failure to shrink, not the end
        runner = isolate.IsolatedRunner(runner)  # one child for the first run and the shrink
    try:
        records = runner.run_case(case).records
        failing = list(dict.fromkeys(r.framework for r in records if r.status in FAILING))
        if not failing:
            _err(f"{case.id} does not fail on {', '.join(a.name for a in [reference, *frameworks])}: "
                 "nothing to shrink")
            return EXIT_FAIL
        framework = failing[0]
        print(f"shrinking {case.id}, failing on {framework} ...", file=sys.stderr)
        small = shrink(case, failing_predicate(runner, framework), args.budget,
                       log=lambda m: print("  " + m, file=sys.stderr))
    finally:
        if isinstance(runner, isolate.IsolatedRunner):
            runner.close()
    text = regression_text(case, small, framework)
    path = write_regression(text, "regression_" + case.id.replace("[", "_").replace("]", ""), args.out)
    print(f"wrote {path}: {len(small.layers)} layer(s), input {list(small.input.shape)}, {small.steps} step(s)")
    return EXIT_OK


def select_adapters(frameworks: str | None, reference: str, extra: list[str]):
    """(reference adapter, [adapters to compare]). Raises CaseError for an unknown name or bad spec."""
    import adapters as registry

    plugins = {}
    for spec in extra:
        try:
            a = registry.load_adapter(spec)
        except ValueError as e:
            raise CaseError(str(e), ("--adapter",), COMMAND_LINE) from None
        plugins[a.name] = a
    known = {**registry.all_specs(), **dict.fromkeys(plugins)}

    def get(name):
        if name in plugins:
            return plugins[name]
        try:
            return registry.builtin(name)
        except ValueError as e:  # a broken entry point: report, do not crash
            raise CaseError(str(e), ("--frameworks",), COMMAND_LINE) from None

    if reference not in known:
        raise CaseError(f"unknown reference `{reference}`; known: {', '.join(known)}", ("--reference",),
                        COMMAND_LINE)
    if frameworks:
        names = [n.strip() for n in frameworks.split(",") if n.strip()]
        for n in names:
            if n not in known:
                from .errors import did_you_mean
                raise CaseError(f"unknown framework `{n}`{did_you_mean(n, known)}; known: {', '.join(known)}",
                                ("--frameworks",), COMMAND_LINE)
        chosen = [get(n) for n in dict.fromkeys([*names, *plugins])]  # an --adapter always runs
    else:  # every installed one, plus every --adapter; a broken plug-in nobody named costs only its own records
        every = (plugins.get(n) or registry.builtin_or_unloadable(n) for n in known)
        chosen = [a for a in every if not a.missing()]
    return get(reference), chosen


class Progress:
    """A one-line progress bar on a terminal; silent in CI or when piped."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                             f"{label[:40]:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")


def summarize(records) -> str:
    from .report import cell_text, counts, failures, families, frame, verdicts
    df = frame(records)
    out = [tabulate(counts(df), headers="keys", tablefmt="simple")]
    fam = families(df)
    if not fam.empty:
        out += ["", tabulate(fam[["family", "framework", "variants", "pass_rate", "xfail", "failed", "worst_ratio"]],
                             headers="keys", tablefmt="simple", showindex=False, floatfmt=".3g")]
    fails = failures(df)
    if len(fails):
        shown = fails.head(20)
        # cell_text: an absent step, quantity or tensor is NaN in pandas, and prints blank
        rows = [[*map(cell_text, (r.case, r.framework, r.reference, r.step, r.quantity, r.tensor)),
                 "" if r.ratio != r.ratio or r.ratio is None else f"{r.ratio:.3g}x", r.message[:80]]
                for r in shown.itertuples()]
        out += ["", f"{len(fails)} failing record(s):",
                tabulate(rows, headers=["case", "framework", "vs", "step", "quantity", "tensor", "error/allowed",
                                        "message"], tablefmt="simple")]
        if len(fails) > len(shown):
            out.append(f"... and {len(fails) - len(shown)} more in the reports")
        out += ["", "Who is wrong:", tabulate(verdicts(df).head(20), headers="keys", tablefmt="simple", showindex=False)]
    return "\n".join(out)


def cmd_run(args, argv) -> int:
    from .runner import FAILING, Runner
    try:  # adapters first: a case may name an --adapter's framework in `xfail:`
        reference, frameworks = select_adapters(args.frameworks, args.reference, args.adapter)
        cases = _selected_cases(args)
    except CaseError as e:
        return _report_invalid([e])
    except _Invalid as e:
        return _report_invalid(e.errors)
    if not cases:
        _err("no cases selected")
        return EXIT_INVALID
    from . import isolate
    from .report import check_out_dir, now, run_fingerprint, write_reports
    why = check_out_dir(args.out)
    if why:
        return _report_invalid([CaseError(why, ("--out",), COMMAND_LINE)])
    runner = Runner(reference, frameworks)
    progress = Progress(len(cases), sys.stderr.isatty() and not os.environ.get("CI") and not args.quiet)
    started, t0 = now(), time.perf_counter()

    def fingerprint(adapters=(reference, *frameworks)):  # where the frameworks are loaded: versions are cheap
        return run_fingerprint("gradconf " + " ".join(argv), reference.name, adapters, started)

    if isolate.available() and not args.in_process:
        records, info = isolate.run_isolated(runner, cases, fingerprint, lambda case: progress.step(case.id))
        # The last child died after its last case (in a version lookup): no versions, rather than risk it here.
        info = info or fingerprint(())
    else:
        records = []
        for case in cases:
            records += runner.run_case(case).records
            progress.step(case.id)
        info = fingerprint()
    progress.close()
    elapsed = time.perf_counter() - t0
    info["seconds"] = round(elapsed, 3)
    try:
        paths, lost = write_reports(records, info, args.out), None
    except OSError as e:  # checked before the run, but a disk can fill up meanwhile: keep the summary
        paths, lost = [], f"cannot write reports to {args.out}: {e}"
    print(summarize(records))
    bad = sum(r.status in FAILING for r in records)
    print(f"\n{len(cases)} case(s), {len(records)} record(s), {bad} failing, {elapsed:.1f}s; "
          f"reports: {', '.join(paths) or 'none'}")
    if lost:
        _err(lost)
        return EXIT_INVALID
    return EXIT_FAIL if bad else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, argv)
        return {"validate": cmd_validate, "list": cmd_list, "schema": cmd_schema, "freeze": cmd_freeze,
                "shrink": cmd_shrink}[args.command](args)
    except BrokenPipeError:  # `gradconf list | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
