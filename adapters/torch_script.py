"""The torch part of a `gradconf repro` script (harness/repro.py): the case as plain PyTorch calls.

The calls are the adapter's own (adapters/torch_adapter.py, torch_training.py), written out for one case:
the same composition of padding and pooling, the optimizer built by the adapter's own table and written
with every keyword it holds (`defaults`), so the script computes what gradconf's run computed.
"""
from __future__ import annotations

import numpy as np

from gradconf.errors import Unsupported
from gradconf.repro import forward_lines

from . import torch_activations, torch_training as training
from .torch_pads import _grid, _native_pool, _pad_arg, _symmetric


def _pair(p) -> str:
    return f"({p[0]}, {p[1]})"


def _conv2d(L, w, b) -> str:
    geometry = f"stride={_pair(L.stride)}, dilation={_pair(L.dilation)}, groups={L.groups}"
    if L.padding_mode != "zeros":  # nn.Conv2d: F.pad in the mode, then no padding of the conv's own
        return f"F.conv2d(F.pad(y, {_pad_arg(L.padding)}, mode={L.padding_mode!r}), {w}, {b}, {geometry})"
    if _symmetric(L.padding):
        return f"F.conv2d(y, {w}, {b}, padding=({L.padding[0][0]}, {L.padding[1][0]}), {geometry})"
    return f"F.conv2d(F.pad(y, {_pad_arg(L.padding)}), {w}, {b}, {geometry})"


def _conv1d(L, w, b) -> str:  # torch_resize.conv1d
    (left, right), s, d = L.padding[1], L.stride[1], L.dilation[1]
    geometry = f"stride={s}, dilation={d}, groups={L.groups}"
    if L.padding_mode != "zeros":
        return f"F.conv1d(F.pad(y, ({left}, {right}), mode={L.padding_mode!r}), {w}, {b}, {geometry})"
    if left == right:
        return f"F.conv1d(y, {w}, {b}, padding={left}, {geometry})"
    return f"F.conv1d(F.pad(y, ({left}, {right})), {w}, {b}, {geometry})"


def _conv_transpose2d(L, w, b) -> str:
    (t, bo), (le, r) = L.padding
    op = L.output_padding
    if _symmetric(L.padding):
        return (f"F.conv_transpose2d(y, {w}, {b}, stride={_pair(L.stride)}, padding=({t}, {le}), "
                f"output_padding={_pair(op)}, groups={L.groups}, dilation={_pair(L.dilation)})")
    full = (f"F.conv_transpose2d(y, {w}, None, stride={_pair(L.stride)}, groups={L.groups}, "
            f"dilation={_pair(L.dilation)})")
    cropped = f"F.pad({full}, {(-le, op[1] - r, -t, op[0] - bo)})"  # per-side crop (negative) / output_padding
    return cropped if b == "None" else f"{cropped} + {b}[:, None, None]"


def _max_pool2d(L, w, b) -> str:  # torch_adapter.max_pool2d
    k, s, d = _pair(L.kernel_size), _pair(L.stride), _pair(L.dilation)
    if _native_pool(L):
        return (f"F.max_pool2d(y, {k}, {s}, ({L.padding[0][0]}, {L.padding[1][0]}), {d}, "
                f"ceil_mode={L.ceil_mode})")
    return f"F.max_pool2d(F.pad(y, {_grid(L)}, value=float('-inf')), {k}, {s}, 0, {d})"


def _avg_pool2d(L, w, b) -> str:  # torch_adapter.avg_pool2d
    k, s, pad, cells = _pair(L.kernel_size), _pair(L.stride), L.padding, L.kernel_size[0] * L.kernel_size[1]
    if _native_pool(L):
        return (f"F.avg_pool2d(y, {k}, {s}, ({pad[0][0]}, {pad[1][0]}), ceil_mode={L.ceil_mode}, "
                f"count_include_pad={L.count_include_pad})")
    summed = f"F.avg_pool2d(F.pad(y, {_grid(L)}), {k}, {s}) * {cells}"
    if L.count_include_pad and not L.clipped:
        return f"{summed} / {cells}"
    # the divisor: a window sum of ones over the padded input (count_include_pad) or over the real cells
    h, wd = L.in_shape[2:]
    if L.count_include_pad:
        ones = (f"F.pad(torch.ones((1, 1, {L.counted_hw[0]}, {L.counted_hw[1]}), dtype=y.dtype), "
                f"{(0, L.beyond[1], 0, L.beyond[0])})")
    else:
        ones = f"F.pad(torch.ones((1, 1, {h}, {wd}), dtype=y.dtype), {_grid(L)})"
    return f"{summed} / (F.avg_pool2d({ones}, {k}, {s}) * {cells})"


def _batch_norm2d(L, w, b) -> str:
    # torch_adapter.batch_norm2d: F.batch_norm updates the running statistics (`states`) in place
    return (f"F.batch_norm(y, states[{L.name + '.running_mean'!r}], states[{L.name + '.running_var'!r}], {w}, {b}, "
            f"training={L.training}, momentum={L.momentum!r}, eps={L.eps!r})")


def _upsample(L, w, b) -> str:  # torch_resize.upsample
    corners = L.align_corners if L.mode == "bilinear" else None
    return (f"F.interpolate(y, scale_factor={tuple(float(s) for s in L.scale_factor)}, mode={L.mode!r}, "
            f"align_corners={corners})")


LAYERS = {
    "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "sigmoid": lambda L, w, b: "torch.sigmoid(y)", "tanh": lambda L, w, b: "torch.tanh(y)",
    "relu": lambda L, w, b: "torch.relu(y)", "flatten": lambda L, w, b: "torch.flatten(y, 1)",
    "sum": lambda L, w, b: "y.sum()", "dense": lambda L, w, b: f"F.linear(y, {w}, {b})",
    **torch_activations.SCRIPTS,  # SPEC §1.9's activations
    "batch_norm2d": _batch_norm2d,
    "layer_norm": lambda L, w, b: f"F.layer_norm(y, {tuple(L.in_shape[1:])}, {w}, {b}, {L.eps!r})",
    "group_norm": lambda L, w, b: f"F.group_norm(y, {L.num_groups}, {w}, {b}, {L.eps!r})",
    "conv1d": _conv1d, "upsample": _upsample,
    "global_avg_pool2d": lambda L, w, b: "y.mean(dim=(2, 3))",
    "adaptive_avg_pool2d": lambda L, w, b: f"F.adaptive_avg_pool2d(y, {tuple(L.output_size)})",
    "embedding": lambda L, w, b: f"F.embedding(y, {w})",  # ids: int64
}


def _option(o, key) -> str:
    # as torch_training._weight: a scalar (pos_weight) stays 0-D
    return "None" if o.get(key) is None else \
        f"torch.tensor({np.asarray(o[key], dtype=np.float64).tolist()!r}, dtype=dtype)"


LOSSES = {
    "mse": lambda o: f"F.mse_loss(y, t, reduction={o['reduction']!r})",
    "l1": lambda o: f"F.l1_loss(y, t, reduction={o['reduction']!r})",
    "smooth_l1": lambda o: f"F.smooth_l1_loss(y, t, reduction={o['reduction']!r}, beta={o['beta']!r})",
    "huber": lambda o: f"F.huber_loss(y, t, reduction={o['reduction']!r}, delta={o['delta']!r})",
    "bce": lambda o: f"F.binary_cross_entropy(y, t, reduction={o['reduction']!r})",
    "bce_with_logits": lambda o: (f"F.binary_cross_entropy_with_logits(y, t, reduction={o['reduction']!r}, "
                                  f"pos_weight={_option(o, 'pos_weight')})"),
    "nll": lambda o: f"F.nll_loss(y, t, weight={_option(o, 'weight')}, reduction={o['reduction']!r})",
    "cross_entropy": lambda o: (f"F.cross_entropy(y, t, weight={_option(o, 'weight')}, reduction={o['reduction']!r}, "
                                f"label_smoothing={o['label_smoothing']!r})"),
    "half_sse": lambda o: "0.5 * ((t - y) ** 2).sum()",
    "sum": lambda o: "y.sum()",
    "grad_output": lambda o: "(y * t).sum()",
}


def _optimizer(case) -> list[str]:
    """The optimizer as the adapter builds it, written with every keyword torch.optim holds for it."""
    if case.optimizer is None or not case.params:
        return ["    opt = None"]
    import torch
    probe = training.optimizer(case.optimizer.kind, case.optimizer.hp, [torch.zeros(1, requires_grad=True)])
    kwargs = ", ".join(f"{k}={v!r}" for k, v in probe.defaults.items())
    lines = [f"    opt = torch.optim.{type(probe).__name__}(list(params.values()), {kwargs})"]
    if case.schedule is not None:
        kind, s = case.schedule
        lines.append("    sched = torch.optim.lr_scheduler." + {
            "step": lambda: f"StepLR(opt, step_size={s['step_size']!r}, gamma={s['gamma']!r})",
            "exponential": lambda: f"ExponentialLR(opt, gamma={s['gamma']!r})",
            "cosine": lambda: f"CosineAnnealingLR(opt, T_max={s['t_max']!r}, eta_min={s['eta_min']!r})"}[kind]())
    return lines


def _clip(case) -> list[str]:
    if case.clip is None:
        return []
    kind, limit = case.clip
    return {"norm": [f"            torch.nn.utils.clip_grad_norm_(list(params.values()), {limit!r})"],
            "value": [f"            torch.nn.utils.clip_grad_value_(list(params.values()), {limit!r})"],
            "norm_per_param": ["            for p in params.values():",
                               f"                torch.nn.utils.clip_grad_norm_([p], {limit!r})"]}[kind]


MERGES = {  # f(L, input expressions) -> expression
    "add": lambda L, ins: " + ".join(ins),
    "concat": lambda L, ins: f"torch.cat([{', '.join(ins)}], dim={L.dim})",
}


def _forward(case) -> list[str]:
    return forward_lines(case, LAYERS, MERGES, 'params', '        ', 'torch')


def script(case) -> str:
    """Python source defining `run()` for harness/repro.py's script (see its module doc)."""
    if case.loss.kind not in LOSSES:
        raise Unsupported(f"gradconf repro cannot write loss `{case.loss.kind}` as torch calls yet")
    options = {"reduction": case.loss.reduction, **case.loss.options}
    ids = case.loss.kind in training.CLASS_TARGETS
    step_end = ["        if opt is not None:", *_clip(case), "            opt.step()"]
    if case.schedule is not None:
        step_end.append("            sched.step()")
    return "\n".join([
        "import torch", "import torch.nn.functional as F", "", "VERSION = torch.__version__", "", "",
        "def as_np(t):", "    return t.detach().to(torch.float64).numpy().copy()", "", "",
        "def run():",
        "    dtype = getattr(torch, DTYPE)",
        "    torch.set_default_dtype(torch.float64 if DTYPE == 'float64' else torch.float32)",
        "    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in PARAMS.items()}",
        "    states = {k: torch.tensor(v, dtype=dtype) for k, v in STATE.items()}  # running statistics",
        *_optimizer(case),
        "    results = {}",
        "    for step in range(1, STEPS + 1):",
        ("        x = torch.tensor(INPUTS[step - 1], dtype=dtype, requires_grad=True)" if case.input_grad
         else "        x = torch.tensor(INPUTS[step - 1].astype(np.int64))  # an embedding's ids"),
        "        t = None if TARGETS is None else torch.tensor(TARGETS[step - 1], dtype="
        + ("torch.int64)" if ids else "dtype)"),
        "        y = x",
        *_forward(case),
        f"        loss = {LOSSES[case.loss.kind](options)}",
        "        loss.backward()",
        "        results[step, 'loss', None], results[step, 'output', None] = as_np(loss), as_np(y)",
        *(["        results[step, 'grad', 'input'] = as_np(x.grad)"] if case.input_grad else []),
        "        for k, p in params.items():",
        "            results[step, 'grad', k] = as_np(p.grad) if p.grad is not None else np.zeros(tuple(p.shape))",
        *step_end,
        "        for k, p in params.items():",
        "            results[step, 'param', k] = as_np(p)",
        "            p.grad = None",
        "        for k, v in states.items():",
        "            results[step, 'state', k] = as_np(v)",
        "    return results",
    ])
