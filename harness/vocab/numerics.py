"""The reference's shared numerics: padded strided window views, im2col / col2im, and the batch split
that runs a big layer's copies and GEMMs on several threads. Every convolution and pool is built on these."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..threads import thread_limit, usable_cores


# ---------------------------------------------------------------- windows

def padded(x, pad, fill):
    """x padded by ((top, bottom), (left, right)) cells of `fill`. np.pad does the same through a
    general path that costs ~20 µs a call; the reference pads every small layer several times a step."""
    (top, bottom), (left, right) = pad
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, top + h + bottom, left + w + right), fill, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    return xp


def windows(x, k, s, d, pad, out_hw, fill=0.0):
    """(N,C,H,W) -> read-only view (N,C,kh,kw,Ho,Wo); tap (i,j) of output (y,x) is xpad[y·s + i·d, x·s + j·d]."""
    xp = padded(x, pad, fill)
    n, c, _, _ = xp.shape
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, k[0], k[1], *out_hw),
                      (s0, s1, s2 * d[0], s3 * d[1], s2 * s[0], s3 * s[1]), writeable=False)


def im2col(x, k, s, d, pad, out_hw):
    """(N,C,H,W) -> (N, C·kh·kw, Ho·Wo): column l is the receptive field of output pixel l."""
    n, c = x.shape[:2]
    cols = take_spare((n, c, *k, *out_hw), x.dtype)
    over_batch(n, cols.size, lambda b: cols.__setitem__(b, windows(x[b], k, s, d, pad, out_hw)))
    return cols.reshape(n, c * k[0] * k[1], -1)


# im2col's columns are the reference's one big allocation (kh·kw times the input), and a fresh
# 100 MB array costs about as much in page faults as filling it. So a backward gives back the
# columns it has finished with, one array per thread, for the next im2col to write over.
_SPARE = threading.local()


def take_spare(shape, dtype) -> np.ndarray:
    size, spare = int(np.prod(shape)), getattr(_SPARE, "cols", None)
    if spare is None or spare.dtype != dtype or spare.size < size:
        return np.empty(shape, dtype=dtype)
    _SPARE.cols = None
    return spare.reshape(-1)[:size].reshape(shape)


def give_back(cols: np.ndarray) -> None:
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


def over_batch(n: int, size: int, work) -> list:
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


def col2im(cols, x_shape, k, s, d, pad, out_hw):
    """Adjoint of _im2col: add every window entry back onto the input pixel it came from."""
    n, c, h, w = x_shape
    cols = cols.reshape(n, c, k[0], k[1], *out_hw)
    xp = np.zeros((n, c, h + sum(pad[0]), w + sum(pad[1])), dtype=cols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            r, q = i * d[0], j * d[1]
            xp[:, :, r:r + s[0] * (out_hw[0] - 1) + 1:s[0], q:q + s[1] * (out_hw[1] - 1) + 1:s[1]] += cols[:, :, i, j]
    return xp[:, :, pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w]


# ---------------------------------------------------------------- padding modes (conv2d, conv1d)

def mode_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """The source cell of each cell of an axis extended by before + after cells (the shape rule has
    checked reflect's pads < n and circular's <= n)."""
    i = np.arange(-before, n + after)
    if mode == "reflect":  # x[-i], x[2(n − 1) − i]: mirrored about the edge cell, which is not repeated
        return np.where(i < 0, -i, np.where(i >= n, 2 * (n - 1) - i, i))
    if mode == "replicate":  # the edge cell repeated
        return np.clip(i, 0, n - 1)
    return i % n  # circular: wrapped around


def mode_pad(x, pad, mode: str):
    """(N,C,H,W) extended on every side by pad = ((top, bottom), (left, right)) cells of `mode`."""
    ih, iw = (mode_index(x.shape[2 + a], *pad[a], mode) for a in range(2))
    return x[:, :, ih][:, :, :, iw]


def mode_pad_adjoint(dxp, x_shape, pad, mode: str):
    """The adjoint of mode_pad: each extended cell's gradient added back onto its source cell."""
    ih, iw = (mode_index(x_shape[2 + a], *pad[a], mode) for a in range(2))
    rows = np.zeros((*x_shape[:3], dxp.shape[3]), dtype=dxp.dtype)
    np.add.at(rows, (slice(None), slice(None), ih), dxp)
    dx = np.zeros(x_shape, dtype=dxp.dtype)
    np.add.at(dx, (slice(None), slice(None), slice(None), iw), rows)
    return dx
