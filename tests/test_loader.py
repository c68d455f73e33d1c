"""The loader: YAML traps, normalisation, static checks, and the malformed-case corpus."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gradconf import loader, registry, vocab, yamlio
from gradconf.case import Conv2d, ConvTranspose2d
from gradconf.errors import CaseError
from gradconf.loader import load_file, load_paths, same_padding
from tests.conftest import ROOT, make_case

CORPUS = os.path.join(ROOT, "tests", "malformed")

# Every malformed file and the exact message it must produce: file:line: field.path: problem.
MESSAGES = {
    'huge_size.yaml':
        'tests/malformed/huge_size.yaml:3: model[0].conv2d.out_channels: 100,000,000,000 is beyond any tensor gradconf '
        'can hold (268,435,456 elements)',
    'bad_dtype.yaml':
        'tests/malformed/bad_dtype.yaml:1: dtype: unknown dtype `float31`; did you mean `float32`? (one of: float64, float32, float16, bfloat16)',
    'beyond_dtype_arange.yaml':
        "tests/malformed/beyond_dtype_arange.yaml:2: input.shape: the arange reaches 9e+04, beyond float16's largest "
        "value 65504 (it would be inf)",
    'beyond_dtype_literal.yaml':
        "tests/malformed/beyond_dtype_literal.yaml:2: input: an entry reaches 1e+05, beyond float16's largest value "
        "65504 (it would be inf)",
    'bias_shape.yaml':
        'tests/malformed/bias_shape.yaml:3: model[0].dense.bias: shape [2] does not match the expected [3]',
    'class_out_of_range.yaml':
        'tests/malformed/class_out_of_range.yaml:4: loss.cross_entropy.target[1]: class id 3 out of range for 3 classes',
    'dense_4d.yaml':
        'tests/malformed/dense_4d.yaml:3: model[0].dense: dense needs a (batch, features) input, got shape [2, 1, 3, 3]; add a `flatten` layer before it',
    'dense_fan_in.yaml':
        'tests/malformed/dense_fan_in.yaml:4: model[1].dense.in_features: in_features is 8 but the incoming tensor has 9 features (shape [2, 9])',
    'duplicate_key.yaml':
        'tests/malformed/duplicate_key.yaml:5: loss: duplicate key `loss`',
    'duplicate_layer_name.yaml':
        'tests/malformed/duplicate_layer_name.yaml:4: model[1].dense.name: layer name `fc` is already used',
    'not_utf8.yaml':
        'tests/malformed/not_utf8.yaml:2: not UTF-8 text (byte 0xef); save the file as UTF-8',
    'empty.yaml':
        'tests/malformed/empty.yaml:1: a case file holds a mapping (name:, input:, model:, ...), got nothing',
    'expect_loss_short.yaml':
        'tests/malformed/expect_loss_short.yaml:7: expect.loss: 2 loss(es) for 3 step(s): give one per step, or a '
        'single number for step 1',
    'expect_unknown_tensor.yaml':
        'tests/malformed/expect_unknown_tensor.yaml:6: expect.grad.fc.weigth: unknown key `fc.weigth`; did you mean `fc.weight`? (one of: fc.weight, fc.bias, input)',
    'family_bad_range.yaml':
        'tests/malformed/family_bad_range.yaml:2: input.shape[1].range: `range` takes two integers [lo, hi] with lo <= hi, got [4, 2]',
    'family_impossible.yaml':
        'tests/malformed/family_impossible.yaml:4: model[0].conv2d: variant 0: no valid variant in 200 draws; last: output size would be -1x-1 for a 3x3 input (kernel (5, 5), stride (1, 1), padding ((0, 0), (0, 0)), dilation (1, 1))',
    'groups_mismatch.yaml':
        'tests/malformed/groups_mismatch.yaml:3: model[0].conv2d.groups: in_channels 3 is not divisible by groups 2',
    'lr_string.yaml':
        "tests/malformed/lr_string.yaml:5: optimizer.sgd.lr: must be a number, got a string 'fast'",
    'missing_loss.yaml':
        'tests/malformed/missing_loss.yaml:1: missing `loss` (every case needs `input`, `model` and `loss`)',
    'name_delimiter.yaml':
        "tests/malformed/name_delimiter.yaml:1: name: name 'conv::stride[2]' holds `::`; `::`, `[` and `]` delimit case "
        "ids (`family[3]`, pytest's `file::id`)",
    'nan_in_tensor.yaml':
        'tests/malformed/nan_in_tensor.yaml:1: input[0][1]: entries must be finite numbers within float range, got nan',
    'not_mapping.yaml':
        'tests/malformed/not_mapping.yaml:1: a case file holds a mapping (name:, input:, model:, ...), got a list',
    'not_yaml.yaml':
        "tests/malformed/not_yaml.yaml:3: not valid YAML: " + (
            "did not find expected ',' or ']'" if yamlio.__dict__.get("CParser") else
            "expected ',' or ']', but got '<scalar>'"),  # libyaml's words, or PyYAML's own scanner's
    'output_padding_too_big.yaml':
        'tests/malformed/output_padding_too_big.yaml:3: model[0].conv_transpose2d.output_padding: output_padding 2 must be smaller than stride or dilation (2)',
    'output_too_small.yaml':
        'tests/malformed/output_too_small.yaml:3: model[0].conv2d: output size would be -1x-1 for a 3x3 input (kernel (5, 5), stride (1, 1), padding ((0, 0), (0, 0)), dilation (1, 1))',
    'padding_word.yaml':
        "tests/malformed/padding_word.yaml:3: model[0].conv2d.padding: must be an integer, a pair, per-side pairs, `valid` or `same`, got 'sam'; did you mean `same`?",
    'param_without_optimizer.yaml':
        'tests/malformed/param_without_optimizer.yaml:5: expect.param: expected parameters need an `optimizer` (without one nothing is updated; gradients go under `expect.grad`)',
    'pool_all_padding.yaml':
        'tests/malformed/pool_all_padding.yaml:3: model[0].max_pool2d.padding: padding (2, 2) makes a pooling window lie entirely in padding',
    'ragged_input.yaml':
        'tests/malformed/ragged_input.yaml:1: input: ragged nested list (rows of different lengths)',
    'steps_without_optimizer.yaml':
        'tests/malformed/steps_without_optimizer.yaml:5: steps: 3 steps need an `optimizer` (without one every step is the same)',
    'steps_zero.yaml':
        'tests/malformed/steps_zero.yaml:6: steps: must be >= 1, got 0',
    'stride_zero.yaml':
        'tests/malformed/stride_zero.yaml:4: model[1].conv2d.stride: must be >= 1, got 0',
    'target_shape.yaml':
        'tests/malformed/target_shape.yaml:4: loss.mse.target: shape [1, 3] does not match the expected [1, 2]',
    'tolerance_unknown_key.yaml':
        'tests/malformed/tolerance_unknown_key.yaml:5: tolerance.grads: unknown tolerance key `grads`; did you mean `grad`? (keys: default, loss, output, grad, param, state, grad.<tensor>, param.<tensor>, state.<tensor>)',
    'unknown_init.yaml':
        'tests/malformed/unknown_init.yaml:1: input.init: unknown init `gaussian` (one of: uniform, normal, zeros, ones, arange, randint)',
    'unknown_layer.yaml':
        'tests/malformed/unknown_layer.yaml:3: model[0].conv2: unknown layer type `conv2`; did you mean `conv2d`? '
        f'(one of: {", ".join(vocab.LAYERS)})',  # every registered name, in order
    'unknown_loss.yaml':
        'tests/malformed/unknown_loss.yaml:4: loss.mae: unknown loss `mae`; did you mean `mse`? (one of: mse, l1, smooth_l1, huber, bce, bce_with_logits, '
        'nll, cross_entropy, half_sse, sum, grad_output)',
    'unknown_optimizer.yaml':
        'tests/malformed/unknown_optimizer.yaml:5: optimizer.adamz: unknown optimizer `adamz`; did you mean `adam`? (one of: sgd, adam, adamw, rmsprop, '
        'adagrad, adamax, nadam)',
    'unknown_top_key.yaml':
        'tests/malformed/unknown_top_key.yaml:4: modle: unknown key `modle`; did you mean `model`? (one of: name, description, tags, dtype, seed, input, model, loss, optimizer, schedule, clip, steps, '
        'expect, tolerance, xfail, count)',
    'weight_shape.yaml':
        'tests/malformed/weight_shape.yaml:3: model[0].conv2d.weight: shape [1, 1, 2, 2] does not match the expected [2, 1, 2, 2]',
    'xfail_unknown_framework.yaml':
        'tests/malformed/xfail_unknown_framework.yaml:5: xfail.pytorch: unknown key `pytorch`; did you mean `torch`? (one of: numpy, torch, tensorflow, jax, keras-tensorflow, keras-jax, keras-torch)',
    'yaml_alias_bomb.yaml':
        "tests/malformed/yaml_alias_bomb.yaml:7: g: the file stands for more than 1,000,000 values (YAML aliases "
        "`*name` repeat their anchor's value); no case file needs that many",
    'yaml_python_tag.yaml':
        "tests/malformed/yaml_python_tag.yaml:1: input: not valid here: could not determine a constructor for the "
        "tag 'tag:yaml.org,2002:python/name:os.system'",
    'yaml_too_deep.yaml':
        'tests/malformed/yaml_too_deep.yaml:1: not valid YAML: nested too deeply to read',
    'per_step_count.yaml':
        'tests/malformed/per_step_count.yaml:1: input.per_step: 3 tensor(s) for 2 step(s): give exactly one per step',
    'schedule_missing_key.yaml':
        'tests/malformed/schedule_missing_key.yaml:6: schedule.step: missing `step_size`',
    'clip_unknown.yaml':
        'tests/malformed/clip_unknown.yaml:6: clip.norms: unknown clip `norms`; did you mean `norm`? (one of: norm, '
        'norm_per_param, value)',
    'expect_step_beyond.yaml':
        "tests/malformed/expect_step_beyond.yaml:9: expect.step.3: step 3 is beyond the case's 2 step(s)",
    'class_weight_length.yaml':
        'tests/malformed/class_weight_length.yaml:4: loss.cross_entropy.weight: `weight` takes one number per class (3)',
    'reduction_unknown.yaml':
        "tests/malformed/reduction_unknown.yaml:4: loss.l1.reduction: must be `mean` or `sum`, got 'avg'",
}


def test_corpus_is_complete():
    assert len(MESSAGES) >= 20
    assert sorted(MESSAGES) == sorted(f for f in os.listdir(CORPUS) if f.endswith(".yaml"))


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_malformed_file_message(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(CaseError) as err:
        load_file(f"tests/malformed/{name}", frameworks=registry.known_names())  # as the front ends do
    assert str(err.value) == MESSAGES[name]


def test_validate_lists_every_invalid_file_and_exits_2():
    p = subprocess.run([sys.executable, "-m", "gradconf", "validate", "tests/malformed"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert sorted(lines[:-1]) == sorted(MESSAGES.values())
    assert "Traceback" not in p.stderr
    assert lines[-1] == f"gradconf: {len(MESSAGES)} invalid case file(s); nothing was run"


def test_yaml_reads_exponent_floats_as_numbers():
    data, _ = yamlio.load("a: 1e-5\nb: 3\nc: .5\nd: -2.5E+3\ne: '1e-5'\n")
    assert data == {"a": 1e-5, "b": 3, "c": 0.5, "d": -2500.0, "e": "1e-5"}
    assert isinstance(data["b"], int)


def test_yaml_records_lines_and_rejects_duplicates():
    data, lines = yamlio.load("x: 1\nmodel:\n  - conv2d: {stride: 2}\n")
    assert lines[("model", 0, "conv2d", "stride")] == 3
    with pytest.raises(CaseError, match="duplicate key `x`"):
        yamlio.load("x: 1\nx: 2\n")


@pytest.mark.parametrize("n,k,s,d,expected", [
    (4, 3, 1, 1, (1, 1)), (4, 3, 2, 1, (0, 1)), (5, 3, 2, 1, (1, 1)), (6, 2, 2, 1, (0, 0)),
    (7, 3, 1, 2, (2, 2)), (6, 4, 1, 1, (1, 2)), (5, 1, 3, 1, (0, 0))])
def test_same_padding_is_tensorflows(n, k, s, d, expected):
    assert same_padding(n, k, s, d) == expected


def test_shorthands_are_normalised():
    case = make_case(input={"shape": [2, 4, 6, 6]}, loss={"sum": {}}, model=[
        {"conv2d": {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same", "groups": 2}},
        {"conv2d": {"out_channels": 2, "kernel_size": [2, 1], "padding": [1, 0]}},
        {"conv_transpose2d": {"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": "same"}},
        {"sum": {}}])
    conv, conv2, deconv, _ = case.layers
    assert isinstance(conv, Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (2, 2)
    assert conv.padding == ((0, 1), (0, 1)) and conv.out_shape == (2, 4, 3, 3)
    assert conv.param("weight").spec.shape == (4, 2, 3, 3)
    assert conv2.padding == ((1, 1), (0, 0)) and conv2.out_shape == (2, 2, 4, 3)
    assert isinstance(deconv, ConvTranspose2d) and deconv.out_shape == (2, 3, 8, 6)  # `same`: H·stride
    assert deconv.param("weight").spec.shape == (2, 3, 3, 3)  # IOHW
    assert case.output_shape == ()


def test_literal_weights_infer_kernel_and_channels():
    case = make_case(input=[[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]], loss={"sum": {}},
                     model=[{"conv2d": {"name": "c", "bias": False, "weight": [[[[3, 2], [1, 5]]]]}}])
    assert case.layers[0].kernel_size == (2, 2) and case.layers[0].out_channels == 1
    assert [p.name for p in case.params] == ["c.weight"]


def test_bundled_cases_are_valid_and_ids_unique():
    cases, errors = load_paths([os.path.join(ROOT, "cases")])
    assert errors == []
    assert len({c.id for c in cases}) == len(cases) >= 100


def test_invalid_files_do_not_hide_valid_ones(tmp_path):
    (tmp_path / "good.yaml").write_text("input: [[1, 2]]\nmodel: [{sum: {}}]\nloss: {sum: {}}\n")
    (tmp_path / "bad.yaml").write_text("input: [[1, 2]]\nmodel: [{summ: {}}]\nloss: {sum: {}}\n")
    cases, errors = load_paths([str(tmp_path)])
    assert [c.id for c in cases] == ["good"]
    assert len(errors) == 1 and "summ" in str(errors[0])


def test_duplicate_case_ids_across_files(tmp_path):
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / f).write_text("name: same\ninput: [[1, 2]]\nmodel: [{sum: {}}]\nloss: {sum: {}}\n")
    _, errors = load_paths([str(tmp_path)])
    assert len(errors) == 1 and "case id `same` is also used by" in str(errors[0])


def test_scalar_target_broadcasts_and_random_target_takes_output_shape():
    case = make_case(input={"shape": [2, 3]}, model=[{"dense": {"out_features": 4}}],
                     loss={"mse": {"target": 0.5}})
    assert case.loss.target.shape == (2, 4) and np.all(case.loss.target.values == 0.5)
    case = make_case(input={"shape": [2, 3]}, model=[{"dense": {"out_features": 4}}],
                     loss={"grad_output": {"value": {"init": "normal"}}})
    assert case.loss.target.shape == (2, 4) and case.loss.target.values is None


def test_parameterless_layers_may_be_bare_words_and_default_names_use_the_written_type():
    case = make_case(input={"shape": [2, 1, 3, 3]}, loss={"sum": {}},
                     model=["relu", "flatten", {"linear": {"out_features": 2}}, {"dense": {"out_features": 1}}])
    assert [L.name for L in case.layers] == ["relu_0", "flatten_1", "linear_2", "dense_3"]
    assert [p.name for p in case.params] == ["linear_2.weight", "linear_2.bias", "dense_3.weight", "dense_3.bias"]


def test_optional_keys_left_empty_take_their_defaults(tmp_path):
    """`tags:` or `optimizer:` with nothing after it is YAML null: the same as leaving the key out."""
    (tmp_path / "c.yaml").write_text("tags:\ndescription:\ninput: {shape: [1, 1, 3, 3]}\nmodel:\n  - relu:\n"
                                     "  - sum:\nloss: {sum: }\noptimizer:\nexpect:\ntolerance:\nxfail:\n")
    case = load_file(str(tmp_path / "c.yaml"))[0]
    assert (case.tags, case.description, case.optimizer, case.xfail) == ((), "", None, {})
    assert [L.name for L in case.layers] == ["relu_0", "sum_1"] and case.loss.kind == "sum"


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_every_dtype_materialises_scalars_and_arrays_rounded_and_read_only(dtype):
    from gradconf.tensors import materialize
    case = make_case(input=[[1.0 / 3.0, 2.0]], model=[{"dense": {"out_features": 1}}, {"sum": {}}],
                     loss={"mse": {"target": 0.1}}, dtype=dtype)  # a scalar output: a 0-d target
    init = materialize(case)
    for a in (init.input, init.target, *init.params.values()):
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and not a.flags.writeable
    assert init.target.shape == () and init.input.shape == (1, 2)
    bits = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}[dtype]
    assert init.input[0, 0] == pytest.approx(1.0 / 3.0, rel=2.0 ** -bits)
    assert (init.input[0, 0] != 1.0 / 3.0) == (dtype != "float64")  # rounded to the dtype, once


def test_a_file_stem_that_would_make_an_unselectable_id_needs_a_name(tmp_path):
    """The default name is the file's stem: `x[1].yaml` would give the id `x[1]`, which reads as a variant."""
    case = "input: {shape: [1, 3]}\nmodel: [relu: {}]\nloss: {sum: {}}\n"
    (tmp_path / "x[1].yaml").write_text(case)
    with pytest.raises(CaseError, match=r"name: the default name, the file's stem 'x\[1\]', holds `\[`.*set `name:`"):
        load_file(str(tmp_path / "x[1].yaml"))
    (tmp_path / "named.yaml").write_text("name: ok x1\n" + case)
    assert load_file(str(tmp_path / "named.yaml"))[0].id == "ok x1"


def test_validate_lists_every_error_in_a_file_not_only_the_first(tmp_path):
    (tmp_path / "many.yaml").write_text(
        "dtype: float31\n"
        "seed: -1\n"
        "input: {shape: [1, 1, 4, 4]}\n"
        "model:\n"
        "  - conv2d: {out_channels: 1, kernel_size: 2, stride: 0}\n"
        "loss: {mse: {target: 0}}\n"
        "optimizer: {sgd: {lr: fast}}\n"
        "steps: 0\n"
        "colour: red\n")
    p = subprocess.run([sys.executable, "-m", "gradconf", "validate", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    f = tmp_path / "many.yaml"
    assert lines[:-1] == [
        f"{f}:9: colour: unknown key `colour` (one of: {', '.join(loader.TOP_KEYS)})",
        f"{f}:1: dtype: unknown dtype `float31`; did you mean `float32`? (one of: float64, float32, float16, bfloat16)",
        f"{f}:2: seed: must be >= 0, got -1",
        f"{f}:5: model[0].conv2d.stride: must be >= 1, got 0",
        f"{f}:7: optimizer.sgd.lr: must be a number, got a string 'fast'",
        f"{f}:8: steps: must be >= 1, got 0",
    ]
    assert lines[-1] == "gradconf: 1 invalid case file(s); nothing was run"


def test_xfail_keys_are_the_framework_names_the_front_end_passes():
    """Validation never asks the adapter registry: the front ends pass its names; without them any name is
    taken (the CLI and the plugin always pass them: tests/malformed/xfail_unknown_framework.yaml)."""
    from gradconf.loader import parse_case
    data = {"input": [[1.0]], "model": [{"dense": {"out_features": 1}}], "loss": {"sum": {}},
            "xfail": {"myframework": "why"}}
    assert parse_case(data, "<t>", {}).xfail == {"myframework": "why"}
    with pytest.raises(CaseError, match="unknown key `myframework`"):
        parse_case(data, "<t>", {}, frameworks=registry.known_names())
    with pytest.raises(CaseError, match="must be a mapping"):
        parse_case({**data, "xfail": 5}, "<t>", {})
