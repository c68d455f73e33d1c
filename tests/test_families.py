"""Families are reproducible anywhere; freeze reproduces a variant; shrink finds a small failing case."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.errors import CaseError
from gradconf.family import draw_variant, variant_seed
from gradconf.freeze import freeze
from gradconf.loader import load_file, load_paths, read_file
from gradconf.runner import Runner
from gradconf.shrink import failing_predicate, shrink
from gradconf.tensors import materialize
from tests.conftest import ROOT
from tests.planted import WrongTanhDerivative

FAMILIES = os.path.join(ROOT, "cases", "families")


def _numbers(case):
    init = materialize(case)
    return [init.input, *init.params.values()] + ([init.target] if init.target is not None else [])


def test_bundled_families_hold_at_least_1000_variants_in_every_dtype():
    cases, errors = load_paths([FAMILIES])
    assert not errors and len(cases) >= 1000
    assert {c.dtype for c in cases} == {"float64", "float32", "float16", "bfloat16"}


def test_variant_depends_only_on_seed_and_index():
    path = os.path.join(FAMILIES, "nets.yaml")
    full = {c.id: c for c in load_file(path)}
    subset = load_file(path, count=5)
    data, lines = read_file(path)
    alone = draw_variant(data, path, lines, 37)
    assert [c.id for c in subset] == [f"net_random[{i}]" for i in range(5)]
    for c in [*subset, alone]:
        twin = full[c.id]
        assert c.source == twin.source
        for a, b in zip(_numbers(c), _numbers(twin)):
            np.testing.assert_array_equal(a, b)


def test_variant_seed_is_stable():
    # Pinned: a change here changes every family variant on every machine.
    assert variant_seed(14, 0) == variant_seed(14, 0)
    assert [variant_seed(0, i) for i in range(3)] == [int(np.random.SeedSequence([0, i]).generate_state(1)[0])
                                                     for i in range(3)]


def test_impossible_draws_are_redrawn_deterministically():
    cases = load_file(os.path.join(FAMILIES, "conv2d.yaml"))
    assert len(cases) == 200  # every variant valid, though many raw draws are impossible networks
    again = load_file(os.path.join(FAMILIES, "conv2d.yaml"))
    assert [c.source for c in cases] == [c.source for c in again]


def _family(tmp_path, text):
    path = tmp_path / "fam.yaml"
    path.write_text(text)
    return str(path)


def test_a_tensor_the_drawn_network_does_not_fit_is_redrawn(tmp_path):
    """A target (or class ids) fixed in the file fits only some drawn batches / widths: those are
    impossible draws like any other, not an invalid file."""
    path = _family(tmp_path, """\
count: 30
input: {shape: [{range: [1, 3]}, 1, 4, 4]}
model: [flatten, {dense: {out_features: {range: [2, 5]}}}]
loss: {choice: [{mse: {target: {shape: [2, 3], init: normal}}}, {cross_entropy: {target: [3, 1]}}]}
""")
    cases = load_file(path)
    assert len(cases) == 30
    assert {c.input.shape[0] for c in cases} == {2} and all(c.output_shape[1] >= 3 for c in cases)
    assert {c.loss.kind for c in cases} == {"mse", "cross_entropy"}


def test_values_valid_alone_that_conflict_are_redrawn(tmp_path):
    """nesterov with a drawn momentum of 0, a drawn high below a drawn low, steps without a drawn
    optimizer: each value is fine on its own, so the pairing is an impossible draw, not a bad file."""
    path = _family(tmp_path, """\
count: 40
input: {shape: [1, 3], init: uniform, low: {range: [-2, 1]}, high: {range: [-1, 2]}}
model: [{dense: {out_features: 1}}]
loss: {sum: {}}
optimizer: {choice: [null, {sgd: {lr: 0.1, momentum: {choice: [0, 0.9]}, nesterov: {choice: [false, true]}}}]}
steps: {range: [1, 2]}
""")
    cases = load_file(path)
    assert len(cases) == 40
    assert all(not o.nesterov or o.momentum > 0 for o in (c.optimizer for c in cases) if o)
    assert any(c.optimizer and c.optimizer.nesterov for c in cases) and any(c.optimizer is None for c in cases)
    assert all(c.steps == 1 for c in cases if c.optimizer is None) and max(c.steps for c in cases) == 2
    assert all(c.input.low <= c.input.high for c in cases)
    # The same conflict written into the file, in no draw, is still that file's error.
    with pytest.raises(CaseError, match="no valid variant in 200 draws; last: nesterov needs a momentum > 0"):
        load_file(_family(tmp_path, "count: 2\ninput: {shape: [1, 3]}\nmodel: [{dense: {out_features: 1}}]\n"
                                    "loss: {sum: {}}\noptimizer: {sgd: {lr: 0.1, nesterov: true}}\n"))


def test_an_invalid_value_a_draw_gave_names_the_variant(tmp_path):
    path = _family(tmp_path, """\
count: 40
input: {shape: [1, 1, 5, 5]}
model: [{choice: [relu, {tanhh: {}}]}, sum]
loss: {sum: {}}
""")
    with pytest.raises(CaseError) as drawn:
        load_file(path)
    assert str(drawn.value).startswith(f"{path}:3: model[0].tanhh: (variant fam[")
    assert "unknown layer type `tanhh`; did you mean `tanh`?" in str(drawn.value)
    # A field no draw reaches is wrong in every variant: the message does not single one out.
    with pytest.raises(CaseError) as fixed:
        load_file(_family(tmp_path, "count: 4\ninput: {shape: [1, 1, 5, 5]}\nmodel: [{tanhh: {}}, sum]\n"
                                    "loss: {sum: {}}\n"))
    assert "variant" not in str(fixed.value) and "unknown layer type `tanhh`" in str(fixed.value)


def test_frozen_variant_reproduces_the_family_records(tmp_path):
    case_id = "net_random[7]"
    text = freeze(case_id, [os.path.join(ROOT, "cases")])
    path = tmp_path / "frozen.yaml"
    path.write_text(text)
    (frozen,) = load_file(str(path))
    (original,) = [c for c in load_file(os.path.join(FAMILIES, "nets.yaml"), count=8) if c.id == case_id]
    assert "count" not in yaml.safe_load(text) and frozen.id == "net_random_7"
    runner = Runner(NumpyReference(), [NumpyReference.__new__(type("Twin", (NumpyReference,), {"name": "twin"}))])
    strip = lambda rs: [(r.framework, r.step, r.quantity, r.tensor, r.max_abs_err, r.rtol, r.atol, r.status) for r in rs]
    assert strip(runner.run_case(frozen).records) == strip(runner.run_case(original).records)
    for a, b in zip(_numbers(frozen), _numbers(original)):
        np.testing.assert_array_equal(a, b)


def test_family_ids_are_identical_under_xdist(tmp_path):
    def ids(*extra):
        p = subprocess.run([sys.executable, "-m", "pytest", "cases/families/pool2d.yaml", "--collect-only", "-q",
                            "--gradconf-frameworks", "numpy", *extra], cwd=ROOT, capture_output=True, text=True)
        return sorted(line for line in p.stdout.splitlines() if "::" in line)
    serial = ids()
    assert len(serial) == 150 and serial == ids("-n", "2", "-p", "xdist")


def test_shrinking_a_planted_bug_gives_a_small_failing_case():
    runner = Runner(NumpyReference(), [WrongTanhDerivative()])
    fails = failing_predicate(runner, "wrong_tanh")
    big = next(c for c in load_file(os.path.join(FAMILIES, "nets.yaml"), count=40)
               if any(getattr(L, "kind", "") == "tanh" for L in c.layers) and len(c.layers) >= 7 and fails(c))
    start = time.perf_counter()
    small = shrink(big, fails, budget_s=60)
    elapsed = time.perf_counter() - start
    assert elapsed < 60
    assert fails(small)
    assert len(small.layers) <= 3
    assert max(small.input.shape) <= 4
    assert any(getattr(L, "kind", "") == "tanh" for L in small.layers)
    assert small.steps == 1


def test_shrinking_a_case_written_with_bare_word_layers(tmp_path):
    """`- tanh` (no parameters) is a string, not a mapping: shrink must step over it, not crash."""
    path = tmp_path / "bare.yaml"
    path.write_text("input: {shape: [2, 5]}\nmodel: [{dense: {out_features: 4}}, tanh, {dense: {out_features: 3}},"
                    " relu, sum]\nloss: {sum: {}}\n")
    (case,) = load_file(str(path))
    fails = failing_predicate(Runner(NumpyReference(), [WrongTanhDerivative()]), "wrong_tanh")
    small = shrink(case, fails, budget_s=30)
    assert fails(small) and len(small.layers) < len(case.layers)
    assert any(getattr(L, "kind", "") == "tanh" for L in small.layers)


def test_shrink_command_writes_a_regression_case(tmp_path):
    big = "net_random[2]"  # conv, avg-pool, tanh, conv, tanh, flatten, dense
    p = subprocess.run([sys.executable, "-m", "gradconf", "shrink", big, "--frameworks", "numpy",
                        "--adapter", "tests.planted:WrongTanhDerivative", "--out", str(tmp_path), "--budget", "60"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (written,) = os.listdir(tmp_path)
    (case,) = load_file(str(tmp_path / written))
    assert "regression" in case.tags and len(case.layers) <= 3
    records = Runner(NumpyReference(), [WrongTanhDerivative()]).run_case(case).records
    assert any(r.framework == "wrong_tanh" and r.status == "fail" for r in records)
    assert all(r.status == "pass" for r in records if r.framework == "numpy")


def test_shrinking_a_case_that_crashes_its_framework(tmp_path):
    """A segfault is a failure like any other: each crash costs a child process, the shrink goes on."""
    p = subprocess.run([sys.executable, "-m", "gradconf", "shrink", "sum_3x3", "--paths", "cases/examples",
                        "--frameworks", "numpy", "--adapter", "tests.planted:CrashesOnSum3x3", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "shrinking sum_3x3, failing on crashes" in p.stderr
    (written,) = os.listdir(tmp_path)
    (case,) = load_file(str(tmp_path / written))
    assert len(case.layers) == 1  # conv + sum: either alone still crashes (the planted adapter keys on the id)
