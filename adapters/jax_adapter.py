"""JAX: jax.numpy / jax.lax primitives, `jax.value_and_grad` for gradients, optax for updates.

The canonical layout is used as is: `lax.conv_general_dilated` takes NCHW / OIHW dimension numbers,
explicit per-side padding, kernel dilation and feature groups natively. A transposed convolution is
the same primitive with the input dilated by the stride (`lhs_dilation`) and the kernel flipped and
regrouped to OIHW; its per-side cropping and `output_padding` are that conv's (negative or extra)
padding, so they need no slicing (conv2d and conv1d, padding modes, pools, resizing: adapters/jax_resize.py).
Pools are `lax.reduce_window` (max from -inf, so padding never
wins; average as a window sum over the kernel area, or over a window count of ones when padding is
excluded). Losses, optimizers, schedules and clipping are optax's, configured to the case's numbers
(adapters/jax_training.py): torch.optim's conventions (L2 weight decay coupled into the gradient, `eps`
outside the root of the bias-corrected moment) are optax's too for SGD, Adam, AdamW, RMSprop (with
`eps_in_sqrt=False`) and Adamax; where optax computes differently it is catalogued (docs/divergences.md).

float64 needs `jax_enable_x64`, set when the adapter first imports JAX, which it does lazily. CPU
only: the adapter asks for the CPU platform before JAX starts, so a machine with an accelerator gives
the same numbers as one without.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from gradconf.case import Case, ConvTranspose2d

from . import Initial, LayerTrace, Step, Tables, Trace, module_missing, one_thread_native_pools, run_layers
from . import jax_activations, jax_resize, jax_training as training


def xla_flags(flags: str, threads: int | None) -> str:
    """XLA_FLAGS for the CPU client: the older elemental emitters instead of the fusion emitters (each case
    compiles one program, and that compile costs more than the run: 2.3x less CPU this way; the results
    differ from the default's by rounding only, README), and a thread pool of `threads`. A user's flag wins."""
    extra = [] if "xla_cpu_use_fusion_emitters" in flags else ["--xla_cpu_use_fusion_emitters=false"]
    if threads and "intra_op_parallelism_threads" not in flags:
        extra += [f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}",
                  f"intra_op_parallelism_threads={threads}"]
    return " ".join([flags, *extra]).strip()


def _import_jax():
    """jax with float64 on and the CPU as its device; XLA's flags set before its CPU client starts. XLA fixes
    its thread pool then, as TensorFlow does, so JAX stays on one thread (the thread policy, README "Threads")."""
    if "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""), 1)
    import jax
    jax.config.update("jax_enable_x64", True)
    one_thread_native_pools("jax")
    return jax


# The primitives the layers are built from, each taking (jax.numpy, jax.lax) first.
def _conv_transpose(jnp, lax, x, w, L: ConvTranspose2d):
    """The gradient of a conv w.r.t. its input, as a conv: the input dilated by the stride, the IOHW
    kernel regrouped to OIHW and flipped, padded by d·(k−1) less the cropping (plus output_padding)."""
    g, (cin, cout_g, kh, kw) = L.groups, w.shape
    w = w.reshape(g, cin // g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * cout_g, cin // g, kh, kw)
    w = jnp.flip(w, axis=(2, 3))
    reach = [L.dilation[i] * (L.kernel_size[i] - 1) for i in range(2)]
    pad = [(reach[i] - L.padding[i][0], reach[i] - L.padding[i][1] + L.output_padding[i]) for i in range(2)]
    return lax.conv_general_dilated(x, w, window_strides=(1, 1), padding=pad, lhs_dilation=L.stride,
                                    rhs_dilation=L.dilation, feature_group_count=g,
                                    dimension_numbers=("NCHW", "OIHW", "NCHW"))


# The primitives tests/planted_jax.py swaps (the padding modes, pools and resizing: adapters/jax_resize.py).
def _conv(jnp, lax, x, w, L):
    return jax_resize.conv(jnp, lax, x, w, L, 2)


def _window(lax, x, init, op, L):
    return jax_resize.window(lax, x, init, op, L)


def _max_pool(jnp, lax, x, L):
    return jax_resize.max_pool(L, [x], {})


def _avg_pool(jnp, lax, x, L):
    return jax_resize.avg_pool(L, [x], {})


def _jl():
    """(jax.numpy, jax.lax), imported when first asked for."""
    import jax
    return jax.numpy, jax.lax


def _bias(x, b):
    return x if b is None else x + b.reshape((1, -1) + (1,) * (x.ndim - 2))


def _stat(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _normalise(jnp, lax, x, axes, eps):
    """(x − mean)/√(var + ε) over `axes` (the variance biased)."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps), mean, var


def _affine(y, p, shaped):
    return y if "weight" not in p else y * shaped(p["weight"]) + shaped(p["bias"])


def _batch_norm(jnp, lax, x, p, L):
    """Batch statistics in training (and the running ones updated per SPEC §1.9, as torch: (1 − momentum)·running +
    momentum·batch, the variance unbiased), the running statistics in eval mode. The new state replaces p's."""
    if L.training:
        y, mean, var = _normalise(jnp, lax, x, (0, 2, 3), L.eps)
        m, mom = L.reduces, L.momentum
        p["running_mean"] = (1 - mom) * p["running_mean"] + mom * lax.stop_gradient(mean.reshape(-1))
        p["running_var"] = (1 - mom) * p["running_var"] + mom * lax.stop_gradient(var.reshape(-1)) * (m / (m - 1))
    else:
        y = (x - _stat(p["running_mean"], 4)) * lax.rsqrt(_stat(p["running_var"], 4) + L.eps)
    return _affine(y, p, lambda v: _stat(v, 4))


def _layer_norm(jnp, lax, x, p, L):
    return _affine(_normalise(jnp, lax, x, tuple(range(1, x.ndim)), L.eps)[0], p, lambda v: v[None])


def _group_norm(jnp, lax, x, p, L):
    y = _normalise(jnp, lax, x.reshape(x.shape[0], L.num_groups, -1), (2,), L.eps)[0].reshape(x.shape)
    return _affine(y, p, lambda v: _stat(v, x.ndim))


# One function per vocabulary entry: layers f(L, xs, p) -> y (losses and optimizers below).
# tests/planted_jax.py plants bugs by swapping entries of these tables.
LAYERS = {
    "conv2d": lambda L, xs, p: _bias(_conv(*_jl(), xs[0], p["weight"], L), p.get("bias")),
    "conv_transpose2d": lambda L, xs, p: _bias(_conv_transpose(*_jl(), xs[0], p["weight"], L), p.get("bias")),
    "max_pool2d": lambda L, xs, p: _max_pool(*_jl(), xs[0], L),
    "avg_pool2d": lambda L, xs, p: _avg_pool(*_jl(), xs[0], L),
    "sigmoid": lambda L, xs, p: __import__("jax").nn.sigmoid(xs[0]),
    "tanh": lambda L, xs, p: _jl()[0].tanh(xs[0]),
    "relu": lambda L, xs, p: __import__("jax").nn.relu(xs[0]),
    "flatten": lambda L, xs, p: xs[0].reshape(xs[0].shape[0], -1),  # NCHW row-major: the canonical feature order
    "sum": lambda L, xs, p: _jl()[0].sum(xs[0]),
    "dense": lambda L, xs, p: _bias(xs[0] @ p["weight"].T, p.get("bias")),
    "add": lambda L, xs, p: _sum(xs),
    "concat": lambda L, xs, p: _jl()[0].concatenate(xs, axis=L.dim),
    "embedding": lambda L, xs, p: _jl()[0].take(p["weight"], xs[0], axis=0),  # ids: int32
    **jax_activations.LAYERS,  # leaky_relu, elu, gelu, silu, softplus, softmax, log_softmax, dropout
    "batch_norm2d": lambda L, xs, p: _batch_norm(*_jl(), xs[0], p, L),
    "layer_norm": lambda L, xs, p: _layer_norm(*_jl(), xs[0], p, L),
    "group_norm": lambda L, xs, p: _group_norm(*_jl(), xs[0], p, L),
    **jax_resize.LAYERS,  # conv1d, global and adaptive pools, upsample
}


def _sum(xs):
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y
# Losses f(y, target, options) and optimizers f(opt, schedule, clip) -> optax: adapters/jax_training.py.
LOSSES, OPTIMIZERS = training.LOSSES, training.OPTIMIZERS
TABLES = Tables("jax", LAYERS, LOSSES, OPTIMIZERS)


class JaxAdapter:
    name = "jax"

    def missing(self):
        return module_missing("jax") or module_missing("optax")

    def version(self):
        jax = _import_jax()
        import jaxlib
        import optax
        return f"{jax.__version__} (jaxlib {jaxlib.__version__}, optax {optax.__version__})"

    def known_divergences(self, case: Case) -> dict[str, str]:
        """The catalogued divergences (docs/divergences.md) whose conditions `case` meets on this machine:
        id -> gist. The conditions live in harness.divergences, shared with `xfail: {jax: ID}`."""
        from gradconf.divergences import known
        return known(self.name, case)

    def trace_layers(self, case: Case, initial: Initial) -> LayerTrace:
        """Step 1 layer by layer (protocol.LayerTrace). JAX keeps no gradients of intermediates, so each
        layer's output gets a zero added (a probe) and the loss's gradient of that probe is the output's."""
        TABLES.check(case)
        jax = _import_jax()
        import jax.numpy as jnp
        dtype, ids = jnp.dtype(case.dtype), case.loss.kind in training.CLASS_TARGETS
        params = {k: jax.device_put(v.astype(dtype)) for k, v in initial.params.items()}
        states = {k: jax.device_put(v.astype(dtype)) for k, v in initial.state.items()}
        x = jax.device_put(initial.input_at(1).astype(dtype if case.input_grad else np.int32))
        t = initial.target_at(1)
        target = None if t is None else jax.device_put(t.astype(np.int64 if ids else dtype))
        options = {"reduction": case.loss.reduction, **case.loss.options}

        def probed(f, probes):
            return lambda L, xs, p: f(L, xs, p) + probes[L.name] if L.name in probes else f(L, xs, p)

        def loss_of(probes):
            kept, layers = {}, {kind: probed(f, probes) for kind, f in LAYERS.items()}
            y = run_layers(case, layers, x, params, kept, states=dict(states))
            return LOSSES[case.loss.kind](y, target, options), kept

        shapes = jax.eval_shape(lambda: loss_of({})[1])
        probes = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
        (_, kept), grads = jax.jit(jax.value_and_grad(loss_of, has_aux=True))(probes)
        as_np = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        return LayerTrace({k: as_np(v) for k, v in kept.items()}, {k: as_np(g) for k, g in grads.items()})

    def run(self, case: Case, initial: Initial) -> Trace:
        TABLES.check(case)
        jax = _import_jax()
        import jax.numpy as jnp
        import optax
        dtype = jnp.dtype(case.dtype)
        params = {k: jax.device_put(v.astype(dtype)) for k, v in initial.params.items()}  # cast on the host: no XLA op
        # every step's input and target (per-step data, SPEC §1.10), cast on the host
        ids = case.loss.kind in training.CLASS_TARGETS
        x_dtype = dtype if case.input_grad else np.int32  # an embedding's ids
        xs = [jax.device_put(initial.input_at(k).astype(x_dtype)) for k in range(1, case.steps + 1)]
        targets = [None if initial.target_at(k) is None else
                   jax.device_put(initial.target_at(k).astype(np.int64 if ids else dtype)) for k in range(1, case.steps + 1)]
        options = {"reduction": case.loss.reduction, **case.loss.options}

        def forward(params, x, target, states):
            states = dict(states)  # the running statistics after this step's forward (batch norm)
            y = run_layers(case, LAYERS, x, params, states=states)
            return LOSSES[case.loss.kind](y, target, options), (y, states)

        value_and_grad = jax.value_and_grad(forward, argnums=(0, 1) if case.input_grad else 0, has_aux=True)
        opt = None
        if case.optimizer is not None and params:  # clipping and the schedule are part of the optax chain
            opt = OPTIMIZERS[case.optimizer.kind](case.optimizer, case.schedule, case.clip)

        def every_step(params, xs, targets, states):
            state = opt.init(params) if opt is not None else None
            out = []
            for x, target in zip(xs, targets):
                (loss, (y, states)), grads = value_and_grad(params, x, target, states)
                grads, input_grad = grads if case.input_grad else (grads, None)  # ids: no input gradient
                if opt is not None:
                    updates, state = opt.update(grads, state, params)
                    params = optax.apply_updates(params, updates)
                out.append((loss, y, grads, input_grad, params, states))
            return out

        # One XLA program per case (every step, its gradients and updates): compiling costs far more than
        # running these small cases, and op-by-op dispatch would compile every primitive on its own.
        as_np = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        steps = []
        states = {k: jax.device_put(v.astype(dtype)) for k, v in initial.state.items()}
        for loss, y, param_grads, input_grad, after, state in jax.jit(every_step)(params, xs, targets, states):
            grads = {k: as_np(g) for k, g in param_grads.items()}
            if input_grad is not None:
                grads["input"] = as_np(input_grad)
            steps.append(Step(as_np(loss), as_np(y), grads, {k: as_np(v) for k, v in after.items()} if opt is not None
                              else {}, state={k: as_np(v) for k, v in state.items()}))
        return Trace(steps)
