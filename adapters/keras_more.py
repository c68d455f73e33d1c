"""Keras 3: SPEC §1.9's activations, normalisations, resizing and conv1d as Keras layers, f(L, xs, p) -> y
(merged into adapters/keras_layers.LAYERS; 4-D activations channels_last, conv1d's 3-D ones NCL, as the
worker holds them).

Each is the Keras layer a Keras user writes: LeakyReLU, ELU, Softmax, Dropout (evaluation: the identity),
BatchNormalization, LayerNormalization, GroupNormalization, UpSampling2D, GlobalAveragePooling2D,
AdaptiveAveragePooling2D, Conv1D / DepthwiseConv1D (on NLC, between two transposes), or keras.activations
(gelu, silu, log_softmax). Where Keras lacks the option, a keras.ops composition that is exactly PyTorch's:
softplus' beta and threshold (Keras' softplus has neither), conv1d's padding modes (keras.ops.pad's
reflect is PyTorch's; replicate and circular are concatenated slices). Where no faithful one exists, unsupported:
bilinear upsampling with align_corners (neither UpSampling2D nor keras.ops.image.resize has it).

BatchNormalization takes momentum = 1 − the case's (Keras' weighs the old value) and moves its moving
variance toward the *biased* batch variance (TF-BN-BIASED-VAR, docs/divergences.md): its moving statistics
come back from `stateless_call` as the case's state.
"""
from __future__ import annotations

from gradconf.fields import same_padding

from . import Unsupported
from .keras_base import _BUILT, _eager, _keras, _strided_and_dilated, L_dtype, apply, built, is_depthwise
from .tf_layout import nhwc_axis


def _axis(L) -> int:
    """The canonical `dim` as an axis of the tensor the worker holds (4-D: NHWC; otherwise canonical)."""
    return nhwc_axis(L.dim, len(L.in_shape))


def _weights(p) -> list:
    return [p[k] for k in ("weight", "bias") if k in p]


def _layer(cls, **kw):
    return cls(dtype=L_dtype(), **kw)


def softplus(L, xs, p):
    # PyTorch's softplus: x where β·x > threshold, else softplus(β·x)/β (Python floats: weak, the tensor's dtype)
    keras, x = _keras(), xs[0]
    z = x * L.beta
    return keras.ops.where(z > L.threshold, x, keras.activations.softplus(z) / L.beta)


def batch_norm2d(L, xs, p):
    keras = _keras()
    (layer,) = built(L, lambda: [_layer(keras.layers.BatchNormalization, axis=-1, momentum=1.0 - L.momentum,
                                        epsilon=L.eps, center=L.affine, scale=L.affine)])
    y, (mean, var) = layer.stateless_call(_weights(p), [p["running_mean"], p["running_var"]], xs[0],
                                          training=L.training)
    p["running_mean"], p["running_var"] = mean, var  # unchanged in evaluation mode
    return y


def layer_norm(L, xs, p):
    keras, axes = _keras(), list(range(1, len(L.in_shape)))  # NHWC: weight and bias (H, W, C), the worker's layout
    layers = built(L, lambda: [_layer(keras.layers.LayerNormalization, axis=axes, epsilon=L.eps, center=L.affine,
                                      scale=L.affine)])
    return apply(layers, xs[0], _weights(p))


def group_norm(L, xs, p):
    keras = _keras()
    axis = 1 if len(L.in_shape) == 3 else -1  # conv1d's activations stay NCL here; 4-D ones are channels_last
    layers = built(L, lambda: [_layer(keras.layers.GroupNormalization, groups=L.num_groups, axis=axis, epsilon=L.eps,
                                      center=L.affine, scale=L.affine)])
    return apply(layers, xs[0], _weights(p))


def upsample(L, xs, p):
    if L.mode == "bilinear" and L.align_corners:
        raise Unsupported(f"Keras' UpSampling2D and keras.ops.image.resize have no align_corners ({L.name})")
    return _layer(_keras().layers.UpSampling2D, size=tuple(L.scale_factor), interpolation=L.mode)(xs[0])


def adaptive_avg_pool2d(L, xs, p):
    return _layer(_keras().layers.AdaptiveAveragePooling2D, output_size=tuple(L.output_size))(xs[0])


def _mode_pad(keras, x, pad: tuple, mode: str):
    """NLC x extended along L by pad = (before, after) in PyTorch's `mode`: keras.ops.pad's reflect is
    PyTorch's; its edge and wrap are missing on the tensorflow and torch backends, so replicate (the edge cell
    repeated) and circular (the opposite edge's cells) are concatenated slices."""
    (before, after), n = pad, x.shape[1]
    if mode == "reflect":
        return keras.ops.pad(x, ((0, 0), pad, (0, 0)), mode="reflect")
    if mode == "replicate":
        parts = [keras.ops.repeat(x[:, :1], before, axis=1), x, keras.ops.repeat(x[:, n - 1:], after, axis=1)]
    else:
        parts = [x[:, n - before:], x, x[:, :after]]
    return keras.ops.concatenate([q for q in parts if q.shape[1]], axis=1)


def _built_nlc(L, make, length: int) -> list:
    """conv1d's Keras layers, built once on an NLC input of `length` (keras_layers.built builds on NCL for 3-D)."""
    layers = _BUILT.get(L.name)
    if layers is None:
        with _eager():
            layers = make()
            shape = (L.in_shape[0], length, L.in_shape[1])
            for layer in layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        _BUILT[L.name] = layers
    return layers


def conv1d(L, xs, p):
    keras, (x,) = _keras(), xs
    depthwise = is_depthwise(L)
    _strided_and_dilated(L, "DepthwiseConv1D" if depthwise else "Conv1D")
    k, s, d, pad, length = L.kernel_size[1], L.stride[1], L.dilation[1], tuple(L.padding[1]), L.in_shape[2]
    mode = L.padding_mode if pad != (0, 0) else "zeros"
    same = mode == "zeros" and pad == tuple(same_padding(length, k, s, d))
    x = keras.ops.transpose(x, (0, 2, 1))  # NCL -> NLC, Keras' channels_last
    if mode != "zeros":
        x = _mode_pad(keras, x, pad, mode)

    def make():
        zero_pad = mode == "zeros" and pad != (0, 0) and not same
        pre = [_layer(keras.layers.ZeroPadding1D, padding=pad)] if zero_pad else []
        common = dict(kernel_size=k, strides=s, padding="same" if same else "valid", dilation_rate=d,
                      use_bias="bias" in p)
        if depthwise:  # kernel (k, in, out/in): adapters/keras_worker.py converts it
            return pre + [_layer(keras.layers.DepthwiseConv1D, depth_multiplier=L.out_channels // L.groups, **common)]
        return pre + [_layer(keras.layers.Conv1D, filters=L.out_channels, groups=L.groups, **common)]
    layers = _built_nlc(L, make, length if mode == "zeros" else length + sum(pad))  # a mode pad comes before
    y = apply(layers, x, _weights(p))
    return keras.ops.transpose(y, (0, 2, 1))


LAYERS = {
    "leaky_relu": lambda L, xs, p: _layer(_keras().layers.LeakyReLU, negative_slope=L.negative_slope)(xs[0]),
    "elu": lambda L, xs, p: _layer(_keras().layers.ELU, alpha=L.alpha)(xs[0]),
    "gelu": lambda L, xs, p: _keras().activations.gelu(xs[0], approximate=L.approximate == "tanh"),
    "silu": lambda L, xs, p: _keras().activations.silu(xs[0]),
    "softplus": softplus,
    "softmax": lambda L, xs, p: _layer(_keras().layers.Softmax, axis=_axis(L))(xs[0]),
    "log_softmax": lambda L, xs, p: _keras().activations.log_softmax(xs[0], axis=_axis(L)),
    "dropout": lambda L, xs, p: _layer(_keras().layers.Dropout, rate=L.p)(xs[0], training=False),
    "batch_norm2d": batch_norm2d, "layer_norm": layer_norm, "group_norm": group_norm,
    "upsample": upsample,
    "global_avg_pool2d": lambda L, xs, p: _layer(_keras().layers.GlobalAveragePooling2D)(xs[0]),
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "conv1d": conv1d,
}
