"""conv2d (weight OIHW) and conv_transpose2d (weight IOHW): parameters, shape rule, reference math."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..case import Conv2d, ConvTranspose2d, Param
from ..errors import CaseError, ShapeError
from ..errors import unknown
from ..fields import (bias_params, check_size, default_param, integer, literal, out_size, pair, parse_padding,
                      same_padding, sizes_in_reach, string, tensor)
from .base import BOOL, INT, NAME, PAIR, REQUIRED, TENSOR, Field, LayerDecl, Site
from .numerics import col2im, give_back, im2col, mode_pad, mode_pad_adjoint, over_batch, take_spare, windows

_PADDING = {"anyOf": [PAIR, {"enum": ["same", "valid"]}, {"type": "array", "items": {"type": "array", "items": INT}}]}
FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("in_channels", INT, doc_default="checked if given"),
          Field("out_channels", INT, REQUIRED, doc_default="required (or from a literal weight)"),
          Field("kernel_size", PAIR, REQUIRED, doc_default="required (or from a literal weight)"),
          Field("stride", PAIR, 1), Field("padding", _PADDING, 0), Field("dilation", PAIR, 1), Field("groups", INT, 1),
          Field("bias", {"anyOf": [BOOL, TENSOR]}, True), Field("weight", TENSOR, doc_default="PyTorch's init"))
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_MODE = Field("padding_mode", {"enum": list(PADDING_MODES)}, "zeros")


def padding_mode(p: dict, path, pad, sizes) -> str:
    """The padding mode, checked against the padding: reflect needs every side < its axis, circular <=."""
    mode = string(p.get("padding_mode", "zeros"), path + ("padding_mode",))
    if mode not in PADDING_MODES:
        raise CaseError(unknown("padding_mode", mode, PADDING_MODES), path + ("padding_mode",))
    for sides, n in zip(pad, sizes):
        if (mode == "reflect" and max(sides) >= n) or (mode == "circular" and max(sides) > n):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise ShapeError(f"padding_mode {mode} needs padding {rule} the input size ({n}), got {max(sides)}",
                             path + ("padding",))
    return mode


# ---------------------------------------------------------------- validation and shape rule

def _geometry(kind: str, p: dict, site: Site):
    """(out_channels, kernel, stride, dilation, groups), checked against the input's channels."""
    path, transposed = site.path, kind == "conv_transpose2d"
    if len(site.shape) != 4:
        raise ShapeError(f"{kind} needs a 4-D NCHW input, got shape {list(site.shape)}", path)
    c = site.shape[1]
    if "in_channels" in p and integer(p["in_channels"], path + ("in_channels",), min=1) != c:
        raise ShapeError(f"in_channels is {p['in_channels']} but the incoming tensor has {c} channels "
                         f"(shape {list(site.shape)})", path + ("in_channels",))
    literal_w = p.get("weight") if isinstance(p.get("weight"), list) else None
    wshape = literal(literal_w, path + ("weight",), "weight").shape if literal_w is not None else None
    if wshape is not None and len(wshape) != 4:
        raise CaseError(f"a {kind} weight is 4-D ({'IOHW' if transposed else 'OIHW'}), got shape {list(wshape)}",
                        path + ("weight",))
    groups = integer(p["groups"], path + ("groups",), min=1)
    if "out_channels" in p:
        out_c = integer(p["out_channels"], path + ("out_channels",), min=1)
    elif wshape is not None:
        out_c = wshape[1] * groups if transposed else wshape[0]
    else:
        raise CaseError("missing `out_channels`", path)
    if "kernel_size" in p:
        k = pair(p["kernel_size"], path + ("kernel_size",), min=1)
    elif wshape is not None:
        k = (wshape[2], wshape[3])
    else:
        raise CaseError("missing `kernel_size`", path)
    s = pair(p["stride"], path + ("stride",), min=1)
    d = pair(p["dilation"], path + ("dilation",), min=1)
    if c % groups:
        raise ShapeError(f"in_channels {c} is not divisible by groups {groups}", path + ("groups",))
    if out_c % groups:
        raise ShapeError(f"out_channels {out_c} is not divisible by groups {groups}", path + ("groups",))
    return out_c, k, s, d, groups


def _transposed_out(p: dict, path, hw, k, s, d):
    """(padding, output_padding, output size) of a transposed conv: the full output, cropped, extended."""
    full = tuple((n - 1) * s[i] + d[i] * (k[i] - 1) + 1 for i, n in enumerate(hw))
    op = pair(p["output_padding"], path + ("output_padding",))
    if p["padding"] == "same":
        if op != (0, 0):
            raise ShapeError("output_padding must be 0 with padding `same` (the output is input·stride)",
                             path + ("output_padding",))
        # The transposed twin of a `same` conv on an input of size n·s.
        pad = tuple(same_padding(n * s[i], k[i], s[i], d[i]) for i, n in enumerate(hw))
        op = tuple(max(0, s[i] - d[i] * (k[i] - 1) - 1) for i in range(2))
    else:
        pad = parse_padding(p["padding"], path + ("padding",), hw, k, s, d)
    for i in range(2):
        if op[i] >= max(s[i], d[i]):
            raise ShapeError(f"output_padding {op[i]} must be smaller than stride or dilation "
                             f"({max(s[i], d[i])})", path + ("output_padding",))
    return pad, op, tuple(full[i] - pad[i][0] - pad[i][1] + op[i] for i in range(2))


def _build(kind: str, p: dict, site: Site):
    sizes_in_reach(p, site.path, ("out_channels", "kernel_size"))
    path, transposed = site.path, kind == "conv_transpose2d"
    out_c, k, s, d, groups = _geometry(kind, p, site)
    n, c, h, w = site.shape
    if transposed:
        pad, op, out_hw = _transposed_out(p, path, (h, w), k, s, d)
        wshape = (c, out_c // groups, *k)
    else:
        pad = parse_padding(p["padding"], path + ("padding",), (h, w), k, s, d)
        out_hw = tuple(out_size((h, w)[i], pad[i], k[i], s[i], d[i]) for i in range(2))
        wshape = (out_c, c // groups, *k)
    if min(out_hw) < 1:
        raise ShapeError(f"output size would be {out_hw[0]}x{out_hw[1]} for a {h}x{w} input "
                         f"(kernel {k}, stride {s}, padding {pad}, dilation {d})", path)
    check_size(wshape, path + ("weight",), "the weight")
    fan_in = (c // groups if not transposed else out_c // groups) * k[0] * k[1]
    weight = (tensor(p["weight"], path + ("weight",), wshape, "weight") if "weight" in p
              else default_param(wshape, fan_in))
    params = (Param(f"{site.name}.weight", weight), *bias_params(p, path, site.name, out_c, fan_in))
    common = dict(name=site.name, in_shape=site.shape, out_shape=(n, out_c, *out_hw), params=params,
                  out_channels=out_c, kernel_size=k, stride=s, padding=pad, dilation=d, groups=groups)
    if transposed:
        return ConvTranspose2d(**common, output_padding=op)
    return Conv2d(**common, padding_mode=padding_mode(p, path, pad, (h, w)))


def macs(L: Conv2d) -> int:
    """Multiply-adds of the forward pass (a transposed conv: every input pixel meets every tap)."""
    transposed = isinstance(L, ConvTranspose2d)
    pixels = L.in_shape if transposed else L.out_shape
    fan = (L.out_channels if transposed else L.in_shape[1]) // L.groups
    return int(np.prod(pixels)) * fan * L.kernel_size[0] * L.kernel_size[1]


# ---------------------------------------------------------------- conv2d reference

def correlate(x, w, groups, k, s, d, pad, out_hw, bias=None):
    """Grouped cross-correlation (+ bias): im2col + batched matmul, share by share of the batch.
    Returns (y, cols)."""
    n, length = x.shape[0], int(np.prod(out_hw))
    cols = take_spare((*x.shape[:2], *k, *out_hw), x.dtype)
    wg = w.reshape(groups, w.shape[0] // groups, -1)
    y = np.empty((n, groups, wg.shape[1], length), dtype=np.result_type(x, w))

    def share(b):
        cols[b] = windows(x[b], k, s, d, pad, out_hw)
        np.matmul(wg, cols[b].reshape(-1, groups, wg.shape[2], length), out=y[b])
        if bias is not None:
            y[b] += bias.reshape(groups, -1, 1)

    over_batch(n, cols.size, share)
    return y.reshape(n, -1, *out_hw), cols.reshape(n, groups, -1, length)


def unpadded(L: Conv2d, padded_shape) -> Conv2d:
    """The same conv on an input already extended by its padding mode: no padding of its own."""
    return dataclasses.replace(L, in_shape=padded_shape, padding=((0, 0), (0, 0)), padding_mode="zeros")


def conv2d_forward_any(L: Conv2d, xs, p):
    # padding_mode ≠ zeros: y = conv(xpad, padding 0), xpad[i] = x[source(i)] (reflect / replicate / circular)
    if L.padding_mode == "zeros":
        return conv2d_forward(L, xs, p)
    xp = mode_pad(xs[0], L.padding, L.padding_mode)
    y, cache = conv2d_forward(unpadded(L, xp.shape), [xp], p)
    return y, (cache, xs[0].shape, xp.shape)


def conv2d_backward_any(L: Conv2d, dy, cache):
    # dx[j] = Σ_{i: source(i) = j} dxpad[i]   (the adjoint of the mode's index map)
    if L.padding_mode == "zeros":
        return conv2d_backward(L, dy, cache)
    inner, x_shape, padded_shape = cache
    (dxp,), grads = conv2d_backward(unpadded(L, padded_shape), dy, inner)
    return [mode_pad_adjoint(dxp, x_shape, L.padding, L.padding_mode)], grads


def conv2d_forward(L: Conv2d, xs, p):
    # y[n,o] = Σ_{c,i,j} w[o,c,i,j] · xpad[n, c, y·s + i·d, x·s + j·d] + b[o]   (cross-correlation)
    (x,), w, b = xs, p["weight"], p.get("bias")
    y, cols = correlate(x, w, L.groups, L.kernel_size, L.stride, L.dilation, L.padding, L.out_shape[2:], b)
    return y, [x.shape, cols, w, b is not None]


def conv2d_backward(L: Conv2d, dy, cache):
    # dW = Σ_n dY·colsᵀ ;  db = Σ dY ;  dX = dY ⋆ rot180(W) (stride 1), else col2im(Wᵀ·dY)
    x_shape, cols, w, has_bias = cache
    if cols is None:
        raise RuntimeError(f"conv2d_backward: the forward cache of {L.name} was already used by a backward")
    cache[1] = None  # a backward consumes its forward's columns: they become scratch once dW is done
    n, g = dy.shape[0], L.groups
    dyg = dy.reshape(n, g, -1, cols.shape[-1])

    def dw_share(b):  # Σ_n cols·dYᵀ = dWᵀ: the same products, in the operand order OpenBLAS runs ~12% faster
        return (cols[b] @ np.swapaxes(dyg[b], -1, -2)).sum(axis=0)

    dw = np.swapaxes(sum(over_batch(n, cols.size, dw_share)), -1, -2)
    give_back(cols)
    grads = {"weight": dw.reshape(w.shape)}
    if has_bias:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return [conv2d_input_grad(dy, dyg, w, L, x_shape)], grads


def conv2d_input_grad(dy, dyg, w, L: Conv2d, x_shape):
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
        dx, cols = correlate(dy, rotated, g, k, (1, 1), d, full, x_shape[2:])
        give_back(cols)
        return dx
    wg = w.reshape(L.groups, w.shape[0] // L.groups, -1)
    return col2im(np.swapaxes(wg, 1, 2) @ dyg, x_shape, k, L.stride, d, L.padding, L.out_shape[2:])


# ---------------------------------------------------------------- conv_transpose2d reference
# The transposed conv is the input-gradient of a conv2d C: C maps Cout -> Cin channels with the
# same weight read as OIHW, and runs on the (padded) output. So its forward is C's backward.

def conv_transpose2d_forward(L: ConvTranspose2d, xs, p):
    # y = col2im(Wᵀ·x) on the output grid, cropped by padding, zero-extended by output_padding
    (x,), w, b = xs, p["weight"], p.get("bias")
    n, g, in_hw = x.shape[0], L.groups, L.in_shape[2:]
    wg = w.reshape(g, w.shape[0] // g, -1)
    xg = x.reshape(n, g, -1, int(np.prod(in_hw)))
    y = col2im(np.swapaxes(wg, 1, 2) @ xg, L.out_shape, L.kernel_size, L.stride, L.dilation, L.padding, in_hw)
    return (y if b is None else y + b[:, None, None]), (x, wg, b is not None)


def conv_transpose2d_backward(L: ConvTranspose2d, dy, cache):
    # dX = W·im2col(dY) ;  dW = Σ_n X·im2col(dY)ᵀ ;  db = Σ dY
    x, wg, has_bias = cache
    n, g, in_hw = x.shape[0], L.groups, L.in_shape[2:]
    cols = im2col(dy, L.kernel_size, L.stride, L.dilation, L.padding, in_hw).reshape(n, g, -1, int(np.prod(in_hw)))
    xg = x.reshape(n, g, -1, cols.shape[-1])
    dx = (wg @ cols).reshape(x.shape)
    dw = np.einsum("ngcl,ngkl->gck", xg, cols, optimize=True)
    give_back(cols)
    grads = {"weight": dw.reshape(L.in_shape[1], -1, *L.kernel_size)}
    if has_bias:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return [dx], grads


CONV2D = LayerDecl(
    "conv2d", "2-D cross-correlation, NCHW input, OIHW weight; groups, dilation, per-side or `same` padding; "
    "`padding_mode` zeros, reflect, replicate or circular", (*FIELDS, PADDING_MODE),
    lambda p, site: _build("conv2d", p, site), conv2d_forward_any, conv2d_backward_any, accumulates=True, macs=macs)
CONV_TRANSPOSE2D = LayerDecl(
    "conv_transpose2d", "the input-gradient of a conv2d as a layer, IOHW weight; PyTorch's `output_padding`",
    (*FIELDS, Field("output_padding", PAIR, 0)), lambda p, site: _build("conv_transpose2d", p, site),
    conv_transpose2d_forward, conv_transpose2d_backward, accumulates=True, macs=macs)
DECLS = (CONV2D, CONV_TRANSPOSE2D)
