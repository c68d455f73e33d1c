"""The thread policy (README, "Threads"): one thread per framework per worker, more only for a large case."""
import os

import pytest

from gradconf import adapters, threads
from gradconf.adapters import LARGE_CASE_MACS, case_macs, threads_for
from gradconf.loader import load_file
from gradconf.tensors import materialize
from tests.conftest import ROOT, make_case

LARGE = f"{ROOT}/benchmarks/cases/large_net.yaml"
SMALL = f"{ROOT}/cases/examples/net_5x5.yaml"


def test_case_macs_counts_the_largest_layer():
    (large,) = load_file(LARGE)
    assert case_macs(large) == 16 * 32 * 32 * 32 * 32 * 9  # conv2: 16×32×32 outputs × 32·3·3 taps
    deconv = make_case(input={"shape": [2, 4, 5, 5]}, loss={"sum": {}},
                       model=[{"conv_transpose2d": {"name": "t", "out_channels": 6, "kernel_size": 3, "groups": 2}}])
    assert case_macs(deconv) == 2 * 4 * 25 * 3 * 9  # every input pixel × (6/2 outputs) × 3·3 taps
    dense = make_case(input={"shape": [3, 7]}, model=[{"dense": {"name": "d", "out_features": 5}}], loss={"sum": {}})
    assert case_macs(dense) == 3 * 7 * 5


def test_small_cases_get_one_thread_large_ones_the_workers_share(monkeypatch):
    (small,), (large,) = load_file(SMALL), load_file(LARGE)
    assert case_macs(small) < LARGE_CASE_MACS <= case_macs(large)
    monkeypatch.setenv("GRADCONF_THREADS", "3")
    assert (threads_for(small), threads_for(large)) == (1, 3)
    monkeypatch.delenv("GRADCONF_THREADS")
    monkeypatch.setattr(threads, "usable_cores", lambda: 5)
    assert (threads_for(small), threads_for(large)) == (1, 5)


def test_after_a_run_torch_and_every_blas_pool_use_one_thread():
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info
    (case,) = load_file(SMALL)
    torch.set_num_threads(2)
    adapters.builtin("torch").run(case, materialize(case))
    assert torch.get_num_threads() == 1
    assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_tensorflow_runs_on_one_intra_and_one_inter_op_thread(tmp_path):
    """In a fresh process, as a worker is: TensorFlow's pools are fixed by its first op."""
    pytest.importorskip("tensorflow")
    import subprocess
    import sys
    code = ("import tensorflow as tf\nfrom gradconf import adapters\nfrom gradconf.loader import load_file\n"
            "from gradconf.tensors import materialize\n"
            f"(case,) = load_file({SMALL!r})\nadapters.builtin('tensorflow').run(case, materialize(case))\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads(),"
            " tf.config.threading.get_inter_op_parallelism_threads())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["1", "1"], done.stderr[-2000:]
