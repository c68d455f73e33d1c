"""The `gradconf` command (SPEC §2): run, validate, list, schema, report; freeze and shrink in cli_cases.py,
fuzz and the campaign options in cli_campaign.py.

Exit status: 0 all passed (xfail counts as passed); 1 a mismatch, an xpass or an adapter error;
2 an invalid case file or option (nothing is run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import __version__
from .errors import COMMAND_LINE, CaseError

from .cli_common import EXIT_FAIL, EXIT_INVALID, EXIT_OK, _adapters, _err, _load, _report_invalid, summarize


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds (0: no limit), got {text}")
    return value or None


def _engine_options(sp, in_process: dict, timeout: dict) -> None:
    """What runs the cases, and where: `run` and `fuzz` share these."""
    sp.add_argument("--frameworks", help="comma-separated, e.g. numpy,torch,tensorflow (default: every one installed)")
    sp.add_argument("--reference", default="numpy", help="the adapter everything is compared against")
    sp.add_argument("-k", dest="keyword", help="select cases by id substring or tag: 'conv and not slow'")
    sp.add_argument("--adapter", action="append", default=[], metavar="MODULE:ATTR", help="a third-party adapter")
    sp.add_argument("--in-process", **in_process)
    sp.add_argument("--timeout", **timeout)
    sp.add_argument("-j", "--jobs", type=int, metavar="N", help="worker processes (default: the usable cores); "
                    "each imports the frameworks once and runs whole cases; records stay in case order")
    cluster = sp.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="run the cases on the Dask cluster of this "
                         "scheduler (tcp://HOST:PORT; needs the `dask` extra); records stay in case order")
    cluster.add_argument("--dask", choices=["local"], help="`local`: start a Dask LocalCluster of -j worker "
                         "processes here and run on it")


def _parser() -> argparse.ArgumentParser:
    from .deadline import DEFAULT_TIME_LIMIT
    timeout = dict(type=_seconds, default=DEFAULT_TIME_LIMIT, metavar="S",
                   help=f"seconds each (case, framework) may take before it is stopped and reported as an error "
                        f"(default {DEFAULT_TIME_LIMIT:g}; 0: no limit; not applied with --in-process)")
    p = argparse.ArgumentParser(prog="gradconf", description="Gradient conformance across NumPy, PyTorch, TensorFlow.")
    p.add_argument("--version", action="version", version=f"gradconf {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run cases and write reports")
    run.add_argument("paths", nargs="*", default=["cases"], help="case files or folders (default: cases/)")
    run.add_argument("--out", default="reports", help="report folder (default: reports/)")
    run.add_argument("--count", type=int, help="override every family's count")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    in_process = dict(action="store_true", help="run the frameworks in this process (for a debugger); by default "
                      "they run in a child process, so that one that crashes costs its case, not the run")
    _engine_options(run, in_process, timeout)
    run.add_argument("--shard", metavar="K/N", help="run only shard K of N: a stable part of the cases chosen by "
                     "id; `gradconf report DIR1 ... DIRN` merges the N shards' reports into the whole run's")

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
    sh.add_argument("--timeout", **timeout)

    from .cli_cases import add_import_parser, add_repro_parser
    add_repro_parser(sub, timeout)
    add_import_parser(sub)

    rp = sub.add_parser("report", help="rebuild the report set from the records a run streamed into DIR; "
                        "given several shards' DIRs, merge them into the report set of the whole run")
    rp.add_argument("dir", metavar="DIR", nargs="+",
                    help="a run's --out folder (its newest run), or one run folder in it; several: shards to merge")
    rp.add_argument("--out", default="reports", help="where a merge of shards writes (default: reports/)")

    from .cli_campaign import add_fuzz_parser
    _engine_options(add_fuzz_parser(sub), in_process, timeout)

    sub.add_parser("schema", help="print the JSON Schema of a case file")
    return p


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


def cmd_run(args, argv) -> int:
    from .runner import Runner
    try:  # adapters first: a case may name an --adapter's framework in `xfail:`
        reference, frameworks = _adapters(args)
        cases = _selected_cases(args)
    except CaseError as e:
        return _report_invalid([e])
    except _Invalid as e:
        return _report_invalid(e.errors)
    try:
        cases, sharded, empty = _sharded(args, cases)
    except CaseError as e:
        return _report_invalid([e])
    if empty:  # a small selection split many ways: an empty part is a legitimate shard
        print(empty)
        return EXIT_OK
    if not cases:
        _err("no cases selected")
        return EXIT_INVALID
    from . import isolate, pool, reportset, session
    from .report import now, run_fingerprint
    jobs = pool.default_workers() if args.jobs is None else args.jobs
    if jobs < 1 or (args.in_process and args.jobs not in (None, 1)):
        why = f"must be >= 1, got {jobs}" if jobs < 1 else "--in-process runs every case in this one process"
        return _report_invalid([CaseError(why, ("-j",), COMMAND_LINE)])
    from .cli_campaign import cluster_pools
    try:
        cluster = cluster_pools(args, jobs)
    except CaseError as e:
        return _report_invalid([e])
    why = reportset.check_out_dir(args.out, reportset.expected_bytes(len(cases) * (1 + len(frameworks))))
    try:
        folder = None if why else reportset.RunFolder.create(args.out)
    except OSError as e:
        why = f"cannot write reports to {args.out}: {e.strerror or e}"
    if why:
        return _report_invalid([CaseError(why, ("--out",), COMMAND_LINE)])
    from .progress import Progress
    progress = Progress.for_stream(len(cases), sys.stderr, quiet=args.quiet)
    started, t0 = now(), time.perf_counter()

    def fingerprint(adapters=(reference, *frameworks)):  # where the frameworks are loaded: versions are cheap
        info = run_fingerprint("gradconf " + " ".join(argv), reference.name, adapters, started)
        return {**info, "shard": sharded} if sharded else info

    try:
        folder.begin(fingerprint(()), [c.id for c in cases])
        runner = Runner(reference, frameworks)
        ran = cluster and cluster(runner, fingerprint, args.timeout)  # a dask_backend.ClusterPool, or None
        outcome = session.execute(runner, cases, folder, isolate.available() and not args.in_process, args.timeout,
                                  fingerprint, progress.step, workers=min(jobs, len(cases)), pool=ran)
    except OSError as e:  # the stream's first line did not fit
        outcome = session.Outcome(stream_error=e)
    progress.close()
    return _conclude(outcome, folder, fingerprint, len(cases), time.perf_counter() - t0, args.out, reference.name)


def _sharded(args, cases):
    """`--shard K/N`: (the part's cases, the shard's run-block entry or None, what to say when the part is
    empty or None); a malformed K/N is a CaseError."""
    if args.shard is None:
        return cases, None, None
    from . import shard
    part = shard.parse(args.shard)
    selected = len(cases)
    cases, sharded = shard.select(cases, part)
    empty = f"shard {part} holds none of the {selected} selected case(s): nothing to run" if selected and not cases \
        else None
    return cases, sharded, empty


def _conclude(outcome, folder, fingerprint, n_cases: int, seconds: float, out: str, reference: str) -> int:
    """Write the report set whole (signal or not), print the summary, and say the exit status."""
    from . import session
    from .runner import FAILING
    with session.interrupts(raising=False) as late:
        info, stopped = outcome.run_block(fingerprint, n_cases, seconds)
        try:
            paths, lost = folder.finish(outcome.records, info), None
        except OSError as e:  # checked before the run, but a disk can fill up meanwhile: keep the summary
            paths, lost = [], (f"cannot write reports to {out}: {e}; the records of every case finished "
                               f"before are in {folder.stream_path}")
        finally:
            folder.close()
        records = outcome.records
        print(summarize(records, info))
        bad = sum(r.status in FAILING for r in records)
        print(f"\n{outcome.cases_run} case(s), {len(records)} record(s), {bad} failing, {info['seconds']:.1f}s; "
              f"reports: {', '.join(paths) or 'none'}")
        if stopped:
            print(stopped)
    if lost or outcome.stream_error:
        _err(lost or f"cannot stream records to {folder.stream_path}: {outcome.stream_error}; the run stopped")
        return EXIT_INVALID
    signum = outcome.signum or (late[0] if late else None)
    return 128 + signum if signum else _verdict(records, n_cases, reference)


def _verdict(records, n_cases: int, reference: str) -> int:
    """The exit status of a run that finished: 0 all passed, 1 a failure, or nothing compared at all."""
    from .records import COMPARED, FAILING
    if not any(r.status in COMPARED for r in records):  # a run that checked nothing has not passed
        _err(f"nothing was compared: {n_cases} case(s), and no framework other than the reference "
             f"{reference} ran on them, and no golden `expect:` values were checked "
             f"(--frameworks names the frameworks to compare; skipped, unsupported and error records are "
             f"in the reports)")
        return EXIT_FAIL
    return EXIT_FAIL if any(r.status in FAILING for r in records) else EXIT_OK


def cmd_report(args) -> int:
    from . import reportset
    from .runner import FAILING
    if len(args.dir) > 1:
        from .cli_campaign import cmd_merge
        return cmd_merge(args)
    args.dir = args.dir[0]
    run_path = reportset.newest_stream(args.dir)
    if run_path is None:
        _err(f"no streamed records in {args.dir} (no {reportset.STREAM} there or under {reportset.RUNS}/)")
        return EXIT_INVALID
    try:
        records, run, paths = reportset.rebuild(run_path)
    except OSError as e:
        _err(f"cannot rebuild the reports of {run_path}: {e.strerror or e}")
        return EXIT_INVALID
    print(summarize(records))
    cut = run.get("interrupted")
    print(f"\n{len(records)} record(s) from {run_path}"
          + (f" ({cut['why']}; {cut['cases_not_run']} case(s) not run)" if cut else "")
          + f"; reports: {', '.join(paths)}")
    return EXIT_FAIL if any(r.status in FAILING for r in records) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "fuzz":
            from .cli_campaign import cmd_fuzz
            return cmd_fuzz(args)
        if args.command in ("freeze", "shrink", "repro", "import"):
            from .cli_cases import cmd_freeze, cmd_import, cmd_repro, cmd_shrink
            return {"freeze": cmd_freeze, "shrink": cmd_shrink, "repro": cmd_repro,
                    "import": cmd_import}[args.command](args)
        return {"validate": cmd_validate, "list": cmd_list, "schema": cmd_schema, "report": cmd_report}[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside a run's loop (loading cases, shrinking): no traceback
        _err("interrupted")
        return 128 + 2
    except BrokenPipeError:  # `gradconf list | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
