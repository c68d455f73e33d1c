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


def _rows(tf, y, t):
    return tf.reshape(t, (-1, 1)), tf.reshape(y, (-1, 1))


def _reduce(tf, per, o):
    return tf.reduce_sum(per) if o["reduction"] == "sum" else tf.reduce_mean(per)


def _smooth_l1(tf, keras, y, t, o):
    tr, yr = _rows(tf, y, t)
    if o["beta"] == 0:  # PyTorch's beta 0 is l1, and Keras' huber with delta 0 is 0 everywhere
        return _reduce(tf, keras.losses.mean_absolute_error(tr, yr), o)
    return _reduce(tf, keras.losses.huber(tr, yr, delta=o["beta"]), o) / o["beta"]  # smooth_l1 = huber_β / β


def _bce_with_logits(tf, keras, y, t, o):
    if o.get("pos_weight") is None:
        return _reduce(tf, keras.losses.binary_crossentropy(*_rows(tf, y, t), from_logits=True), o)
    # Keras' binary cross-entropy has no pos_weight; TensorFlow's weighted one is PyTorch's definition
    pw = tf.cast(np.broadcast_to(np.asarray(o["pos_weight"], dtype=np.float64), y.shape[-1:]), y.dtype)
    return _reduce(tf, tf.nn.weighted_cross_entropy_with_logits(labels=t, logits=y, pos_weight=pw), o)


def _nll(tf, keras, y, t, o):
    picked = tf.gather(y, t, axis=1, batch_dims=1)  # y[n, t_n]
    if o.get("weight") is None:
        return -_reduce(tf, picked, o)
    w = tf.gather(tf.cast(o["weight"], y.dtype), t)
    total = -tf.reduce_sum(w * picked)
    return total if o["reduction"] == "sum" else total / tf.reduce_sum(w)


def _cross_entropy(tf, keras, y, t, o):
    if o.get("weight") is None and not o["label_smoothing"]:
        return _reduce(tf, tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y), o)
    # A class weight is Keras' per-sample weight w[t_n] (Keras has class weights only in fit()); its
    # weighted mean divides by Σ w[t_n], as PyTorch's does. With label smoothing too, Keras weights each
    # sample's whole smoothed loss by w[t_n], PyTorch each class's term by w_c: CE-WEIGHT-SMOOTHING.
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=o["label_smoothing"], dtype=y.dtype.name,
        reduction="sum" if o["reduction"] == "sum" else "mean_with_sample_weight")
    weight = None if o.get("weight") is None else tf.gather(tf.cast(o["weight"], y.dtype), t)
    return loss(tf.one_hot(t, y.shape[1], dtype=y.dtype), y, sample_weight=weight)


LOSSES = {
    "mse": lambda tf, keras, y, t, o: _reduce(tf, tf.square(y - t), o),
    "l1": lambda tf, keras, y, t, o: _reduce(tf, keras.losses.mean_absolute_error(*_rows(tf, y, t)), o),
    "smooth_l1": _smooth_l1,
    "huber": lambda tf, keras, y, t, o: _reduce(tf, keras.losses.huber(*_rows(tf, y, t), delta=o["delta"]), o),
    "bce": lambda tf, keras, y, t, o: _reduce(tf, keras.losses.binary_crossentropy(*_rows(tf, y, t)), o),
    "bce_with_logits": _bce_with_logits,
    "nll": _nll,
    "cross_entropy": _cross_entropy,
    "half_sse": lambda tf, keras, y, t, o: 0.5 * tf.reduce_sum(tf.square(t - y)),
    "sum": lambda tf, keras, y, t, o: tf.reduce_sum(y),
    "grad_output": lambda tf, keras, y, t, o: tf.reduce_sum(y * t),
}
CLASS_TARGETS = ("nll", "cross_entropy")


def loss(kind: str, options: dict, y, t):
    import keras
    import tensorflow as tf
    return LOSSES[kind](tf, keras, y, t, options)


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


def _learning_rate(keras, hp, schedule, kind):
    """A float, or a keras LearningRateSchedule evaluated at `iterations` (0 at the first step)."""
    lr, s = hp["lr"], keras.optimizers.schedules
    decay = hp.get("lr_decay", 0.0) if kind == "adagrad" else 0.0
    if decay and schedule is not None:
        raise Unsupported("Keras cannot combine adagrad's `lr_decay` with a `schedule`")
    if decay:  # torch's lr / (1 + (t − 1)·lr_decay) is Keras' inverse time decay
        return s.InverseTimeDecay(lr, decay_steps=1, decay_rate=decay)
    if schedule is None:
        return lr
    name, o = schedule
    if name == "step":
        return s.ExponentialDecay(lr, decay_steps=o["step_size"], decay_rate=o["gamma"], staircase=True)
    if name == "exponential":
        return s.ExponentialDecay(lr, decay_steps=1, decay_rate=o["gamma"])
    # Keras' cosine decay holds at its floor past decay_steps, PyTorch's rises again: COSINE-CLAMP
    return s.CosineDecay(lr, decay_steps=o["t_max"], alpha=o["eta_min"] / lr if lr else 0.0)


def _clip_args(clip) -> dict:
    if clip is None:
        return {}
    kind, limit = clip
    return {"norm": {"global_clipnorm": limit}, "norm_per_param": {"clipnorm": limit},
            "value": {"clipvalue": limit}}[kind]


def optimizer(kind: str, hp: dict, schedule, clip, dtype: str):
    import keras
    o = keras.optimizers
    if kind == "sgd" and hp.get("dampening"):
        raise Unsupported("Keras' SGD has no `dampening`")
    with floatx(dtype):
        common = dict(learning_rate=_learning_rate(keras, hp, schedule, kind), **_clip_args(clip))
        # Keras' weight_decay is decoupled everywhere; torch.optim's is L2 in the gradient but in AdamW: TF-WD
        wd = hp.get("weight_decay") or None
        betas = dict(beta_1=hp["betas"][0], beta_2=hp["betas"][1]) if "betas" in hp else {}
        if kind == "sgd":
            return o.SGD(momentum=hp["momentum"], nesterov=hp["nesterov"], weight_decay=wd, **common)
        if kind == "adam":
            return o.Adam(epsilon=hp["eps"], amsgrad=hp.get("amsgrad", False), weight_decay=wd, **betas, **common)
        if kind == "adamw":
            return o.AdamW(epsilon=hp["eps"], amsgrad=hp.get("amsgrad", False), weight_decay=hp["weight_decay"],
                           **betas, **common)
        if kind == "rmsprop":
            return o.RMSprop(rho=hp["alpha"], momentum=hp["momentum"], epsilon=hp["eps"], centered=hp["centered"],
                             weight_decay=wd, **common)
        if kind == "adagrad":
            return o.Adagrad(initial_accumulator_value=hp["initial_accumulator_value"], epsilon=hp["eps"],
                             weight_decay=wd, **common)
        if kind == "adamax":
            return o.Adamax(epsilon=hp["eps"], weight_decay=wd, **betas, **common)
        if kind == "nadam":
            return o.Nadam(epsilon=hp["eps"], weight_decay=wd, **betas, **common)
    raise Unsupported(f"no Keras mapping for optimizer {kind}")
