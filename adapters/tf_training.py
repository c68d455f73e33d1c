"""TensorFlow / Keras 3: Keras' own losses (keras.losses) and optimizers (keras.optimizers, with their
learning-rate schedules and clipnorm / global_clipnorm / clipvalue), configured to a case's numbers; one
function per entry, keyed by its name. What Keras cannot be configured to is `Unsupported`, naming the
setting; where it computes differently, that is a catalogued divergence (docs/divergences.md).

Keras' losses average over the last axis per sample; the elementwise losses here get one element per row
(`(-1, 1)`), so that `mean` and `sum` are over every element, as PyTorch's are. Keras has no NLL loss: it is
−Σ w[t]·y[t] gathered with tf ops, over Σ w[t] for the mean.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import Unsupported


def _tf():
    import tensorflow as tf
    return tf


def _keras():
    import keras
    return keras


def _rows(y, t):
    return _tf().reshape(t, (-1, 1)), _tf().reshape(y, (-1, 1))


def _reduce(per, o):
    return _tf().reduce_sum(per) if o["reduction"] == "sum" else _tf().reduce_mean(per)


def _smooth_l1(y, t, o):
    keras = _keras()
    tr, yr = _rows(y, t)
    if o["beta"] == 0:  # PyTorch's beta 0 is l1, and Keras' huber with delta 0 is 0 everywhere
        return _reduce(keras.losses.mean_absolute_error(tr, yr), o)
    return _reduce(keras.losses.huber(tr, yr, delta=o["beta"]), o) / o["beta"]  # smooth_l1 = huber_β / β


def _bce_with_logits(y, t, o):
    tf, keras = _tf(), _keras()
    if o.get("pos_weight") is None:
        return _reduce(keras.losses.binary_crossentropy(*_rows(y, t), from_logits=True), o)
    # Keras' binary cross-entropy has no pos_weight; TensorFlow's weighted one is PyTorch's definition
    pw = tf.cast(np.broadcast_to(np.asarray(o["pos_weight"], dtype=np.float64), y.shape[-1:]), y.dtype)
    return _reduce(tf.nn.weighted_cross_entropy_with_logits(labels=t, logits=y, pos_weight=pw), o)


def _nll(y, t, o):
    tf = _tf()
    picked = tf.gather(y, t, axis=1, batch_dims=1)  # y[n, t_n]
    if o.get("weight") is None:
        return -_reduce(picked, o)
    w = tf.gather(tf.cast(o["weight"], y.dtype), t)
    total = -tf.reduce_sum(w * picked)
    return total if o["reduction"] == "sum" else total / tf.reduce_sum(w)


def _cross_entropy(y, t, o):
    tf, keras = _tf(), _keras()
    if o.get("weight") is None and not o["label_smoothing"]:
        return _reduce(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y), o)
    # A class weight is Keras' per-sample weight w[t_n] (Keras has class weights only in fit()); its
    # weighted mean divides by Σ w[t_n], as PyTorch's does. With label smoothing too, Keras weights each
    # sample's whole smoothed loss by w[t_n], PyTorch each class's term by w_c: CE-WEIGHT-SMOOTHING.
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=o["label_smoothing"], dtype=y.dtype.name,
        reduction="sum" if o["reduction"] == "sum" else "mean_with_sample_weight")
    weight = None if o.get("weight") is None else tf.gather(tf.cast(o["weight"], y.dtype), t)
    return loss(tf.one_hot(t, y.shape[1], dtype=y.dtype), y, sample_weight=weight)


# f(y, target, options) -> loss; options: the case's loss options with `reduction`
LOSSES = {
    "mse": lambda y, t, o: _reduce(_tf().square(y - t), o),
    "l1": lambda y, t, o: _reduce(_keras().losses.mean_absolute_error(*_rows(y, t)), o),
    "smooth_l1": _smooth_l1,
    "huber": lambda y, t, o: _reduce(_keras().losses.huber(*_rows(y, t), delta=o["delta"]), o),
    "bce": lambda y, t, o: _reduce(_keras().losses.binary_crossentropy(*_rows(y, t)), o),
    "bce_with_logits": _bce_with_logits,
    "nll": _nll,
    "cross_entropy": _cross_entropy,
    "half_sse": lambda y, t, o: 0.5 * _tf().reduce_sum(_tf().square(t - y)),
    "sum": lambda y, t, o: _tf().reduce_sum(y),
    "grad_output": lambda y, t, o: _tf().reduce_sum(y * t),
}
CLASS_TARGETS = ("nll", "cross_entropy")


def loss(kind: str, options: dict, y, t):
    return LOSSES[kind](y, t, options)


@contextlib.contextmanager
def floatx(dtype: str):
    """Keras keeps its learning rate, schedule values and hyperparameter casts in floatx: a float64 model runs
    with floatx float64, as a Keras user would (else the float32 lr shifts every float64 update: TF-LR32)."""
    import keras
    previous = keras.config.floatx()
    keras.config.set_floatx("float64" if dtype == "float64" else "float32")
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def _learning_rate(keras, hp, schedule, kind, dtype):
    """A float, or a keras LearningRateSchedule evaluated at `iterations` (0 at the first step). A schedule
    makes its tensors from its numbers' own type, float32 for a Python float whatever floatx is: a float64
    case gives it float64 numbers, as a float64 Keras user does (else TF-LR32 again, through the schedule)."""
    num = np.float64 if dtype == "float64" else float
    lr, s = num(hp["lr"]), keras.optimizers.schedules
    decay = hp.get("lr_decay", 0.0) if kind == "adagrad" else 0.0
    if decay and schedule is not None:
        raise Unsupported("Keras cannot combine adagrad's `lr_decay` with a `schedule`")
    if decay:  # torch's lr / (1 + (t − 1)·lr_decay) is Keras' inverse time decay
        return s.InverseTimeDecay(lr, decay_steps=1, decay_rate=num(decay))
    if schedule is None:
        return hp["lr"]
    name, o = schedule
    if name == "step":
        return s.ExponentialDecay(lr, decay_steps=o["step_size"], decay_rate=num(o["gamma"]), staircase=True)
    if name == "exponential":
        return s.ExponentialDecay(lr, decay_steps=1, decay_rate=num(o["gamma"]))
    # Keras' cosine decay holds at its floor past decay_steps, PyTorch's rises again: COSINE-CLAMP
    return s.CosineDecay(lr, decay_steps=o["t_max"], alpha=num(o["eta_min"]) / lr if lr else num(0.0))


def _clip_args(clip) -> dict:
    if clip is None:
        return {}
    kind, limit = clip
    return {"norm": {"global_clipnorm": limit}, "norm_per_param": {"clipnorm": limit},
            "value": {"clipvalue": limit}}[kind]


def _betas(h) -> dict:
    return dict(beta_1=h["betas"][0], beta_2=h["betas"][1])


def _wd(h):
    return h["weight_decay"] or None  # Keras' weight_decay is decoupled: torch.optim's is L2 but in AdamW (TF-WD)


def _sgd(h, common):
    if h["dampening"]:
        raise Unsupported("Keras' SGD has no `dampening`")
    return _keras().optimizers.SGD(momentum=h["momentum"], nesterov=h["nesterov"], weight_decay=_wd(h), **common)


# f(hyperparameters (Optimizer.hp), common keyword arguments: learning_rate and clipping) -> a Keras optimizer
OPTIMIZERS = {
    "sgd": _sgd,
    "adam": lambda h, common: _keras().optimizers.Adam(epsilon=h["eps"], amsgrad=h["amsgrad"], weight_decay=_wd(h),
                                                       **_betas(h), **common),
    "adamw": lambda h, common: _keras().optimizers.AdamW(epsilon=h["eps"], amsgrad=h["amsgrad"],
                                                         weight_decay=h["weight_decay"], **_betas(h), **common),
    "rmsprop": lambda h, common: _keras().optimizers.RMSprop(rho=h["alpha"], momentum=h["momentum"], epsilon=h["eps"],
                                                             centered=h["centered"], weight_decay=_wd(h), **common),
    "adagrad": lambda h, common: _keras().optimizers.Adagrad(initial_accumulator_value=h["initial_accumulator_value"],
                                                             epsilon=h["eps"], weight_decay=_wd(h), **common),
    "adamax": lambda h, common: _keras().optimizers.Adamax(epsilon=h["eps"], weight_decay=_wd(h), **_betas(h),
                                                           **common),
    "nadam": lambda h, common: _keras().optimizers.Nadam(epsilon=h["eps"], weight_decay=_wd(h), **_betas(h),
                                                         **common),
}


def optimizer(kind: str, hp: dict, schedule, clip, dtype: str):
    """The Keras optimizer for `kind`, its learning rate a schedule where the case has one, and its clipping."""
    if kind not in OPTIMIZERS:
        raise Unsupported(f"no Keras mapping for optimizer {kind}")
    with floatx(dtype):
        common = dict(learning_rate=_learning_rate(_keras(), hp, schedule, kind, dtype), **_clip_args(clip))
        return OPTIMIZERS[kind](hp, common)
