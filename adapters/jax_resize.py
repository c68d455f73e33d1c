"""JAX functions for issue 17's pooling, resizing and convolution options (merged into jax_adapter.LAYERS).

Padding modes are jnp.pad's reflect / edge / wrap before an unpadded convolution; conv1d is
lax.conv_general_dilated on NCH / OIH; pools are lax.reduce_window with ceil_mode's extra cells as padding (an
average divides by a window sum of ones); a dilated max-pool, which JAX cannot differentiate, is the first
maximum of its strided tap slices; adaptive pooling is window means of slices, one axis at a time; nearest
upsampling repeats pixels; bilinear is jax.image.resize ("linear", pixel centres: PyTorch's align_corners
false) or, for align_corners true, jax.image.scale_and_translate with the corner-to-corner scale
(H·s − 1)/(H − 1).
"""
from __future__ import annotations

import numpy as np

JNP_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _jl():
    import jax
    return jax.numpy, jax.lax


def mode_pad(jnp, x, pad, mode):
    """x padded on its trailing len(pad) axes by ((before, after), ...) cells, in `mode`."""
    return jnp.pad(x, ((0, 0), (0, 0), *pad), mode=JNP_MODES[mode])


def conv(jnp, lax, x, w, L, spatial: int):
    """conv2d (spatial 2) or conv1d (1, its 2-D geometry's second axis) with the padding mode applied first."""
    axes = slice(2 - spatial, 2)
    pad, s, d = L.padding[axes], L.stride[axes], L.dilation[axes]
    if L.padding_mode != "zeros":
        x, pad = mode_pad(jnp, x, pad, L.padding_mode), ((0, 0),) * spatial
    names = ("NCHW", "OIHW", "NCHW") if spatial == 2 else ("NCH", "OIH", "NCH")
    return lax.conv_general_dilated(x, w, window_strides=s, padding=pad, rhs_dilation=d,
                                    feature_group_count=L.groups, dimension_numbers=names)


def window(lax, x, init, op, L, dilation=(1, 1), pad=None):
    pad = pad or L.window_padding
    return lax.reduce_window(x, init, op, (1, 1, *L.kernel_size), (1, 1, *L.stride), ((0, 0), (0, 0), *pad),
                             window_dilation=(1, 1, *dilation))


def max_pool(L, xs, p):
    jnp, lax = _jl()
    if L.dilation == (1, 1):
        return window(lax, xs[0], np.array(-np.inf, xs[0].dtype), lax.max, L)
    # JAX has no VJP for a dilated max window: the first maximum over the kh·kw strided tap slices
    xp = jnp.pad(xs[0], ((0, 0), (0, 0), *L.window_padding), constant_values=-np.inf)
    k, s, d, (oh, ow) = L.kernel_size, L.stride, L.dilation, L.out_shape[2:]
    taps = jnp.stack([xp[:, :, i * d[0]:i * d[0] + (oh - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (ow - 1) * s[1] + 1:s[1]]
                      for i in range(k[0]) for j in range(k[1])], axis=-1)
    first = jnp.argmax(taps, axis=-1)[..., None]  # the first maximum in row-major tap order
    return jnp.take_along_axis(taps, first, axis=-1)[..., 0]


def avg_pool(L, xs, p):
    jnp, lax = _jl()
    (x,), zero = xs, np.array(0, xs[0].dtype)
    total = window(lax, x, zero, lax.add, L)
    if L.count_include_pad and not L.clipped:
        return total / (L.kernel_size[0] * L.kernel_size[1])
    h, w = x.shape[2:]
    if L.count_include_pad:  # ones over the padded input, none over ceil_mode's extra cells
        cells = window(lax, jnp.ones((1, 1, *L.counted_hw), x.dtype), zero, lax.add, L,
                        pad=((0, L.beyond[0]), (0, L.beyond[1])))
    else:
        cells = window(lax, jnp.ones((1, 1, h, w), x.dtype), zero, lax.add, L)
    return total / cells


def adaptive_avg_pool(L, xs, p):
    jnp, _ = _jl()
    x = xs[0]
    for axis, out in ((2, L.output_size[0]), (3, L.output_size[1])):
        n = x.shape[axis]
        bounds = [((i * n) // out, -((-(i + 1) * n) // out)) for i in range(out)]  # ⌊i·H/h⌋, ⌈(i+1)·H/h⌉
        x = jnp.stack([jnp.mean(jnp.take(x, jnp.arange(a, b), axis=axis), axis=axis) for a, b in bounds], axis=axis)
    return x


def upsample(L, xs, p):
    import jax
    jnp, _ = _jl()
    (x,), (sh, sw) = xs, L.scale_factor
    if L.mode == "nearest":
        return jnp.repeat(jnp.repeat(x, sh, axis=2), sw, axis=3)
    n, c, h, w = x.shape
    shape = (n, c, h * sh, w * sw)
    if not L.align_corners:
        return jax.image.resize(x, shape, "linear", antialias=False)
    # corners: out coordinate (i + ½) = (in + ½)·r + t with r = (H·s − 1)/(H − 1), t = ½(1 − r); an axis of one
    # pixel is that pixel repeated (every output reads source 0)
    dims, scale, translation = [], [], []
    for axis, size, factor in ((2, h, sh), (3, w, sw)):
        if size == 1:
            x = jnp.repeat(x, factor, axis=axis)
            continue
        r = (size * factor - 1) / (size - 1)
        dims, scale, translation = dims + [axis], scale + [r], translation + [0.5 * (1 - r)]
    if not dims:
        return x
    return jax.image.scale_and_translate(x, shape, tuple(dims), jnp.array(scale, x.dtype),
                                         jnp.array(translation, x.dtype), "linear", antialias=False)


LAYERS = {
    "conv1d": lambda L, xs, p: _bias(conv(*_jl(), xs[0], p["weight"], L, 1), p.get("bias")),
    "adaptive_avg_pool2d": adaptive_avg_pool, "upsample": upsample,
    "global_avg_pool2d": lambda L, xs, p: _jl()[0].mean(xs[0], axis=(2, 3)),
}


def _bias(x, b):
    return x if b is None else x + b.reshape((1, -1) + (1,) * (x.ndim - 2))
