"""`gradconf import keras FILE.keras|MODULE:FACTORY --input-shape N,C,H,W`: a case from a Keras 3 model.

Keras models are channels-last (NHWC activations, HWIO kernels); the case is canonical (NCHW, OIHW, dense
(out, in)), so kernels are transposed, a concat's channel axis becomes 1, and a Dense after a Flatten of an
image gets its input columns reordered from Keras' (h, w, c) flattening to the case's (c, h, w). A layer's
fused `activation=` becomes a layer of its own after it. Each layer reads what its inbound node names
(`from:` where that is not the previous layer).
"""
from __future__ import annotations

import os

import numpy as np

from gradconf import vocab
from gradconf.errors import COMMAND_LINE, CaseError
from gradconf.model_import import Imported, Unmappable, load_object, tensor

ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu", "swish": "silu",
               "elu": "elu", "softplus": "softplus", "gelu": "gelu", "leaky_relu": "leaky_relu"}


def load_model(spec: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    try:
        if spec.endswith(".keras"):
            if not os.path.isfile(spec):
                raise CaseError(f"no file {spec}", ("MODEL",), COMMAND_LINE)
            return keras.saving.load_model(spec)
        model = load_object(spec)
        model = model if isinstance(model, keras.Model) else model()
    except CaseError:
        raise
    except Exception as e:  # noqa: BLE001 — the user's model: its error, named
        raise CaseError(f"cannot load {spec}: {type(e).__name__}: {e}", ("MODEL",), COMMAND_LINE) from None
    if not isinstance(model, keras.Model):
        raise CaseError(f"{spec} gave a {type(model).__name__}, not a keras.Model", ("MODEL",), COMMAND_LINE)
    return model


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _activation(layer):
    """The vocabulary name of a layer's fused `activation=` (None: linear), or False: not mappable."""
    name = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if name == "linear":
        return None
    return ACTIVATIONS.get(name, False) if ACTIVATIONS.get(name) in vocab.LAYERS else False


def _entry(layer, in_shape):
    """(type, params, weights {kind: canonical array}) for one Keras layer, or None: not mappable."""
    cls, cfg, w = type(layer).__name__, layer.get_config(), [np.asarray(v) for v in layer.get_weights()]
    if cfg.get("data_format", "channels_last") != "channels_last":
        return None
    if cls == "Conv2D":
        p = {"out_channels": cfg["filters"], "kernel_size": _pair(cfg["kernel_size"]), "stride": _pair(cfg["strides"]),
             "padding": cfg["padding"], "dilation": _pair(cfg["dilation_rate"]), "groups": cfg.get("groups", 1)}
        return "conv2d", p, {"weight": w[0].transpose(3, 2, 0, 1), **({"bias": w[1]} if cfg["use_bias"] else {})}
    if cls == "Dense":
        if len(in_shape) != 2:
            return None
        return "dense", {"out_features": cfg["units"]}, {"weight": w[0].T, **({"bias": w[1]} if cfg["use_bias"] else {})}
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        kind = "max_pool2d" if cls.startswith("Max") else "avg_pool2d"
        p = {"kernel_size": _pair(cfg["pool_size"]), "stride": _pair(cfg["strides"] or cfg["pool_size"]),
             "padding": cfg["padding"]}
        if kind == "avg_pool2d":
            p["count_include_pad"] = False  # Keras' `same` averages over the real cells
        return kind, p, {}
    if cls == "Flatten":
        return "flatten", {}, {}
    if cls in ("Activation", "ReLU"):
        name = "relu" if cls == "ReLU" else ACTIVATIONS.get(getattr(layer.activation, "__name__", ""))
        return (name, {}, {}) if name in vocab.LAYERS and not cfg.get("negative_slope") else None
    if cls == "Add":
        return "add", {}, {}
    if cls == "Concatenate":
        axis = cfg["axis"] % len(in_shape)
        return "concat", {"dim": 1 if len(in_shape) == 4 and axis == 3 else axis}, {}
    if cls == "GlobalAveragePooling2D" and not cfg.get("keepdims"):
        return "global_avg_pool2d", {}, {}
    if cls == "BatchNormalization" and cfg["axis"] in (-1, 3) and cfg["center"] == cfg["scale"]:
        affine = cfg["scale"]
        p = {"eps": cfg["epsilon"], "momentum": 1.0 - cfg["momentum"], "affine": affine, "training": False,
             "running_mean": tensor(w[-2]), "running_var": tensor(w[-1])}
        return "batch_norm2d", p, ({"weight": w[0], "bias": w[1]} if affine else {})
    return None


def _inbound(layer) -> list[str]:
    """The names of the layers a layer reads (`input` for the model's input; a Sequential lists no InputLayer)."""
    ops = [t._keras_history.operation for node in layer._inbound_nodes[:1] for t in node.input_tensors]
    return ["input" if type(op).__name__ == "InputLayer" else op.name for op in ops]


def _flatten_order(dense_weight, image_shape):
    """Dense columns from Keras' (h, w, c) flattening to the case's (c, h, w)."""
    h, w, c = image_shape
    hwc = np.arange(h * w * c).reshape(h, w, c)
    return dense_weight[:, hwc.transpose(2, 0, 1).ravel()]


def import_model(spec, input_shape, reinit: bool = False) -> Imported:
    """`spec`: FILE.keras or MODULE:FACTORY, or a keras.Model itself."""
    model = load_model(spec) if isinstance(spec, str) else spec
    spec = spec if isinstance(spec, str) else model.name
    names, shapes, entries, missing, param_names, previous = {}, {}, [], [], {}, "input"
    for layer in model.layers:
        cls = type(layer).__name__
        sources = [names.get(s, s) for s in _inbound(layer)] or [previous]
        if cls == "InputLayer":
            names[layer.name] = "input"
            continue
        in_shape = tuple(layer.input.shape) if not isinstance(layer.input, list) else tuple(layer.input[0].shape)
        if cls == "Dropout":  # identity outside training
            names[layer.name] = sources[0]
            continue
        found, act = _entry(layer, in_shape), _activation(layer)
        if found is None or found[0] not in vocab.LAYERS or act is False:
            missing.append(f"`{layer.name}` ({type(layer).__module__}.{cls})")
            names[layer.name] = layer.name
            continue
        kind, params, weights = found
        if kind == "dense" and shapes.get(sources[0]) is not None:  # after a Flatten of an image
            weights["weight"] = _flatten_order(weights["weight"], shapes[sources[0]])
        params = {"name": layer.name, **params}
        if sources != [previous]:
            params["from"] = sources if len(sources) > 1 else sources[0]
        if kind in ("conv2d", "dense") and "bias" not in weights:
            params["bias"] = False
        for w_kind, value in weights.items():
            variable = {"weight": "gamma", "bias": "beta"}[w_kind] if kind == "batch_norm2d" else \
                {"weight": "kernel", "bias": "bias"}[w_kind]
            param_names[f"{layer.name}.{w_kind}"] = getattr(layer, variable).path
            if not reinit:
                params[w_kind] = tensor(value)
        entries.append({kind: params})
        names[layer.name] = previous = layer.name
        if cls == "Flatten" and len(in_shape) == 4:
            shapes[layer.name] = in_shape[1:]
        if act:
            entries.append({act: {"name": f"{layer.name}_{act}"}})
            names[layer.name] = previous = f"{layer.name}_{act}"
    if missing:
        raise Unmappable(spec, missing)
    dtype = model.dtype if isinstance(model.dtype, str) else getattr(model.dtype, "name", "float32")
    return Imported(entries, dtype if dtype in ("float64", "float32", "float16", "bfloat16") else "float32", spec,
                    param_names, input_layout="NHWC")
