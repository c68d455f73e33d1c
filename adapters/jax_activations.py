"""JAX's activations (SPEC §1.9), merged into jax_adapter.LAYERS: jax.nn's own. Traps avoided: jax.nn.gelu's
`approximate` defaults to True (the tanh form), so it is passed explicitly; jax.nn.softplus has neither beta
nor threshold, so PyTorch's form is composed around it. jax.nn.leaky_relu is used as it is, although its
derivative at 0 is 1 (jnp.where(x >= 0, ...)): that is JAX-LEAKY-RELU-KINK (docs/divergences.md)."""
from __future__ import annotations


def _nn():
    import jax
    return jax.nn


def softplus(L, xs, p):
    # PyTorch's softplus: x where β·x > threshold, else softplus(β·x)/β
    import jax.numpy as jnp
    x = xs[0]
    z = x * L.beta
    return jnp.where(z > L.threshold, x, _nn().softplus(z) / L.beta)


LAYERS = {
    "leaky_relu": lambda L, xs, p: _nn().leaky_relu(xs[0], L.negative_slope),
    "elu": lambda L, xs, p: _nn().elu(xs[0], L.alpha),
    "gelu": lambda L, xs, p: _nn().gelu(xs[0], approximate=L.approximate == "tanh"),
    "silu": lambda L, xs, p: _nn().silu(xs[0]),
    "softplus": softplus,
    "softmax": lambda L, xs, p: _nn().softmax(xs[0], axis=L.dim),
    "log_softmax": lambda L, xs, p: _nn().log_softmax(xs[0], axis=L.dim),
    "dropout": lambda L, xs, p: xs[0],  # evaluation mode: the identity (JAX has no dropout layer of its own)
}
