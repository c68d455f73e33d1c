"""PyTorch functions for issue 17's pooling, resizing and convolution options (merged into torch_adapter.LAYERS):
conv1d, global and adaptive average pools, upsample — each the call a PyTorch user writes (nn.Conv1d's padding
mode is its own F.pad before F.conv1d, as nn.Conv1d does; global pooling is x.mean over H and W)."""
from __future__ import annotations


def _F():
    import torch.nn.functional as F
    return F


def conv1d(L, xs, p):
    (x,), w, b, F = xs, p["weight"], p.get("bias"), _F()
    (left, right), s, d = L.padding[1], L.stride[1], L.dilation[1]
    if L.padding_mode != "zeros":  # nn.Conv1d: F.pad in the mode, then no padding of the conv's own
        return F.conv1d(F.pad(x, (left, right), mode=L.padding_mode), w, b, s, 0, d, L.groups)
    if left == right:
        return F.conv1d(x, w, b, s, left, d, L.groups)
    return F.conv1d(F.pad(x, (left, right)), w, b, s, 0, d, L.groups)  # `same`'s odd cell after


def global_avg_pool2d(L, xs, p):
    return xs[0].mean(dim=(2, 3))


def adaptive_avg_pool2d(L, xs, p):
    return _F().adaptive_avg_pool2d(xs[0], L.output_size)


def upsample(L, xs, p):
    corners = L.align_corners if L.mode == "bilinear" else None
    return _F().interpolate(xs[0], scale_factor=tuple(float(s) for s in L.scale_factor), mode=L.mode,
                            align_corners=corners)


LAYERS = {"conv1d": conv1d, "global_avg_pool2d": global_avg_pool2d, "adaptive_avg_pool2d": adaptive_avg_pool2d,
          "upsample": upsample}
