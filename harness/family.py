"""Randomized families (SPEC §1.6): `count:` at the top, `{choice: [...]}` / `{range: [lo, hi]}` anywhere.

Variant i is drawn from (seed, i) alone, so it is the same on every machine, in any subset or
order of a run and on any xdist worker. A draw that gives an impossible network is redrawn from
(seed, i, attempt) — deterministic too.
"""
from __future__ import annotations

import numpy as np

from .case import Case
from .errors import CaseError, Conflict
from .fields import integer
from .parse import case_name, parse_case

MAX_ATTEMPTS = 200
# Variants per family (`count:` or --count): each is drawn and validated up front (~1 ms each), and a
# typo such as `count: 1000000000` must be an error in a second, not an hour of growing memory.
MAX_COUNT = 10_000


def is_family(data: dict) -> bool:
    return "count" in data


def _is_draw(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ("choice", "range")


def _draw(v, rng: np.random.Generator, path):
    """Replace every choice/range in `v` (depth-first, in file order) by a drawn value."""
    if _is_draw(v):
        (kind, arg), = v.items()
        if kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise CaseError("`choice` takes a non-empty list", path + ("choice",))
            i = int(rng.integers(len(arg)))
            return _draw(arg[i], rng, path + ("choice", i))
        if (not isinstance(arg, list) or len(arg) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and abs(x) < 2 ** 62 for x in arg)
                or arg[0] > arg[1]):
            raise CaseError(f"`range` takes two integers [lo, hi] with lo <= hi, got {arg!r:.60}", path + ("range",))
        return int(rng.integers(arg[0], arg[1] + 1))
    if isinstance(v, dict):
        return {k: _draw(x, rng, path + (k,)) for k, x in v.items()}
    if isinstance(v, list):
        return [_draw(x, rng, path + (i,)) for i, x in enumerate(v)]
    return v


def _through_draw(body: dict, path) -> bool:
    """Whether the field at `path` (in a drawn variant) lies at or below a choice/range of the family."""
    node = body
    for part in path:
        if _is_draw(node):
            return True
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    return _is_draw(node)


def variant_seed(seed: int, index: int) -> int:
    """The tensor seed of variant `index`: a pure function of the family seed and the index."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def draw_variant(data: dict, file: str, lines: dict, index: int, frameworks=None) -> Case:
    name = case_name(data, file)
    body = {k: v for k, v in data.items() if k != "count"}
    last: CaseError | None = None
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([integer(data.get("seed", 0), ("seed",), min=0), index, attempt])
        drawn = _draw(body, rng, ())
        drawn["name"] = f"{name}[{index}]"
        drawn["seed"] = variant_seed(integer(drawn.get("seed", 0), ("seed",), min=0), index)
        tags = drawn.get("tags") or []
        if isinstance(tags, list) and all(isinstance(t, str) for t in tags):  # else parse_case reports it
            drawn["tags"] = list(dict.fromkeys([*tags, "family", name]))
        try:
            return parse_case(drawn, file, lines, family=name, frameworks=frameworks)
        except Conflict as e:  # an impossible network or pairing: draw again
            last = e
        except CaseError as e:
            if not _through_draw(body, e.path):  # the same in every variant
                raise
            raise CaseError(f"(variant {drawn['name']}) {e.problem}", e.path, e.file, e.line) from None
    raise CaseError(f"variant {index}: no valid variant in {MAX_ATTEMPTS} draws; last: {last.problem}",
                    last.path if last else ())


def expand(data: dict, file: str, lines: dict, count: int | None = None, frameworks=None) -> list[Case]:
    """Every variant of a family; `frameworks` as parse_case takes it."""
    n = count if count is not None else integer(data["count"], ("count",), min=1)
    if n > MAX_COUNT:
        raise CaseError(f"{n:,} variants is more than gradconf draws for one family (the cap is {MAX_COUNT:,})",
                        ("count",) if count is None else ("--count",))
    return [draw_variant(data, file, lines, i, frameworks) for i in range(n)]


def split_id(case_id: str) -> tuple[str, int] | None:
    """"conv_random[17]" -> ("conv_random", 17); None for a plain case id."""
    if case_id.endswith("]") and "[" in case_id:
        name, _, idx = case_id[:-1].rpartition("[")
        if idx.isdigit():
            return name, int(idx)
    return None
