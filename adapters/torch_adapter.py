"""PyTorch: autograd for gradients, torch.optim for updates — the way a practitioner runs it.

The canonical layout *is* PyTorch's (NCHW, OIHW, IOHW, Linear (out, in)), so no conversion is
needed. What torch lacks natively is composed from exact primitives: asymmetric padding is an
explicit F.pad (with -inf for max-pool), per-side transposed-conv cropping is a (negative) F.pad,
and avg-pool's `count_include_pad: false` with asymmetric padding is a window sum divided by a
window count. One function per vocabulary entry (TABLES); the run loop is the same for every case.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from gradconf.case import Case

from . import Initial, LayerTrace, Step, Tables, Trace, Unsupported, module_missing, one_thread_native_pools, run_layers, threads_for
from . import torch_activations, torch_resize, torch_training as training
from .torch_pads import _grid, _native_pool, _pad_arg, _symmetric


def _F():
    import torch.nn.functional as F
    return F


# ---------------------------------------------------------------- layers: f(L, xs, p) -> y

def conv2d(L, xs, p):
    (x,), w, b, F = xs, p["weight"], p.get("bias"), _F()
    if L.padding_mode != "zeros":  # nn.Conv2d: F.pad in the mode, then no padding of the conv's own
        return F.conv2d(F.pad(x, _pad_arg(L.padding), mode=L.padding_mode), w, b, L.stride, 0, L.dilation, L.groups)
    if _symmetric(L.padding):
        return F.conv2d(x, w, b, L.stride, (L.padding[0][0], L.padding[1][0]), L.dilation, L.groups)
    return F.conv2d(F.pad(x, _pad_arg(L.padding)), w, b, L.stride, 0, L.dilation, L.groups)


def conv_transpose2d(L, xs, p):
    (x,), w, b, F = xs, p["weight"], p.get("bias"), _F()
    (t, bo), (le, r) = L.padding
    op = L.output_padding
    if _symmetric(L.padding):
        return F.conv_transpose2d(x, w, b, L.stride, (t, le), op, L.groups, L.dilation)
    # Per-side cropping: the full output, then crop (negative pad) or extend by output_padding.
    y = F.conv_transpose2d(x, w, None, L.stride, 0, 0, L.groups, L.dilation)
    y = F.pad(y, (-le, op[1] - r, -t, op[0] - bo))
    return y if b is None else y + b[:, None, None]


def max_pool2d(L, xs, p):
    (x,), F = xs, _F()
    if _native_pool(L):
        return F.max_pool2d(x, L.kernel_size, L.stride, (L.padding[0][0], L.padding[1][0]), L.dilation, L.ceil_mode)
    return F.max_pool2d(F.pad(x, _grid(L), value=float("-inf")), L.kernel_size, L.stride, 0, L.dilation)


def avg_pool2d(L, xs, p):
    import torch
    (x,), F, k, s, pad = xs, _F(), L.kernel_size, L.stride, L.padding
    if _native_pool(L):
        return F.avg_pool2d(x, k, s, (pad[0][0], pad[1][0]), ceil_mode=L.ceil_mode,
                            count_include_pad=L.count_include_pad)
    summed = F.avg_pool2d(F.pad(x, _grid(L)), k, s) * (k[0] * k[1])
    if L.count_include_pad and not L.clipped:
        return summed / (k[0] * k[1])
    # the divisor: a window sum of ones over the padded input (count_include_pad) or over the real cells
    h, w = x.shape[2:]
    if L.count_include_pad:
        ones = F.pad(torch.ones((1, 1, *L.counted_hw), dtype=x.dtype), (0, L.beyond[1], 0, L.beyond[0]))
    else:
        ones = F.pad(torch.ones((1, 1, h, w), dtype=x.dtype), _grid(L))
    return summed / (F.avg_pool2d(ones, k, s) * (k[0] * k[1]))


def dense(L, xs, p):
    return _F().linear(xs[0], p["weight"], p.get("bias"))


def _torch():
    import torch
    return torch


def batch_norm2d(L, xs, p):
    # F.batch_norm updates the running statistics in place, as nn.BatchNorm2d does: (1 − momentum)·running +
    # momentum·batch, the variance unbiased
    return _F().batch_norm(xs[0], p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"), L.training,
                           L.momentum, L.eps)


def layer_norm(L, xs, p):
    return _F().layer_norm(xs[0], tuple(L.in_shape[1:]), p.get("weight"), p.get("bias"), L.eps)


def group_norm(L, xs, p):
    return _F().group_norm(xs[0], L.num_groups, p.get("weight"), p.get("bias"), L.eps)


LAYERS = {
    "conv2d": conv2d, "conv_transpose2d": conv_transpose2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "sigmoid": lambda L, xs, p: _torch().sigmoid(xs[0]),
    "tanh": lambda L, xs, p: _torch().tanh(xs[0]),
    "relu": lambda L, xs, p: _torch().relu(xs[0]),
    "flatten": lambda L, xs, p: _torch().flatten(xs[0], 1),
    "sum": lambda L, xs, p: xs[0].sum(),
    "dense": dense,
    "add": lambda L, xs, p: _sum(xs),
    "concat": lambda L, xs, p: _torch().cat(xs, dim=L.dim),
    "embedding": lambda L, xs, p: _F().embedding(xs[0], p["weight"]),  # ids: int64
    **torch_activations.LAYERS,  # leaky_relu, elu, gelu, silu, softplus, softmax, log_softmax, dropout
    "batch_norm2d": batch_norm2d, "layer_norm": layer_norm, "group_norm": group_norm,
    **torch_resize.LAYERS,  # conv1d, global and adaptive average pools, upsample
}


def _sum(xs):
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y

# ---------------------------------------------------------------- losses: f(y, target) -> loss

# Losses f(y, target, options) and optimizers f(hyperparameters, params): adapters/torch_training.py, with the
# training loop's schedules and clipping.
LOSSES, OPTIMIZERS = training.LOSSES, training.OPTIMIZERS
TABLES = Tables("torch", LAYERS, LOSSES, OPTIMIZERS)


class TorchAdapter:
    name = "torch"

    def missing(self):
        return module_missing("torch")

    def version(self):
        import torch
        return torch.__version__

    def known_divergences(self, case) -> dict[str, str]:
        """The catalogued divergences (docs/divergences.md) whose conditions `case` meets: id -> gist."""
        from gradconf.divergences import known
        return known(self.name, case)

    def script(self, case: Case) -> str:
        """The case as plain torch calls, for `gradconf repro` (adapters/torch_script.py)."""
        from .torch_script import script
        return script(case)

    def import_model(self, spec: str, input_shape, reinit: bool = False):
        """`gradconf import torch`: a torch.nn.Module as case layers (adapters/torch_import.py)."""
        from .torch_import import import_model
        return import_model(spec, input_shape, reinit)

    def trace_layers(self, case: Case, initial: Initial) -> LayerTrace:
        """Step 1 layer by layer (protocol.LayerTrace): each output kept, its gradient retained."""
        traced = LayerTrace()
        self.run(dataclasses.replace(case, steps=1), initial, traced)
        return traced

    def run(self, case: Case, initial: Initial, traced: LayerTrace | None = None) -> Trace:
        import torch

        TABLES.check(case)
        threads = threads_for(case)  # the thread policy (adapters.threads_for): 1 unless the case is large
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        one_thread_native_pools("torch")
        # torch.optim keeps scalar state (NAdam's μ product) in the default dtype: a float64 user sets it to
        # float64, and so does the adapter for float64 cases (TORCH-NADAM-MU32, docs/divergences.md)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64 if case.dtype == "float64" else torch.float32)
        try:
            return self._steps(torch, case, initial, traced)
        except (RuntimeError, NotImplementedError) as e:
            if "not implemented for" in str(e):
                raise Unsupported(f"torch on CPU: {str(e).splitlines()[0]}") from None
            raise
        finally:
            torch.set_default_dtype(previous)

    @staticmethod
    def _steps(torch, case: Case, initial: Initial, traced: LayerTrace | None = None) -> Trace:
        dtype = getattr(torch, case.dtype)
        as_np = lambda t: t.detach().to(torch.float64).numpy().copy()  # noqa: E731
        params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in initial.params.items()}
        states = {k: torch.tensor(v, dtype=dtype) for k, v in initial.state.items()}  # running statistics
        ids = case.loss.kind in training.CLASS_TARGETS
        options = {"reduction": case.loss.reduction, **case.loss.options}
        opt = sched = None
        if case.optimizer is not None and params:  # nothing to update without parameters
            opt = OPTIMIZERS[case.optimizer.kind](case.optimizer.hp, list(params.values()))
            sched = training.scheduler(case.schedule, opt)
        steps = []
        for step in range(1, case.steps + 1):  # this step's input and target (per-step data, SPEC §1.10)
            x = (torch.tensor(initial.input_at(step), dtype=dtype, requires_grad=True) if case.input_grad
                 else torch.tensor(initial.input_at(step).astype(np.int64)))  # an embedding's ids
            t = initial.target_at(step)
            target = None if t is None else torch.tensor(t, dtype=torch.int64 if ids else dtype)
            for p in params.values():
                p.grad = None
            kept = None if traced is None else {}
            y = run_layers(case, LAYERS, x, params, kept, states=states)
            for t in (kept or {}).values():  # trace_layers: every layer's output gradient too
                if t.requires_grad:
                    t.retain_grad()
            loss = LOSSES[case.loss.kind](y, target, options)
            loss.backward()
            for name, t in (kept or {}).items():
                traced.outputs[name] = as_np(t)
                if t.grad is not None:
                    traced.output_grads[name] = as_np(t.grad)
            grads = {k: as_np(p.grad) if p.grad is not None else np.zeros(p.shape) for k, p in params.items()}
            if case.input_grad:
                grads["input"] = as_np(x.grad)  # compared before clipping
            if opt is not None:
                training.clip(case.clip, list(params.values()))
                opt.step()
                if sched is not None:
                    sched.step()
            steps.append(Step(as_np(loss), as_np(y), grads,
                              {k: as_np(p) for k, p in params.items()} if opt is not None else {},
                              state={k: as_np(v) for k, v in states.items()}))
        return Trace(steps)
