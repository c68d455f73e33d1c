"""Reference conv2d forward+backward against torch on the same data (issue: "reference conv benchmark").

Batch 16, 64 -> 64 channels, 56x56, 3x3, padding 1; float32 and float64. One run of five rounds:
in each, the reference and then torch run three times (after one untimed call) and the round's
ratio is of the two best times. Printed: the medians over the rounds of the times and of the ratio
reference / torch (lower is better; target <= 1.5 in float32, <= 1.0 in float64). The reference
adapter itself always computes in float64; the float32 row runs the same layer functions on
float32 arrays to compare like with like.
"""
from __future__ import annotations


import numpy as np

try:
    from benchmarks.timing import median_ratio
except ImportError:  # run as a script from benchmarks/
    from timing import median_ratio

from gradconf.vocab.conv import conv2d_backward, conv2d_forward
from gradconf.case import Conv2d

N, C, O, H, W, K = 16, 64, 64, 56, 56, 3




def main(repeat: int = 3) -> list[dict]:
    import torch
    layer = Conv2d(name="conv", in_shape=(N, C, H, W), out_shape=(N, O, H, W), out_channels=O, kernel_size=(K, K),
                   stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)
    rng = np.random.default_rng(0)
    rows = []
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = (rng.standard_normal((O, C, K, K)) * 0.05).astype(dtype)
        b = rng.standard_normal(O).astype(dtype)
        dy = rng.standard_normal((N, O, H, W)).astype(dtype)

        def reference():
            y, cache = conv2d_forward(layer, [x], {"weight": w, "bias": b})
            conv2d_backward(layer, dy, cache)

        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        tdy = torch.tensor(dy)

        def with_torch():
            for t in (tx, tw, tb):
                t.grad = None
            torch.nn.functional.conv2d(tx, tw, tb, padding=1).backward(tdy)

        # Same answer first: a benchmark of a wrong kernel means nothing.
        y, cache = conv2d_forward(layer, [x], {"weight": w, "bias": b})
        (dx,), grads = conv2d_backward(layer, dy, cache)
        with_torch()
        tol = 1e-3 if dtype == "float32" else 1e-9
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * np.abs(dx).max())
        np.testing.assert_allclose(grads["weight"], tw.grad.numpy(), rtol=tol, atol=tol * np.abs(grads["weight"]).max())
        ref_s, torch_s, ratio = median_ratio(reference, with_torch, repeat)
        rows.append({"benchmark": "conv2d fwd+bwd 16x64x56x56 3x3", "dtype": dtype, "reference_s": ref_s,
                     "torch_s": torch_s, "ratio": ratio})
    return rows


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(), headers="keys", floatfmt=".3f"))
