"""`gradconf freeze` and `gradconf shrink` (SPEC §2): one case by id, written out whole or reduced."""
from __future__ import annotations

import sys

from .cli_common import EXIT_OK, _adapters, _load, _report_invalid
from .errors import COMMAND_LINE, CaseError


def cmd_freeze(args) -> int:
    from .freeze import freeze
    try:
        text = freeze(args.id, args.paths)
    except CaseError as e:
        return _report_invalid([e])
    if args.output:
        from .files import write_atomic
        try:  # a symlink at the destination is replaced, not followed
            write_atomic(args.output, text)
        except OSError as e:
            return _report_invalid([CaseError(f"cannot write {args.output}: {e.strerror or e}", ("-o",),
                                              COMMAND_LINE)])
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
                from . import registry
                return draw_variant(data, file, lines, parsed[1], registry.known_names())
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
    from .shrink import failing_predicate, shrink
    try:
        reference, frameworks = _adapters(args)
        case = find_case(args.id, args.paths)
    except CaseError as e:
        return _report_invalid([e])
    from . import isolate
    runner = Runner(reference, frameworks)
    if isolate.available() and not args.in_process:  # a crash is a failure to shrink, not the end
        runner = isolate.IsolatedRunner(runner, time_limit=args.timeout)  # one child: first run and shrink
    asked = ", ".join(a.name for a in frameworks) or "none"
    try:
        records = runner.run_case(case).records
        failing = list(dict.fromkeys(r.framework for r in records if r.status in FAILING))
        if not failing:
            print(f"nothing to shrink: {case.id} passes on {asked} (reference {reference.name})")
            return EXIT_OK
        # A framework asked about first; the reference only when it alone misses the case's golden values.
        framework = next((f for f in failing if f != reference.name), failing[0])
        print(f"shrinking {case.id}, failing on {framework} (asked about: {asked}; reference {reference.name})",
              file=sys.stderr)
        small = shrink(case, failing_predicate(runner, framework), args.budget,
                       log=lambda m: print("  " + m, file=sys.stderr))
    finally:
        if isinstance(runner, isolate.IsolatedRunner):
            runner.close()
    return _report_shrink(case, small, framework, args.out)


def _report_shrink(case, small, framework: str, out: str) -> int:
    from .shrink import regression_text, size, write_regression
    reduced = small is not case  # a smaller case carries no `expect:`; the case as drawn keeps it
    text = regression_text(case, small, framework, reduced)
    try:
        path = write_regression(text, "regression_" + case.id.replace("[", "_").replace("]", ""), out)
    except OSError as e:
        return _report_invalid([CaseError(f"cannot write to {out}: {e.strerror or e}", ("--out",), COMMAND_LINE)])
    shape = f"{len(small.layers)} layer(s), input {list(small.input.shape)}, {small.steps} step(s)"
    if reduced:
        before = size(case.source)
        print(f"wrote {path}: {shape} (from {before[1]} layer(s), {before[0]} step(s)), still failing on {framework}")
    else:
        print(f"not reduced: no simplification of {case.id} still fails on {framework}; wrote {path}, the case as "
              f"drawn with its golden values: {shape}")
    return EXIT_OK
