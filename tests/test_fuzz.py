"""Malformed input never escapes as a traceback: every mutant of every bundled case file either loads or
raises CaseError (file, line, field, problem). Deterministic: a fixed seed, a fixed list of junk."""
import copy
import glob
import os
import random

import pytest

from gradconf import yamlio
from gradconf.errors import CaseError
from gradconf.family import expand, is_family
from gradconf.loader import parse_case
from tests.conftest import ROOT

JUNK = [None, "", "x", "1e-5", -1, 0, 1.5, -3.7, 10 ** 9, 2 ** 40, 10 ** 400, 1e308, float("nan"), float("inf"), True,
        [], [1], [None], [[1, 2], [3]], [1, 2, 3], [[[[1]]]], [[0, 1], [1]], [10 ** 6, 10 ** 6], {}, {"a": 1},
        {"shape": [2, 2]}, {"shape": [0]}, {"shape": [-1, 2]}, {"shape": [10 ** 5, 10 ** 5]}, {"init": "normal"},
        {"choice": []}, {"choice": [1, "x"]}, {"range": [1]}, {"range": [0, 10 ** 400]}, "same", "valid"]


def _paths(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _set(d, path, value):
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


FILES = sorted(glob.glob(os.path.join(ROOT, "cases", "**", "*.yaml"), recursive=True))


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_mutants_load_or_fail_with_a_case_error(path):
    rng = random.Random(path)
    data, lines = yamlio.load(open(path).read(), path)
    fields = list(_paths(data))
    for _ in range(int(os.environ.get("GRADCONF_FUZZ", "40"))):
        mutant = copy.deepcopy(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            try:
                _set(mutant, rng.choice(fields), copy.deepcopy(rng.choice(JUNK)))
            except (KeyError, IndexError, TypeError):  # an earlier mutation replaced this field's parent
                pass
        if is_family(mutant):  # keep expansion quick; the count itself is fuzzed by the corpus
            mutant["count"] = 2
        try:
            expand(mutant, path, lines, None) if is_family(mutant) else parse_case(mutant, path, lines)
        except CaseError as e:  # located as load_file locates it: file:line: field: problem
            message = str(e.located(path, lines))
            assert message.startswith(path + ":") and message.split(": ", 1)[1]
