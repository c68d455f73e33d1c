"""Two runs' records, compared field by field: the proof that a refactor changed no result.

    python benchmarks/compare_records.py BEFORE AFTER        # each a results.json or an --out folder
    python benchmarks/compare_records.py BEFORE AFTER --subset   # AFTER ran only some of the cases

Every record of BEFORE must be in AFTER with every field equal — statuses, messages, errors, allowances,
ratios, values, bit for bit (NaN equals NaN) — and AFTER may hold no other record. The run block
(start time, seconds, command, versions) is ignored. A record is identified by (case, framework,
reference, step, quantity, tensor); the order of records is compared too (not with --subset, whose
run may have taken the cases in another order). Prints each difference
(at most --show of them) and exits 1 if there is any, 0 with a one-line count otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

KEY = ("case", "framework", "reference", "step", "quantity", "tensor")


def load(path: str) -> list[dict]:
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["records"]


def same(a, b) -> bool:
    """Equal values, NaN equal to NaN, lists element by element; 1 and 1.0 are not the same (types count)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def key(r: dict) -> tuple:
    return tuple(json.dumps(r.get(k)) for k in KEY)


def named(k: tuple) -> str:
    return ", ".join(f"{f}={json.loads(v)}" for f, v in zip(KEY, k) if json.loads(v) is not None)


STABLE = ("status", "divergence", "shape", "dtype", "family", "file", "line")  # what --unstable still compares


def differences(before: list[dict], after: list[dict], unstable: set = frozenset(), order: bool = True) -> list[str]:
    out: list[str] = []
    old, new = {key(r): r for r in before}, {key(r): r for r in after}
    for what, records, index in (("BEFORE", before, old), ("AFTER", after, new)):
        if len(index) != len(records):
            out.append(f"{what} holds {len(records) - len(index)} record(s) with a repeated key")
    for k in old.keys() - new.keys():
        out.append(f"only in BEFORE: {named(k)}")
    for k in new.keys() - old.keys():
        out.append(f"only in AFTER: {named(k)}")
    for k in old.keys() & new.keys():
        a, b = old[k], new[k]
        fields = STABLE if (a["case"], a["framework"]) in unstable else sorted(a.keys() | b.keys())
        for field in fields:
            if not same(a.get(field), b.get(field)):
                out.append(f"{named(k)}: {field}: {a.get(field)!r:.200} -> {b.get(field)!r:.200}")
    if order and not out and [key(r) for r in before] != [key(r) for r in after]:
        out.append("the same records, in another order")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--show", type=int, default=40, help="differences printed at most (default 40)")
    ap.add_argument("--subset", action="store_true",
                    help="AFTER ran some of BEFORE's cases or frameworks: compare only the (case, framework) "
                         "pairs AFTER holds")
    ap.add_argument("--unstable", action="append", default=[], metavar="CASE:FRAMEWORK",
                    help="a (case, framework) whose numbers differ from run to run of the same tree (a framework "
                         "bug reading memory it should not): only its records' keys, statuses and the xfail "
                         "decision are compared; may be repeated")
    args = ap.parse_args(argv)
    before, after = load(args.before), load(args.after)
    if args.subset:
        ran = {(r["case"], r["framework"]) for r in after}
        before = [r for r in before if (r["case"], r["framework"]) in ran]
    diffs = differences(before, after, {tuple(u.split(":", 1)) for u in args.unstable}, order=not args.subset)
    for line in diffs[:args.show]:
        print(line)
    if len(diffs) > args.show:
        print(f"... and {len(diffs) - args.show} more")
    print(f"{len(before)} records before, {len(after)} after: "
          + (f"{len(diffs)} difference(s)" if diffs else "no difference"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
