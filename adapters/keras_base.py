"""Keras 3: what the layer functions of adapters/keras_layers.py and keras_more.py share — the Keras module,
each case layer's Keras layers built once per case, their stateless call, the case's dtype, Keras' own "same"."""
from __future__ import annotations

from gradconf.case import Layer
from gradconf.fields import same_padding

from . import Unsupported

_BUILT: dict[str, list] = {}  # case layer name -> its Keras layers, for the case in flight (reset per run)
ZERO = ((0, 0), (0, 0))


def _keras():
    import keras
    return keras


def reset() -> None:
    _BUILT.clear()


def channels_last(shape) -> tuple:
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else tuple(shape)


def built(L: Layer, make) -> list:
    """L's Keras layers (`make()`: a list, applied in order), made and built on L's input shape once."""
    layers = _BUILT.get(L.name)
    if layers is None:
        with _eager():  # under jax.jit (keras-jax): the initial weights are values, not traced
            layers, shape = make(), channels_last(L.in_shape)
            for layer in layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        _BUILT[L.name] = layers
    return layers


def _eager():
    import contextlib
    if _keras().backend.backend() != "jax":
        return contextlib.nullcontext()
    import jax
    return jax.ensure_compile_time_eval()


def call(layer, weights: list, x):
    """layer.stateless_call on x cast to the layer's dtype: stateless_call skips `__call__`, whose cast of a
    float input a Keras model gets (on jax a float64 model's tanh returns float32: KERAS-JAX-X64)."""
    keras = _keras()
    if keras.backend.is_float_dtype(x.dtype) and keras.backend.standardize_dtype(x.dtype) != layer.compute_dtype:
        x = keras.ops.cast(x, layer.compute_dtype)
    return layer.stateless_call(list(weights), [], x)[0]


def apply(layers: list, x, weights: list = ()):
    """The layers in order; the last one (the one with weights, if any) gets `weights`."""
    for layer in layers[:-1]:
        x = call(layer, [], x)
    return call(layers[-1], weights, x)


def keras_same(L) -> tuple:
    """The per-side padding Keras computes for padding="same" on L's input (its output ceil(n / stride))."""
    d = getattr(L, "dilation", (1, 1))
    return tuple(same_padding(L.in_shape[2 + i], L.kernel_size[i], L.stride[i], d[i]) for i in range(2))


def padding_mode(L) -> str:
    """"valid", "same" (exactly Keras' same), or "explicit" (a padding layer first)."""
    if L.padding == ZERO:
        return "valid"
    return "same" if tuple(map(tuple, L.padding)) == keras_same(L) else "explicit"


def _weights(p) -> list:
    return [p["weight"]] + ([p["bias"]] if "bias" in p else [])


def is_depthwise(L) -> bool:
    return L.groups > 1 and L.groups == L.in_channels


def _strided_and_dilated(L, what: str) -> None:
    if max(L.stride) > 1 and max(L.dilation) > 1:
        raise Unsupported(f"Keras' {what} takes no strides > 1 with dilation_rate > 1 ({L.name}: stride "
                          f"{list(L.stride)}, dilation {list(L.dilation)})")


_DTYPE = {"name": "float32"}  # the case's dtype, set by the worker before each run


def L_dtype() -> str:  # noqa: N802 (reads as the layer's dtype)
    return _DTYPE["name"]
