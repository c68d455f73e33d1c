"""TensorFlow's normalisation layers, f(L, xs, p) -> y on NHWC activations (merged into the TensorFlow
adapter's LAYERS).

batch_norm2d is Keras 3's `BatchNormalization.call` (keras/src/layers/normalization/batch_normalization.py)
written out with the ops it calls, so that the parameters stay the adapter's variables: half types are
computed in float32 (`compute_dtype = result_type(x.dtype, "float32")`), `ops.moments` gives the batch
statistics (the variance biased), and the moving statistics are `moving·momentum + batch·(1 − momentum)`
with Keras' momentum, 1 − the case's (PyTorch's). So Keras' moving variance takes the *biased* batch
variance where PyTorch's takes the unbiased one: a divergence, TF-BN-BIASED-VAR (docs/divergences.md),
left as Keras computes it. layer_norm and group_norm are composed from tf.nn.moments and
tf.nn.batch_normalization (Keras' GroupNormalization does the same: a reshape to groups and moments).
"""
from __future__ import annotations


def _compute(tf, x):
    """Keras' BatchNormalization upcasts half types to float32 for its arithmetic."""
    return tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype


def batch_norm2d(L, xs, p):
    import keras
    import tensorflow as tf
    (x,), dtype = xs, xs[0].dtype
    ct = _compute(tf, x)
    x = tf.cast(x, ct)
    gamma, beta = (tf.cast(p[k], ct) if k in p else None for k in ("weight", "bias"))
    moving_mean, moving_var = tf.cast(p["running_mean"], ct), tf.cast(p["running_var"], ct)
    if L.training:
        mean, variance = keras.ops.moments(x, axes=[0, 1, 2])  # NHWC: every axis but the channels
        momentum = 1.0 - L.momentum  # Keras' momentum is the weight of the old value
        # Keras: moving_mean.assign(moving_mean * momentum + mean * (1 - momentum)), likewise the (biased) variance
        p["running_mean"] = tf.cast(moving_mean * momentum + tf.stop_gradient(mean) * (1.0 - momentum), dtype)
        p["running_var"] = tf.cast(moving_var * momentum + tf.stop_gradient(variance) * (1.0 - momentum), dtype)
    else:
        mean, variance = moving_mean, moving_var
    y = keras.ops.batch_normalization(x, mean, variance, axis=-1, offset=beta, scale=gamma, epsilon=L.eps)
    return tf.cast(y, dtype)


def layer_norm(L, xs, p):
    import tensorflow as tf
    (x,) = xs
    mean, variance = tf.nn.moments(x, axes=list(range(1, len(x.shape))), keepdims=True)
    # weight and bias are laid out as the activation is (NHWC: (H, W, C)), broadcast over the batch
    return tf.nn.batch_normalization(x, mean, variance, p.get("bias"), p.get("weight"), L.eps)


def group_norm(L, xs, p):
    import tensorflow as tf
    (x,) = xs
    if len(x.shape) == 3:  # conv1d's NCL stays canonical in this adapter (tf_layout.nhwc_axis): channels to last
        return tf.transpose(_group_norm_last(tf, L, tf.transpose(x, (0, 2, 1)), p), (0, 2, 1))
    return _group_norm_last(tf, L, x, p)


def _group_norm_last(tf, L, x, p):
    """Group norm of an activation whose channels are its last axis (NHWC, (N, C), or NCL transposed)."""
    g, shape = L.num_groups, tf.shape(x)
    c = x.shape[-1]
    grouped = tf.reshape(x, tf.concat([shape[:-1], [g, c // g]], axis=0))  # (N, ..., G, C/G): channels last
    axes = [i for i in range(1, len(grouped.shape)) if i != len(grouped.shape) - 2]
    mean, variance = tf.nn.moments(grouped, axes=axes, keepdims=True)
    y = tf.reshape(tf.nn.batch_normalization(grouped, mean, variance, None, None, L.eps), shape)
    if "weight" in p:
        y = y * p["weight"] + p["bias"]  # per channel: the last axis
    return y


LAYERS = {"batch_norm2d": batch_norm2d, "layer_norm": layer_norm, "group_norm": group_norm}
