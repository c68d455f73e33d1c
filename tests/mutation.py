"""The mutation suite: every planted bug (tests/planted.py) against the bundled cases, and the score.

    python -m tests.mutation [--need N] [--count N] [PATH ...]

prints, for each planted bug, the first bundled cases that catch it (a `fail` or `error` record of that
adapter), then `mutation score: caught/planted`; a bug counts as caught with N catches (default 2). The
control (`Copy`, the reference under another name) runs on every case visited and must fail none.
Cases are visited fixed cases first, then the families' variants in turn (variant 0 of each, then 1, ...),
and a bug leaves the run once caught N times, so the whole suite costs little more than the reference.
Exit status 0 when every bug is caught and the control fails nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from itertools import zip_longest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_paths
from gradconf.runner import FAILING, Runner
from tests.planted import MUTANTS, Copy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Score:
    caught: dict[str, list[str]]           # mutant name -> ids of the cases that caught it
    bugs: dict[str, str]                   # mutant name -> the bug planted
    control_failures: list[str] = field(default_factory=list)
    visited: int = 0

    def missed(self, need: int) -> list[str]:
        return [name for name, ids in self.caught.items() if len(ids) < need]


def visiting_order(cases) -> list:
    """Fixed cases first, then the families' variants round-robin: each family's early variants early."""
    fixed = [c for c in cases if c.family is None]
    by_family: dict[str, list] = {}
    for c in cases:
        if c.family is not None:
            by_family.setdefault(c.family, []).append(c)
    rounds = zip_longest(*by_family.values())
    return fixed + [c for row in rounds for c in row if c is not None]


def score(cases, need: int = 2, mutants=MUTANTS) -> Score:
    adapters = [m() for m in mutants]
    result = Score({a.name: [] for a in adapters}, {a.name: a.bug for a in adapters})
    control = Copy()
    for case in visiting_order(cases):
        live = [a for a in adapters if len(result.caught[a.name]) < need]
        if not live:
            break
        records = Runner(NumpyReference(), [control, *live]).run_case(case).records
        result.visited += 1
        failing = {r.framework for r in records if r.status in FAILING}
        for a in live:
            if a.name in failing:
                result.caught[a.name].append(case.id)
        if control.name in failing:
            result.control_failures.append(case.id)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[os.path.join(ROOT, "cases")])
    p.add_argument("--need", type=int, default=2, help="catches for a bug to count as caught (default 2)")
    p.add_argument("--count", type=int, help="override every family's count (default: the files' own, as CI)")
    args = p.parse_args(argv)
    cases, errors = load_paths(args.paths, args.count)
    if errors:
        print("\n".join(map(str, errors)), file=sys.stderr)
        return 2
    s = score(cases, args.need)
    for name, ids in s.caught.items():
        mark = "caught" if len(ids) >= args.need else "MISSED"
        print(f"{mark:7} {s.bugs[name]:<58} {', '.join(ids) or '-'}")
    print(f"control ({Copy.name}): {len(s.control_failures)} failing case(s) of {s.visited} visited"
          + (f": {', '.join(s.control_failures)}" if s.control_failures else ""))
    caught = len(s.caught) - len(s.missed(args.need))
    print(f"mutation score: {caught}/{len(s.caught)} planted bugs caught by >= {args.need} bundled cases")
    return 0 if caught == len(s.caught) and not s.control_failures else 1


if __name__ == "__main__":
    sys.exit(main())
