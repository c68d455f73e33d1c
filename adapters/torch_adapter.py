"""PyTorch: autograd for gradients, torch.optim for updates — the way a practitioner runs it.

The canonical layout *is* PyTorch's (NCHW, OIHW, IOHW, Linear (out, in)), so no conversion is
needed. What torch lacks natively is composed from exact primitives: asymmetric padding is an
explicit F.pad (with -inf for max-pool), per-side transposed-conv cropping is a (negative) F.pad,
and avg-pool's `count_include_pad: false` with asymmetric padding is a window sum divided by a
window count.
"""
from __future__ import annotations

import numpy as np

from gradconf.case import Activation, Case, Conv2d, ConvTranspose2d, Dense, Flatten, Pool2d, Sum
from . import Initial, Step, Trace, Unsupported, module_missing, one_thread_native_pools, threads_for

_DTYPES = {"float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _symmetric(pad) -> bool:
    return pad[0][0] == pad[0][1] and pad[1][0] == pad[1][1]


def _pad_arg(pad) -> tuple:
    """((t, b), (l, r)) -> F.pad's (l, r, t, b)."""
    return (pad[1][0], pad[1][1], pad[0][0], pad[0][1])


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

    # -------------------------------------------------------------- layers

    def _layer(self, L, x, p):
        import torch
        import torch.nn.functional as F

        if isinstance(L, ConvTranspose2d):
            w, b = p[f"{L.name}.weight"], p.get(f"{L.name}.bias")
            (t, bo), (le, r) = L.padding
            op = L.output_padding
            if _symmetric(L.padding):
                return F.conv_transpose2d(x, w, b, L.stride, (t, le), op, L.groups, L.dilation)
            # Per-side cropping: the full output, then crop (negative pad) or extend by output_padding.
            y = F.conv_transpose2d(x, w, None, L.stride, 0, 0, L.groups, L.dilation)
            y = F.pad(y, (-le, op[1] - r, -t, op[0] - bo))
            return y if b is None else y + b[:, None, None]
        if isinstance(L, Conv2d):
            w, b = p[f"{L.name}.weight"], p.get(f"{L.name}.bias")
            if _symmetric(L.padding):
                return F.conv2d(x, w, b, L.stride, (L.padding[0][0], L.padding[1][0]), L.dilation, L.groups)
            return F.conv2d(F.pad(x, _pad_arg(L.padding)), w, b, L.stride, 0, L.dilation, L.groups)
        if isinstance(L, Pool2d):
            k, s, pad = L.kernel_size, L.stride, L.padding
            native = _symmetric(pad) and pad[0][0] <= k[0] // 2 and pad[1][0] <= k[1] // 2
            sym = (pad[0][0], pad[1][0])
            if L.kind == "max":
                if native:
                    return F.max_pool2d(x, k, s, sym)
                return F.max_pool2d(F.pad(x, _pad_arg(pad), value=float("-inf")), k, s)
            if native:
                return F.avg_pool2d(x, k, s, sym, count_include_pad=L.count_include_pad)
            summed = F.avg_pool2d(F.pad(x, _pad_arg(pad)), k, s) * (k[0] * k[1])
            if L.count_include_pad:
                return summed / (k[0] * k[1])
            ones = F.pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype), _pad_arg(pad))
            return summed / (F.avg_pool2d(ones, k, s) * (k[0] * k[1]))
        if isinstance(L, Activation):
            return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[L.kind](x)
        if isinstance(L, Flatten):
            return torch.flatten(x, 1)
        if isinstance(L, Sum):
            return x.sum()
        if isinstance(L, Dense):
            return F.linear(x, p[f"{L.name}.weight"], p.get(f"{L.name}.bias"))
        raise Unsupported(f"no torch mapping for layer {L.name} ({L.type})")

    @staticmethod
    def _loss(kind, y, target):
        import torch.nn.functional as F
        if kind == "mse":
            return F.mse_loss(y, target)
        if kind == "half_sse":
            return 0.5 * ((target - y) ** 2).sum()
        if kind == "sum":
            return y.sum()
        if kind == "cross_entropy":
            return F.cross_entropy(y, target.long())
        return (y * target).sum()  # grad_output

    @staticmethod
    def _optimizer(opt, params):
        import torch
        if opt is None:
            return None
        if opt.kind == "sgd":
            return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                                   weight_decay=opt.weight_decay)
        return torch.optim.Adam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)

    # -------------------------------------------------------------- run

    def run(self, case: Case, initial: Initial) -> Trace:
        import torch

        threads = threads_for(case)  # the thread policy (adapters.threads_for): 1 unless the case is large
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        one_thread_native_pools("torch")
        dtype = getattr(torch, _DTYPES[case.dtype])
        as_np = lambda t: t.detach().to(torch.float64).numpy().copy()  # noqa: E731
        params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in initial.params.items()}
        x = torch.tensor(initial.input, dtype=dtype, requires_grad=True)
        target = None
        if initial.target is not None:
            target = torch.tensor(initial.target, dtype=torch.int64 if case.loss.kind == "cross_entropy" else dtype)
        opt = self._optimizer(case.optimizer, list(params.values())) if params else None  # nothing to update
        steps = []
        try:
            for _ in range(case.steps):
                x.grad = None
                for t in params.values():
                    t.grad = None
                y = x
                for L in case.layers:
                    y = self._layer(L, y, params)
                loss = self._loss(case.loss.kind, y, target)
                loss.backward()
                grads = {k: as_np(t.grad) if t.grad is not None else np.zeros(t.shape) for k, t in params.items()}
                grads["input"] = as_np(x.grad)
                if opt is not None:
                    opt.step()
                steps.append(Step(as_np(loss), as_np(y), grads,
                                  {k: as_np(t) for k, t in params.items()} if opt is not None else {}))
        except (RuntimeError, NotImplementedError) as e:
            if "not implemented for" in str(e):
                raise Unsupported(f"torch on CPU: {str(e).splitlines()[0]}") from None
            raise
        return Trace(steps)
