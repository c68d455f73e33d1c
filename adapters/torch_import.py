"""`gradconf import torch MODULE:FACTORY --input-shape N,C,H,W`: a case from a torch.nn.Module, traced with torch.fx.

Each node of the traced graph maps onto one vocabulary entry (or onto nothing: an identity, a `.size()`),
parameters taken from the module as they are (or left to the case's seeded initialisers with `reinit`).
A node that reads something other than the previous layer's output gets `from:`. The case's parameter
`<layer>.weight` is the module's `<path>.weight` (Imported.param_names).
"""
from __future__ import annotations

import operator
import os
import re

from gradconf import vocab
from gradconf.errors import COMMAND_LINE, CaseError
from gradconf.model_import import Imported, Unmappable, load_object, tensor


def load_module(spec: str):
    """`package.module:factory` or `path/to/file.py:factory` -> the nn.Module (a factory is called with no
    arguments; a module instance is taken as it is)."""
    obj = load_object(spec)
    import torch
    try:
        model = obj if isinstance(obj, torch.nn.Module) else obj()
    except Exception as e:  # noqa: BLE001 — the user's factory: its error, named
        raise CaseError(f"{spec}: {type(e).__name__}: {e}", ("MODEL",), COMMAND_LINE) from None
    if not isinstance(model, torch.nn.Module):
        raise CaseError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module", ("MODEL",), COMMAND_LINE)
    return model


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _conv(m, transpose=False):
    if m.padding_mode != "zeros":
        if "padding_mode" not in vocab.LAYERS["conv2d"].keys:
            return None
        extra = {"padding_mode": m.padding_mode}
    else:
        extra = {}
    p = {"out_channels": m.out_channels, "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
         "padding": m.padding if isinstance(m.padding, str) else _pair(m.padding), "dilation": _pair(m.dilation),
         "groups": m.groups, **extra}
    if transpose:
        p["output_padding"] = _pair(m.output_padding)
    return p


def _pool(m, kind):
    p = {"kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride), "padding": _pair(m.padding)}
    keys = vocab.LAYERS[kind].keys
    for key, default in (("ceil_mode", False), ("dilation", 1)):
        value = getattr(m, key, default)
        if value != default and not (isinstance(value, (tuple, list)) and set(value) == {default}):
            if key not in keys:
                return None
            p[key] = _pair(value) if key == "dilation" else value
    if kind == "avg_pool2d":
        if getattr(m, "divisor_override", None) is not None:
            return None
        p["count_include_pad"] = m.count_include_pad
    return p


def _module_entry(m):
    """(vocabulary type, parameters, {kind: module attribute}) for a submodule, or None: not mappable."""
    import torch.nn as nn
    table = [
        (nn.Conv2d, "conv2d", lambda: _conv(m), ("weight", "bias")),
        (nn.ConvTranspose2d, "conv_transpose2d", lambda: _conv(m, True), ("weight", "bias")),
        (nn.MaxPool2d, "max_pool2d", lambda: None if m.return_indices else _pool(m, "max_pool2d"), ()),
        (nn.AvgPool2d, "avg_pool2d", lambda: _pool(m, "avg_pool2d"), ()),
        (nn.Linear, "dense", lambda: {"out_features": m.out_features}, ("weight", "bias")),
        (nn.ReLU, "relu", dict, ()), (nn.Sigmoid, "sigmoid", dict, ()), (nn.Tanh, "tanh", dict, ()),
        (nn.Flatten, "flatten", lambda: {} if (m.start_dim, m.end_dim) == (1, -1) else None, ()),
        (nn.LeakyReLU, "leaky_relu", lambda: {"negative_slope": m.negative_slope}, ()),
        (nn.ELU, "elu", lambda: {"alpha": m.alpha}, ()),
        (nn.GELU, "gelu", lambda: {"approximate": m.approximate}, ()),
        (nn.SiLU, "silu", dict, ()),
        (nn.Softplus, "softplus", lambda: {"beta": m.beta, "threshold": m.threshold}, ()),
        (nn.Softmax, "softmax", lambda: {"dim": m.dim}, ()), (nn.LogSoftmax, "log_softmax", lambda: {"dim": m.dim}, ()),
        (nn.Dropout, "dropout", lambda: {"p": m.p, "training": False} if not m.training else None, ()),
        (nn.BatchNorm2d, "batch_norm2d", lambda: _batch_norm(m), ("weight", "bias")),
        (nn.LayerNorm, "layer_norm", lambda: {"eps": m.eps, "affine": m.elementwise_affine}, ("weight", "bias")),
        (nn.GroupNorm, "group_norm", lambda: {"num_groups": m.num_groups, "eps": m.eps, "affine": m.affine},
         ("weight", "bias")),
        (nn.Embedding, "embedding", lambda: {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim},
         ("weight",)),
        (nn.AdaptiveAvgPool2d, "adaptive_avg_pool2d", lambda: {"output_size": _pair(m.output_size)}, ()),
        (nn.Conv1d, "conv1d", lambda: _conv1d(m), ("weight", "bias")),
    ]
    for cls, kind, params, weights in table:
        if type(m) is cls:
            if kind not in vocab.LAYERS:
                return None
            p = params()
            return None if p is None else (kind, p, weights)
    return None


def _batch_norm(m):
    if not m.track_running_stats or m.momentum is None:
        return None
    return {"eps": m.eps, "momentum": m.momentum, "affine": m.affine, "training": m.training,
            "running_mean": tensor(m.running_mean.detach()), "running_var": tensor(m.running_var.detach())}


def _conv1d(m):
    if m.padding_mode != "zeros" and "padding_mode" not in vocab.LAYERS["conv1d"].keys:
        return None
    p = {"out_channels": m.out_channels, "kernel_size": m.kernel_size[0], "stride": m.stride[0],
         "padding": m.padding if isinstance(m.padding, str) else m.padding[0], "dilation": m.dilation[0],
         "groups": m.groups}
    return p if m.padding_mode == "zeros" else {**p, "padding_mode": m.padding_mode}


def _function_entry(node):
    """(type, params, tensor inputs) for a call_function / call_method node, or None."""
    import torch
    import torch.nn.functional as F
    target, args = node.target, node.args
    simple = {torch.relu: "relu", F.relu: "relu", torch.sigmoid: "sigmoid", torch.tanh: "tanh",
              "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
    if target in simple and not node.kwargs.get("inplace", False):
        return simple[target], {}, [args[0]]
    if target in (operator.add, torch.add, "add") and len(args) == 2 and all(hasattr(a, "op") for a in args):
        return "add", {}, list(args)
    if target in (torch.cat, torch.concat):
        dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return "concat", {"dim": dim}, list(args[0])
    if target in (torch.flatten, "flatten"):
        start = node.kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = node.kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return ("flatten", {}, [args[0]]) if (start, end) == (1, -1) else None
    if target in ("view", "reshape") and len(args) == 3 and args[2] == -1 and _is_batch_size(args[1], args[0]):
        return "flatten", {}, [args[0]]  # x.view(x.size(0), -1)
    return None


def _is_batch_size(node, of) -> bool:
    """`t.size(0)` of any tensor: the batch size, which every activation shares."""
    return (getattr(node, "op", None) == "call_method" and node.target == "size"
            and (node.args[1:] == (0,) or node.kwargs.get("dim") == 0))


def import_model(spec: str, input_shape, reinit: bool = False) -> Imported:
    import torch
    import torch.fx
    model = load_module(spec)
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True  # where each node is in the user's code, for the unsupported list
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 — torch.fx's own message says which construct it cannot trace
        raise CaseError(f"torch.fx cannot trace {spec}: {type(e).__name__}: {str(e).splitlines()[0]}",
                        ("MODEL",), COMMAND_LINE) from None
    names, entries, missing, param_names, previous = {}, [], [], {}, "input"
    dtypes = {p.dtype for p in model.parameters()} or {torch.get_default_dtype()}
    for node in graph.nodes:
        if node.op == "placeholder":
            if names:
                missing.append(f"`{node.name}` (a second input: an imported model takes one)")
            names[node] = "input"
            continue
        if node.op == "output" or (node.op == "call_method" and node.target == "size"):
            continue
        where = f"`{node.name}` ({node.op} {_describe(node, model)})"
        if node.op == "call_module":
            sub = model.get_submodule(node.target)
            if isinstance(sub, torch.nn.Identity) or (isinstance(sub, torch.nn.Dropout) and not sub.training
                                                      and "dropout" not in vocab.LAYERS):
                names[node] = names.get(node.args[0], "input")  # the identity (dropout in eval mode)
                continue
            found = _module_entry(sub)
            inputs = [node.args[0]] if found else []
        else:
            sub, found = None, _function_entry(node)
            inputs = found[2] if found else []
            found = found and (found[0], found[1], ())
        if not found or found[0] not in vocab.LAYERS:
            missing.append(where)
            names[node] = node.name  # as if it were there: what reads it is still looked at
            continue
        kind, params, weights = found
        name = node.name
        params = {"name": name, **params}
        sources = [names[i] for i in inputs]
        if sources != [previous]:
            params["from"] = sources if len(sources) > 1 else sources[0]
        for w in weights:
            value = getattr(sub, w, None)
            if value is None:
                if w == "bias" and kind != "embedding":
                    params["bias"] = False
                continue
            param_names[f"{name}.{w}"] = f"{node.target}.{w}"
            if not reinit:
                params[w] = tensor(value.detach())
        entries.append({kind: params})
        names[node], previous = name, name
    output = next(n for n in graph.nodes if n.op == "output").args[0]
    if not missing and names.get(output) != previous:
        missing.append(f"`{output}` (the model returns it, but a case's output is its last layer's)")
    if missing:
        raise Unmappable(spec, missing)
    dtype = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
             torch.bfloat16: "bfloat16"}.get(dtypes.pop() if len(dtypes) == 1 else None, "float32")
    return Imported(entries, dtype, spec, param_names)


def _describe(node, model) -> str:
    """What a node is and where: the module's class and path, or the op and the user's source line."""
    if node.op == "call_module":
        cls = type(model.get_submodule(node.target))
        what = f"{cls.__module__}.{cls.__name__} at {node.target}"
    else:
        what = getattr(node.target, "__name__", str(node.target))
    frames = [f for f in re.findall(r'File "([^"]+)", line (\d+)', node.stack_trace or "")
              if f"{os.sep}torch{os.sep}" not in f[0]]  # the user's line, not torch.fx's own
    return what + (f", {os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else "")
