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

import numpy as np
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


# ---------------------------------------------------------------- issue 19: the newer layers, against the adapter

# Normalisation (batch norm training with its running statistics as state over 2 steps of SGD, eval, layer
# and group norm, one in a residual graph), pool options (ceil_mode, dilation, global and adaptive pools),
# upsampling (nearest, bilinear with and without align_corners), padding modes on conv2d and conv1d (dilated,
# grouped: TensorFlow's are the adapter's compositions), an embedding (ids, no input gradient), activations.
NEW_LAYERS = ["convention_batch_norm_momentum_weighs_the_batch", "convention_batch_norm_eval_uses_running_stats",
              "convention_layer_norm_over_every_axis_but_the_batch", "convention_group_norm_groups_consecutive_channels",
              "convention_avgpool_ceil_mode_divisor", "convention_avgpool_ceil_mode_exclude_pad",
              "convention_maxpool_ceil_mode_drops_window", "convention_maxpool_dilation",
              "convention_maxpool_ceil_mode_far_padding", "convention_avgpool_ceil_mode_far_padding",
              "convention_global_avg_pool", "convention_adaptive_avgpool_windows",
              "convention_upsample_nearest", "convention_upsample_bilinear_align_corners",
              "convention_upsample_bilinear_pixel_centres", "convention_padding_mode_reflect",
              "convention_padding_mode_replicate", "convention_padding_mode_circular", "skipgram",
              "resnet_block_bn", "norm_net_random[3]", "resize_random[8]", "pool2d_ceil_dilation[1]",
              "act_conv[4]", "conv_padding_modes[4]", "conv_padding_modes[7]", "conv_padding_modes[25]",
              "conv_padding_modes[26]", "dilated_conv", "grouped_conv",
              "graph_norm[2]"]  # a group norm of conv1d's NCL activation (TF transposes around it)
LOSSES = ["convention_class_weight_mean", "convention_cross_entropy_weight_smoothing", "convention_reduction_sum",
          "convention_smooth_l1_beta", "act_dense[0]", "losses_random[0]", "losses_random[1]", "losses_random[4]",
          "losses_bce[0]"]  # every loss (TensorFlow's beyond mse and plain cross-entropy: tf_training's own source)
TF_TRANSPOSED = ["conv_transpose_asymmetric", "conv_transpose2d_random[5]", "conv_transpose2d_random[22]",
                 "graph_unet[0]"]  # transposed convolutions, dilated and grouped ones among them
CATALOGUED = {"divergence_tf_bn_biased_variance": "TF-BN-BIASED-VAR", "divergence_tf_gelu_float64": "TF-GELU-CONST32",
              "divergence_tf_leaky_relu_float64": "TF-LEAKY-ALPHA32"}
# Run each script's run() where gradconf cannot be imported, keep its numbers in FILE.npz, then its main().
_RESULTS = ("import runpy, sys\n"
            "import numpy as np\n"
            "sys.modules['gradconf'] = None\n"
            "for path in sys.argv[1:]:\n"
            "    g = runpy.run_path(path, run_name='repro')\n"
            "    np.savez(path + '.npz', **{'|'.join(map(str, k)): v for k, v in g['run']().items()})\n"
            "    print(f'EXIT {path} {g[\"main\"]()}', flush=True)\n")


def _adapter_numbers(trace):
    out = {}
    for k, s in enumerate(trace.steps, 1):
        out[f"{k}|loss|None"], out[f"{k}|output|None"] = s.loss, s.output
        for quantity, tensors in (("grad", s.grads), ("param", s.params), ("state", s.state)):
            out.update({f"{k}|{quantity}|{name}": a for name, a in tensors.items()})
    return out


def _scripts_against_adapter(tmp_path, framework, ids):
    """Write each case's script (a catalogued divergence's as `gradconf repro` does, the others with every
    tensor listed), run it, and require its every number to be the adapter's own run's. Returns the exit
    codes and, for each diverging case, its records' catalogue entries."""
    adapter = _adapter(framework)
    cases = {c.id: c for c in load_paths([CASES])[0] if c.id in ids}
    assert sorted(cases) == sorted(ids)
    reference = __import__("gradconf.adapters.numpy_ref", fromlist=["x"]).NumpyReference()
    runner, paths, expected, diverging = Runner(reference, [adapter]), {}, {}, {}
    for case in cases.values():
        ref = runner.reference_trace(case, CaseResult(case))
        records = runner.run_case(case, reference=ref).records
        shown = [r for r in records if r.framework == framework and r.status in (Status.FAIL, Status.XFAIL)]
        assert all(r.status is Status.XFAIL and r.divergence for r in shown), case.id  # catalogued ones only
        if shown:
            diverging[case.id] = " ".join(r.divergence for r in shown)
        path = tmp_path / f"{case.id}.py"
        path.write_text(script(case, ref.initial, ref.trace, records if shown else
                               _every_tensor_as_differing(records, framework), adapter, adapter.version()))
        paths[str(path)], expected[str(path)] = case, _adapter_numbers(adapter.run(case, ref.initial))
    p = subprocess.run([sys.executable, "-c", _RESULTS, *paths], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for path, case in paths.items():
        with np.load(path + ".npz") as got:
            assert set(expected[path]) <= set(got.files), case.id  # (without an optimizer the script lists params too)
            r = 1e-5 if case.dtype == "float32" else 1e-12  # the same calls: only a reduction's order may differ
            for key, a in expected[path].items():
                np.testing.assert_allclose(got[key], a, rtol=r, atol=r * max(1.0, float(np.abs(a).max(initial=0))),
                                           err_msg=f"{case.id} {key}")
    return {paths[line.split()[1]].id: int(line.split()[2]) for line in p.stdout.splitlines()
            if line.startswith("EXIT ")}, diverging


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_script_of_the_newer_layers_computes_the_adapters_numbers(tmp_path, framework):
    ids = NEW_LAYERS + LOSSES + (sorted(CATALOGUED) + TF_TRANSPOSED if framework == "tensorflow" else [])
    codes, diverging = _scripts_against_adapter(tmp_path, framework, ids)
    # a passing case lands within the allowance; a catalogued divergence shows in its script
    assert codes == {i: int(i in diverging) for i in ids}
    assert {i: CATALOGUED[i] for i in diverging if i in CATALOGUED} == (CATALOGUED if framework == "tensorflow" else {})
    assert all(CATALOGUED[i] in diverging[i] for i in CATALOGUED if framework == "tensorflow"), diverging


@pytest.mark.parametrize("framework, layer, planted", [
    ("torch", "batch_norm2d", lambda L, w, b: f"F.batch_norm(y, None, None, {w}, {b}, training=True)"),  # no state
    ("tensorflow", "upsample", lambda L, w, b: f"bilinear(tf, y, *{L.scale_factor}, {not L.align_corners})"),  # flipped
])
def test_a_wrong_call_for_a_newer_layer_is_caught(tmp_path, monkeypatch, framework, layer, planted):
    _adapter(framework)
    module = __import__(f"gradconf.adapters.{'torch' if framework == 'torch' else 'tf'}_script", fromlist=["x"])
    monkeypatch.setitem(module.LAYERS, layer, planted)
    case = {"batch_norm2d": "convention_batch_norm_momentum_weighs_the_batch",
            "upsample": "convention_upsample_bilinear_align_corners"}[layer]
    with pytest.raises(AssertionError):
        _scripts_against_adapter(tmp_path, framework, [case])
