"""TensorFlow functions for issue 17's pooling, resizing and convolution options (merged into
tensorflow_adapter.LAYERS; 4-D activations NHWC, conv1d's 3-D ones NCL, as the adapter holds them).

TF lacks most of these; each is composed from exact primitives. Padding modes: tf.pad REFLECT (the edge cell
not repeated, as PyTorch's reflect), and concatenated slices for replicate (the edge cell repeated) and
circular (the opposite edge's cells). Pools: ceil_mode's clipped windows are extra padding (-inf for max),
an average divides by a window sum of ones; a dilated max-pool (TF cannot back-propagate one) is the first
maximum over its kh·kw strided tap slices. Adaptive pooling is window means of slices, one axis at a time.
Nearest upsampling repeats pixels; bilinear is TF's own ResizeBilinear op (align_corners and
half_pixel_centers are its flags) in float32, and in float64, where that op computes and returns float32,
the same weights as one interpolation matrix per axis.
"""
from __future__ import annotations

import numpy as np


def _tf():
    import tensorflow as tf
    return tf


def mode_pad(tf, x, pad, mode, axes=(1, 2)):
    """x extended by pad = ((before, after), ...) cells along `axes`, in `mode` (zeros, reflect, replicate,
    circular)."""
    for (before, after), axis in zip(pad, axes):
        if not (before or after):
            continue
        if mode == "zeros" or mode == "reflect":
            pads = [[0, 0]] * len(x.shape)
            pads[axis] = [before, after]
            x = tf.pad(x, pads, mode="CONSTANT" if mode == "zeros" else "REFLECT")
            continue
        n = x.shape[axis]
        take = lambda a, b: tf.gather(x, tf.range(a, b), axis=axis)  # noqa: E731
        if mode == "replicate":  # the edge cell repeated
            parts = [tf.repeat(take(0, 1), before, axis=axis), x, tf.repeat(take(n - 1, n), after, axis=axis)]
        else:  # circular: the opposite edge's cells
            parts = [take(n - before, n), x, take(0, after)]
        x = tf.concat([q for q in parts if q.shape[axis]], axis=axis)
    return x


def conv1d(L, xs, p, conv2d):
    tf, (x,), w = _tf(), xs, p["weight"]
    x4 = tf.transpose(x, (0, 2, 1))[:, None]  # NCL -> (N, 1, L, C)
    w4 = tf.transpose(w, (2, 1, 0))[None]  # OIL -> (1, K, I, O): HWIO
    y = conv2d(L.as_2d(), [x4], {**p, "weight": w4})
    return tf.transpose(y[:, 0], (0, 2, 1))  # back to NCL


def _grid(L):
    return [[0, 0], *map(list, L.window_padding), [0, 0]]


def max_pool2d(L, xs, p):
    tf, (x,) = _tf(), xs
    xp = tf.pad(x, _grid(L), constant_values=float("-inf"))
    if L.dilation == (1, 1):
        return tf.nn.max_pool2d(xp, L.kernel_size, L.stride, "VALID")
    return dilated_max_pool(tf, xp, L.kernel_size, L.stride, L.dilation, L.out_shape[2:])


def dilated_max_pool(tf, xp, k, s, d, out):
    """A dilated max-pool of the padded NHWC `xp` to `out` = (oh, ow), TF having no differentiable one: the
    first maximum over the kh·kw strided tap slices. The repro script (tf_script.py) runs this source."""
    (oh, ow) = out
    taps = tf.stack([xp[:, i * d[0]:i * d[0] + (oh - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (ow - 1) * s[1] + 1:s[1]]
                     for i in range(k[0]) for j in range(k[1])], axis=-1)
    top = tf.reduce_max(taps, axis=-1, keepdims=True)
    hit = tf.cast(taps == top, tf.int32)
    first = tf.logical_and(hit == 1, tf.cumsum(hit, axis=-1) == 1)  # the first maximum in row-major tap order
    return tf.reduce_sum(tf.where(first, taps, tf.zeros_like(taps)), axis=-1)


def avg_pool2d(L, xs, p):
    tf, (x,), k, s = _tf(), xs, L.kernel_size, L.stride
    mean = tf.nn.avg_pool2d(tf.pad(x, _grid(L)), k, s, "VALID")
    if L.count_include_pad and not L.clipped:
        return mean
    h, w = x.shape[1:3]
    if L.count_include_pad:  # ones over the padded input, none over ceil_mode's extra cells
        ones = tf.pad(tf.ones((1, *L.counted_hw, 1), x.dtype), [[0, 0], [0, L.beyond[0]], [0, L.beyond[1]], [0, 0]])
    else:
        ones = tf.pad(tf.ones((1, h, w, 1), x.dtype), _grid(L))
    return mean / tf.nn.avg_pool2d(ones, k, s, "VALID")  # = window sum / cells counted


def _bounds(n_in, n_out):
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]  # ⌊i·H/h⌋, ⌈(i+1)·H/h⌉


def adaptive_avg_pool2d(L, xs, p):
    return adaptive_avg_pool(_tf(), xs[0], L.output_size)


def adaptive_avg_pool(tf, x, output_size):
    """Window means of slices (PyTorch's windows, _bounds), one axis at a time; NHWC. The repro script
    (tf_script.py) runs this source."""
    for axis, out in ((1, output_size[0]), (2, output_size[1])):
        parts = [tf.reduce_mean(x[:, a:b] if axis == 1 else x[:, :, a:b], axis=axis)
                 for a, b in _bounds(x.shape[axis], out)]
        x = tf.stack(parts, axis=axis)
    return x


def _bilinear_matrix(n, s, corners):
    m, i = np.zeros((n * s, n)), np.arange(n * s)
    if corners:
        src = i * ((n - 1) / (n * s - 1)) if n * s > 1 else np.zeros(n * s)
    else:
        src = np.maximum((i + 0.5) / s - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n - 1)
    np.add.at(m, (i, lo), 1 - (src - lo))
    np.add.at(m, (i, np.minimum(lo + 1, n - 1)), src - lo)
    return m


def upsample(L, xs, p):
    tf, (x,), (sh, sw) = _tf(), xs, L.scale_factor
    if L.mode == "nearest":
        return tf.repeat(tf.repeat(x, sh, axis=1), sw, axis=2)
    return bilinear(tf, x, sh, sw, L.align_corners)


def bilinear(tf, x, sh, sw, align_corners):
    """Bilinear upsampling of NHWC `x` by (sh, sw); the repro script (tf_script.py) runs this source."""
    h, w = x.shape[1:3]
    if x.dtype == tf.float32:
        return tf.raw_ops.ResizeBilinear(images=x, size=[h * sh, w * sw], align_corners=align_corners,
                                         half_pixel_centers=not align_corners)
    mh, mw = (tf.constant(_bilinear_matrix(n, f, align_corners), x.dtype) for n, f in ((h, sh), (w, sw)))
    return tf.einsum("ih,nhwc,jw->nijc", mh, x, mw)


def global_avg_pool2d(L, xs, p):
    return _tf().reduce_mean(xs[0], axis=(1, 2))


LAYERS = {"max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d, "global_avg_pool2d": global_avg_pool2d,
          "adaptive_avg_pool2d": adaptive_avg_pool2d, "upsample": upsample}
