"""Parameter layouts between the canonical ones (OIHW, IOHW, dense (out, in)) and TensorFlow's (HWIO, Keras'
(in, out)): the TensorFlow adapter and its repro script writer (tf_script.py) share them, and the two
compositions TF's CPU kernels need (a dilated kernel, one convolution per group)."""
from __future__ import annotations

import numpy as np

from gradconf.case import Case

_WEIGHT_LAYOUT = {"conv2d": "conv", "conv_transpose2d": "conv_t", "dense": "dense"}  # others: canonical


def _kinds(case: Case) -> dict[str, str]:
    """Parameter name -> how its layout converts (conv, conv_t, dense, chw, bias: as it is)."""
    def kind(L, name):
        if L.type == "layer_norm" and len(L.in_shape) == 4:
            return "chw"  # a layer norm's weight and bias are shaped like the activation: (C, H, W) -> (H, W, C)
        return "bias" if name.endswith(".bias") else _WEIGHT_LAYOUT.get(L.type, "bias")
    return {p.name: kind(L, p.name) for L in case.layers for p in L.params}


# OIHW->HWIO, IOHW->HW,O/g,I ; (o,i)->(i,o) ; CHW->HWC
_TO_TF = {"conv": (2, 3, 1, 0), "conv_t": (2, 3, 1, 0), "dense": (1, 0), "chw": (1, 2, 0)}
_FROM_TF = {"conv": (3, 2, 0, 1), "conv_t": (3, 2, 0, 1), "dense": (1, 0), "chw": (2, 0, 1)}


def to_tf_layout(kind: str, a: np.ndarray) -> np.ndarray:
    return a if kind == "bias" else np.transpose(a, _TO_TF[kind])


def from_tf_layout(kind: str, a: np.ndarray) -> np.ndarray:
    return a if kind == "bias" else np.transpose(a, _FROM_TF[kind])


def nhwc_axis(dim: int, ndim: int) -> int:
    """A canonical (NCHW) axis of a `ndim`-D activation, in TensorFlow's NHWC: channels last."""
    return (0, 3, 1, 2)[dim] if ndim == 4 else dim


def _dilate(tf, w, d):
    """Insert d-1 zeros between kernel taps: a dilation-1 kernel computing exactly the dilated
    conv. TF's CPU kernels cannot back-propagate dilation > 1; with this they need not."""
    if d == (1, 1):
        return w
    kh, kw, i, o = w.shape
    w = tf.pad(tf.reshape(w, (kh, 1, kw, 1, i, o)), [[0, 0], [0, d[0] - 1], [0, 0], [0, d[1] - 1], [0, 0], [0, 0]])
    return tf.reshape(w, (kh * d[0], kw * d[1], i, o))[:d[0] * (kh - 1) + 1, :d[1] * (kw - 1) + 1]


def _per_group(tf, g, x, w, op):
    """Grouped convolution as one convolution per group, concatenated (TF's CPU kernels cannot
    back-propagate grouped convolutions). Groups split x's channels and w's last axis."""
    if g == 1:
        return op(x, w)
    return tf.concat([op(xi, wi) for xi, wi in zip(tf.split(x, g, axis=3), tf.split(w, g, axis=3))], axis=3)
