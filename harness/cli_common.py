"""What the `gradconf` commands share: exit statuses, error printing, loading cases and adapters, the summary.

cli.py, cli_cases.py and cli_campaign.py import it; it imports none of them (no cycle).
"""
from __future__ import annotations

import sys

from .errors import COMMAND_LINE, CaseError
from .records import Status

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def _err(msg: str) -> None:
    print(f"gradconf: {msg}", file=sys.stderr)


def _load(paths, count=None):
    from .loader import load_paths
    from .family import MAX_COUNT
    if count is not None and count < 1:
        raise CaseError(f"must be >= 1, got {count}", ("--count",), COMMAND_LINE)
    if count is not None and count > MAX_COUNT:
        raise CaseError(f"must be at most {MAX_COUNT:,} (gradconf's cap on a family's variants), got {count:,}",
                        ("--count",), COMMAND_LINE)
    from . import registry
    return load_paths(paths, count, registry.known_names())


def _report_invalid(errors) -> int:
    for e in errors:
        print(str(e), file=sys.stderr)
    files = len({e.file for e in errors if e.file != COMMAND_LINE})
    options = sum(e.file == COMMAND_LINE for e in errors)
    what = [f"{files} invalid case file(s)"] * bool(files) + [f"{options} invalid option(s)"] * bool(options)
    _err(f"{' and '.join(what)}; nothing was run")
    return EXIT_INVALID


def _adapters(args):
    """registry.select within the time limit: loading a plug-in, or asking it whether it is installed,
    happens here in the parent, which no child protects."""
    from . import registry
    from .deadline import TimeLimit, deadline
    try:
        with deadline(args.timeout):
            return registry.select(args.frameworks, args.reference, args.adapter)
    except TimeLimit as e:
        raise CaseError(f"loading the adapters, or asking them whether they are installed, took more than "
                        f"{e.seconds:g} s, the time limit (--timeout)", ("--adapter",), COMMAND_LINE) from None


def summarize(records, run: dict | None = None) -> str:
    from .render import console_text
    from .summary import summarize_records
    skipped = sorted({(r.framework, r.message) for r in records if r.status == Status.SKIPPED})  # not installed, say
    return console_text(summarize_records(records, run)) + "".join(f"\n{fw} skipped: {why}" for fw, why in skipped)
