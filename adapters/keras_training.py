"""Keras 3, any backend: Keras' own losses (keras.losses) where they are the case's definition, else keras.ops
(backend-neutral), one function per entry; the optimizers are Keras', configured exactly as the tensorflow
row's (adapters/tf_training.py: learning-rate schedules, clipnorm / global_clipnorm / clipvalue, floatx).

As there, the elementwise losses get one element per row (`(-1, 1)`), so that `mean` and `sum` are over every
element as PyTorch's are; NLL (which Keras lacks) is −Σ w[t]·y[t] gathered with keras.ops.
"""
from __future__ import annotations

import numpy as np

from . import tf_training


def _keras():
    import keras
    return keras


def _ops():
    import keras
    return keras.ops


def _rows(y, t):
    return _ops().reshape(t, (-1, 1)), _ops().reshape(y, (-1, 1))


def _reduce(per, o):
    return _ops().sum(per) if o["reduction"] == "sum" else _ops().mean(per)


def _smooth_l1(y, t, o):
    keras = _keras()
    tr, yr = _rows(y, t)
    if o["beta"] == 0:  # PyTorch's beta 0 is l1, and Keras' huber with delta 0 is 0 everywhere
        return _reduce(keras.losses.mean_absolute_error(tr, yr), o)
    return _reduce(keras.losses.huber(tr, yr, delta=o["beta"]), o) / o["beta"]  # smooth_l1 = huber_β / β


def _bce_with_logits(y, t, o):
    keras, ops = _keras(), _ops()
    if o.get("pos_weight") is None:
        return _reduce(keras.losses.binary_crossentropy(*_rows(y, t), from_logits=True), o)
    # Keras' binary cross-entropy has no pos_weight: PyTorch's definition in keras.ops
    pw = ops.cast(np.broadcast_to(np.asarray(o["pos_weight"], dtype=np.float64), y.shape[-1:]), y.dtype)
    return _reduce(pw * t * ops.softplus(-y) + (1 - t) * ops.softplus(y), o)


def _class_weight(o, t, dtype):
    ops = _ops()
    return None if o.get("weight") is None else ops.take(ops.cast(np.asarray(o["weight"]), dtype), t)


def _nll(y, t, o):
    ops = _ops()
    picked = ops.take_along_axis(y, ops.expand_dims(t, 1), axis=1)[:, 0]  # y[n, t_n]
    w = _class_weight(o, t, y.dtype)
    if w is None:
        return -_reduce(picked, o)
    total = -ops.sum(w * picked)
    return total if o["reduction"] == "sum" else total / ops.sum(w)


def _cross_entropy(y, t, o):
    keras, ops = _keras(), _ops()
    if o.get("weight") is None and not o["label_smoothing"]:
        return _reduce(keras.losses.sparse_categorical_crossentropy(t, y, from_logits=True), o)
    # As the tensorflow row: a class weight is Keras' per-sample weight w[t_n]; with label smoothing Keras
    # weights each sample's whole smoothed loss by w[t_n], PyTorch each class's term by w_c: CE-WEIGHT-SMOOTHING.
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=o["label_smoothing"], dtype=keras.backend.standardize_dtype(y.dtype),
        reduction="sum" if o["reduction"] == "sum" else "mean_with_sample_weight")
    return loss(ops.one_hot(t, y.shape[1], dtype=y.dtype), y, sample_weight=_class_weight(o, t, y.dtype))


# f(y, target, options) -> loss; options: the case's loss options with `reduction`
LOSSES = {
    "mse": lambda y, t, o: _reduce(_keras().losses.mean_squared_error(*_rows(y, t)), o),
    "l1": lambda y, t, o: _reduce(_keras().losses.mean_absolute_error(*_rows(y, t)), o),
    "smooth_l1": _smooth_l1,
    "huber": lambda y, t, o: _reduce(_keras().losses.huber(*_rows(y, t), delta=o["delta"]), o),
    "bce": lambda y, t, o: _reduce(_keras().losses.binary_crossentropy(*_rows(y, t)), o),
    "bce_with_logits": _bce_with_logits,
    "nll": _nll,
    "cross_entropy": _cross_entropy,
    "half_sse": lambda y, t, o: 0.5 * _ops().sum(_ops().square(t - y)),
    "sum": lambda y, t, o: _ops().sum(y),
    "grad_output": lambda y, t, o: _ops().sum(y * t),
}
CLASS_TARGETS = ("nll", "cross_entropy")

# Keras' optimizers, the same constructors as the tensorflow row's
OPTIMIZERS, optimizer, floatx = tf_training.OPTIMIZERS, tf_training.optimizer, tf_training.floatx
