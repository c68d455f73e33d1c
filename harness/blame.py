"""Evidence for "who is wrong" beyond the reference's word: the frameworks against each other, and the
reference against itself in higher precision.

Two frameworks and a reference make a weak vote: when both depart, the verdict rests on the reference
alone. So, once a case's frameworks have all run (harness.runner, one call):
- `annotate_agreement`: every failing comparison with the reference gets `agrees`, the other frameworks
  whose value at that tensor lies within twice the allowance of this one's (each may sit one allowance
  from the reference, on either side): frameworks that fail alike are one bloc, not two witnesses.
- `recheck_reference`: where some frameworks depart and fewer than two match the reference, nothing
  backs the reference but itself. Its float64 run is then compared with the same computation carried
  out in `np.longdouble` (x87 extended precision, 64-bit mantissa, on x86-64) under the case's
  tolerance policy: records of the reference with `reference` = "longdouble"; `pass` says rounding in
  the float64 reference cannot explain a failure, `fail` that it can.
harness.verdict reads both.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

HIGH = "longdouble"           # the `reference` field of a recheck record
RECHECK_LIMIT = 200_000       # input and parameter elements: above it, long double (no BLAS) is too slow
DEPARTS = ("fail", "error")   # a comparison that departs from the reference (xfail marks apply later)


def within(a, b, allowed) -> bool:
    """|a − b| ≤ allowed everywhere; a non-finite difference never agrees."""
    try:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return False
        diff = np.abs(a - b)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(diff)) and np.all(diff <= allowed))


def agreeing(values: Mapping[str, object], me: str, allowed) -> list[str]:
    """The other frameworks whose value lies within twice `allowed` of `me`'s, by name."""
    return sorted(fw for fw, v in values.items() if fw != me and v is not None and within(v, values[me], 2 * allowed))


def annotate_agreement(records, traces: Mapping[str, object], lookup, reference: Mapping) -> None:
    """Set `agrees` on every failing record against the reference, from the frameworks' traces.
    `lookup(trace, step, quantity, tensor)` reads a value; `reference[(step, quantity, tensor)]` is the
    reference's, on which the record's allowance (atol + rtol·|reference|) is taken."""
    if len(traces) < 2:
        return
    for r in records:
        if r.status != "fail" or r.quantity is None or r.reference in ("expected", HIGH) or r.framework not in traces:
            continue
        key = (r.step, r.quantity, r.tensor)
        if key not in reference or r.rtol is None or r.atol is None:
            continue
        allowed = r.atol + r.rtol * np.abs(np.asarray(reference[key], dtype=np.float64))
        values = {fw: lookup(t, *key) for fw, t in traces.items()}
        r.agrees = ", ".join(agreeing(values, r.framework, allowed))


def in_question(records, reference: str) -> bool:
    """Some frameworks depart from the reference and fewer than two match it."""
    compared = {r.framework for r in records if r.reference == reference and r.quantity is not None}
    departing = {r.framework for r in records if r.reference == reference and r.status in DEPARTS}
    return bool(departing) and len(compared - departing) < 2


def small_enough(initial) -> bool:
    return initial.input.size + sum(np.size(p) for p in initial.params.values()) <= RECHECK_LIMIT
