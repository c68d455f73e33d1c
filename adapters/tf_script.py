"""The TensorFlow part of a `gradconf repro` script (harness/repro.py): the case as plain tf / Keras calls.

The calls are the adapter's own (adapters/tensorflow_adapter.py, tf_training.py) written out for one case:
NHWC activations and HWIO kernels inside, canonical layouts outside; explicit tf.pad then VALID; the
Keras optimizer built by the adapter's own table and written as its serialised config (what
`keras.optimizers.deserialize` rebuilds exactly), under the same floatx. What the adapter composes
at length is the adapter's own functions, their source copied into the script (HELPERS: padding modes,
dilated and grouped kernels, Keras' batch normalisation, group norm, dilated max-pools, adaptive pools,
bilinear resizing; a loss beyond the few written out here is tf_training's own function or LOSSES entry), so
that it computes what the adapter computes.
"""
from __future__ import annotations

import inspect

from gradconf.repro import forward_lines

from . import tf_activations, tf_layout, tf_norm, tf_resize, tf_training as training
from .tf_layout import _TO_TF, _kinds, nhwc_axis

_BATCH_NORM2D = '''def batch_norm2d(states, name, y, gamma, beta, training, momentum, eps):
    """batch_norm, its moving statistics kept in `states` by their full names."""
    y, states[name + '.running_mean'], states[name + '.running_var'] = batch_norm(
        tf, keras, y, gamma, beta, states[name + '.running_mean'], states[name + '.running_var'], training,
        momentum, eps)
    return y
'''

# The adapter's functions a script calls by name, with the ones each calls: their source goes into the script.
HELPERS = {
    "mode_pad": (tf_resize.mode_pad,), "_dilate": (tf_layout._dilate,),
    "_per_group": (tf_layout._per_group,), "dilated_max_pool": (tf_resize.dilated_max_pool,),
    "adaptive_avg_pool": (tf_resize.adaptive_avg_pool, tf_resize._bounds),
    "bilinear": (tf_resize.bilinear, tf_resize._bilinear_matrix),
    "group_norm": (tf_norm.group_norm,), "batch_norm2d": (tf_norm.batch_norm, _BATCH_NORM2D),
}


def _helpers(lines: list[str]) -> list[str]:
    """The source of each helper the forward pass calls."""
    text, out = "\n".join(lines), []
    for name, parts in HELPERS.items():
        if f"{name}(" in text:
            out += [part if isinstance(part, str) else inspect.getsource(part) for part in parts]
    return ["\n\n".join(p.strip() + "\n" for p in out)] if out else []


def _pad(pad, value="0.0", x="y") -> str:
    return x if pad == ((0, 0), (0, 0)) else \
        f"tf.pad({x}, [[0, 0], {list(pad[0])}, {list(pad[1])}, [0, 0]], constant_values={value})"


def _bias(expr: str, b: str) -> str:
    return expr if b == "None" else f"tf.nn.bias_add({expr}, {b})"  # as Keras adds a bias (the adapter's rule)


def _conv2d(L, w, b, x="y") -> str:  # tensorflow_adapter.conv2d
    (oh, ow), (kh, kw), d = L.out_shape[2:], L.kernel_size, L.dilation
    if d != (1, 1):
        w, kh, kw = f"_dilate(tf, {w}, {d})", d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    reach = ((oh - 1) * L.stride[0] + kh, (ow - 1) * L.stride[1] + kw)
    padded = _pad(L.padding, x=x) if L.padding_mode == "zeros" else \
        f"mode_pad(tf, {x}, {L.padding}, {L.padding_mode!r})"
    x = f"{padded}[:, :{reach[0]}, :{reach[1]}]"  # only what some window reads (the adapter's rule)
    conv = lambda xi, wi: f"tf.nn.conv2d({xi}, {wi}, [1, {L.stride[0]}, {L.stride[1]}, 1], 'VALID')"  # noqa: E731
    if L.groups == 1:
        return _bias(conv(x, w), b)
    return _bias(f"_per_group(tf, {L.groups}, {x}, {w}, lambda xi, wi: {conv('xi', 'wi')})", b)


def _conv_transpose2d(L, w, b) -> str:  # tensorflow_adapter.conv_transpose2d
    (h, wd), k, s, d = L.in_shape[2:], L.kernel_size, L.stride, L.dilation
    full = [(h - 1) * s[0] + d[0] * (k[0] - 1) + 1, (wd - 1) * s[1] + d[1] * (k[1] - 1) + 1]
    if d != (1, 1):
        w = f"_dilate(tf, {w}, {d})"
    conv = lambda xi, wi: (f"tf.nn.conv2d_transpose({xi}, {wi}, [tf.shape({xi})[0], {full[0]}, {full[1]}, "  # noqa: E731
                           f"{L.out_channels // L.groups}], [1, {s[0]}, {s[1]}, 1], 'VALID')")
    y = conv("y", w) if L.groups == 1 else f"_per_group(tf, {L.groups}, y, {w}, lambda xi, wi: {conv('xi', 'wi')})"
    # output rows [top, top + H_out) of the full output, zero-extended past its end (output_padding)
    (t, _), (le, _) = L.padding
    out_h, out_w = L.out_shape[2:]
    ext = [max(0, t + out_h - full[0]), max(0, le + out_w - full[1])]
    if any(ext):
        y = f"tf.pad({y}, [[0, 0], [0, {ext[0]}], [0, {ext[1]}], [0, 0]])"
    return _bias(f"{y}[:, {t}:{t + out_h}, {le}:{le + out_w}, :]", b)


def _conv1d(L, w, b) -> str:  # tf_resize.conv1d: conv2d's, on a height-1 NHWC input
    y = _conv2d(L.as_2d(), f"tf.transpose({w}, (2, 1, 0))[None]", b, x="tf.transpose(y, (0, 2, 1))[:, None]")
    return f"tf.transpose({y}[:, 0], (0, 2, 1))"


def _max_pool2d(L, w, b) -> str:  # tf_resize.max_pool2d
    xp = f"tf.pad(y, {tf_resize._grid(L)}, constant_values=float('-inf'))"
    k, s, d = list(L.kernel_size), list(L.stride), L.dilation
    if d == (1, 1):
        return f"tf.nn.max_pool2d({xp}, {k}, {s}, 'VALID')"
    return f"dilated_max_pool(tf, {xp}, {k}, {s}, {d}, {tuple(L.out_shape[2:])})"


def _avg_pool2d(L, w, b) -> str:  # tf_resize.avg_pool2d
    k, s = list(L.kernel_size), list(L.stride)
    mean = f"tf.nn.avg_pool2d(tf.pad(y, {tf_resize._grid(L)}), {k}, {s}, 'VALID')"
    if L.count_include_pad and not L.clipped:
        return mean
    h, wd = L.in_shape[2:]
    if L.count_include_pad:  # ones over the padded input, none over ceil_mode's extra cells
        beyond = [[0, 0], [0, L.beyond[0]], [0, L.beyond[1]], [0, 0]]
        ones = f"tf.pad(tf.ones((1, {L.counted_hw[0]}, {L.counted_hw[1]}, 1), y.dtype), {beyond})"
    else:
        ones = f"tf.pad(tf.ones((1, {h}, {wd}, 1), y.dtype), {tf_resize._grid(L)})"
    return f"{mean} / tf.nn.avg_pool2d({ones}, {k}, {s}, 'VALID')"


def _upsample(L, w, b) -> str:  # tf_resize.upsample
    sh, sw = L.scale_factor
    if L.mode == "nearest":
        return f"tf.repeat(tf.repeat(y, {sh}, axis=1), {sw}, axis=2)"
    return f"bilinear(tf, y, {sh}, {sw}, {L.align_corners})"


def _layer_norm(L, w, b) -> str:  # tf_norm.layer_norm
    axes = list(range(1, len(L.in_shape)))
    return f"tf.nn.batch_normalization(y, *tf.nn.moments(y, axes={axes}, keepdims=True), {b}, {w}, {L.eps!r})"


def _flatten(L, w, b) -> str:
    x = "tf.transpose(y, (0, 3, 1, 2))" if len(L.in_shape) == 4 else "y"  # canonical NCHW feature order
    return f"tf.reshape({x}, (tf.shape(y)[0], -1))"


LAYERS = {
    "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, "avg_pool2d": _avg_pool2d, "flatten": _flatten,
    "max_pool2d": _max_pool2d,
    "sigmoid": lambda L, w, b: "tf.sigmoid(y)", "tanh": lambda L, w, b: "tf.tanh(y)",
    "relu": lambda L, w, b: "tf.nn.relu(y)", "sum": lambda L, w, b: "tf.reduce_sum(y)",
    "dense": lambda L, w, b: _bias(f"tf.matmul(y, {w})", b),
    **tf_activations.SCRIPTS,  # SPEC §1.9's activations
    "batch_norm2d": lambda L, w, b: (f"batch_norm2d(states, {L.name!r}, y, {w}, {b}, {L.training}, {L.momentum!r}, "
                                     f"{L.eps!r})"),
    "layer_norm": _layer_norm,
    "group_norm": lambda L, w, b: (f"group_norm(tf, y, {L.num_groups}, {w}, {b}, {L.eps!r})" if len(L.in_shape) != 3 else
                                   # NCL (as the adapter holds conv1d's activations): channels to last and back
                                   f"tf.transpose(group_norm(tf, tf.transpose(y, (0, 2, 1)), {L.num_groups}, {w}, {b}, "
                                   f"{L.eps!r}), (0, 2, 1))"),
    "conv1d": _conv1d, "upsample": _upsample,
    "global_avg_pool2d": lambda L, w, b: "tf.reduce_mean(y, axis=(1, 2))",
    "adaptive_avg_pool2d": lambda L, w, b: f"adaptive_avg_pool(tf, y, {tuple(L.output_size)})",
    "embedding": lambda L, w, b: f"tf.gather({w}, y)",  # its gradient: IndexedSlices (made dense)
}


def _reduce(o, per: str) -> str:
    return f"tf.reduce_{'sum' if o['reduction'] == 'sum' else 'mean'}({per})"


LOSSES = {
    "mse": lambda o: _reduce(o, "tf.square(y - t)"),
    "half_sse": lambda o: "0.5 * tf.reduce_sum(tf.square(t - y))",
    "sum": lambda o: "tf.reduce_sum(y)",
    "grad_output": lambda o: "tf.reduce_sum(y * t)",
}


def _cross_entropy(o) -> str | None:
    if o.get("weight") is not None or o["label_smoothing"]:
        return None  # the adapter's own function (_adapter_loss)
    return _reduce(o, "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y)")


LOSSES["cross_entropy"] = _cross_entropy


def _adapter_loss(kind: str) -> list[str]:
    """tf_training.LOSSES[kind]'s own source as the script's `loss_fn(y, t, o)`, with the helpers it calls: a
    function's source, or a lambda's body read from tf_training's LOSSES table."""
    import ast
    table = next(node.value for node in ast.parse(inspect.getsource(training)).body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LOSSES")
    entry = dict(zip((k.value for k in table.keys), table.values))[kind]
    if isinstance(entry, ast.Lambda):
        body = ast.get_source_segment(inspect.getsource(training), entry.body)
        fn = f"def loss_fn(y, t, o):  # tf_training.LOSSES[{kind!r}]\n    return {body}\n"
    else:
        fn = inspect.getsource(getattr(training, entry.id)) + f"\n\nloss_fn = {entry.id}\n"
    helpers = [inspect.getsource(f) for f in (training._tf, training._keras, training._rows, training._reduce)]
    return ["\n\n".join(h.strip() + "\n" for h in helpers) + "\n\n" + fn]


def _optimizer(case) -> list[str]:
    if case.optimizer is None or not case.params:
        return ["    opt = None"]
    import keras
    opt = training.optimizer(case.optimizer.kind, case.optimizer.hp, case.schedule, case.clip, case.dtype)
    config = keras.optimizers.serialize(opt)
    return [f"    # keras.optimizers.{type(opt).__name__}, configured as gradconf's adapter configures it",
            f"    opt = keras.optimizers.deserialize({config!r})"]


MERGES = {  # f(L, input expressions) -> expression
    "add": lambda L, ins: f"tf.add_n([{', '.join(ins)}])",
    "concat": lambda L, ins: f"tf.concat([{', '.join(ins)}], axis={nhwc_axis(L.dim, len(L.out_shape))})",
}


def _forward(case) -> list[str]:
    return forward_lines(case, LAYERS, MERGES, 'variables', '            ', 'TensorFlow')


def script(case) -> str:
    """Python source defining `run()` for harness/repro.py's script (see its module doc)."""
    options = {"reduction": case.loss.reduction, **case.loss.options}
    loss = LOSSES[case.loss.kind](options) if case.loss.kind in LOSSES else None
    loss_source = [] if loss is not None else _adapter_loss(case.loss.kind)
    ids = case.loss.kind in training.CLASS_TARGETS
    layouts = {name: _TO_TF.get(kind) for name, kind in _kinds(case).items()}
    to_nhwc, from_nhwc = len(case.input.shape) == 4, len(case.output_shape) == 4
    forward, g = _forward(case), case.input_grad
    return "\n".join([
        "import os", "", "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')",
        "import keras  # noqa: E402", "import tensorflow as tf  # noqa: E402", "",
        "VERSION = f'{tf.__version__} (keras {keras.__version__})'",
        f"TO_TF = {layouts!r}  # each parameter's transpose into TF's layout (None: as it is)", "", "",
        "def to_tf(k, a):", "    return a if TO_TF[k] is None else np.transpose(a, TO_TF[k])", "", "",
        "def from_tf(k, a):", "    return a if TO_TF[k] is None else np.transpose(a, np.argsort(TO_TF[k]))", "", "",
        *[h + "\n" for h in _helpers(forward) + loss_source],
        "def run():",
        "    keras.config.set_floatx('float64' if DTYPE == 'float64' else 'float32')  # Keras' casts follow floatx",
        "    dtype = getattr(tf, DTYPE)",
        "    variables = {k: tf.Variable(tf.cast(to_tf(k, v), dtype)) for k, v in PARAMS.items()}",
        "    states = {k: tf.cast(v, dtype) for k, v in STATE.items()}  # running statistics, per channel",
        *_optimizer(case),
        "    results = {}",
        "    for step in range(1, STEPS + 1):",
        "        x = " + ("tf.cast(INPUTS[step - 1], dtype)" if g
                      else "tf.constant(INPUTS[step - 1].astype(np.int64))  # an embedding's ids"),
        "        t = None if TARGETS is None else " + ("tf.constant(TARGETS[step - 1].astype(np.int64))" if ids
                                                     else "tf.cast(TARGETS[step - 1], dtype)"),
        "        with tf.GradientTape() as tape:",
        *(["            tape.watch(x)"] if g else []),
        "            y = " + ("tf.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC" if to_nhwc else "x"),
        *forward,
        *(["            y = tf.transpose(y, (0, 3, 1, 2))  # back to NCHW"] if from_nhwc else []),
        f"            loss = {loss if loss is not None else f'loss_fn(y, t, {options!r})'}",
        f"        grads = tape.gradient(loss, {'[x] + ' if g else ''}list(variables.values()))",
        "        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]",
        "        results[step, 'loss', None], results[step, 'output', None] = np.asarray(loss), np.asarray(y)",
        *(["        results[step, 'grad', 'input'] = np.asarray(grads.pop(0))"] if g else []),
        "        for (k, v), g in zip(variables.items(), grads):",
        "            results[step, 'grad', k] = from_tf(k, np.asarray(g)) if g is not None else np.zeros(PARAMS[k].shape)",
        "        if opt is not None:",
        "            opt.apply_gradients([(g if g is not None else tf.zeros_like(v), v)",
        "                                 for v, g in zip(variables.values(), grads)])",
        "        for k, v in variables.items():",
        "            results[step, 'param', k] = from_tf(k, np.asarray(v))",
        "        for k, v in states.items():",
        "            results[step, 'state', k] = np.asarray(v)",
        "    return results",
    ])
