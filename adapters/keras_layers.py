"""Keras 3: the case's layers as Keras layers (keras.layers), channels_last, on whichever backend Keras
was imported with; one function per vocabulary entry, keyed by its name (the `keras-*` frameworks,
adapters/keras_adapter.py).

Each case layer becomes the Keras layers a Keras user writes for it: Conv2D (DepthwiseConv2D where every
group is one input channel), Conv2DTranspose, MaxPooling2D, AveragePooling2D, Dense, Permute + Flatten
(Keras flattens channels_last; the canonical feature order is NCHW's), keras.activations. Padding a case
gives per side is Keras' `padding="same"` where it is exactly the padding Keras computes for "same",
`"valid"` where there is none, else ZeroPadding2D and `"valid"`; a conv's reflect / replicate / circular
padding is a gather of the mode's cells, then `"valid"`; a transposed conv is always `"valid"` with
output_padding given, then Cropping2D; max-pool padding is keras.ops.pad with −∞ (no Keras layer pads with
−∞), and an average pool that excludes padding Keras' "same" does not compute is a window mean over the
window mean of ones.
SPEC §1.9's activations, normalisations, resizing and conv1d are in adapters/keras_more.py, merged below.
Each Keras layer is built once per case on the layer's input shape, and called with
`layer.stateless_call(weights, [], x)`, so that the backend's autodiff differentiates the weights passed.
"""
from __future__ import annotations

from . import Unsupported
from .keras_base import (_BUILT, _DTYPE, ZERO, L_dtype, _eager, _keras, _strided_and_dilated, _weights,  # noqa: F401
                         apply, built, call, channels_last, is_depthwise, keras_same, padding_mode, reset)


def mode_pad(x, pad, mode: str):
    """x (NHWC) extended by pad = ((top, bottom), (left, right)) cells of `mode`, as torch's padding_mode:
    reflect mirrors about the edge cell (not repeated), replicate repeats it, circular wraps around. Keras'
    Conv2D pads with zeros only, and keras.ops.pad's modes differ by backend (on torch "symmetric" is
    replicate, and a 4-D NHWC reflect pad is refused), so each axis is one gather of its source cells."""
    import numpy as np
    for (before, after), axis in zip(pad, (1, 2)):
        if not (before or after):
            continue
        n = x.shape[axis]
        head, tail = {"reflect": (range(before, 0, -1), range(n - 2, n - 2 - after, -1)),
                      "replicate": ([0] * before, [n - 1] * after),
                      "circular": (range(n - before, n), range(after))}[mode]
        x = _keras().ops.take(x, np.array([*head, *range(n), *tail], dtype="int32"), axis=axis)
    return x


def conv2d(L, xs, p):
    keras = _keras()
    _strided_and_dilated(L, "DepthwiseConv2D" if is_depthwise(L) else "Conv2D")
    x = xs[0]
    if L.padding_mode != "zeros" and L.padding != ZERO:  # the mode's cells first, then a "valid" conv on them
        import dataclasses
        x = mode_pad(x, L.padding, L.padding_mode)
        h, w = (L.in_shape[2 + i] + sum(L.padding[i]) for i in range(2))
        L = dataclasses.replace(L, in_shape=(*L.in_shape[:2], h, w), padding=ZERO, padding_mode="zeros")
    mode = padding_mode(L)

    def make():
        pre = [keras.layers.ZeroPadding2D(L.padding, dtype=L_dtype())] if mode == "explicit" else []
        common = dict(kernel_size=L.kernel_size, strides=L.stride, padding="same" if mode == "same" else "valid",
                      dilation_rate=L.dilation, use_bias="bias" in p, dtype=L_dtype())
        if is_depthwise(L):  # kernel (kh, kw, in, out/in): adapters/keras_adapter.py converts it
            return pre + [keras.layers.DepthwiseConv2D(depth_multiplier=L.out_channels // L.groups, **common)]
        return pre + [keras.layers.Conv2D(L.out_channels, groups=L.groups, **common)]
    return apply(built(L, make), x, _weights(p))


def conv_transpose2d(L, xs, p):
    """Conv2DTranspose "valid" with output_padding given, then Cropping2D per side. Keras' "same" is not used:
    its split of the padding differs by backend (keras/src/backend/common/backend_utils.py); and "valid"
    without output_padding is (i − 1)·s + max(k, s) long, not PyTorch's (i − 1)·s + k where k < s."""
    keras = _keras()
    if L.groups > 1:
        raise Unsupported(f"Keras' Conv2DTranspose has no `groups` ({L.name}: groups {L.groups})")
    if any(op >= s for op, s in zip(L.output_padding, L.stride)):
        raise Unsupported(f"Keras' Conv2DTranspose wants output_padding < stride ({L.name}: output_padding "
                          f"{list(L.output_padding)}, stride {list(L.stride)})")
    _strided_and_dilated(L, "Conv2DTranspose")
    if max(L.dilation) > 1 and keras.backend.backend() == "tensorflow":
        raise Unsupported(f"Keras' Conv2DTranspose on TensorFlow cannot run dilation_rate > 1 on CPU (its "
                          f"Conv2DBackpropInput kernel: \"Current CPU implementations do not yet support dilation "
                          f"rates larger than 1\"; {L.name}: dilation {list(L.dilation)})")

    def make():
        conv = keras.layers.Conv2DTranspose(
            L.out_channels, L.kernel_size, strides=L.stride, padding="valid", output_padding=L.output_padding,
            dilation_rate=L.dilation, use_bias="bias" in p, dtype=L_dtype())
        return [conv] if L.padding == ZERO else [conv, keras.layers.Cropping2D(L.padding, dtype=L_dtype())]
    layers = built(L, make)
    y = call(layers[0], _weights(p), xs[0])
    return y if len(layers) == 1 else apply(layers[1:], y)


def _pool(L, kind: str, padding: str):
    keras = _keras()
    cls = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
    return cls(L.kernel_size, L.stride, padding=padding, dtype=L_dtype())


def _grid(L):
    """NHWC padding of every window: the layer's, plus ceil_mode's extra cells past the far padding."""
    return (0, 0), *L.window_padding, (0, 0)


def max_pool2d(L, xs, p):
    """Keras has no ceil_mode: its clipped windows are extra −∞ cells, then a "valid" pool (as padding is).
    Nor a dilation: then the first maximum over the kh·kw strided tap slices, as the tensorflow row does."""
    keras, mode, x = _keras(), padding_mode(L), xs[0]
    if mode == "explicit" or L.extra != (0, 0) or L.dilation != (1, 1):  # Keras pads with zeros only: −∞ here
        x = keras.ops.pad(x, _grid(L), constant_values=float("-inf"))
        mode = "valid"
    if L.dilation != (1, 1):
        return _first_maximum(keras.ops, x, L.kernel_size, L.stride, L.dilation, L.out_shape[2:])
    return _pool(L, "max", mode)(x)


def _first_maximum(ops, xp, k, s, d, out):
    """A dilated max-pool of the padded NHWC `xp`: each output the first maximum of its taps in row-major
    order (PyTorch's tie rule), the gradient routed to that tap alone (the mask is a comparison: no gradient)."""
    (oh, ow) = out
    taps = ops.stack([xp[:, i * d[0]:i * d[0] + (oh - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (ow - 1) * s[1] + 1:s[1]]
                      for i in range(k[0]) for j in range(k[1])], axis=-1)
    hit = ops.cast(ops.equal(taps, ops.max(taps, axis=-1, keepdims=True)), "int32")
    first = ops.logical_and(ops.equal(hit, 1), ops.equal(ops.cumsum(hit, axis=-1), 1))
    return ops.sum(ops.where(first, taps, ops.zeros_like(taps)), axis=-1)


def avg_pool2d(L, xs, p):
    """Keras' "same" average excludes the padding from each window's count; padding counted is zero padding
    + "valid"; padding excluded that "same" does not compute, and ceil_mode's clipped windows (never
    counted): the window mean over the window mean of the cells that count. (PyTorch's has no dilation.)"""
    keras, mode, x = _keras(), padding_mode(L), xs[0]
    if L.extra == (0, 0) and (mode == "valid" or (mode == "same" and not L.count_include_pad)):
        return _pool(L, "avg", mode)(x)
    layer = _pool(L, "avg", "valid")
    mean = layer(keras.ops.pad(x, _grid(L)))
    if L.count_include_pad and not L.clipped:
        return mean
    h, w = L.in_shape[2:]
    if L.count_include_pad:  # ones over the padded input, none over ceil_mode's extra cells
        ones = keras.ops.pad(keras.ops.ones((1, *L.counted_hw, 1), dtype=L_dtype()),
                             ((0, 0), (0, L.beyond[0]), (0, L.beyond[1]), (0, 0)))
    else:
        ones = keras.ops.pad(keras.ops.ones((1, h, w, 1), dtype=L_dtype()), _grid(L))
    return mean / layer(ones)  # = window sum / cells counted


def flatten(L, xs, p):
    keras = _keras()
    x = xs[0]
    if len(L.in_shape) == 4:  # back to channels first: canonical (PyTorch) row-major feature order
        x = keras.layers.Permute((3, 1, 2), dtype=L_dtype())(x)
    return keras.layers.Flatten(dtype=L_dtype())(x)


def dense(L, xs, p):
    keras = _keras()
    layers = built(L, lambda: [keras.layers.Dense(L.out_shape[-1], use_bias="bias" in p, dtype=L_dtype())])
    return apply(layers, xs[0], _weights(p))


def concat(L, xs, p):
    axis = (0, 3, 1, 2)[L.dim] if len(L.out_shape) == 4 else L.dim  # a canonical (NCHW) axis, channels_last
    return _keras().layers.Concatenate(axis=axis, dtype=L_dtype())(xs)


def embedding(L, xs, p):
    keras = _keras()  # Keras' table is (num_embeddings, embedding_dim), the canonical layout
    layers = built(L, lambda: [keras.layers.Embedding(L.num_embeddings, L.embedding_dim, dtype=L_dtype())])
    return apply(layers, xs[0], [p["weight"]])


from . import keras_more  # noqa: E402 (SPEC §1.9's layers; it builds on the helpers above)

# One function per vocabulary entry: f(L, xs, p) -> y, xs channels_last when 4-D. tests/test_keras_adapter.py
# plants bugs by swapping entries of this table.
LAYERS = {
    "conv2d": conv2d, "conv_transpose2d": conv_transpose2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "sigmoid": lambda L, xs, p: _keras().activations.sigmoid(xs[0]),
    "tanh": lambda L, xs, p: _keras().activations.tanh(xs[0]),
    "relu": lambda L, xs, p: _keras().activations.relu(xs[0]),
    "flatten": flatten,
    "sum": lambda L, xs, p: _keras().ops.sum(xs[0]),
    "dense": dense,
    "add": lambda L, xs, p: _keras().layers.Add(dtype=L_dtype())(xs),
    "concat": concat,
    "embedding": embedding,
    **keras_more.LAYERS,
}
