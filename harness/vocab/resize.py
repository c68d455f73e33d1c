"""upsample (nearest or bilinear, integer scale factors): parameters, shape rule, reference math.

Both modes are separable: y = M_h · x · M_wᵀ with one (H·s, H) interpolation matrix per axis, so the
backward is the transposed product. Bilinear follows PyTorch: `align_corners: false` reads output pixel i
at source coordinate (i + ½)/s − ½ clamped at 0 (pixel centres), `true` at i·(H − 1)/(H·s − 1) (corners).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Layer
from ..errors import CaseError, ShapeError, unknown
from ..fields import boolean, check_size, pair, sizes_in_reach, string
from .base import BOOL, NAME, PAIR, REQUIRED, Field, LayerDecl, Site

MODES = ("nearest", "bilinear")


@dataclass(frozen=True, kw_only=True)
class Upsample(Layer):
    TYPE = "upsample"
    scale_factor: tuple[int, int]
    mode: str = "nearest"
    align_corners: bool = False


def _build(p: dict, site: Site) -> Upsample:
    path = site.path
    if len(site.shape) != 4:
        raise ShapeError(f"upsample needs a 4-D NCHW input, got shape {list(site.shape)}", path)
    if "scale_factor" not in p:
        raise CaseError("missing `scale_factor`", path)
    sizes_in_reach(p, path, ("scale_factor",))
    s = pair(p["scale_factor"], path + ("scale_factor",), min=1)
    mode = string(p.get("mode", "nearest"), path + ("mode",))
    if mode not in MODES:
        raise CaseError(unknown("mode", mode, MODES), path + ("mode",))
    corners = boolean(p.get("align_corners", False), path + ("align_corners",))
    if corners and mode != "bilinear":
        raise CaseError("align_corners applies to mode `bilinear` only", path + ("align_corners",))
    n, c, h, w = site.shape
    out = (n, c, h * s[0], w * s[1])
    check_size(out, path + ("scale_factor",), "the output")
    for size, factor in ((h, s[0]), (w, s[1])):
        check_size((size * factor, size), path + ("scale_factor",), "an interpolation matrix")
    return Upsample(name=site.name, in_shape=site.shape, out_shape=out, scale_factor=s, mode=mode,
                    align_corners=corners)


def interpolation_matrix(n: int, s: int, mode: str, corners: bool) -> np.ndarray:
    """(n·s, n): row i holds the weights output pixel i takes from the input pixels of one axis."""
    i, m = np.arange(n * s), np.zeros((n * s, n))
    if mode == "nearest":
        m[i, i // s] = 1.0  # y[i] = x[⌊i / s⌋]
        return m
    if corners:
        src = i * ((n - 1) / (n * s - 1)) if n * s > 1 else np.zeros(n * s)  # src = i·(H − 1)/(H·s − 1)
    else:
        src = np.maximum((i + 0.5) / s - 0.5, 0.0)  # src = max((i + ½)/s − ½, 0)
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi, frac = np.minimum(lo + 1, n - 1), src - lo
    np.add.at(m, (i, lo), 1.0 - frac)  # y[i] = (1 − λ)·x[lo] + λ·x[hi], λ = src − lo
    np.add.at(m, (i, hi), frac)
    return m


def upsample_forward(L: Upsample, xs, p):
    # y = M_h · x · M_wᵀ   (M: interpolation_matrix of each axis)
    (x,) = xs
    mh, mw = (interpolation_matrix(x.shape[2 + a], L.scale_factor[a], L.mode, L.align_corners).astype(x.dtype)
              for a in range(2))
    return np.einsum("ih,nchw,jw->ncij", mh, x, mw, optimize=True), (mh, mw)


def upsample_backward(L: Upsample, dy, cache):
    # dx = M_hᵀ · dy · M_w
    mh, mw = cache
    return [np.einsum("ih,ncij,jw->nchw", mh, dy, mw, optimize=True)], {}


UPSAMPLE = LayerDecl(
    "upsample", "integer-factor resize: `nearest` repeats pixels; `bilinear` reads pixel centres, or corners "
    "with `align_corners: true` (PyTorch's)",
    (Field("name", NAME, doc_default="<type>_<index>"), Field("scale_factor", PAIR, REQUIRED),
     Field("mode", {"enum": list(MODES)}, "nearest"), Field("align_corners", BOOL, False)),
    _build, upsample_forward, upsample_backward)
DECLS = (UPSAMPLE,)
