"""`gradconf run --shard K/N` and `gradconf report DIR1 DIR2 ...` (harness.shard): shards are disjoint, cover
a run once, stay put by id, and merged give the unsharded run's records in its order."""
import json
import os

import pytest

from gradconf import shard
from gradconf.cli import main
from gradconf.loader import load_paths
from tests.conftest import ROOT
from tests.test_cli import EXAMPLES

FAMILY = os.path.join(ROOT, "cases", "families", "conv2d.yaml")
RUN = [EXAMPLES, FAMILY, "--count", "12", "--frameworks", "numpy", "--adapter", "tests.planted:Copy", "-q", "-j", "1"]


def _records(out):
    return json.loads((out / "results.json").read_text())


def test_shards_are_disjoint_cover_the_run_and_follow_the_id():
    cases, _ = load_paths([EXAMPLES, FAMILY], 40)
    parts = [shard.select(cases, shard.Shard(k, 3))[0] for k in (1, 2, 3)]
    ids = [[c.id for c in p] for p in parts]
    assert sorted(sum(ids, [])) == sorted(c.id for c in cases) and all(ids)  # each case once, no shard empty
    assert all(p == sorted(p, key=[c.id for c in cases].index) for p in ids)  # in run order
    fewer, _ = load_paths([FAMILY], 7)  # another count and selection: every variant keeps its shard
    for c in fewer:
        assert c.id in ids[shard.shard_of(c.id, 3) - 1]


@pytest.mark.parametrize("text,message", [("3", "takes K/N"), ("0/3", "between 1 and N"), ("4/3", "between 1 and N"),
                                          ("a/b", "takes K/N")])
def test_a_bad_shard_is_an_invalid_option(text, message, capsys):
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "--shard", text, "-q"]) == 2
    err = capsys.readouterr().err
    assert "--shard: " in err and message in err, err


def test_three_shards_merged_are_the_unsharded_run(tmp_path, capsys):
    assert main(["run", *RUN, "--out", str(tmp_path / "whole")]) == 0
    whole = _records(tmp_path / "whole")
    dirs = []
    for k in (1, 2, 3):  # given out of order: the merge orders by position, not by argument
        d = tmp_path / f"shard{k}"
        assert main(["run", *RUN, "--shard", f"{k}/3", "--out", str(d)]) == 0
        part = _records(d)
        assert part["run"]["shard"]["shard"] == f"{k}/3" and 0 < len(part["records"]) < len(whole["records"])
        dirs.append(str(d))
    merged_out = tmp_path / "merged"
    assert main(["report", dirs[2], dirs[0], dirs[1], "--out", str(merged_out)]) == 0
    merged = _records(merged_out)
    assert merged["records"] == whole["records"] and len(whole["records"]) > 100
    assert [s["shard"] for s in merged["run"]["shards"]] == ["1/3", "2/3", "3/3"] and "shard" not in merged["run"]
    stream = (merged_out / "results.jsonl").read_text().splitlines()
    assert json.loads(stream[0])["planned"] == json.loads((tmp_path / "whole" / "results.jsonl").read_text()
                                                          .splitlines()[0])["planned"]
    assert "3 shard(s) merged" in capsys.readouterr().out
    # the merge is itself a streamed run folder: `gradconf report DIR` rebuilds it to the same records
    assert main(["report", str(merged_out)]) == 0 and _records(merged_out)["records"] == whole["records"]


def test_a_merge_of_the_wrong_folders_says_what_is_wrong(tmp_path, capsys):
    for k in (1, 2):
        assert main(["run", *RUN, "--shard", f"{k}/3", "--out", str(tmp_path / f"s{k}")]) == 0
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "-q", "--shard", "3/3", "--out",
                 str(tmp_path / "other")]) == 0
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "-q", "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    for dirs, message in ((["s1", "s2"], "shard(s) 3/3 of 3 missing"), (["s1", "s1", "s2"], "given twice"),
                          (["s1", "s2", "other"], "another selection"), (["s1", "plain"], "not a shard's run")):
        assert main(["report", *[str(tmp_path / d) for d in dirs], "--out", str(tmp_path / "m")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "m" / "results.json").exists()


def test_an_empty_shard_runs_nothing_and_passes(tmp_path, capsys):
    cases, _ = load_paths([EXAMPLES])
    empty = next(k for k in range(1, 50) if all(shard.shard_of(c.id, 50) != k for c in cases))
    assert main(["run", EXAMPLES, "--frameworks", "numpy", "-q", "--shard", f"{empty}/50", "--out", str(tmp_path)]) == 0
    assert "holds none of the 5 selected case(s)" in capsys.readouterr().out


def test_a_killed_shard_merges_as_an_interrupted_run(tmp_path, capsys):
    """A shard killed before its end (its stream cut after some cases): the merge keeps every case it
    finished, in run order, and says how many were not run."""
    assert main(["run", *RUN, "--out", str(tmp_path / "whole")]) == 0
    whole = _records(tmp_path / "whole")["records"]
    for k in (1, 2, 3):
        assert main(["run", *RUN, "--shard", f"{k}/3", "--out", str(tmp_path / f"s{k}")]) == 0
    stream, = (tmp_path / "s2" / ".runs").glob("*/results.jsonl")
    lines = stream.read_text().splitlines()
    cut = [i for i, line in enumerate(lines) if line.startswith('{"case"')][1]  # two cases finished, then killed
    stream.write_text("\n".join(lines[:cut + 1]) + "\n")
    lost = json.loads(lines[0])["planned"][2:]
    assert main(["report", *[str(tmp_path / f"s{k}") for k in (1, 2, 3)], "--out", str(tmp_path / "m")]) == 0
    merged = _records(tmp_path / "m")
    assert merged["records"] == [r for r in whole if r["case"] not in lost] and lost
    cut = merged["run"]["interrupted"]
    assert cut["cases_not_run"] == len(lost) and "shard 2/3" in cut["why"]
