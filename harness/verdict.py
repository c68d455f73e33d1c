"""Who is wrong, for one failing case, from that case's records alone (so a report is linear in records)."""
from __future__ import annotations

from collections.abc import Sequence

from .blame import HIGH
from .records import FAILING, Record, Status


def _names(names) -> str:
    return ", ".join(sorted(names))


def who_is_wrong(records: Sequence[Record], reference: str | None = None) -> str:
    """The one that disagrees with everyone else:

    - every framework matches the reference, and they all miss a golden value: the `expect:` value;
    - some frameworks match the reference and others do not: those others (or their adapters);
    - no framework matches the reference: those frameworks, if the reference meets the case's golden
      values; with one framework compared and no golden values, either; else the reference, or a
      convention of the case;
    - a framework that passes where the case marks a known divergence (xpass): that mark;
    and, for a failing framework whose adapter names them, the catalogued divergences the case fits.
    `reference` names the reference adapter, for a case whose only records are its golden values.
    """
    bad = [r for r in records if r.status in FAILING]
    everyone = {r.framework for r in records}
    vs_ref = [r for r in records if r.reference not in ("expected", HIGH) and r.quantity is not None]
    others = {r.framework for r in vs_ref}
    bad_vs_ref = {r.framework for r in vs_ref if r.status in (Status.FAIL, Status.ERROR)}
    notes = [r for r in bad if r.quantity is None]  # adapter errors, and the reference's own failure
    errors = {r.framework for r in notes}
    found = []
    if errors == everyone and len({r.message for r in notes}) == 1:  # no reference run: the case (or it) says why
        found.append(f"the case or the reference: {notes[0].message}")
    elif errors:
        found.append(f"{_names(errors)}: adapter error (see the message)")
    references = {r.reference for r in records if r.reference not in (None, "expected")}
    references |= {reference} & everyone
    checked = [r for r in records if r.reference == "expected" and r.framework in references]
    backed = bool(checked) and all(r.status == Status.PASS for r in checked)  # hand-derived values back the reference
    weighed = None if backed and len(bad_vs_ref) == len(others) else _weighed(records, bad_vs_ref,
                                                                              others - bad_vs_ref)
    if weighed:
        found.append(weighed)
    elif bad_vs_ref and len(bad_vs_ref) < len(others):
        found.append(f"{_names(bad_vs_ref)}: differs from the reference, which {_names(others - bad_vs_ref)} "
                     "match(es)")
    elif bad_vs_ref and backed:
        found.append(f"{_names(bad_vs_ref)}: differs from the reference, which meets the case's golden values")
    elif bad_vs_ref and len(others) == 1:
        found.append(f"{_names(others)} or the reference: the one framework compared differs from the reference")
    elif bad_vs_ref:
        found.append("the reference or the case: no framework matches the reference")
    xpass = {r.framework for r in bad if r.status == Status.XPASS}
    if xpass:
        found.append(f"the case's xfail mark for {_names(xpass)}: {_names(xpass)} now match(es) everywhere the "
                     "case expects a known divergence")
    known = {r.framework: r.known for r in bad if isinstance(r.known, str)}
    found += [f"{fw} fits known divergence(s) {k} (docs/divergences.md)" for fw, k in known.items()]
    # Golden values missed by the reference and by every framework that agrees with it.
    agreeing = references | (others - bad_vs_ref)
    golden = [r for r in bad if r.reference == "expected" and r.framework in agreeing]
    if golden and {r.framework for r in golden} == agreeing:
        tensors = ", ".join(sorted({f"{r.quantity}{' ' + r.tensor if r.tensor else ''}" for r in golden}))
        found.append(f"the golden value ({tensors}): the reference and every framework matching it miss it")
    return "; ".join(found) or "see the failures"


def _weighed(records: Sequence[Record], departing: set, matching: set) -> str | None:
    """Agreement and the long-double recheck (harness.blame), where they decide; None where they don't."""
    if not departing:
        return None
    if len(matching) >= 2:
        who = f"{_names(departing)} alone departs" if len(departing) == 1 else f"{_names(departing)} depart"
        return f"{who} from the consensus of {_names(matching)}, which match(es) the reference"
    recheck = [r for r in records if r.reference == HIGH]
    if not recheck:
        return None
    moved = [r for r in recheck if r.status != "pass"]
    if moved:
        tensors = ", ".join(sorted({f"{r.quantity}{' ' + r.tensor if r.tensor else ''}" for r in moved}))
        return (f"the reference: recomputed in long double it moves beyond its allowance ({tensors}), so "
                f"{_names(departing)} may be right")
    if matching:
        return (f"{_names(departing)}: differs from the reference, which {_names(matching)} match(es) and "
                "which recomputed in long double stands")
    if len(departing) >= 2 and _one_bloc(records, departing):
        return (f"{_names(departing)} agree with each other, not with the reference, which recomputed in long "
                "double stands: a convention they share and the case does not (SPEC §1.7), or a library they share")
    apart = " and from each other" if len(departing) >= 2 else ""
    return f"{_names(departing)}: depart(s) from the reference{apart}, which recomputed in long double stands"


def _one_bloc(records: Sequence[Record], departing: set) -> bool:
    """Every failing comparison of each departing framework agrees with every other departing framework."""
    failing = [r for r in records if r.framework in departing and r.status == "fail" and r.reference != "expected"
               and r.quantity is not None]
    return bool(failing) and all(r.agrees is not None and departing - {r.framework} <= set(filter(None, (
        n.strip() for n in r.agrees.split(",")))) for r in failing)
