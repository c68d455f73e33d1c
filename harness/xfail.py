"""The xfail policy: a case's `xfail: {framework: why}` applied to that framework's records, as
harness.divergences decides where a catalogued divergence shows (strict or not, on this platform)."""
from __future__ import annotations

from .case import Case
from .divergences import expectation
from .records import Record, Status


def apply_xfail(case: Case, records: list[Record], platform=None) -> list[Record]:
    """`xfail: {fw: why}` as harness.divergences.expectation reads it on this platform. Where it applies, a
    (case, framework) with any failure turns its failures into xfail; one with none is an xpass (the
    documented divergence did not show up), or for a non-strict entry a pass that says so. Where a
    catalogue id's conditions are not met, the mark does not apply and every record says why.
    `platform`: harness.hardware.Platform (None: this machine's, detected). Changes `records` in place."""
    for fw in case.xfail:
        mine = [r for r in records if r.framework == fw]
        if not mine or any(r.status in (Status.SKIPPED, Status.UNSUPPORTED) for r in mine):
            continue
        expected = expectation(case, fw, platform)
        decision = ("not applied" if not expected.applies else "applied" if expected.strict
                    else "applied (non-strict)")
        for r in mine:
            r.divergence = f"{decision}: {expected.why}"
        if not expected.applies:
            for r in mine:
                r.message = f"{r.message} [xfail not applied: {expected.why}]".strip()
            continue
        failed = any(r.status in (Status.FAIL, Status.ERROR) for r in mine)
        for r in mine:
            if failed and r.status in (Status.FAIL, Status.ERROR):
                r.status, r.message = Status.XFAIL, f"{r.message} [xfail: {expected.why}]".strip()
            elif not failed and r.status == Status.PASS:
                if expected.strict:
                    r.status, r.message = Status.XPASS, f"expected to fail: {expected.why}"
                else:
                    r.message = f"the known divergence did not show (not strict): {expected.why}"
    return records
