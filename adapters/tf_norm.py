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


def batch_norm(tf, keras, x, gamma, beta, moving_mean, moving_var, training, momentum, eps):
    """(y, moving mean, moving variance after the call): Keras' BatchNormalization.call. `momentum`: the
    case's (PyTorch's). The repro script (tf_script.py) runs this function's own source."""
    dtype = x.dtype
    ct = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype  # Keras upcasts half types to float32
    x = tf.cast(x, ct)
    gamma, beta = (None if v is None else tf.cast(v, ct) for v in (gamma, beta))
    moving_mean, moving_var = tf.cast(moving_mean, ct), tf.cast(moving_var, ct)
    new_mean, new_var = moving_mean, moving_var
    if training:
        mean, variance = keras.ops.moments(x, axes=[0, 1, 2])  # NHWC: every axis but the channels
        keep = 1.0 - momentum  # Keras' momentum is the weight of the old value
        # Keras: moving_mean.assign(moving_mean * momentum + mean * (1 - momentum)), likewise the (biased) variance
        new_mean = moving_mean * keep + tf.stop_gradient(mean) * (1.0 - keep)
        new_var = moving_var * keep + tf.stop_gradient(variance) * (1.0 - keep)
    else:
        mean, variance = moving_mean, moving_var
    y = keras.ops.batch_normalization(x, mean, variance, axis=-1, offset=beta, scale=gamma, epsilon=eps)
    return tf.cast(y, dtype), tf.cast(new_mean, dtype), tf.cast(new_var, dtype)


def batch_norm2d(L, xs, p):
    import keras
    import tensorflow as tf
    y, p["running_mean"], p["running_var"] = batch_norm(tf, keras, xs[0], p.get("weight"), p.get("bias"),
                                                        p["running_mean"], p["running_var"], L.training,
                                                        L.momentum, L.eps)
    return y


def layer_norm(L, xs, p):
    import tensorflow as tf
    (x,) = xs
    mean, variance = tf.nn.moments(x, axes=list(range(1, len(x.shape))), keepdims=True)
    # weight and bias are laid out as the activation is (NHWC: (H, W, C)), broadcast over the batch
    return tf.nn.batch_normalization(x, mean, variance, p.get("bias"), p.get("weight"), L.eps)


def group_norm(tf, x, g, gamma, beta, eps):
    """Channels last; the repro script (tf_script.py) runs this function's own source."""
    shape = tf.shape(x)
    c = x.shape[-1]
    grouped = tf.reshape(x, tf.concat([shape[:-1], [g, c // g]], axis=0))  # (N, ..., G, C/G): channels last
    axes = [i for i in range(1, len(grouped.shape)) if i != len(grouped.shape) - 2]
    mean, variance = tf.nn.moments(grouped, axes=axes, keepdims=True)
    y = tf.reshape(tf.nn.batch_normalization(grouped, mean, variance, None, None, eps), shape)
    if gamma is not None:
        y = y * gamma + beta  # per channel: the last axis
    return y


def _group_norm_layer(L, xs, p):
    tf, (x,) = _tf(), xs
    args = (L.num_groups, p.get("weight"), p.get("bias"), L.eps)
    if len(x.shape) == 3:  # conv1d's NCL stays canonical in this adapter (tf_layout.nhwc_axis): channels to last
        return tf.transpose(group_norm(tf, tf.transpose(x, (0, 2, 1)), *args), (0, 2, 1))
    return group_norm(tf, x, *args)


LAYERS = {"batch_norm2d": batch_norm2d, "layer_norm": layer_norm, "group_norm": _group_norm_layer}


def _tf():
    import tensorflow as tf
    return tf
