"""What a run produces: records, and the statuses they carry.

A record is either a measurement (one quantity of one step compared: errors, allowance, ratio) or a note
(an outcome of a whole (case, framework): error, unsupported, skipped; step, quantity and tensor None).
Both are `Record`s, one row of results.json (SPEC §3); `measured` and `note` build them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    """A record's status. A str (JSON, CSV and every comparison with "pass" see the plain word)."""
    PASS = "pass"
    FAIL = "fail"
    XFAIL = "xfail"
    XPASS = "xpass"
    ERROR = "error"
    UNSUPPORTED = "unsupported"
    SKIPPED = "skipped"

    __str__ = str.__str__      # "pass", not "Status.PASS", wherever it is printed
    __format__ = str.__format__
    __hash__ = str.__hash__    # equal to its word, so hashed as its word: `status in {"pass", "xfail"}` holds


FAILING = (Status.FAIL, Status.ERROR, Status.XPASS)
COMPARED = (Status.PASS, Status.FAIL, Status.XFAIL, Status.XPASS)  # a comparison was made


@dataclass
class Record:
    case: str
    framework: str
    reference: str | None          # "numpy" (or another reference) | "expected" for golden values
    step: int | None
    quantity: str | None           # loss | output | grad | param
    tensor: str | None             # "conv.weight", "input"; None for loss and output
    shape: list[int] | None
    dtype: str
    max_abs_err: float | None
    max_rel_err: float | None
    worst_index: list[int] | None
    rtol: float | None
    atol: float | None
    status: str                    # a Status (records read back from JSON hold the plain word)
    message: str = ""
    ratio: float | None = None     # worst error as a multiple of its allowance
    actual: float | None = None
    desired: float | None = None
    family: str | None = None
    file: str | None = None
    line: int | None = None
    # On a failing framework's records: the catalogued divergences (docs/divergences.md) whose
    # conditions the case meets, as the adapter declares them, e.g. "TF-ADAM-EPS, TF-HYPER32".
    known: str | None = None
    # Where the case marks this framework with `xfail:`: whether the mark applied here and why
    # (harness/divergences.py), e.g. "applied (non-strict): TF-ONEDNN-1CH (...)" or "not applied: ...".
    divergence: str | None = None
    # On a failing comparison with the reference: the other frameworks whose value there lies within
    # twice the allowance of this one's (harness.blame), e.g. "jax, tensorflow"; "" none; None not asked.
    agrees: str | None = None
    # On a failing framework's records: the first layer where it departs from the reference (harness.localise),
    # e.g. "c2 (conv2d): its forward output departs (3.1e+05x the allowance) while its inputs agree".
    origin: str | None = None
    # With `origin`: per layer in graph order, [name, type, forward error/allowance, output-gradient error/allowance]
    layers: list | None = None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _FIELDS}  # shallow: every field is a plain value


_FIELDS = tuple(Record.__dataclass_fields__)


def note(case, framework: str, status: Status, message: str, reference: str | None = None) -> Record:
    """The one record of a (case, framework) that was not compared: error, unsupported or skipped."""
    return Record(case.id, framework, reference, None, None, None, None, case.dtype, None, None, None, None, None,
                  status, message, family=case.family, file=case.file, line=case.line)
