"""max_pool2d, avg_pool2d (dilation, ceil_mode), global_avg_pool2d and adaptive_avg_pool2d: parameters,
shape rules, reference math (strided window views; the adaptive pool as two window-mean matrices)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Layer, Pool2d
from ..errors import CaseError, ShapeError
from ..fields import MAX_ELEMENTS, boolean, check_size, pair, parse_padding, sizes_in_reach
from .base import BOOL, INT, NAME, PAIR, REQUIRED, Field, LayerDecl, Site
from .numerics import col2im, windows

_PADDING = {"anyOf": [PAIR, {"enum": ["same", "valid"]}, {"type": "array", "items": {"type": "array", "items": INT}}]}
FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("kernel_size", PAIR, REQUIRED),
          Field("stride", PAIR, doc_default="kernel_size"), Field("padding", _PADDING, 0))
CEIL = Field("ceil_mode", BOOL, False)
_CHECKED_WINDOWS = 1 << 16  # windows checked one by one (only when the dilation exceeds the input)


def _check_pads(pad, path) -> None:
    for side in (*pad[0], *pad[1]):
        if side > MAX_ELEMENTS:
            raise CaseError(f"padding {side:,} is beyond any tensor gradconf can hold", path)


def pool_axis(n: int, pad, k: int, s: int, d: int, ceil: bool, path, axis: str):
    """(output size, ceil_mode's extra cells past the far padding) along one axis, PyTorch's rule."""
    span = d * (k - 1) + 1
    room = n + pad[0] + pad[1] - span
    if room < 0:
        raise ShapeError(f"the window ({span} cells) is larger than the padded {axis} ({n + pad[0] + pad[1]})", path)
    out = (room + (s - 1 if ceil else 0)) // s + 1  # ⌊ or ⌈ (H + pads − d·(k−1) − 1) / s ⌉ + 1
    if ceil and (out - 1) * s >= n + pad[0]:  # a last window starting in the far padding is dropped
        out -= 1
    # the cells the last window reads past the padded input; after a drop, negative: the far padding it
    # leaves unread, which a "valid" pool of the padded input would otherwise make one more window of
    past = (out - 1) * s + span - (n + pad[0] + pad[1])
    return out, max(-pad[1], past) if ceil else max(0, past)


def real_in_every_window(n: int, top: int, k: int, s: int, d: int, out: int) -> bool:
    """Does every window t = o·s, taps t + j·d (j < k), hold a cell of [top, top + n)? Closed form when
    d <= n (taps d apart cannot skip over the n real cells), else window by window (at most 2^16)."""
    if d <= n:
        return d * (k - 1) >= top and (out - 1) * s < top + n
    if out > _CHECKED_WINDOWS:
        return False
    t = np.arange(out, dtype=np.int64) * s
    j0 = np.maximum(0, -((t - top) // d))  # the first tap at or past `top`: ⌈(top − t) / d⌉
    return bool(np.all((j0 <= k - 1) & (t + j0 * d < top + n)))


def _build(kind: str, p: dict, site: Site) -> Pool2d:
    path, shape = site.path, site.shape
    if len(shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(shape)}", path)
    if "kernel_size" not in p:
        raise CaseError("missing `kernel_size`", path)
    sizes_in_reach(p, path, ("kernel_size", "stride", "dilation"))
    k = pair(p["kernel_size"], path + ("kernel_size",), min=1)
    s = pair(p.get("stride", list(k)), path + ("stride",), min=1)
    d = pair(p.get("dilation", 1), path + ("dilation",), min=1)
    ceil = boolean(p.get("ceil_mode", False), path + ("ceil_mode",))
    hw = shape[2:]
    pad = parse_padding(p["padding"], path + ("padding",), hw, k, s, d)
    _check_pads(pad, path + ("padding",))
    axes = [pool_axis(hw[i], pad[i], k[i], s[i], d[i], ceil, path, "height width".split()[i]) for i in range(2)]
    out_hw = tuple(a[0] for a in axes)
    check_size((*shape[:2], *out_hw), path, "the output")
    for i in range(2):  # every window must hold at least one real cell
        if pad[i][0] >= d[i] * (k[i] - 1) + 1 or not real_in_every_window(hw[i], pad[i][0], k[i], s[i], d[i], out_hw[i]):
            raise ShapeError(f"padding {pad[i]} makes a pooling window lie entirely in padding", path + ("padding",))
    cip = boolean(p.get("count_include_pad", True), path + ("count_include_pad",))
    return Pool2d(name=site.name, in_shape=shape, out_shape=(*shape[:2], *out_hw), kind=kind[:3], kernel_size=k,
                  stride=s, padding=pad, count_include_pad=cip, dilation=d, ceil_mode=ceil,
                  extra=(axes[0][1], axes[1][1]))


def grid(L: Pool2d):
    """The padding every window view reads: the layer's, plus ceil_mode's extra cells at the far end."""
    return L.window_padding


# ---------------------------------------------------------------- max

def max_pool2d_forward(L: Pool2d, xs, p):
    # y = max over the (dilated) window; padded and ceil_mode cells are -inf so they never win
    (x,), k, out_hw = xs, L.kernel_size, L.out_shape[2:]
    win = windows(x, k, L.stride, L.dilation, grid(L), out_hw, fill=-np.inf)
    flat = win.reshape(*x.shape[:2], k[0] * k[1], *out_hw)
    arg = flat.argmax(axis=2)  # first maximum in row-major window order (every framework's rule)
    return np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0], (x.shape, arg)


def max_pool2d_backward(L: Pool2d, dy, cache):
    # dx[argmax of each window] += dy   (ties: only the first maximum receives the gradient)
    (n, c, h, w), arg = cache
    k, s, d, pad = L.kernel_size, L.stride, L.dilation, grid(L)
    hp, wp = h + sum(pad[0]), w + sum(pad[1])
    oy, ox = np.indices(dy.shape[2:])
    rows, cols = oy * s[0] + (arg // k[1]) * d[0], ox * s[1] + (arg % k[1]) * d[1]
    flat = (np.arange(n * c).reshape(n, c, 1, 1) * hp + rows) * wp + cols
    if dy.dtype == np.float64:  # bincount sums in float64 only, and fast
        dxp = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=n * c * hp * wp).reshape(n, c, hp, wp)
    else:  # the long-double recheck (harness.blame)
        dxp = np.zeros(n * c * hp * wp, dtype=dy.dtype)
        np.add.at(dxp, flat.ravel(), dy.ravel())
        dxp = dxp.reshape(n, c, hp, wp)
    return [dxp[:, :, pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w]], {}


# ---------------------------------------------------------------- average

def avg_divisor(x_shape, L: Pool2d):
    """kh·kw; a window clipped by ceil_mode: its cells inside the padded input; `count_include_pad: false`:
    its real cells. The window sums of a mask of ones."""
    k, (t, b), (le, r) = L.kernel_size, *L.padding
    if L.count_include_pad and not L.clipped:
        return float(k[0] * k[1])
    h, w = x_shape[2:]
    if L.count_include_pad:  # ones over the padded input, zeros over ceil_mode's extra cells
        ones, pad = np.ones((1, 1, *L.counted_hw)), ((0, L.beyond[0]), (0, L.beyond[1]))
    else:
        ones, pad = np.ones((1, 1, h, w)), grid(L)
    return windows(ones, k, L.stride, (1, 1), pad, L.out_shape[2:]).sum(axis=(2, 3))


def avg_pool2d_forward(L: Pool2d, xs, p):
    # y = Σ window / divisor
    (x,) = xs
    div = avg_divisor(x.shape, L)
    win = windows(x, L.kernel_size, L.stride, (1, 1), grid(L), L.out_shape[2:])
    return win.sum(axis=(2, 3)) / div, (x.shape, div)


def avg_pool2d_backward(L: Pool2d, dy, cache):
    # every cell of a window gets dy / divisor
    x_shape, div = cache
    k, out_hw = L.kernel_size, L.out_shape[2:]
    cols = np.broadcast_to((dy / div)[:, :, None, None], (*dy.shape[:2], *k, *out_hw))
    return [col2im(cols, x_shape, k, L.stride, (1, 1), grid(L), out_hw)], {}


# ---------------------------------------------------------------- global and adaptive average

@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool2d(Layer):
    TYPE = "global_avg_pool2d"


@dataclass(frozen=True, kw_only=True)
class AdaptiveAvgPool2d(Layer):
    TYPE = "adaptive_avg_pool2d"
    output_size: tuple[int, int]


def _nchw(kind, site: Site):
    if len(site.shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(site.shape)}", site.path)
    return site.shape


def global_avg_pool2d_forward(L, xs, p):
    # y[n, c] = Σ_{h,w} x[n, c, h, w] / (H·W)
    (x,) = xs
    return x.sum(axis=(2, 3)) / (x.shape[2] * x.shape[3]), x.shape


def global_avg_pool2d_backward(L, dy, cache):
    # dx[n, c, h, w] = dy[n, c] / (H·W)
    n, c, h, w = cache
    return [np.broadcast_to((dy / (h * w))[:, :, None, None], cache).copy()], {}


def _adaptive(p, site: Site) -> AdaptiveAvgPool2d:
    n, c, h, w = _nchw("adaptive_avg_pool2d", site)
    if "output_size" not in p:
        raise CaseError("missing `output_size`", site.path)
    sizes_in_reach(p, site.path, ("output_size",))
    out = pair(p["output_size"], site.path + ("output_size",), min=1)
    check_size((n, c, *out), site.path + ("output_size",), "the output")
    check_size((out[0], h), site.path + ("output_size",), "the height window matrix")
    check_size((out[1], w), site.path + ("output_size",), "the width window matrix")
    return AdaptiveAvgPool2d(name=site.name, in_shape=site.shape, out_shape=(n, c, *out), output_size=out)


def adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row i is 1/len over window i = ⌊i·n_in/n_out⌋ … ⌈(i+1)·n_in/n_out⌉ − 1, 0 elsewhere."""
    i = np.arange(n_out)
    start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)  # ⌊i·H/h⌋, ⌈(i+1)·H/h⌉
    j = np.arange(n_in)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside / (end - start)[:, None]


def adaptive_avg_pool2d_forward(L: AdaptiveAvgPool2d, xs, p):
    # y = A_h · x · A_wᵀ   (A: window-mean matrices, adaptive_matrix)
    (x,) = xs
    ah, aw = (adaptive_matrix(x.shape[2 + i], L.output_size[i]).astype(x.dtype) for i in range(2))
    return np.einsum("ih,nchw,jw->ncij", ah, x, aw, optimize=True), (ah, aw)


def adaptive_avg_pool2d_backward(L: AdaptiveAvgPool2d, dy, cache):
    # dx = A_hᵀ · dy · A_w
    ah, aw = cache
    return [np.einsum("ih,ncij,jw->nchw", ah, dy, aw, optimize=True)], {}


MAX_POOL2D = LayerDecl("max_pool2d", "window maximum; padding is -inf; ties go to the first maximum; "
                       "`ceil_mode` drops a last window starting in the far padding",
                       (*FIELDS, Field("dilation", PAIR, 1), CEIL),
                       lambda p, site: _build("max_pool2d", p, site), max_pool2d_forward, max_pool2d_backward)
AVG_POOL2D = LayerDecl("avg_pool2d", "window mean; `count_include_pad: false` divides by the real cells; a window "
                       "clipped by `ceil_mode` by its cells inside the padded input",
                       (*FIELDS, Field("count_include_pad", BOOL, True), CEIL),
                       lambda p, site: _build("avg_pool2d", p, site), avg_pool2d_forward, avg_pool2d_backward)
GLOBAL_AVG_POOL2D = LayerDecl(
    "global_avg_pool2d", "mean over H and W: (N, C, H, W) -> (N, C)", (FIELDS[0],),
    lambda p, site: GlobalAvgPool2d(name=site.name, in_shape=_nchw("global_avg_pool2d", site),
                                    out_shape=site.shape[:2]),
    global_avg_pool2d_forward, global_avg_pool2d_backward)
ADAPTIVE_AVG_POOL2D = LayerDecl(
    "adaptive_avg_pool2d", "mean over window i = ⌊i·H/h⌋ … ⌈(i+1)·H/h⌉ − 1 of each axis",
    (FIELDS[0], Field("output_size", PAIR, REQUIRED)), _adaptive, adaptive_avg_pool2d_forward,
    adaptive_avg_pool2d_backward)
DECLS = (MAX_POOL2D, AVG_POOL2D, GLOBAL_AVG_POOL2D, ADAPTIVE_AVG_POOL2D)
