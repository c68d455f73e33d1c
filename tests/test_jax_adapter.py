"""The JAX adapter: it conforms on the bundled cases that exercise each primitive, and every bug planted in
its primitives (tests/planted_jax.py) makes at least one of them fail."""
import dataclasses
import os

import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.loader import load_file
from gradconf.runner import Runner
from tests.conftest import ROOT
from tests.planted_jax import MUTATIONS, entries

pytest.importorskip("jax")
pytest.importorskip("optax")
from gradconf.adapters import jax_adapter  # noqa: E402


def _statuses(name: str) -> set[str]:
    """The jax statuses on a bundled case: "layers/pool_ties", or a family's variant "families/nets[78]"."""
    path, _, variant = name.rstrip("]").partition("[")
    cases = load_file(os.path.join(ROOT, "cases", f"{path}.yaml"))
    (case,) = [c for c in cases if c.id.endswith(f"[{variant}]")] if variant else cases
    records = Runner(NumpyReference(), [jax_adapter.JaxAdapter()]).run_case(case).records
    return {r.status for r in records if r.framework == "jax"}


def test_the_unpatched_adapter_passes_every_case_the_mutations_use():
    names = sorted({n for _, _, cases in MUTATIONS.values() for n in cases})
    statuses = {n: _statuses(n) for n in names}
    assert {n: s for n, s in statuses.items() if not s <= {"pass", "xfail"}} == {}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_planted_bug_fails_a_bundled_case(mutation, monkeypatch):
    primitive, replacement, cases = MUTATIONS[mutation]
    for table, name, function in entries(primitive, replacement):
        monkeypatch.setitem(table, name, function)
    caught = [n for n in cases if _statuses(n) & {"fail", "error"}]
    assert caught, f"{mutation}: no failure on {cases}"


def test_xla_flags_keep_the_users_and_add_the_thread_pool():
    assert jax_adapter.xla_flags("", None) == "--xla_cpu_use_fusion_emitters=false"
    assert jax_adapter.xla_flags("--xla_cpu_use_fusion_emitters=true", 1) == (
        "--xla_cpu_use_fusion_emitters=true --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    assert "intra_op_parallelism_threads=4" in jax_adapter.xla_flags("intra_op_parallelism_threads=4", 2)
    assert jax_adapter.xla_flags("intra_op_parallelism_threads=4", 2).count("intra_op") == 1


@pytest.mark.parametrize("name", ["half_adam_underflow", "tf_bfloat16_bias_gradient"])
def test_the_jax_divergences_are_real(name):
    """HALF-ADAM and JAX-BF16-BCAST-GRAD on jax: marked, the case is an xfail; without the mark, a failure."""
    from gradconf.divergences import expectation
    (case,) = load_file(os.path.join(ROOT, "cases", "divergences", f"{name}.yaml"))
    expected = expectation(case, "jax")
    assert expected.applies and expected.strict == (name != "half_adam_underflow")  # HALF-ADAM: loose on jax
    runner = Runner(NumpyReference(), [jax_adapter.JaxAdapter()])
    marked = {r.status for r in runner.run_case(case).records if r.framework == "jax"}
    unmarked = {r.status for r in runner.run_case(dataclasses.replace(case, xfail={})).records if r.framework == "jax"}
    assert "fail" not in marked and "xpass" not in marked
    if expected.strict:
        assert "xfail" in marked and "fail" in unmarked
    else:  # it may or may not show; where it does, unmarked it is a failure
        assert ("xfail" in marked) == ("fail" in unmarked)
