"""Padding rules the torch adapter and its repro script writer (torch_script.py) share."""
from __future__ import annotations


def _symmetric(pad) -> bool:
    return pad[0][0] == pad[0][1] and pad[1][0] == pad[1][1]


def _pad_arg(pad) -> tuple:
    """((t, b), (l, r)) -> F.pad's (l, r, t, b)."""
    return (pad[1][0], pad[1][1], pad[0][0], pad[0][1])


def _native_pool(L) -> bool:
    """Whether torch's own pool padding expresses L's: symmetric, and at most half the kernel."""
    k, pad = L.kernel_size, L.padding
    return _symmetric(pad) and pad[0][0] <= k[0] // 2 and pad[1][0] <= k[1] // 2


def _grid(L) -> tuple:
    """F.pad's (l, r, t, b) of a pool's padding plus ceil_mode's extra cells at the far end."""
    (t, b), (le, r) = L.window_padding
    return (le, r, t, b)
