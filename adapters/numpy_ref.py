"""The reference: every layer, loss and optimizer written out by hand in NumPy — no autodiff.

Each layer is a forward/backward pair. Forward returns (output, cache); backward takes the
output gradient and the cache and returns (input gradient, {param kind: gradient}).
Convolutions are im2col + batched matmul (BLAS), a big batch split over threads; pools are
strided window views. A conv's forward cache serves one backward, which recycles its columns.
Computation is float64 whatever the case dtype: the inputs were rounded to the case dtype once,
so the reference is the exact answer for the numbers every framework was given.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gradconf.case import Activation, Conv2d, ConvTranspose2d, Dense, Flatten, Layer, Optimizer, Pool2d, Sum

from . import Initial, Step, Trace, one_thread_native_pools, thread_limit, usable_cores


# ---------------------------------------------------------------- windows

def _pad(x, pad, fill):
    """x padded by ((top, bottom), (left, right)) cells of `fill`. np.pad does the same through a
    general path that costs ~20 µs a call; the reference pads every small layer several times a step."""
    (top, bottom), (left, right) = pad
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, top + h + bottom, left + w + right), fill, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    return xp


def _windows(x, k, s, d, pad, out_hw, fill=0.0):
    """(N,C,H,W) -> read-only view (N,C,kh,kw,Ho,Wo); tap (i,j) of output (y,x) is xpad[y·s + i·d, x·s + j·d]."""
    xp = _pad(x, pad, fill)
    n, c, _, _ = xp.shape
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, k[0], k[1], *out_hw),
                      (s0, s1, s2 * d[0], s3 * d[1], s2 * s[0], s3 * s[1]), writeable=False)


def _im2col(x, k, s, d, pad, out_hw):
    """(N,C,H,W) -> (N, C·kh·kw, Ho·Wo): column l is the receptive field of output pixel l."""
    n, c = x.shape[:2]
    cols = _take_spare((n, c, *k, *out_hw), x.dtype)
    _over_batch(n, cols.size, lambda b: cols.__setitem__(b, _windows(x[b], k, s, d, pad, out_hw)))
    return cols.reshape(n, c * k[0] * k[1], -1)


# im2col's columns are the reference's one big allocation (kh·kw times the input), and a fresh
# 100 MB array costs about as much in page faults as filling it. So a backward gives back the
# columns it has finished with, one array per thread, for the next im2col to write over.
_SPARE = threading.local()


def _take_spare(shape, dtype) -> np.ndarray:
    size, spare = int(np.prod(shape)), getattr(_SPARE, "cols", None)
    if spare is None or spare.dtype != dtype or spare.size < size:
        return np.empty(shape, dtype=dtype)
    _SPARE.cols = None
    return spare.reshape(-1)[:size].reshape(shape)


def _give_back(cols: np.ndarray) -> None:
    """`cols` and the buffer under it are dead. The latest is kept (loops repeat their shapes)."""
    while isinstance(cols.base, np.ndarray):  # the whole buffer, not the part this im2col used
        cols = cols.base
    if cols.size >= 1 << 20 and cols.flags.c_contiguous:
        _SPARE.cols = cols


# ---------------------------------------------------------------- batch parallelism
# A big layer splits its batch over threads, and each thread runs its share's copies and GEMMs on
# one BLAS thread. NumPy releases the GIL for both. A multi-threaded BLAS instead splits every GEMM
# and makes its threads meet after each one; on a shared machine one late core stalls them all.

_POOL, _BLAS = None, None
_BATCH_LOCK = threading.Lock()  # one split at a time: BLAS's thread count is process-wide


def _threads() -> int:
    """The worker's share of the cores (the thread policy: the batch split is for large layers only)."""
    return thread_limit() or min(4, usable_cores())


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_threads())
    return _POOL


def _over_batch(n: int, size: int, work) -> list:
    """[work(batch slice) for each thread's share of the batch]; no threads for small work (size elements)."""
    global _BLAS
    threads = min(n, _threads()) if size >= 1 << 20 else 1  # small work (every bundled case): no env lookup
    if threads < 2:
        return [work(slice(None))]
    bounds = np.linspace(0, n, threads + 1, dtype=int)
    with _BATCH_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        with _BLAS.limit(limits=1, user_api="blas"):
            return list(_pool().map(work, [slice(a, b) for a, b in zip(bounds, bounds[1:])]))


def _col2im(cols, x_shape, k, s, d, pad, out_hw):
    """Adjoint of _im2col: add every window entry back onto the input pixel it came from."""
    n, c, h, w = x_shape
    cols = cols.reshape(n, c, k[0], k[1], *out_hw)
    xp = np.zeros((n, c, h + sum(pad[0]), w + sum(pad[1])), dtype=cols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            r, q = i * d[0], j * d[1]
            xp[:, :, r:r + s[0] * (out_hw[0] - 1) + 1:s[0], q:q + s[1] * (out_hw[1] - 1) + 1:s[1]] += cols[:, :, i, j]
    return xp[:, :, pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w]


# ---------------------------------------------------------------- conv2d (weight OIHW)

def _correlate(x, w, groups, k, s, d, pad, out_hw, bias=None):
    """Grouped cross-correlation (+ bias): im2col + batched matmul, share by share of the batch.
    Returns (y, cols)."""
    n, length = x.shape[0], int(np.prod(out_hw))
    cols = _take_spare((*x.shape[:2], *k, *out_hw), x.dtype)
    wg = w.reshape(groups, w.shape[0] // groups, -1)
    y = np.empty((n, groups, wg.shape[1], length), dtype=np.result_type(x, w))

    def share(b):
        cols[b] = _windows(x[b], k, s, d, pad, out_hw)
        np.matmul(wg, cols[b].reshape(-1, groups, wg.shape[2], length), out=y[b])
        if bias is not None:
            y[b] += bias.reshape(groups, -1, 1)

    _over_batch(n, cols.size, share)
    return y.reshape(n, -1, *out_hw), cols.reshape(n, groups, -1, length)


def conv2d_forward(x, w, b, L: Conv2d):
    # y[n,o] = Σ_{c,i,j} w[o,c,i,j] · xpad[n, c, y·s + i·d, x·s + j·d] + b[o]   (cross-correlation)
    y, cols = _correlate(x, w, L.groups, L.kernel_size, L.stride, L.dilation, L.padding, L.out_shape[2:], b)
    return y, [x.shape, cols, w, b is not None]


def conv2d_backward(dy, cache, L: Conv2d):
    # dW = Σ_n dY·colsᵀ ;  db = Σ dY ;  dX = dY ⋆ rot180(W) (stride 1), else col2im(Wᵀ·dY)
    x_shape, cols, w, has_bias = cache
    if cols is None:
        raise RuntimeError(f"conv2d_backward: the forward cache of {L.name} was already used by a backward")
    cache[1] = None  # a backward consumes its forward's columns: they become scratch once dW is done
    n, g = dy.shape[0], L.groups
    dyg = dy.reshape(n, g, -1, cols.shape[-1])

    def dw_share(b):  # Σ_n cols·dYᵀ = dWᵀ: the same products, in the operand order OpenBLAS runs ~12% faster
        return (cols[b] @ np.swapaxes(dyg[b], -1, -2)).sum(axis=0)

    dw = np.swapaxes(sum(_over_batch(n, cols.size, dw_share)), -1, -2)
    _give_back(cols)
    grads = {"weight": dw.reshape(w.shape)}
    if has_bias:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return _conv2d_input_grad(dy, dyg, w, L, x_shape), grads


def _conv2d_input_grad(dy, dyg, w, L: Conv2d, x_shape):
    k, d, (pad_h, pad_w) = L.kernel_size, L.dilation, L.padding
    reach = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
    few_inputs = 4 * x_shape[1] <= w.shape[0]  # a first layer (3 -> 32 channels): col2im copies 4x less
    if L.stride == (1, 1) and max(pad_h) <= reach[0] and max(pad_w) <= reach[1] and not few_inputs:
        # Stride 1: dX is the full correlation of dY with the kernel rotated 180°, in and out channels
        # swapped within each group — one more im2col + matmul, cheaper than scattering with col2im,
        # unless dY has many more channels than X: its im2col copies Cout·kh·kw rows, col2im Cin·kh·kw.
        g, (o, cg) = L.groups, w.shape[:2]
        rotated = w[:, :, ::-1, ::-1].reshape(g, o // g, cg, *k).swapaxes(1, 2).reshape(g * cg, o // g, *k)
        full = ((reach[0] - pad_h[0], reach[0] - pad_h[1]), (reach[1] - pad_w[0], reach[1] - pad_w[1]))
        dx, cols = _correlate(dy, rotated, g, k, (1, 1), d, full, x_shape[2:])
        _give_back(cols)
        return dx
    wg = w.reshape(L.groups, w.shape[0] // L.groups, -1)
    return _col2im(np.swapaxes(wg, 1, 2) @ dyg, x_shape, k, L.stride, d, L.padding, L.out_shape[2:])


# ---------------------------------------------------------------- conv_transpose2d (weight IOHW)
# The transposed conv is the input-gradient of a conv2d C: C maps Cout -> Cin channels with the
# same weight read as OIHW, and runs on the (padded) output. So its forward is C's backward.

def conv_transpose2d_forward(x, w, b, L: ConvTranspose2d):
    # y = col2im(Wᵀ·x) on the output grid, cropped by padding, zero-extended by output_padding
    n, g, in_hw = x.shape[0], L.groups, L.in_shape[2:]
    wg = w.reshape(g, w.shape[0] // g, -1)
    xg = x.reshape(n, g, -1, int(np.prod(in_hw)))
    y = _col2im(np.swapaxes(wg, 1, 2) @ xg, L.out_shape, L.kernel_size, L.stride, L.dilation, L.padding, in_hw)
    return (y if b is None else y + b[:, None, None]), (x, wg, b is not None)


def conv_transpose2d_backward(dy, cache, L: ConvTranspose2d):
    # dX = W·im2col(dY) ;  dW = Σ_n X·im2col(dY)ᵀ ;  db = Σ dY
    x, wg, has_bias = cache
    n, g, in_hw = x.shape[0], L.groups, L.in_shape[2:]
    cols = _im2col(dy, L.kernel_size, L.stride, L.dilation, L.padding, in_hw).reshape(n, g, -1, int(np.prod(in_hw)))
    xg = x.reshape(n, g, -1, cols.shape[-1])
    dx = (wg @ cols).reshape(x.shape)
    dw = np.einsum("ngcl,ngkl->gck", xg, cols, optimize=True)
    _give_back(cols)
    grads = {"weight": dw.reshape(L.in_shape[1], -1, *L.kernel_size)}
    if has_bias:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return dx, grads


# ---------------------------------------------------------------- pooling

def max_pool2d_forward(x, L: Pool2d):
    # y = max over the window; padded cells are -inf so they never win
    k, out_hw = L.kernel_size, L.out_shape[2:]
    win = _windows(x, k, L.stride, (1, 1), L.padding, out_hw, fill=-np.inf)
    flat = win.reshape(*x.shape[:2], k[0] * k[1], *out_hw)
    arg = flat.argmax(axis=2)  # first maximum in row-major window order (every framework's rule)
    return np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0], (x.shape, arg)


def max_pool2d_backward(dy, cache, L: Pool2d):
    # dx[argmax of each window] += dy   (ties: only the first maximum receives the gradient)
    (n, c, h, w), arg = cache
    k, s, pad = L.kernel_size, L.stride, L.padding
    hp, wp = h + sum(pad[0]), w + sum(pad[1])
    oy, ox = np.indices(dy.shape[2:])
    rows, cols = oy * s[0] + arg // k[1], ox * s[1] + arg % k[1]
    flat = (np.arange(n * c).reshape(n, c, 1, 1) * hp + rows) * wp + cols
    dxp = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=n * c * hp * wp).reshape(n, c, hp, wp)
    return dxp[:, :, pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w], {}


def _avg_divisor(x_shape, L: Pool2d):
    """kh·kw, or (count_include_pad: false) the number of real cells in each window."""
    k = L.kernel_size
    if L.count_include_pad:
        return float(k[0] * k[1])
    ones = np.ones((1, 1, *x_shape[2:]))
    return _windows(ones, k, L.stride, (1, 1), L.padding, L.out_shape[2:]).sum(axis=(2, 3))


def avg_pool2d_forward(x, L: Pool2d):
    # y = Σ window / divisor
    div = _avg_divisor(x.shape, L)
    win = _windows(x, L.kernel_size, L.stride, (1, 1), L.padding, L.out_shape[2:])
    return win.sum(axis=(2, 3)) / div, (x.shape, div)


def avg_pool2d_backward(dy, cache, L: Pool2d):
    # every cell of a window gets dy / divisor
    x_shape, div = cache
    k, out_hw = L.kernel_size, L.out_shape[2:]
    cols = np.broadcast_to((dy / div)[:, :, None, None], (*dy.shape[:2], *k, *out_hw))
    return _col2im(cols, x_shape, k, L.stride, (1, 1), L.padding, out_hw), {}


# ---------------------------------------------------------------- pointwise, reshape, dense

def activation_forward(x, L: Activation):
    if L.kind == "sigmoid":
        # 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: no overflow, and relative accuracy where σ is tiny
        # (½(1 + tanh(x/2)) is off by an absolute ulp of 1 there: 1e-9 relative at σ = 1e-7).
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1.0, e) / (1.0 + e)
    elif L.kind == "tanh":
        y = np.tanh(x)
    else:
        y = np.maximum(x, 0.0)
    return y, (x, y)


def activation_backward(dy, cache, L: Activation):
    # σ' = σ(1-σ) ;  tanh' = 1 - tanh² ;  relu' = [x > 0]  (so relu'(0) = 0)
    x, y = cache
    if L.kind == "sigmoid":
        return dy * y * (1.0 - y), {}
    if L.kind == "tanh":
        return dy * (1.0 - y * y), {}
    return dy * (x > 0), {}


def flatten_forward(x, L: Flatten):
    return x.reshape(x.shape[0], -1), x.shape  # row-major, batch axis kept


def flatten_backward(dy, cache, L: Flatten):
    return dy.reshape(cache), {}


def sum_forward(x, L: Sum):
    return np.asarray(x.sum()), x.shape


def sum_backward(dy, cache, L: Sum):
    return np.broadcast_to(dy, cache).copy(), {}  # d(Σx)/dx = 1 everywhere


def dense_forward(x, w, b, L: Dense):
    # y = x·Wᵀ + b
    y = x @ w.T
    return (y if b is None else y + b), (x, w, b is not None)


def dense_backward(dy, cache, L: Dense):
    # dx = dy·W ;  dW = dyᵀ·x ;  db = Σ_n dy
    x, w, has_bias = cache
    grads = {"weight": dy.T @ x}
    if has_bias:
        grads["bias"] = dy.sum(axis=0)
    return dy @ w, grads


_PARAMETRIC = {Conv2d: (conv2d_forward, conv2d_backward), Dense: (dense_forward, dense_backward),
               ConvTranspose2d: (conv_transpose2d_forward, conv_transpose2d_backward)}
_PLAIN = {Activation: (activation_forward, activation_backward), Flatten: (flatten_forward, flatten_backward),
          Sum: (sum_forward, sum_backward)}
_POOLS = {"max": (max_pool2d_forward, max_pool2d_backward), "avg": (avg_pool2d_forward, avg_pool2d_backward)}


def _pair_for(L: Layer):
    """The (forward, backward) pair that implements a layer."""
    if type(L) in _PARAMETRIC:
        return _PARAMETRIC[type(L)]
    return _POOLS[L.kind] if isinstance(L, Pool2d) else _PLAIN[type(L)]


def layer_forward(L: Layer, x, params: dict):
    forward = _pair_for(L)[0]
    if type(L) in _PARAMETRIC:
        return forward(x, params[f"{L.name}.weight"], params.get(f"{L.name}.bias"), L)
    return forward(x, L)


def layer_backward(L: Layer, dy, cache):
    dx, grads = _pair_for(L)[1](dy, cache, L)
    return dx, {f"{L.name}.{kind}": g for kind, g in grads.items()}


# ---------------------------------------------------------------- losses

def loss_and_grad(kind: str, y, target, round_off=None):
    """The loss value and dL/dy. `round_off(array, "softmax")`: see NumpyReference.run."""
    if kind == "mse":  # L = mean((y - t)²)
        d = y - target
        return np.mean(d * d), 2.0 * d / d.size
    if kind == "half_sse":  # L = ½ Σ (t - y)²
        d = y - target
        return 0.5 * np.sum(d * d), d
    if kind == "sum":  # L = Σ y
        return np.sum(y), np.ones_like(y)
    if kind == "grad_output":  # L = Σ y·v, so dL/dy = v
        return np.sum(y * target), np.array(target, dtype=np.float64)
    if kind == "cross_entropy":  # L = mean_n(-log softmax(y_n)[t_n]);  dL/dy = (softmax - onehot)/N
        n = y.shape[0]
        z = y - y.max(axis=1, keepdims=True)
        total = np.exp(z).sum(axis=1, keepdims=True)  # softmax p = exp(z) / total
        p = np.exp(z) / total
        if round_off is not None:  # a confident row: total is 1 + tiny, and p − 1 at its class nearly cancels
            round_off(total, "softmax")
            round_off(p, "softmax")
        t = target.astype(np.int64)
        onehot = np.zeros_like(y)
        onehot[np.arange(n), t] = 1.0
        return (np.log(total)[:, 0] - z[np.arange(n), t]).mean(), (p - onehot) / n
    raise ValueError(f"unknown loss {kind}")


# ---------------------------------------------------------------- optimizers (torch.optim's formulas)

class SGD:
    def __init__(self, opt: Optimizer):
        self.opt, self.buf = opt, {}

    def update(self, name, p, g):
        o = self.opt
        g = g + o.weight_decay * p  # coupled L2
        if o.momentum:
            # b ← g (first step), then b ← μ·b + g ;  nesterov: step along g + μ·b
            b = self.buf[name] = g if name not in self.buf else o.momentum * self.buf[name] + g
            g = g + o.momentum * b if o.nesterov else b
        return p - o.lr * g


class Adam:
    def __init__(self, opt: Optimizer):
        self.opt, self.m, self.v, self.t = opt, {}, {}, {}

    def update(self, name, p, g):
        o, (b1, b2) = self.opt, self.opt.betas
        g = g + o.weight_decay * p  # coupled L2 (torch.optim.Adam)
        t = self.t[name] = self.t.get(name, 0) + 1
        m = self.m[name] = b1 * self.m.get(name, 0.0) + (1 - b1) * g
        v = self.v[name] = b2 * self.v.get(name, 0.0) + (1 - b2) * g * g
        # p ← p - lr · m̂ / (√v̂ + ε), with m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ)
        return p - o.lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + o.eps)


def make_optimizer(opt: Optimizer | None):
    return None if opt is None else (SGD if opt.kind == "sgd" else Adam)(opt)


# ---------------------------------------------------------------- the adapter

class NumpyReference:
    """The hand-written float64 reference (SPEC §5)."""
    name = "numpy"

    def missing(self):
        return None

    def version(self):
        return np.__version__

    def run(self, case, initial: Initial, round_off=None) -> Trace:
        """`round_off(array, layer)` (the runner's conditioning runs only): called in place on each layer's
        output, with layer "softmax" on cross-entropy's softmax sum and probabilities, with "gradient" on
        each gradient the backward pass stores, and with layer None on each updated parameter
        (tolerance.rounded_layers, stored_in_dtype). One with `wants_terms` set gets a conv or dense
        output with `terms=`, the sum of the absolute values of the terms each element adds up."""
        one_thread_native_pools("numpy")  # NumPy's BLAS too: a big layer splits its batch instead (_over_batch)
        params = {k: np.array(v, dtype=np.float64) for k, v in initial.params.items()}
        x0 = np.array(initial.input, dtype=np.float64)
        opt = make_optimizer(case.optimizer)
        steps = []
        for _ in range(case.steps):
            with np.errstate(all="ignore"):  # overflow shows up as non-finite values, which the runner reports
                loss, output, grads, magnitude = gradients(case, x0, params, initial.target, round_off)
            if opt is not None:
                params = {k: opt.update(k, p, grads[k]) for k, p in params.items()}
                for p in params.values() if round_off is not None else ():
                    round_off(p, None)
            steps.append(Step(np.asarray(loss), output, grads, dict(params) if opt is not None else {}, magnitude))
        return Trace(steps)


def gradients(case, x, params, target, round_off=None):
    """Forward through every layer, then backward in reverse: (loss, output, {name: gradient}, magnitudes)."""
    caches, last_input = [], x
    for L in case.layers:
        last_input = x
        x, cache = layer_forward(L, x, params)
        bias = params.get(f"{L.name}.bias") if type(L) in _PARAMETRIC else None
        if round_off is not None and bias is not None:  # a framework that adds the bias as its own op
            b = bias.reshape((1, -1) + (1,) * (x.ndim - 2))
            before = x - b
            round_off(before, "before bias")
            x[...] = before + b
        if getattr(round_off, "wants_terms", False) and type(L) in _PARAMETRIC:
            # Σ|terms| of each output (|x|·|W| + |b|): the scale a framework's rounded accumulation works at
            own = {p.name: np.abs(params[p.name]) for p in L.params}
            terms, _ = layer_forward(L, np.abs(last_input), own)
            round_off(x, L, terms=terms)
        elif round_off is not None and not isinstance(L, Flatten):  # a flatten's output is a view of its input
            round_off(x, L)  # in place: an activation's cache holds this same array, and its derivative reads it
        caches.append(cache)
    loss, dy = loss_and_grad(case.loss.kind, x, target, round_off)
    # How big an error in the loss an output error of one part in max|y| makes: Σ|dL/dy|·max|y|.
    magnitude = {"loss": float(abs(loss) + np.abs(dy).sum() * np.abs(x).max())}
    if isinstance(case.layers[-1], Sum):
        magnitude["output"] = float(np.abs(last_input).sum())  # the terms the output was summed from
    grads = {}
    if round_off is not None:
        dy = np.require(dy, requirements="W")  # a copy only where dy is read-only
        round_off(dy, "gradient")
    for L, cache in zip(reversed(case.layers), reversed(caches)):
        dy, g = layer_backward(L, dy, cache)
        if round_off is not None:  # as a framework stores them: each layer's input gradient and parameter gradients
            dy = np.require(dy, requirements="W")
            round_off(dy, "gradient")
            for v in g.values():
                round_off(v, "gradient")
        grads.update(g)
    grads["input"] = dy
    return loss, x, grads, magnitude
