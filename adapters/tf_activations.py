"""TensorFlow's activations (SPEC §1.9), merged into tensorflow_adapter.LAYERS. Traps avoided: tf.nn.leaky_relu's
`alpha` defaults to 0.2 (passed explicitly); tf.nn.gelu's `approximate` is passed explicitly (keras.ops.gelu's
default is the tanh form); TF's softplus has no threshold, so PyTorch's linear region is composed around it;
tf.nn.elu has no alpha, composed as Keras does (alpha·elu(x) where x ≤ 0); a 4-D activation is held NHWC here,
so softmax over canonical dim 1 (channels) is TF's last axis."""
from __future__ import annotations

from .tf_layout import nhwc_axis


def _tf():
    import tensorflow as tf
    return tf


def axis(L) -> int:
    """The canonical `dim` as an axis of the tensor this adapter holds (4-D: NHWC; otherwise canonical)."""
    return nhwc_axis(L.dim, len(L.in_shape))


def elu(L, xs, p):
    tf, x = _tf(), xs[0]
    y = tf.nn.elu(x)
    return y if L.alpha == 1.0 else tf.where(x > 0, y, tf.constant(L.alpha, x.dtype) * y)  # Keras' elu(x, alpha)


def softplus(L, xs, p):
    # PyTorch's softplus: x where β·x > threshold, else softplus(β·x)/β
    tf, x = _tf(), xs[0]
    beta = tf.constant(L.beta, x.dtype)  # not tf.cast(L.beta, ...): that goes through float32 (TF-GELU-CONST32)
    z = x * beta
    return tf.where(z > tf.constant(L.threshold, x.dtype), x, tf.nn.softplus(z) / beta)


def dropout(L, xs, p):
    import keras
    x = xs[0]  # Keras' own layer in evaluation mode (the identity), in the tensor's dtype (no autocast)
    return keras.layers.Dropout(L.p, dtype=x.dtype.name)(x, training=False)


LAYERS = {
    "leaky_relu": lambda L, xs, p: _tf().nn.leaky_relu(xs[0], alpha=L.negative_slope),
    "elu": elu,
    "gelu": lambda L, xs, p: _tf().nn.gelu(xs[0], approximate=L.approximate == "tanh"),
    "silu": lambda L, xs, p: _tf().nn.silu(xs[0]),
    "softplus": softplus,
    "softmax": lambda L, xs, p: _tf().nn.softmax(xs[0], axis=axis(L)),
    "log_softmax": lambda L, xs, p: _tf().nn.log_softmax(xs[0], axis=axis(L)),
    "dropout": dropout,
}


def _elu_text(L) -> str:
    return "tf.nn.elu(y)" if L.alpha == 1.0 else f"tf.where(y > 0, tf.nn.elu(y), tf.constant({L.alpha!r}, y.dtype) * tf.nn.elu(y))"


def _softplus_text(L) -> str:
    beta = f"tf.constant({L.beta!r}, y.dtype)"
    return f"tf.where(y * {beta} > tf.constant({L.threshold!r}, y.dtype), y, tf.nn.softplus(y * {beta}) / {beta})"


# The same calls as source text, for `gradconf repro` (adapters/tf_script.py): f(L, weight, bias) -> expression of y.
SCRIPTS = {
    "leaky_relu": lambda L, w, b: f"tf.nn.leaky_relu(y, alpha={L.negative_slope!r})",
    "elu": lambda L, w, b: _elu_text(L),
    "gelu": lambda L, w, b: f"tf.nn.gelu(y, approximate={L.approximate == 'tanh'})",
    "silu": lambda L, w, b: "tf.nn.silu(y)",
    "softplus": lambda L, w, b: _softplus_text(L),
    "softmax": lambda L, w, b: f"tf.nn.softmax(y, axis={axis(L)})",
    "log_softmax": lambda L, w, b: f"tf.nn.log_softmax(y, axis={axis(L)})",
    "dropout": lambda L, w, b: f"keras.layers.Dropout({L.p!r}, dtype=y.dtype.name)(y, training=False)",
}
