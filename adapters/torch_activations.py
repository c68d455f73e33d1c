"""PyTorch's activations (SPEC §1.9), merged into torch_adapter.LAYERS: torch.nn.functional's own, every
option passed explicitly (F.gelu's `approximate`, F.softplus's `beta` and `threshold`)."""
from __future__ import annotations


def _F():
    import torch.nn.functional as F
    return F


LAYERS = {
    "leaky_relu": lambda L, xs, p: _F().leaky_relu(xs[0], L.negative_slope),
    "elu": lambda L, xs, p: _F().elu(xs[0], L.alpha),
    "gelu": lambda L, xs, p: _F().gelu(xs[0], approximate=L.approximate),
    "silu": lambda L, xs, p: _F().silu(xs[0]),
    "softplus": lambda L, xs, p: _F().softplus(xs[0], beta=L.beta, threshold=L.threshold),
    "softmax": lambda L, xs, p: _F().softmax(xs[0], dim=L.dim),
    "log_softmax": lambda L, xs, p: _F().log_softmax(xs[0], dim=L.dim),
    "dropout": lambda L, xs, p: _F().dropout(xs[0], L.p, training=False),  # eval mode: the identity
}

# The same calls as source text, for `gradconf repro` (adapters/torch_script.py): f(L, weight, bias) -> expression of y.
SCRIPTS = {
    "leaky_relu": lambda L, w, b: f"F.leaky_relu(y, {L.negative_slope!r})",
    "elu": lambda L, w, b: f"F.elu(y, {L.alpha!r})",
    "gelu": lambda L, w, b: f"F.gelu(y, approximate={L.approximate!r})",
    "silu": lambda L, w, b: "F.silu(y)",
    "softplus": lambda L, w, b: f"F.softplus(y, beta={L.beta!r}, threshold={L.threshold!r})",
    "softmax": lambda L, w, b: f"F.softmax(y, dim={L.dim})",
    "log_softmax": lambda L, w, b: f"F.log_softmax(y, dim={L.dim})",
    "dropout": lambda L, w, b: f"F.dropout(y, {L.p!r}, training=False)",
}
