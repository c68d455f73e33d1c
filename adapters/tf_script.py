"""The TensorFlow part of a `gradconf repro` script (harness/repro.py): the case as plain tf / Keras calls.

The calls are the adapter's own (adapters/tensorflow_adapter.py, tf_training.py) written out for one case:
NHWC activations and HWIO kernels inside, canonical layouts outside; explicit tf.pad then VALID; the
Keras optimizer built by the adapter's own table and written as its serialised config (what
`keras.optimizers.deserialize` rebuilds exactly), under the same floatx. What the adapter composes
at length (dilated or grouped convolutions, transposed convolutions) is not written here yet.
"""
from __future__ import annotations

from gradconf.errors import Unsupported
from gradconf.repro import forward_lines

from . import tf_activations, tf_training as training
from .tf_layout import _TO_TF, _kinds, nhwc_axis


def _pad(pad, value="0.0") -> str:
    return "y" if pad == ((0, 0), (0, 0)) else \
        f"tf.pad(y, [[0, 0], {list(pad[0])}, {list(pad[1])}, [0, 0]], constant_values={value})"


def _bias(expr: str, b: str) -> str:
    return expr if b == "None" else f"tf.nn.bias_add({expr}, {b})"  # as Keras adds a bias (the adapter's rule)


def _conv2d(L, w, b) -> str:
    if L.dilation != (1, 1) or L.groups != 1:
        raise Unsupported("gradconf repro cannot write a dilated or grouped conv2d as TensorFlow calls yet")
    (oh, ow), (kh, kw) = L.out_shape[2:], L.kernel_size
    reach = ((oh - 1) * L.stride[0] + kh, (ow - 1) * L.stride[1] + kw)
    x = f"{_pad(L.padding)}[:, :{reach[0]}, :{reach[1]}]"  # only what some window reads (the adapter's rule)
    return _bias(f"tf.nn.conv2d({x}, {w}, [1, {L.stride[0]}, {L.stride[1]}, 1], 'VALID')", b)


def _avg_pool2d(L, w, b) -> str:
    k, s = list(L.kernel_size), list(L.stride)
    mean = f"tf.nn.avg_pool2d({_pad(L.padding)}, {k}, {s}, 'VALID')"
    if L.count_include_pad or L.padding == ((0, 0), (0, 0)):
        return mean
    ones = _pad(L.padding).replace("tf.pad(y,", "tf.pad(tf.ones((1, *y.shape[1:3], 1), dtype=y.dtype),")
    return f"{mean} / tf.nn.avg_pool2d({ones}, {k}, {s}, 'VALID')"


def _flatten(L, w, b) -> str:
    x = "tf.transpose(y, (0, 3, 1, 2))" if len(L.in_shape) == 4 else "y"  # canonical NCHW feature order
    return f"tf.reshape({x}, (tf.shape(y)[0], -1))"


LAYERS = {
    "conv2d": _conv2d, "avg_pool2d": _avg_pool2d, "flatten": _flatten,
    "max_pool2d": lambda L, w, b: (f"tf.nn.max_pool2d({_pad(L.padding, 'float(-np.inf)')}, {list(L.kernel_size)}, "
                                   f"{list(L.stride)}, 'VALID')"),
    "sigmoid": lambda L, w, b: "tf.sigmoid(y)", "tanh": lambda L, w, b: "tf.tanh(y)",
    "relu": lambda L, w, b: "tf.nn.relu(y)", "sum": lambda L, w, b: "tf.reduce_sum(y)",
    "dense": lambda L, w, b: _bias(f"tf.matmul(y, {w})", b),
    **tf_activations.SCRIPTS,  # SPEC §1.9's activations
}


def _reduce(o, per: str) -> str:
    return f"tf.reduce_{'sum' if o['reduction'] == 'sum' else 'mean'}({per})"


LOSSES = {
    "mse": lambda o: _reduce(o, "tf.square(y - t)"),
    "half_sse": lambda o: "0.5 * tf.reduce_sum(tf.square(t - y))",
    "sum": lambda o: "tf.reduce_sum(y)",
    "grad_output": lambda o: "tf.reduce_sum(y * t)",
}


def _cross_entropy(o) -> str:
    if o.get("weight") is not None or o["label_smoothing"]:
        raise Unsupported("gradconf repro cannot write a weighted or smoothed cross-entropy for TensorFlow yet")
    return _reduce(o, "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y)")


LOSSES["cross_entropy"] = _cross_entropy


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
    if case.loss.kind not in LOSSES:
        raise Unsupported(f"gradconf repro cannot write loss `{case.loss.kind}` as TensorFlow calls yet")
    options = {"reduction": case.loss.reduction, **case.loss.options}
    ids = case.loss.kind in training.CLASS_TARGETS
    layouts = {name: _TO_TF.get(kind) for name, kind in _kinds(case).items()}
    to_nhwc, from_nhwc = len(case.input.shape) == 4, len(case.output_shape) == 4
    return "\n".join([
        "import os", "", "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')",
        "import keras  # noqa: E402", "import tensorflow as tf  # noqa: E402", "",
        "VERSION = f'{tf.__version__} (keras {keras.__version__})'",
        f"TO_TF = {layouts!r}  # each parameter's transpose into TF's layout (None: as it is)", "", "",
        "def to_tf(k, a):", "    return a if TO_TF[k] is None else np.transpose(a, TO_TF[k])", "", "",
        "def from_tf(k, a):", "    return a if TO_TF[k] is None else np.transpose(a, np.argsort(TO_TF[k]))", "", "",
        "def run():",
        "    keras.config.set_floatx('float64' if DTYPE == 'float64' else 'float32')  # Keras' casts follow floatx",
        "    dtype = getattr(tf, DTYPE)",
        "    variables = {k: tf.Variable(tf.cast(to_tf(k, v), dtype)) for k, v in PARAMS.items()}",
        *_optimizer(case),
        "    results = {}",
        "    for step in range(1, STEPS + 1):",
        "        x = tf.cast(INPUTS[step - 1], dtype)",
        "        t = None if TARGETS is None else " + ("tf.constant(TARGETS[step - 1].astype(np.int64))" if ids
                                                     else "tf.cast(TARGETS[step - 1], dtype)"),
        "        with tf.GradientTape() as tape:",
        "            tape.watch(x)",
        "            y = " + ("tf.transpose(x, (0, 2, 3, 1))  # NCHW -> NHWC" if to_nhwc else "x"),
        *_forward(case),
        *(["            y = tf.transpose(y, (0, 3, 1, 2))  # back to NCHW"] if from_nhwc else []),
        f"            loss = {LOSSES[case.loss.kind](options)}",
        "        grads = tape.gradient(loss, [x] + list(variables.values()))",
        "        results[step, 'loss', None], results[step, 'output', None] = np.asarray(loss), np.asarray(y)",
        "        results[step, 'grad', 'input'] = np.asarray(grads[0])",
        "        for (k, v), g in zip(variables.items(), grads[1:]):",
        "            results[step, 'grad', k] = from_tf(k, np.asarray(g)) if g is not None else np.zeros(PARAMS[k].shape)",
        "        if opt is not None:",
        "            opt.apply_gradients([(g if g is not None else tf.zeros_like(v), v)",
        "                                 for v, g in zip(variables.values(), grads[1:])])",
        "        for k, v in variables.items():",
        "            results[step, 'param', k] = from_tf(k, np.asarray(v))",
        "    return results",
    ])
