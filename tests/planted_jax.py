"""Bugs planted in the JAX adapter's primitives: each a slip that changes the math, with the bundled cases
expected to catch it. `entries` puts one into the adapter's tables (jax_adapter.LAYERS / LOSSES /
OPTIMIZERS, keyed by vocabulary name) as the adapter builds its own entries from its primitives;
tests/test_jax_adapter.py plants one at a time and runs its cases: each bug must fail at least one, and the
unpatched adapter must pass them all.

Not planted, because JAX has no such state: a forgotten zero_grad, a stale input gradient after step 1
(jax.grad returns fresh gradients of a pure function every step)."""
from __future__ import annotations

import dataclasses

import numpy as np

from gradconf.adapters import jax_adapter as J


def _with_vjp(forward, wrong_derivative):
    """`forward` whose backward pass multiplies by `wrong_derivative(x, y)` instead of the true derivative."""
    import jax

    f = jax.custom_vjp(forward)
    f.defvjp(lambda x: (forward(x), (x, forward(x))), lambda res, dy: (dy * wrong_derivative(*res),))
    return f


def _same(L, **changes):
    return dataclasses.replace(L, **changes)


def _adam(opt, **kw):
    import optax
    return optax.adam(opt.lr, b1=opt.betas[0], b2=opt.betas[1], **kw)


def _decoupled(opt):
    """Weight decay applied after the step, to the weights (AdamW-style), not added to the gradient."""
    import optax
    return optax.chain(J._optimizer(dataclasses.replace(opt, weight_decay=0.0)),
                       optax.add_decayed_weights(-opt.lr * opt.weight_decay))


def _dampened(opt):
    """Momentum as an average (buf = m·buf + (1−m)·g), torch's dampening=m."""
    import optax
    return optax.chain(optax.add_decayed_weights(opt.weight_decay), optax.ema(opt.momentum, debias=False),
                       optax.scale(-opt.lr))


def entries(primitive: str, f) -> list[tuple[dict, str, object]]:
    """(table, name, function) of the adapter's entries built on `primitive`, built on `f` instead."""
    def jl():
        return J._jl()
    if primitive in ("conv", "conv_transpose"):
        name = "conv2d" if primitive == "conv" else "conv_transpose2d"
        return [(J.LAYERS, name, lambda L, xs, p: J._bias(f(*jl(), xs[0], p["weight"], L), p.get("bias")))]
    if primitive in ("max_pool", "avg_pool"):
        return [(J.LAYERS, f"{primitive}2d", lambda L, xs, p: f(*jl(), xs[0], L))]
    if primitive in ("sigmoid", "tanh", "relu", "flatten"):
        return [(J.LAYERS, primitive, lambda L, xs, p: f(*jl(), xs[0]))]
    if primitive == "dense":
        return [(J.LAYERS, "dense", lambda L, xs, p: J._bias(f(*jl(), xs[0], p["weight"]), p.get("bias")))]
    if primitive in J.LOSSES:
        return [(J.LOSSES, primitive, lambda y, t: f(*jl(), y, t))]
    assert primitive == "optimizer", primitive
    return [(J.OPTIMIZERS, kind, f) for kind in J.OPTIMIZERS]


# name -> (primitive, replacement, bundled case files expected to catch it)
MUTATIONS = {
    "conv flips its kernel (convolution, not cross-correlation)":
        ("conv", lambda jnp, lax, x, w, L: J._conv(jnp, lax, x, jnp.flip(w, (2, 3)), L),
         ["conventions/cross_correlation", "layers/dilated_conv"]),
    "conv padding on the opposite sides":
        ("conv", lambda jnp, lax, x, w, L: J._conv(jnp, lax, x, w, _same(L, padding=tuple(p[::-1] for p in L.padding))),
         ["conventions/same_padding", "layers/per_side_padding", "layers/same_stride2_even"]),
    "dilation ignored (a dense kernel of the dilated reach)":
        ("conv", lambda jnp, lax, x, w, L: J._conv(jnp, lax, x, jnp.pad(w, ((0, 0), (0, 0), (0, L.dilation[0] - 1),
                                                                             (0, 0))) if L.dilation[0] > 1 else w,
                                                   _same(L, dilation=(1, L.dilation[1]))),
         ["layers/dilated_conv", "conventions/dilation_one"]),
    "groups: every group sees every input channel's first group":
        ("conv", lambda jnp, lax, x, w, L: J._conv(jnp, lax, jnp.concatenate([x[:, :x.shape[1] // L.groups]] * L.groups, 1),
                                                   w, L),
         ["layers/grouped_conv", "layers/depthwise_conv"]),
    "float64 conv computed in float32":
        ("conv", lambda jnp, lax, x, w, L: J._conv(jnp, lax, x.astype(jnp.float32), w.astype(jnp.float32), L).astype(x.dtype),
         ["examples/net_5x5", "layers/grouped_conv"]),
    "transposed conv without the kernel flip":
        ("conv_transpose", lambda jnp, lax, x, w, L: J._conv_transpose(jnp, lax, x, jnp.flip(w, (2, 3)), L),
         ["layers/conv_transpose_asymmetric", "layers/conv_transpose_same"]),
    "transposed conv: output_padding rows left at zero":
        ("conv_transpose", lambda jnp, lax, x, w, L: jnp.pad(
            J._conv_transpose(jnp, lax, x, w, _same(L, output_padding=(0, 0))),
            ((0, 0), (0, 0), (0, L.output_padding[0]), (0, L.output_padding[1]))),
         ["layers/conv_transpose_output_padding"]),
    "max-pool pads with 0, not -inf":
        ("max_pool", lambda jnp, lax, x, L: J._window(lax, x, np.array(0, x.dtype), lax.max, L),
         ["conventions/maxpool_padding_is_minus_inf"]),
    "avg-pool counts the padding it should exclude":
        ("avg_pool", lambda jnp, lax, x, L: J._avg_pool(jnp, lax, x, _same(L, count_include_pad=True)),
         ["conventions/avgpool_count_exclude_pad", "layers/avg_pool_exclude_padding"]),
    "avg-pool without 1/k²":
        ("avg_pool", lambda jnp, lax, x, L: J._window(lax, x, np.array(0, x.dtype), lax.add, L),
         ["conventions/avgpool_count_include_pad", "layers/avg_pool_padding"]),
    "σ′ taken as σ":
        ("sigmoid", lambda jnp, lax, x: _with_vjp(__import__("jax").nn.sigmoid, lambda x, y: y)(x),
         ["examples/net_5x5", "layers/sigmoid_tail"]),
    "tanh′ taken as 1 − tanh":
        ("tanh", lambda jnp, lax, x: _with_vjp(jnp.tanh, lambda x, y: 1 - y)(x),
         ["layers/saturated_activations", "layers/pool_ties"]),
    "ReLU′(0) = 1":
        ("relu", lambda jnp, lax, x: _with_vjp(__import__("jax").nn.relu, lambda x, y: (x >= 0).astype(x.dtype))(x),
         ["conventions/relu_at_zero"]),
    "dense uses W, not Wᵀ":
        ("dense", lambda jnp, lax, x, w: x @ w if w.shape[0] == w.shape[1] else x @ w.T,
         ["layers/sum_layer", "families/nets[78]"]),
    "flatten in NHWC order":
        ("flatten", lambda jnp, lax, x: x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x,
         ["examples/net_5x5", "layers/dense_after_flatten"]),
    "MSE summed, not averaged":
        ("mse", lambda jnp, lax, y, t: jnp.sum(jnp.square(y - t)),
         ["conventions/mse_has_no_half", "optimizers/momentum"]),
    "MSE without its factor 2 (halved)":
        ("mse", lambda jnp, lax, y, t: 0.5 * jnp.mean(jnp.square(y - t)),
         ["conventions/mse_has_no_half", "examples/sum_3x3"]),
    "cross-entropy without 1/N":
        ("cross_entropy", lambda jnp, lax, y, t: jnp.sum(
            __import__("optax").softmax_cross_entropy_with_integer_labels(y, t)),
         ["layers/cross_entropy"]),
    "nesterov run as plain momentum":
        ("optimizer", lambda opt: J._optimizer(_same(opt, nesterov=False)), ["optimizers/nesterov"]),
    "momentum dampened":
        ("optimizer", lambda opt: _dampened(opt) if opt.momentum else J._optimizer(opt),
         ["optimizers/momentum", "optimizers/momentum_weight_decay"]),
    "weight decay decoupled (after the step)":
        ("optimizer", lambda opt: _decoupled(opt) if opt.weight_decay else J._optimizer(opt),
         ["optimizers/momentum_weight_decay", "conventions/weight_decay_is_coupled"]),
    "Adam's ε inside the root":
        ("optimizer", lambda opt: _adam(opt, eps=0.0, eps_root=opt.eps) if opt.kind == "adam" else J._optimizer(opt),
         ["optimizers/adam", "divergences/tf_adam_eps_tiny_gradients"]),
    "learning rate rounded to float16":
        ("optimizer", lambda opt: J._optimizer(_same(opt, lr=float(np.float16(opt.lr)))),
         ["examples/sum_3x3", "optimizers/momentum"]),
}
