"""The campaign commands' front end (issue 22): `gradconf fuzz`, `gradconf report DIR1 DIR2 ...` (a merge of
shards) and the `--scheduler` / `--dask local` options of `run` and `fuzz`. Thin: parsing and checking the
options, then harness.fuzz, harness.shard and harness.dask_backend do the work."""
from __future__ import annotations

import os

from .cli_common import EXIT_FAIL, EXIT_INVALID, EXIT_OK, _adapters, _err, _report_invalid, summarize
from .errors import COMMAND_LINE, CaseError


def add_fuzz_parser(sub):
    """The `fuzz` subcommand's own options; harness.cli adds the engine options it shares with `run`."""
    fz = sub.add_parser("fuzz", help="draw fresh family variants on a budget, group failures by signature, "
                        "shrink each new one into a reproducer")
    fz.add_argument("paths", nargs="*", default=["cases"], help="family files or folders (default: cases/)")
    fz.add_argument("--budget", default=None, metavar="TIME", help="how long to draw and run: 10m, 90s, 1h "
                    "(default 10m, unless --variants is given; shrinking comes after it)")
    fz.add_argument("--variants", type=int, metavar="N", help="stop after N fresh variants")
    fz.add_argument("--start", type=int, default=0, metavar="K", help="the first fresh variant of each family is "
                    "count + K (default 0; the summary names the K that continues a campaign)")
    fz.add_argument("-o", "--out", default=os.path.join("cases", "regressions"),
                    help="where reproducers of new signatures go (default: cases/regressions/)")
    fz.add_argument("--shrink-budget", type=float, default=60.0, metavar="S",
                    help="seconds to shrink each new signature's reproducer (default 60)")
    return fz


def cluster_pools(args, jobs: int):
    """For --scheduler / --dask local: a function (runner, finish, time limit) -> a pool on that cluster
    (harness.dask_backend), connected now; None for a run on this machine. Raises CaseError."""
    if not (args.scheduler or args.dask):
        return None
    option = "--scheduler" if args.scheduler else "--dask"
    if args.in_process:
        raise CaseError("--in-process runs every case in this one process, not on a cluster", (option,),
                        COMMAND_LINE)
    if args.scheduler and args.jobs is not None:
        raise CaseError("the cluster's workers run the cases: -j applies to --dask local", ("-j",), COMMAND_LINE)
    from .dask_backend import ClusterPool, ClusterUnavailable, connect
    try:
        client, local = connect(args.scheduler, jobs)
    except ClusterUnavailable as e:
        raise CaseError(str(e), (option,), COMMAND_LINE) from None
    return lambda runner, finish, time_limit: ClusterPool(runner, client, local, finish, time_limit)


def cmd_fuzz(args) -> int:
    """`gradconf fuzz` (harness.fuzz): options and adapters checked here, as for `run`."""
    from . import fuzz, isolate, pool
    from .select import compile_expr
    try:
        if args.variants is not None and args.variants < 1:
            raise CaseError(f"must be >= 1, got {args.variants}", ("--variants",), COMMAND_LINE)
        if args.start < 0:
            raise CaseError(f"must be >= 0, got {args.start}", ("--start",), COMMAND_LINE)
        try:
            budget = args.budget
            args.budget = fuzz.parse_budget(budget) if budget else (None if args.variants else 600.0)
        except ValueError as e:
            raise CaseError(str(e), ("--budget",), COMMAND_LINE) from None
        jobs = pool.default_workers() if args.jobs is None else args.jobs
        if jobs < 1:
            raise CaseError(f"must be >= 1, got {jobs}", ("-j",), COMMAND_LINE)
        reference, frameworks = _adapters(args)
        families = fuzz.families(args.paths)
        keep = compile_expr(args.keyword) if args.keyword else None
        if not families:
            raise CaseError(f"no family (a case file with `count:`) under {', '.join(args.paths)}", ("PATH",),
                            COMMAND_LINE)
        cluster = cluster_pools(args, jobs)  # last, once all else is valid; before -j is set (--scheduler: an error)
        args.jobs = jobs
    except CaseError as e:
        return _report_invalid([e])
    isolated = isolate.available() and not args.in_process
    return fuzz.command(args, reference, frameworks, families, keep, cluster, isolated)


def cmd_merge(args) -> int:
    """`gradconf report DIR1 DIR2 ...`: the shards' outputs as one report set in --out (harness.shard)."""
    from .runner import FAILING
    from .shard import MergeError, write_merged
    try:
        records, run, paths = write_merged(args.dir, args.out)
    except MergeError as e:
        _err(f"cannot merge: {e}")
        return EXIT_INVALID
    except OSError as e:
        _err(f"cannot write the merged reports to {args.out}: {e.strerror or e}")
        return EXIT_INVALID
    print(summarize(records, run))
    cut = run.get("interrupted")
    print(f"\n{len(run['shards'])} shard(s) merged, {len(records)} record(s)"
          + (f" ({cut['why']}; {cut['cases_not_run']} case(s) not run)" if cut else "")
          + f"; reports: {', '.join(paths)}")
    return EXIT_FAIL if any(r.status in FAILING for r in records) else EXIT_OK


