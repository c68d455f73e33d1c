"""`gradconf repro`: standalone scripts that show a divergence with one framework and NumPy, no gradconf.

Each script runs in a fresh interpreter where `import gradconf` fails, as in an environment that has
only that framework and NumPy. The round-trip tests write a script for passing cases too (every compared
tensor listed as if it differed) and require it to land within the allowance: the script computes what
the adapter computes; a planted wrong call in the script's writer makes that test fail.
"""
import dataclasses
import os
import subprocess
import sys

import pytest

from gradconf.cli import main
from gradconf.loader import load_paths
from gradconf.records import Status
from gradconf.repro import script
from gradconf.runner import CaseResult, Runner
from tests.conftest import ROOT

CASES = os.path.join(ROOT, "cases")
# Run the scripts given as arguments, each as __main__, where gradconf cannot be imported; print each one's
# exit status on a line of its own.
_RUNNER = ("import runpy, sys\n"
           "sys.modules['gradconf'] = None  # an environment without gradconf\n"
           "for path in sys.argv[1:]:\n"
           "    try:\n"
           "        runpy.run_path(path, run_name='__main__')\n"
           "        code = 0\n"
           "    except SystemExit as e:\n"
           "        code = e.code\n"
           "    print(f'EXIT {path} {code}', flush=True)\n")


def run_scripts(*paths, cwd):
    p = subprocess.run([sys.executable, "-c", _RUNNER, *map(str, paths)], cwd=cwd, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    codes = {line.split()[1]: int(line.split()[2]) for line in p.stdout.splitlines() if line.startswith("EXIT ")}
    return codes, p.stdout


def _adapter(name):
    if name == "torch":
        pytest.importorskip("torch")
        from gradconf.adapters.torch_adapter import TorchAdapter
        return TorchAdapter()
    pytest.importorskip("tensorflow")
    from gradconf.adapters.tensorflow_adapter import TensorflowAdapter
    return TensorflowAdapter()


@pytest.mark.parametrize("framework, case_id, catalogued", [
    ("tensorflow", "divergence_tf_hyper32", "TF-HYPER32"),
    ("torch", "convention_clip_norm_per_param", "TORCH-CLIPNORM-EPS"),
])
def test_a_catalogued_divergence_shows_in_its_script_alone(tmp_path, framework, case_id, catalogued):
    _adapter(framework)
    out = tmp_path / "repro.py"
    assert main(["repro", case_id, "--framework", framework, "-o", str(out), "--paths", CASES]) == 0
    text = out.read_text()
    assert catalogued in text and "gradconf" not in "".join(line for line in text.splitlines()
                                                             if line.startswith(("import", "from")))
    codes, stdout = run_scripts(out, cwd=tmp_path)
    assert codes[str(out)] == 1, stdout
    assert "DIFFERS" in stdout and "reference" in stdout


def test_a_passing_case_has_nothing_to_reproduce(tmp_path, capsys):
    _adapter("torch")
    assert main(["repro", "convention_relu_at_zero", "--framework", "torch", "--paths", CASES]) == 1
    assert "nothing to reproduce" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_repro_names_what_is_wrong_with_its_options(capsys):
    assert main(["repro", "convention_relu_at_zero", "--framework", "numpy", "--paths", CASES]) == 2
    assert "--framework" in capsys.readouterr().err
    assert main(["repro", "no_such_case", "--framework", "numpy", "--paths", CASES]) == 2


# Cases whose every layer, loss and optimizer the script writers cover: asymmetric padding, pools with
# and without padding, a transposed conv (torch), dense after flatten, class targets, schedules, graphs (a
# residual add; a U-Net's concat).
ROUND_TRIP = {
    "torch": ["conv_transpose_asymmetric", "avg_pool_count_exclude_pad", "per_side_padding_f32", "grouped_conv",
              "cross_entropy_net_f32", "convention_cosine_past_t_max", "convention_maxpool_padding", "unet_small_f32",
              "resnet_block"],
    "tensorflow": ["avg_pool_count_exclude_pad_f32", "dense_after_flatten", "cross_entropy_net", "per_side_padding",
                   "convention_maxpool_padding", "convention_same_padding", "strided_1x1_conv_f32", "net_5x5_f32",
                   "resnet_block_f32"],
}


def _every_tensor_as_differing(records, framework):
    return [dataclasses.replace(r, status=Status.FAIL, ratio=1.0) for r in records
            if r.framework == framework and r.quantity is not None and r.reference != "expected"]


def _write_round_trips(tmp_path, framework, ids):
    adapter = _adapter(framework)
    cases = {c.id: c for c in load_paths([CASES])[0] if c.id in ids}
    assert sorted(cases) == sorted(ids)
    runner, paths = Runner(__import__("gradconf.adapters.numpy_ref", fromlist=["x"]).NumpyReference(), [adapter]), []
    for case in cases.values():
        ref = runner.reference_trace(case, CaseResult(case))
        records = runner.run_case(case, reference=ref).records
        assert not [r for r in records if r.status not in (Status.PASS, Status.XFAIL)], case.id
        path = tmp_path / f"{case.id}.py"
        path.write_text(script(case, ref.initial, ref.trace, _every_tensor_as_differing(records, framework),
                               adapter, adapter.version()))
        paths.append(path)
    return paths


@pytest.mark.parametrize("framework", sorted(ROUND_TRIP))
def test_a_script_computes_what_the_adapter_computes(tmp_path, framework):
    paths = _write_round_trips(tmp_path, framework, ROUND_TRIP[framework])
    codes, stdout = run_scripts(*paths, cwd=tmp_path)
    assert codes == {str(p): 0 for p in paths}, stdout


def test_a_wrong_call_in_the_script_writer_is_caught(tmp_path, monkeypatch):
    _adapter("torch")
    from gradconf.adapters import torch_script
    monkeypatch.setitem(torch_script.LAYERS, "max_pool2d", lambda L, w, b: "F.avg_pool2d(y, 2)")  # planted
    paths = _write_round_trips(tmp_path, "torch", ["convention_maxpool_padding"])
    codes, stdout = run_scripts(*paths, cwd=tmp_path)
    assert codes[str(paths[0])] == 1 and "DIFFERS" in stdout
