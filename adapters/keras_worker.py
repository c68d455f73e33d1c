"""The process that runs one Keras backend: `python -m gradconf.adapters.keras_worker BACKEND FD_IN FD_OUT`.

Keras fixes its backend when it is first imported, so each `keras-*` framework runs in a process of its own,
started by adapters/keras_adapter.py with KERAS_BACKEND set: it reads ("version",) or ("run", case, initial)
from FD_IN and answers ("ok", value), ("unsupported", why) or ("error", why) on FD_OUT, until None or the
end of its pipe. It dies with its parent (harness.isolate's prctl / parent poll), and stays in its parent's
process group, so that gradconf's time limit, which kills the group, takes it too.

A run: the case's parameters as Keras Variables (channels_last layouts: conv kernels HWIO, depthwise kernels
(kh, kw, in, out/in), transposed-conv kernels (kh, kw, out, in), dense (in, out), conv1d (k, in, out), a
4-D layer norm's weight (H, W, C)), the running statistics as values threaded through (state), the model's forward as
Keras layers (adapters/keras_layers.py) called statelessly on the variables' values, its gradients by the
backend's own autodiff (tf.GradientTape, jax.value_and_grad, torch.autograd), the update by
`optimizer.apply(grads, variables)`; everything returned in the canonical layout.
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

# OIHW->HWIO, IOHW->(kh,kw,O,I), (o,i)->(i,o), OIL->(k,I,O), a 4-D layer norm's CHW->HWC
_TO = {"conv": (2, 3, 1, 0), "conv_t": (2, 3, 1, 0), "dense": (1, 0), "conv1d": (2, 1, 0), "chw": (1, 2, 0)}
_FROM = {"conv": (3, 2, 0, 1), "conv_t": (3, 2, 0, 1), "dense": (1, 0), "conv1d": (2, 1, 0), "chw": (2, 0, 1)}


def kinds(case) -> dict[str, str]:
    """Parameter name -> its layout conversion (conv, depthwise, conv1d, depthwise1d, conv_t, dense, chw, bias:
    as it is)."""
    from .keras_layers import is_depthwise
    out = {}
    for L in case.layers:
        if L.type == "layer_norm" and len(L.in_shape) == 4:  # weight and bias shaped as the activation, NHWC
            out.update((p.name, "chw") for p in L.params)
            continue
        dw = L.type in ("conv2d", "conv1d") and is_depthwise(L)
        weight = {"conv2d": f"depthwise:{L.groups}" if dw else "conv",
                  "conv1d": f"depthwise1d:{L.groups}" if dw else "conv1d",
                  "conv_transpose2d": "conv_t", "dense": "dense"}.get(L.type, "bias")
        for p in L.params:
            out[p.name] = "bias" if p.name.endswith(".bias") else weight
    return out


def to_keras(kind: str, a: np.ndarray) -> np.ndarray:
    if kind.startswith("depthwise1d"):  # (C·m, 1, k) -> (k, C, m)
        c = int(kind.split(":")[1])
        return a.reshape(c, a.shape[0] // c, a.shape[2]).transpose(2, 0, 1)
    if kind.startswith("depthwise"):  # (C·m, 1, kh, kw) -> (kh, kw, C, m): output channel c·m + j is [:, :, c, j]
        c = int(kind.split(":")[1])
        return a.reshape(c, a.shape[0] // c, *a.shape[2:]).transpose(2, 3, 0, 1)
    return a if kind == "bias" else np.transpose(a, _TO[kind])


def from_keras(kind: str, a: np.ndarray, shape: tuple) -> np.ndarray:
    if kind.startswith("depthwise1d"):
        return a.transpose(1, 2, 0).reshape(shape)
    if kind.startswith("depthwise"):
        return a.transpose(2, 3, 0, 1).reshape(shape)
    return a if kind == "bias" else np.transpose(a, _FROM[kind])


def _import_backend(backend: str):
    """The backend, with gradconf's thread policy (one thread; README "Threads"), then Keras on it."""
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        from .tensorflow_adapter import _import_tf
        _import_tf()
    elif backend == "jax":
        from .jax_adapter import _import_jax
        _import_jax()
    else:
        import torch
        torch.set_num_threads(1)
        from . import one_thread_native_pools
        one_thread_native_pools("torch")
    import keras
    if keras.backend.backend() != backend:
        raise RuntimeError(f"Keras started on {keras.backend.backend()}, not {backend}")
    return keras


def version(backend: str) -> str:
    keras = _import_backend(backend)
    mod = __import__(backend)
    return f"keras {keras.__version__} ({backend} {mod.__version__})"


def gradient_function(backend: str, f, wrt_x: bool):
    """(values, states, x, target) -> (loss, y, dL/dx, {name: dL/dp}, states after) by the backend's own autodiff
    of f(values, states, x, target) -> (loss, (y, states after)); states (batch-norm running statistics) are
    not differentiated. On jax one jitted program per case, as Keras' own jax trainer runs its step (eager dispatch
    compiles every primitive on its own and costs several times more)."""
    if backend == "jax":
        import jax
        step = jax.jit(jax.value_and_grad(f, argnums=(0, 2) if wrt_x else 0, has_aux=True))

        def jax_grads(values, states, x, target):
            (loss, (y, after)), grads = step(values, states, x, target)
            return (loss, y, *grads[::-1], after) if wrt_x else (loss, y, None, grads, after)
        return jax_grads
    if backend == "tensorflow":
        import tensorflow as tf

        def tf_grads(values, states, x, target):
            values = {k: tf.convert_to_tensor(v) for k, v in values.items()}
            with tf.GradientTape() as tape:
                tape.watch(list(values.values()) + [x] * wrt_x)
                loss, (y, after) = f(values, states, x, target)
            gs = tape.gradient(loss, [x] * wrt_x + list(values.values()))
            gs = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gs]  # embedding
            gx = gs.pop(0) if wrt_x else None
            return loss, y, gx, dict(zip(values, gs)), after
        return tf_grads
    import torch

    def torch_grads(values, states, x, target):
        values = {k: v.detach().clone().requires_grad_(True) for k, v in values.items()}
        x = x.detach().clone().requires_grad_(wrt_x)
        loss, (y, after) = f(values, states, x, target)
        gs = list(torch.autograd.grad(loss, [x] * wrt_x + list(values.values()), allow_unused=True))
        gx = gs.pop(0) if wrt_x else None
        return loss.detach(), y.detach(), gx, dict(zip(values, gs)), {k: v.detach() for k, v in after.items()}
    return torch_grads


def run(backend: str, case, initial):
    from gradconf.protocol import Step, Trace, run_layers
    from . import keras_layers, keras_training as training
    keras = _import_backend(backend)
    ops, dtype = keras.ops, case.dtype
    keras_layers.reset()
    keras_layers._DTYPE["name"] = dtype
    kind = kinds(case)
    variables = {k: keras.Variable(to_keras(kind[k], v), dtype=dtype, name=k.replace(".", "_"))
                 for k, v in initial.params.items()}
    names = list(variables)
    opt = None
    if variables and case.optimizer:
        opt = training.optimizer(case.optimizer.kind, case.optimizer.hp, case.schedule, case.clip, dtype)
    options = {"reduction": case.loss.reduction, **case.loss.options}
    image = len(case.input.shape) == 4

    def forward(values, states, x, target):
        states = dict(states)  # the stateful layers replace their own (protocol.run_layers)
        y = run_layers(case, keras_layers.LAYERS, ops.transpose(x, (0, 2, 3, 1)) if image else x, values,
                       states=states)
        if len(case.output_shape) == 4:
            y = ops.transpose(y, (0, 3, 1, 2))  # canonical NCHW for the loss and the report
        return training.LOSSES[case.loss.kind](y, target, options), (y, states)

    grads_of = gradient_function(backend, forward, case.input_grad)
    as_np = lambda t: np.asarray(ops.convert_to_numpy(ops.cast(t, "float64")))  # noqa: E731
    states = {k: ops.convert_to_tensor(v, dtype=dtype) for k, v in initial.state.items()}  # per channel
    steps = []
    for step in range(1, case.steps + 1):
        x = ops.convert_to_tensor(initial.input_at(step), dtype=dtype) if case.input_grad else \
            ops.convert_to_tensor(initial.input_at(step).astype(np.int64), dtype="int64")  # embedding ids
        t = initial.target_at(step)
        ids = case.loss.kind in training.CLASS_TARGETS
        target = None if t is None else ops.convert_to_tensor(t.astype(np.int64) if ids else t,
                                                              dtype="int64" if ids else dtype)
        loss, y, gx, gv, states = grads_of({k: variables[k].value for k in names}, states, x, target)
        grads = {"input": as_np(gx)} if case.input_grad else {}
        for k in names:
            grads[k] = np.zeros(initial.params[k].shape) if gv[k] is None else \
                from_keras(kind[k], as_np(gv[k]), initial.params[k].shape)
        if opt is not None:  # a schedule's value and Keras' casts are in floatx: the case's (TF-LR32)
            with training.floatx(dtype):
                opt.apply([gv[k] if gv[k] is not None else ops.zeros_like(variables[k].value) for k in names],
                          [variables[k] for k in names])
        params = {k: from_keras(kind[k], as_np(variables[k].value), initial.params[k].shape)
                  for k in names} if opt is not None else {}
        steps.append(Step(as_np(loss), as_np(y), grads, params, state={k: as_np(v) for k, v in states.items()}))
    return Trace(steps)


def serve(backend: str, fd_in: int, fd_out: int) -> None:
    from multiprocessing.connection import Connection
    from gradconf.errors import Unsupported
    from gradconf.running import brief
    conn_in, conn_out = Connection(fd_in, writable=False), Connection(fd_out, readable=False)
    while True:
        try:
            request = conn_in.recv()
        except EOFError:
            return
        if request is None:
            return
        kind, *args = request
        try:
            answer = ("ok", version(backend) if kind == "version" else run(backend, *args))
        except Unsupported as e:
            answer = ("unsupported", str(e))
        except Exception as e:  # the run's error, reported by the adapter in gradconf's process
            answer = ("error", brief(e))
        conn_out.send(answer)


def main(argv: list[str]) -> None:
    from gradconf.isolate import _die_with_parent
    _die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is gradconf's to handle: it stops this process
    backend, fd_in, fd_out = argv
    serve(backend, int(fd_in), int(fd_out))


if __name__ == "__main__":
    main(sys.argv[1:])
