"""`gradconf run --shard K/N` and `gradconf report DIR1 DIR2 ...`: one run split over N jobs or hosts, and
their outputs merged back into the report set of the unsharded run.

A case belongs to shard `1 + h(id) mod N`, `h` the first 8 bytes of the SHA-256 of its id: a function of
the id alone, so a variant stays in its shard whatever `--count`, `-k`, file order or other cases are, and
shards 1..N of one selection are disjoint and cover it exactly once. Each shard's run block records what
merging needs: the shard, the size and a digest of the whole selection (the ids in order, before
sharding), and each of its cases' position in that selection. Merging checks that the shards come from one
selection, each once and all of them, and lays their cases out by position: the records, and their order,
are those of the unsharded run (`tests/test_shard.py`).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import COMMAND_LINE, CaseError
from .runner import Record


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """"2/3" -> Shard(2, 3). Raises CaseError (an invalid option) otherwise."""
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit()):
        raise CaseError(f"takes K/N (e.g. 2/3: the second of three shards), got {text!r}", ("--shard",),
                        COMMAND_LINE)
    shard = Shard(int(k), int(n))
    if not 1 <= shard.index <= shard.count:
        raise CaseError(f"K must be between 1 and N, got {text}", ("--shard",), COMMAND_LINE)
    return shard


def shard_of(case_id: str, count: int) -> int:
    """The 1-based shard of `case_id` among `count`: the same on every machine and Python (not hash())."""
    return 1 + int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "big") % count


def selection_digest(ids: Sequence[str]) -> str:
    """What names a selection: the ids, in order (the unsharded run's order)."""
    return hashlib.sha256(json.dumps(list(ids)).encode("utf-8")).hexdigest()[:16]


def select(cases: Sequence, shard: Shard) -> tuple[list, dict]:
    """The shard's part of `cases` (in their order), and the block its run records for merging."""
    positions = [i for i, c in enumerate(cases) if shard_of(c.id, shard.count) == shard.index]
    block = {"shard": str(shard), "selected": len(cases), "selection": selection_digest([c.id for c in cases]),
             "positions": positions}
    return [cases[i] for i in positions], block


# ---------------------------------------------------------------- merging

class MergeError(Exception):
    """The folders given are not the shards of one run (or cannot be read); names what is wrong."""


@dataclass
class ShardRun:
    folder: str           # the run folder read
    run: dict
    records: list[Record]
    planned: list[str]    # the ids of the cases it was to run, in order


def read(folder: str) -> ShardRun:
    """A run folder's stream (harness.reportset), with the ids its first line planned. Raises OSError."""
    from .reportset import STREAM, read_stream
    records, run = read_stream(folder)
    with open(os.path.join(folder, STREAM), "rb") as fh:
        try:
            first = json.loads(fh.readline())
        except ValueError:
            first = {}
    planned = first.get("planned") if isinstance(first, dict) else None
    return ShardRun(folder, run, records, planned if isinstance(planned, list) else [])


def _by_case(records: Sequence[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.case, []).append(r)
    return out


def merge(shards: Sequence[ShardRun]) -> tuple[list[Record], dict, list[str]]:
    """(records in the unsharded run's order, the merged run block, the planned ids in that order).
    Raises MergeError when the shards are not exactly shards 1..N of one selection."""
    blocks = []
    for s in shards:
        block = s.run.get("shard")
        if not isinstance(block, dict) or not isinstance(block.get("positions"), list):
            raise MergeError(f"{s.folder} is not a shard's run (it was not run with --shard K/N)")
        blocks.append(block)
    first = blocks[0]
    for s, b in zip(shards, blocks):
        if (b.get("selection"), b.get("selected")) != (first.get("selection"), first.get("selected")):
            raise MergeError(f"{s.folder} ran another selection of cases than {shards[0].folder} (other paths, "
                             f"-k, --count or case files): its shards cannot be merged")
    count = int(str(first["shard"]).split("/")[1])
    seen: dict[str, str] = {}
    for s, b in zip(shards, blocks):
        name = str(b["shard"])
        if int(name.split("/")[1]) != count:
            raise MergeError(f"{s.folder} is shard {name}, {shards[0].folder} shard {first['shard']}: "
                             f"not one split")
        if name in seen:
            raise MergeError(f"shard {name} given twice: {seen[name]} and {s.folder}")
        seen[name] = s.folder
    missing = [f"{k}/{count}" for k in range(1, count + 1) if f"{k}/{count}" not in seen]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} of {count} missing: give every shard's folder")
    placed: dict[int, tuple[str, list[Record]]] = {}
    not_run = 0
    for s, b in zip(shards, blocks):
        planned = _planned_ids(s)
        groups = _by_case(s.records)
        for position, case_id in zip(b["positions"], planned):
            placed[position] = (case_id, groups.get(case_id, []))
        not_run += (s.run.get("interrupted") or {}).get("cases_not_run", 0)
    order = sorted(placed)
    records = [r for p in order for r in placed[p][1]]
    return records, _merged_run(shards, blocks, not_run), [placed[p][0] for p in order]


def _planned_ids(s: ShardRun) -> list[str]:
    if len(s.planned) != len(s.run["shard"]["positions"]):
        raise MergeError(f"{s.folder}: its stream does not list the cases it planned")
    return s.planned


def _merged_run(shards: Sequence[ShardRun], blocks: list[dict], not_run: int) -> dict:
    """Shard 1's run block (the reference, versions, platform) without its shard part, with each shard's
    own command, start, time and framework versions under `shards`, and an interruption if any had one."""
    ordered = sorted(zip(shards, blocks), key=lambda pair: int(str(pair[1]["shard"]).split("/")[0]))
    base = {k: v for k, v in ordered[0][0].run.items() if k not in ("shard", "interrupted")}
    base["seconds"] = round(sum(s.run.get("seconds") or 0.0 for s, _ in ordered), 3)
    base["shards"] = [{"shard": b["shard"], "folder": s.folder, "command": s.run.get("command"),
                       "started": s.run.get("started"), "seconds": s.run.get("seconds"),
                       "frameworks": s.run.get("frameworks"), "platform": s.run.get("platform")}
                      for s, b in ordered]
    cut = [s for s, _ in ordered if s.run.get("interrupted")]
    if cut:
        whys = "; ".join(f"shard {s.run['shard']['shard']}: {s.run['interrupted'].get('why')}" for s in cut)
        total = blocks[0]["selected"]
        base["interrupted"] = {"why": whys, "cases_run": total - not_run, "cases_not_run": not_run}
    return base


def write_merged(dirs: Sequence[str], out_dir: str) -> tuple[list[Record], dict, list[str]]:
    """`gradconf report DIR1 DIR2 ... --out OUT`: each DIR's newest run (or the run folder named) read,
    merged, and written to OUT as a run of its own (its stream too). Raises MergeError or OSError."""
    from .reportset import RunFolder, check_out_dir, expected_bytes, newest_stream
    shards = []
    for d in dirs:
        folder = newest_stream(d)
        if folder is None:
            raise MergeError(f"no streamed records in {d} (no results.jsonl there or under .runs/)")
        shards.append(read(folder))
    records, run, planned = merge(shards)
    frameworks = {r.framework for r in records}
    why = check_out_dir(out_dir, expected_bytes(len(planned) * max(1, len(frameworks))))
    if why:
        raise OSError(why)
    out = RunFolder.create(out_dir)
    try:
        out.begin(run, planned)
        groups = _by_case(records)
        for case_id in planned:  # as the unsharded run streams them: one entry per case, in case order
            if case_id in groups or not run.get("interrupted"):  # an interrupted shard's unrun cases: none
                out.add(case_id, groups.get(case_id, []))
        return records, run, out.finish(records, run)
    finally:
        out.close()
