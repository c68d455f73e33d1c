"""JAX: optax's losses, optimizers, schedules and clipping, configured to a case's numbers; one function per
entry, keyed by its name. Where optax has no such loss (l1, bce on probabilities, pos_weight, nll) it is
composed of jax.numpy / jax.nn ops, exactly PyTorch's definition. What optax cannot be configured to is
`Unsupported`, naming the setting; where it computes differently, a catalogued divergence.
"""
from __future__ import annotations

import numpy as np

from . import Unsupported


def _jnp():
    import jax.numpy as jnp
    return jnp


def _optax():
    import optax
    return optax


def _reduce(per, o):
    return _jnp().sum(per) if o["reduction"] == "sum" else _jnp().mean(per)


def _smooth_l1(y, t, o):
    jnp, optax = _jnp(), _optax()
    if o["beta"] == 0:
        return _reduce(jnp.abs(y - t), o)
    return _reduce(optax.huber_loss(y, t, delta=o["beta"]), o) / o["beta"]  # smooth_l1 = huber_β / β


def _bce(y, t, o):
    jnp, optax = _jnp(), _optax()
    # optax's binary cross-entropy takes logits only; PyTorch's on probabilities clamps each log at −100
    logs = jnp.maximum(jnp.log(y), -100.0), jnp.maximum(jnp.log1p(-y), -100.0)
    return _reduce(-(t * logs[0] + (1 - t) * logs[1]), o)


def _bce_with_logits(y, t, o):
    jnp, optax = _jnp(), _optax()
    if o.get("pos_weight") is None:
        return _reduce(optax.sigmoid_binary_cross_entropy(y, t), o)
    import jax
    pw = jnp.asarray(np.asarray(o["pos_weight"], dtype=np.float64), dtype=y.dtype)  # optax has no pos_weight
    return _reduce(pw * t * jax.nn.softplus(-y) + (1 - t) * jax.nn.softplus(y), o)


def _class_weight(jnp, o, t, dtype):
    return None if o.get("weight") is None else jnp.asarray(np.asarray(o["weight"]), dtype=dtype)[t]


def _nll(y, t, o):
    jnp, optax = _jnp(), _optax()
    picked = jnp.take_along_axis(y, t[:, None], axis=1)[:, 0]
    w = _class_weight(jnp, o, t, y.dtype)
    if w is None:
        return -_reduce(picked, o)
    total = -jnp.sum(w * picked)
    return total if o["reduction"] == "sum" else total / jnp.sum(w)


def _cross_entropy(y, t, o):
    jnp, optax = _jnp(), _optax()
    labels = jax_one_hot(jnp, t, y.shape[1], y.dtype)
    if o["label_smoothing"]:
        labels = optax.smooth_labels(labels, o["label_smoothing"])
    per = optax.softmax_cross_entropy(y, labels)
    w = _class_weight(jnp, o, t, y.dtype)  # optax has no class weight: a per-sample weight w[t_n], as users write
    if w is None:
        return _reduce(per, o)
    return jnp.sum(w * per) if o["reduction"] == "sum" else jnp.sum(w * per) / jnp.sum(w)


def jax_one_hot(jnp, t, classes, dtype):
    return (t[:, None] == jnp.arange(classes)[None, :]).astype(dtype)


# f(y, target, options) -> loss; options: the case's loss options with `reduction`
LOSSES = {
    "mse": lambda y, t, o: _reduce(_jnp().square(y - t), o),
    "l1": lambda y, t, o: _reduce(_jnp().abs(y - t), o),
    "smooth_l1": _smooth_l1,
    "huber": lambda y, t, o: _reduce(_optax().huber_loss(y, t, delta=o["delta"]), o),
    "bce": _bce,
    "bce_with_logits": _bce_with_logits,
    "nll": _nll,
    "cross_entropy": _cross_entropy,
    "half_sse": lambda y, t, o: 0.5 * _jnp().sum(_jnp().square(t - y)),
    "sum": lambda y, t, o: _jnp().sum(y),
    "grad_output": lambda y, t, o: _jnp().sum(y * t),
}
CLASS_TARGETS = ("nll", "cross_entropy")


def loss(kind: str, options: dict, y, t):
    return LOSSES[kind](y, t, options)


def learning_rate(optax, hp, schedule, kind):
    """A float or an optax schedule (a function of the update count, 0 at the first step)."""
    lr = hp["lr"]
    if schedule is None:
        sched = None
    else:
        name, o = schedule
        # γ as a float64 scalar: a Python float is weakly typed, and optax's γ^(count/steps) of an int32 count
        # is then computed in float32 (1e-8 off per step in a float64 case)
        gamma = np.float64(o.get("gamma", 1.0))
        if name == "step":
            sched = optax.exponential_decay(lr, transition_steps=o["step_size"], decay_rate=gamma, staircase=True)
        elif name == "exponential":
            sched = optax.exponential_decay(lr, transition_steps=1, decay_rate=gamma)
        else:  # optax's cosine holds at its floor past decay_steps, PyTorch's rises again: COSINE-CLAMP
            sched = optax.cosine_decay_schedule(lr, decay_steps=o["t_max"], alpha=o["eta_min"] / lr if lr else 0.0)
    decay = hp.get("lr_decay", 0.0) if kind == "adagrad" else 0.0
    if not decay:
        return lr if sched is None else sched
    base = sched or (lambda count: lr)
    return lambda count: base(count) / (1 + count * decay)  # torch's Adagrad: lr / (1 + (t − 1)·lr_decay)


def _core(optax, kind, hp, lr):
    b1, b2 = hp.get("betas", (0.9, 0.999))
    if kind == "sgd":
        if hp.get("dampening"):
            raise Unsupported("optax's sgd has no `dampening`")
        return optax.sgd(lr, momentum=hp["momentum"] or None, nesterov=hp["nesterov"])
    if kind == "adam":  # optax's amsgrad keeps the largest bias-corrected v̂, torch the largest v: JAX-AMSGRAD
        return (optax.amsgrad if hp.get("amsgrad") else optax.adam)(lr, b1=b1, b2=b2, eps=hp["eps"])
    if kind == "adamw":
        if hp.get("amsgrad"):
            return optax.chain(optax.scale_by_amsgrad(b1=b1, b2=b2, eps=hp["eps"]),
                               optax.add_decayed_weights(hp["weight_decay"]), optax.scale_by_learning_rate(lr))
        return optax.adamw(lr, b1=b1, b2=b2, eps=hp["eps"], weight_decay=hp["weight_decay"])
    if kind == "rmsprop":  # eps_in_sqrt=False is torch's ε outside the root; optax keeps lr inside its momentum
        return optax.rmsprop(lr, decay=hp["alpha"], eps=hp["eps"], eps_in_sqrt=False, centered=hp["centered"],
                             momentum=hp["momentum"] or None)
    if kind == "adagrad":  # optax adds ε inside the root: JAX-ADAGRAD-EPS
        return optax.adagrad(lr, initial_accumulator_value=hp["initial_accumulator_value"], eps=hp["eps"])
    if kind == "adamax":
        return optax.adamax(lr, b1=b1, b2=b2, eps=hp["eps"])
    if kind == "nadam":  # optax's NAdam has no momentum schedule: JAX-NADAM
        return optax.nadam(lr, b1=b1, b2=b2, eps=hp["eps"])
    raise Unsupported(f"no optax mapping for optimizer {kind}")


def optimizer(kind: str, hp: dict, schedule, clip):
    """clip, then torch.optim's coupled L2 (add_decayed_weights before the rule), then the rule."""
    import optax
    chain = []
    if clip is not None:
        name, limit = clip
        if name == "norm_per_param":
            raise Unsupported("optax has no per-parameter norm clip (`clip: {norm_per_param}`)")
        chain.append(optax.clip_by_global_norm(limit) if name == "norm" else optax.clip(limit))
    if kind != "adamw" and hp.get("weight_decay"):
        chain.append(optax.add_decayed_weights(hp["weight_decay"]))
    chain.append(_core(optax, kind, hp, learning_rate(optax, hp, schedule, kind)))
    return chain[0] if len(chain) == 1 else optax.chain(*chain)


# f(Optimizer, schedule, clip) -> an optax GradientTransformation
OPTIMIZERS = {name: (lambda opt, schedule, clip, name=name: optimizer(name, opt.hp, schedule, clip))
              for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam")}
