"""TensorFlow: GradientTape for gradients, Keras optimizers for updates.

Layouts convert once, here: activations NCHW <-> NHWC, conv kernels OIHW -> HWIO, transposed-conv
kernels IOHW -> (kh, kw, out, in), dense (out, in) -> Keras (in, out). `flatten` goes back to NCHW
first, so features come out in the canonical (PyTorch) row-major order.
What TF lacks is composed exactly (the pools, conv1d, resizing and padding modes: adapters/tf_resize.py):
per-side padding is an explicit tf.pad (-inf for max-pool) followed by VALID; `count_include_pad: false` is a window mean over the mean of a ones-mask; TF's
CPU kernels cannot back-propagate dilated or grouped convolutions, so dilation is a zero-inserted
kernel and groups are one convolution per group, concatenated; per-side transposed-conv cropping
and output_padding are a slice of the full output, zero-extended where needed. Eager execution:
each case runs once, and tracing a tf.function per case costs more than it saves (benchmarks).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from gradconf.case import Case

from . import Initial, LayerTrace, Step, Tables, Trace, Unsupported, module_missing, one_thread_native_pools, run_layers
from . import tf_activations, tf_norm, tf_resize, tf_training as training
from .tf_layout import _dilate, _per_group, _kinds, from_tf_layout, nhwc_axis, to_tf_layout


_THREADS_SET = False  # once per process


def _import_tf():
    """TensorFlow, on one intra-op and one inter-op thread (the thread policy, adapters.threads_for) unless
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS say otherwise. Its pools are fixed when it runs its
    first op, so no per-case choice: nearly every case is small, where a second thread costs (measured:
    benchmarks/bench_threads.py), and the large benchmark case gains only ~20% from one."""
    global _THREADS_SET
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if _THREADS_SET:
        return tf
    _THREADS_SET = True
    for variable, get, set_ in (("TF_NUM_INTRAOP_THREADS", tf.config.threading.get_intra_op_parallelism_threads,
                                 tf.config.threading.set_intra_op_parallelism_threads),
                                ("TF_NUM_INTEROP_THREADS", tf.config.threading.get_inter_op_parallelism_threads,
                                 tf.config.threading.set_inter_op_parallelism_threads)):
        if variable not in os.environ and get() != 1:
            try:  # only possible before TensorFlow runs its first op
                set_(1)
            except RuntimeError:
                pass
    one_thread_native_pools("tensorflow")
    return tf


# ---------------------------------------------------------------- layers: f(L, xs, p) -> y (x NHWC when 4-D)

def _bias_add(tf, y, b):
    # tf.nn.bias_add, as Keras 3 adds every conv and dense bias (its TF backend's `ops.add` turns a
    # bias-shaped add into it). Its gradient differs from a broadcast add's in half types: exact in
    # float16, but summed in bfloat16 for bfloat16 (TF-BF16-BIASADD).
    return y if b is None else tf.nn.bias_add(y, b)


def conv2d(L, xs, p):
    import tensorflow as tf
    w = _dilate(tf, p["weight"], L.dilation)
    x = tf_resize.mode_pad(tf, xs[0], L.padding, L.padding_mode)  # zeros, reflect, replicate or circular
    # Only the rows and columns some window reads: TF 2.21's CPU filter gradient of a strided 1x1
    # conv corrupts the heap when the input runs past the last window (docs/divergences.md).
    (oh, ow), (kh, kw) = L.out_shape[2:], w.shape[:2]
    reach = ((oh - 1) * L.stride[0] + kh, (ow - 1) * L.stride[1] + kw)
    if reach != tuple(x.shape[1:3]):
        x = x[:, :reach[0], :reach[1]]
    y = _per_group(tf, L.groups, x, w, lambda xi, wi: tf.nn.conv2d(xi, wi, [1, *L.stride, 1], "VALID"))
    return _bias_add(tf, y, p.get("bias"))


def conv_transpose2d(L, xs, p):
    import tensorflow as tf
    (x,), n, (h, wd) = xs, tf.shape(xs[0])[0], L.in_shape[2:]
    k, s, d = L.kernel_size, L.stride, L.dilation
    full = [(h - 1) * s[0] + d[0] * (k[0] - 1) + 1, (wd - 1) * s[1] + d[1] * (k[1] - 1) + 1]
    cout_g = L.out_channels // L.groups
    # w is (kh, kw, out/g, in): groups split its last axis.
    y = _per_group(tf, L.groups, x, _dilate(tf, p["weight"], d),
                   lambda xi, wi: tf.nn.conv2d_transpose(xi, wi, [n, *full, cout_g], [1, *s, 1], "VALID"))
    # Output rows [top, top + H_out) of the full output, zero-extended past its end (output_padding).
    (t, _), (le, _) = L.padding
    out_h, out_w = L.out_shape[2:]
    ext = [max(0, t + out_h - full[0]), max(0, le + out_w - full[1])]
    if any(ext):
        y = tf.pad(y, [[0, 0], [0, ext[0]], [0, ext[1]], [0, 0]])
    return _bias_add(tf, y[:, t:t + out_h, le:le + out_w, :], p.get("bias"))


def flatten(L, xs, p):
    import tensorflow as tf
    x = xs[0]
    if len(L.in_shape) == 4:
        x = tf.transpose(x, (0, 3, 1, 2))  # back to NCHW: canonical row-major feature order
    return tf.reshape(x, (tf.shape(x)[0], -1))


def dense(L, xs, p):
    import tensorflow as tf
    return _bias_add(tf, tf.matmul(xs[0], p["weight"]), p.get("bias"))  # as Keras' Dense (see conv2d)


def concat(L, xs, p):
    import tensorflow as tf
    return tf.concat(xs, axis=nhwc_axis(L.dim, len(L.out_shape)))  # activations are NHWC here


def _tf():
    import tensorflow as tf
    return tf


LAYERS = {
    "conv2d": conv2d, "conv_transpose2d": conv_transpose2d,
    "sigmoid": lambda L, xs, p: _tf().sigmoid(xs[0]),
    "tanh": lambda L, xs, p: _tf().tanh(xs[0]),
    "relu": lambda L, xs, p: _tf().nn.relu(xs[0]),
    "flatten": flatten,
    "sum": lambda L, xs, p: _tf().reduce_sum(xs[0]),
    "dense": dense,
    "add": lambda L, xs, p: _tf().add_n(xs),
    "concat": concat,
    "embedding": lambda L, xs, p: _tf().gather(p["weight"], xs[0]),  # its gradient: IndexedSlices (made dense)
    **tf_activations.LAYERS,  # leaky_relu, elu, gelu, silu, softplus, softmax, log_softmax, dropout
    **tf_norm.LAYERS,
    "conv1d": lambda L, xs, p: tf_resize.conv1d(L, xs, p, conv2d),  # conv2d's, on a height-1 NHWC input
    **tf_resize.LAYERS,  # max/avg pools with dilation and ceil_mode, global and adaptive pools, upsample
}

# ---------------------------------------------------------------- losses: f(y, target) -> loss

# Losses f(y, target, options) and optimizers f(hyperparameters, learning rate and clipping): Keras' own,
# in adapters/tf_training.py (Keras' weight decay is decoupled: docs/divergences.md, TF-WD).
LOSSES, OPTIMIZERS = training.LOSSES, training.OPTIMIZERS
TABLES = Tables("tensorflow", LAYERS, LOSSES, OPTIMIZERS)


def _keep_layers(traced: LayerTrace, kept: dict, grads: list, as_np) -> None:
    """Each layer's output and output gradient into `traced`, 4-D ones back in NCHW."""
    for (name, t), g in zip(kept.items(), grads):
        nchw = (lambda a: np.transpose(a, (0, 3, 1, 2))) if len(t.shape) == 4 else (lambda a: a)
        traced.outputs[name] = nchw(as_np(t))
        if g is not None:
            traced.output_grads[name] = nchw(as_np(g))


class TensorflowAdapter:
    name = "tensorflow"

    def missing(self):
        return module_missing("tensorflow")

    def version(self):
        tf = _import_tf()
        import keras
        return f"{tf.__version__} (keras {keras.__version__})"

    def known_divergences(self, case: Case) -> dict[str, str]:
        """The catalogued divergences (docs/divergences.md) whose conditions `case` meets on this machine:
        id -> gist. The conditions live in harness.divergences, shared with `xfail: {tensorflow: ID}`."""
        from gradconf.divergences import known
        return known(self.name, case)

    def script(self, case: Case) -> str:
        """The case as plain tf / Keras calls, for `gradconf repro` (adapters/tf_script.py)."""
        from .tf_script import script
        return script(case)

    def import_model(self, spec: str, input_shape, reinit: bool = False):
        """`gradconf import keras`: a Keras 3 model as case layers (adapters/keras_import.py)."""
        from .keras_import import import_model
        return import_model(spec, input_shape, reinit)

    def trace_layers(self, case: Case, initial: Initial) -> LayerTrace:
        """Step 1 layer by layer (protocol.LayerTrace): each output kept, the tape's gradient of each."""
        traced = LayerTrace()
        self.run(dataclasses.replace(case, steps=1), initial, traced)
        return traced

    # -------------------------------------------------------------- run

    def run(self, case: Case, initial: Initial, traced: LayerTrace | None = None) -> Trace:
        TABLES.check(case)
        if case.dtype == "bfloat16":
            from gradconf.hardware import detect
            blocked = detect().tf_bfloat16_blocked()
            if blocked:
                raise Unsupported(blocked)
        tf = _import_tf()
        dtype = getattr(tf, case.dtype)
        kinds = _kinds(case)
        variables = {k: tf.Variable(tf.cast(to_tf_layout(kinds[k], v), dtype), name=k.replace(".", "_"))
                     for k, v in initial.params.items()}
        ids = case.loss.kind in training.CLASS_TARGETS
        options = {"reduction": case.loss.reduction, **case.loss.options}
        opt = None
        if variables and case.optimizer:  # nothing to update without parameters
            opt = training.optimizer(case.optimizer.kind, case.optimizer.hp, case.schedule, case.clip, case.dtype)
        names = list(variables)
        states = {k: tf.cast(v, dtype) for k, v in initial.state.items()}  # running statistics, per channel
        as_np = lambda t: np.asarray(tf.cast(t, tf.float64))  # noqa: E731
        steps = []
        for step in range(1, case.steps + 1):  # this step's input and target (per-step data, SPEC §1.10)
            x = tf.cast(initial.input_at(step), dtype) if case.input_grad else \
                tf.constant(initial.input_at(step).astype(np.int64))  # an embedding's ids: no gradient
            t = initial.target_at(step)
            target = None if t is None else tf.constant(t.astype(np.int64)) if ids else tf.cast(t, dtype)
            with tf.GradientTape() as tape:
                if case.input_grad:
                    tape.watch(x)
                y = tf.transpose(x, (0, 2, 3, 1)) if len(case.input.shape) == 4 else x
                kept = {}  # trace_layers: every layer's output, for the tape's gradient of each
                y = run_layers(case, LAYERS, y, variables, kept if traced is not None else None,
                               states=states)
                if len(case.output_shape) == 4:
                    y = tf.transpose(y, (0, 3, 1, 2))  # canonical NCHW for the loss and the report
                loss = LOSSES[case.loss.kind](y, target, options)
            grads = tape.gradient(loss, [x] * case.input_grad + [variables[k] for k in names] + list(kept.values()))
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            if kept:
                _keep_layers(traced, kept, grads[len(grads) - len(kept):], as_np)
                grads = grads[:len(grads) - len(kept)]
            out_grads = {"input": as_np(grads.pop(0))} if case.input_grad else {}
            grads = [None, *grads]  # grads[1:]: the parameters
            for k, g in zip(names, grads[1:]):
                out_grads[k] = from_tf_layout(kinds[k], as_np(g)) if g is not None else np.zeros(initial.params[k].shape)
            if opt is not None:  # a schedule's value and Keras' casts are in floatx: the case's (TF-LR32)
                with training.floatx(case.dtype):
                    opt.apply_gradients([(g if g is not None else tf.zeros_like(variables[n]), variables[n])
                                         for n, g in zip(names, grads[1:])])
            params = {k: from_tf_layout(kinds[k], as_np(v)) for k, v in variables.items()} if opt is not None else {}
            steps.append(Step(as_np(loss), as_np(y), out_grads, params, state={k: as_np(v) for k, v in states.items()}))
        return Trace(steps)
