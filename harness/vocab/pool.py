"""max_pool2d and avg_pool2d: parameters, shape rule, reference math (strided window views)."""
from __future__ import annotations

import numpy as np

from ..case import Pool2d
from ..errors import CaseError, ShapeError
from ..fields import boolean, out_size, pair, parse_padding
from .base import BOOL, INT, NAME, PAIR, REQUIRED, Field, LayerDecl, Site
from .numerics import col2im, windows

_PADDING = {"anyOf": [PAIR, {"enum": ["same", "valid"]}, {"type": "array", "items": {"type": "array", "items": INT}}]}
FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("kernel_size", PAIR, REQUIRED),
          Field("stride", PAIR, doc_default="kernel_size"), Field("padding", _PADDING, 0))


def _build(kind: str, p: dict, site: Site) -> Pool2d:
    path, shape = site.path, site.shape
    if len(shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(shape)}", path)
    if "kernel_size" not in p:
        raise CaseError("missing `kernel_size`", path)
    k = pair(p["kernel_size"], path + ("kernel_size",), min=1)
    s = pair(p.get("stride", list(k)), path + ("stride",), min=1)
    hw = shape[2:]
    pad = parse_padding(p["padding"], path + ("padding",), hw, k, s, (1, 1))
    out_hw = tuple(out_size(hw[i], pad[i], k[i], s[i], 1) for i in range(2))
    if min(out_hw) < 1:
        raise ShapeError(f"output size would be {out_hw[0]}x{out_hw[1]} for a {hw[0]}x{hw[1]} input "
                         f"(kernel {k}, stride {s}, padding {pad})", path)
    for i in range(2):  # every window must hold at least one real cell
        if pad[i][0] >= k[i] or (out_hw[i] - 1) * s[i] >= pad[i][0] + hw[i]:
            raise ShapeError(f"padding {pad[i]} makes a pooling window lie entirely in padding", path + ("padding",))
    cip = boolean(p.get("count_include_pad", True), path + ("count_include_pad",))
    return Pool2d(name=site.name, in_shape=shape, out_shape=(*shape[:2], *out_hw), kind=kind[:3], kernel_size=k,
                  stride=s, padding=pad, count_include_pad=cip)


# ---------------------------------------------------------------- max

def max_pool2d_forward(L: Pool2d, xs, p):
    # y = max over the window; padded cells are -inf so they never win
    (x,), k, out_hw = xs, L.kernel_size, L.out_shape[2:]
    win = windows(x, k, L.stride, (1, 1), L.padding, out_hw, fill=-np.inf)
    flat = win.reshape(*x.shape[:2], k[0] * k[1], *out_hw)
    arg = flat.argmax(axis=2)  # first maximum in row-major window order (every framework's rule)
    return np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0], (x.shape, arg)


def max_pool2d_backward(L: Pool2d, dy, cache):
    # dx[argmax of each window] += dy   (ties: only the first maximum receives the gradient)
    (n, c, h, w), arg = cache
    k, s, pad = L.kernel_size, L.stride, L.padding
    hp, wp = h + sum(pad[0]), w + sum(pad[1])
    oy, ox = np.indices(dy.shape[2:])
    rows, cols = oy * s[0] + arg // k[1], ox * s[1] + arg % k[1]
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
    """kh·kw, or (count_include_pad: false) the number of real cells in each window."""
    k = L.kernel_size
    if L.count_include_pad:
        return float(k[0] * k[1])
    ones = np.ones((1, 1, *x_shape[2:]))
    return windows(ones, k, L.stride, (1, 1), L.padding, L.out_shape[2:]).sum(axis=(2, 3))


def avg_pool2d_forward(L: Pool2d, xs, p):
    # y = Σ window / divisor
    (x,) = xs
    div = avg_divisor(x.shape, L)
    win = windows(x, L.kernel_size, L.stride, (1, 1), L.padding, L.out_shape[2:])
    return win.sum(axis=(2, 3)) / div, (x.shape, div)


def avg_pool2d_backward(L: Pool2d, dy, cache):
    # every cell of a window gets dy / divisor
    x_shape, div = cache
    k, out_hw = L.kernel_size, L.out_shape[2:]
    cols = np.broadcast_to((dy / div)[:, :, None, None], (*dy.shape[:2], *k, *out_hw))
    return [col2im(cols, x_shape, k, L.stride, (1, 1), L.padding, out_hw)], {}


MAX_POOL2D = LayerDecl("max_pool2d", "window maximum; padding is -inf; ties go to the first maximum", FIELDS,
                       lambda p, site: _build("max_pool2d", p, site), max_pool2d_forward, max_pool2d_backward)
AVG_POOL2D = LayerDecl("avg_pool2d", "window mean; `count_include_pad: false` divides by the real cells",
                       (*FIELDS, Field("count_include_pad", BOOL, True)),
                       lambda p, site: _build("avg_pool2d", p, site), avg_pool2d_forward, avg_pool2d_backward)
DECLS = (MAX_POOL2D, AVG_POOL2D)
