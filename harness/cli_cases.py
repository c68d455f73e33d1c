"""`gradconf freeze`, `shrink`, `repro` and `import` (SPEC §2): one case by id, written out whole or reduced,
or its failure as a standalone script; a case from a real model."""
from __future__ import annotations

import sys

from .cli_common import EXIT_FAIL, EXIT_OK, _adapters, _load, _report_invalid
from .errors import COMMAND_LINE, CaseError


def add_repro_parser(sub, timeout: dict) -> None:
    rr = sub.add_parser("repro", help="write a standalone script (one framework and NumPy, no gradconf) that "
                        "reproduces a case's failure, for an upstream bug report")
    rr.add_argument("id", help="a case id, e.g. divergence_tf_hyper32 or net_random[17]")
    rr.add_argument("--framework", required=True, dest="frameworks", metavar="F", help="the framework to reproduce it on")
    rr.add_argument("-o", "--output", help="file to write (default: stdout)")
    rr.add_argument("--paths", nargs="*", default=["cases"], help="where to find the case (default: cases/)")
    rr.add_argument("--reference", default="numpy")
    rr.add_argument("--adapter", action="append", default=[], metavar="MODULE:ATTR")
    rr.add_argument("--timeout", **timeout)


def add_import_parser(sub) -> None:
    im = sub.add_parser("import", help="write a case file from a real model (a torch.nn.Module or a Keras 3 model)")
    im.add_argument("source", choices=["torch", "keras"], help="the model's framework")
    im.add_argument("model", help="MODULE:FACTORY, FILE.py:FACTORY, or (keras) FILE.keras")
    im.add_argument("--input-shape", required=True, metavar="N,C,H,W", help="the case's input shape (NCHW)")
    im.add_argument("-o", "--output", help="file to write (default: stdout)")
    im.add_argument("--name", help="the case's name (default: imported_<factory>)")
    im.add_argument("--reinit", action="store_true", help="seeded initialisers instead of the model's parameters")
    im.add_argument("--loss", default="grad_output", help="grad_output (default: a random output gradient), sum, mse")
    im.add_argument("--optimizer", help="an optimizer to step with (e.g. sgd); default: gradients only")
    im.add_argument("--lr", type=float, default=0.01, help="its learning rate (default 0.01)")
    im.add_argument("--steps", type=int, default=1, help="steps with --optimizer (default 1)")
    im.add_argument("--seed", type=int, default=0, help="the case's seed (default 0)")


def cmd_freeze(args) -> int:
    from .freeze import freeze
    try:
        text = freeze(args.id, args.paths)
    except CaseError as e:
        return _report_invalid([e])
    return _write_out(args, text)


def _write_out(args, text: str) -> int:
    """`text` to `-o FILE` (atomically), or to stdout."""
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
    name = "regression_" + case.id.replace("[", "_").replace("]", "")  # shrink.regression_text's name
    print(f"a standalone script for an upstream report: gradconf repro {name} --framework {framework} "
          f"--paths {path} -o {name}.py")
    return EXIT_OK


def cmd_repro(args) -> int:
    from .errors import Unsupported
    from .repro import differing, script
    from .runner import CaseResult, Runner
    try:
        reference, frameworks = _adapters(args)
        case = find_case(args.id, args.paths)
        if len(frameworks) != 1 or frameworks[0].name == reference.name:
            raise CaseError("name one framework other than the reference", ("--framework",), COMMAND_LINE)
        if not callable(getattr(frameworks[0], "script", None)):
            raise CaseError(f"the {frameworks[0].name} adapter cannot write a standalone script (it has no "
                            f"`script(case)`: README, Adapters)", ("--framework",), COMMAND_LINE)
    except CaseError as e:
        return _report_invalid([e])
    adapter = frameworks[0]
    runner = Runner(reference, [adapter])  # in this process: a crash here is the user's to see
    ref = runner.reference_trace(case, CaseResult(case))
    records = runner.run_case(case, reference=ref).records
    if ref.trace is None or not differing(records, adapter.name):
        why = next((r.message for r in records if r.framework == adapter.name and r.quantity is None), "")
        print(f"nothing to reproduce: {case.id} shows no difference from the reference on {adapter.name} here"
              + (f" ({why})" if why else ""), file=sys.stderr)
        return EXIT_FAIL
    try:
        text = script(case, ref.initial, ref.trace, records, adapter, adapter.version())
    except Unsupported as e:
        print(f"gradconf: {e}", file=sys.stderr)
        return EXIT_FAIL
    return _write_out(args, text)


IMPORTERS = {"torch": "torch", "keras": "tensorflow"}  # `import SOURCE`: the adapter whose import_model reads it


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise CaseError(f"comma-separated positive sizes such as 2,3,8,8, got `{text}`", ("--input-shape",),
                        COMMAND_LINE)
    return shape


def cmd_import(args) -> int:
    import os

    from .model_import import case_text, check_loads
    from .registry import select
    try:
        shape = _input_shape(args.input_shape)
        _, (adapter,) = select(IMPORTERS[args.source], "numpy", [])
        why = adapter.missing()
        if why:
            raise CaseError(f"cannot import a {args.source} model here: {why}", ("SOURCE",), COMMAND_LINE)
        imported = adapter.import_model(args.model, shape, args.reinit)
        stem = os.path.basename(args.model.rpartition(":")[2] or args.model).removesuffix(".keras")
        name = args.name or "imported_" + "".join(ch if ch.isalnum() else "_" for ch in stem)
        command = "gradconf import " + " ".join(a for a in sys.argv[2:]) if sys.argv[1:2] == ["import"] else \
            f"gradconf import {args.source} {args.model}"
        text = case_text(imported, name, shape, args.loss, args.optimizer, args.lr, args.steps, args.seed, command)
        check_loads(text, args.output or "<imported>")
    except CaseError as e:
        return _report_invalid([e])
    return _write_out(args, text)
