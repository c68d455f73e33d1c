"""The machinery of the planted bugs (tests/planted.py): the NumPy reference with some of its functions
swapped for wrong ones while it runs, and helpers to write such swaps."""
from __future__ import annotations

import contextlib

from gradconf.adapters import numpy_ref as ref
from gradconf.adapters.numpy_ref import NumpyReference


class Planted(NumpyReference):
    """The reference with `patches()` — (dict or module, key, replacement) — in place while it runs."""
    name = "planted"
    bug = ""

    def patches(self, case) -> list:
        return []

    def run(self, case, initial):
        with _patched(self.patches(case)):
            return super().run(case, initial)


@contextlib.contextmanager
def _patched(patches):
    saved = []
    try:
        for where, key, new in patches:
            get = where.get if isinstance(where, dict) else lambda k, w=where: getattr(w, k)
            saved.append((where, key, get(key)))
            if isinstance(where, dict):
                where[key] = new
            else:
                setattr(where, key, new)
        yield
    finally:
        for where, key, old in reversed(saved):
            if isinstance(where, dict):
                where[key] = old
            else:
                setattr(where, key, old)


def _wrap_backward(kind, change):
    """A patch of layer type `kind`'s backward: (dx, grads) -> change(dy, cache, L, dx, grads)."""
    table = ref._PARAMETRIC if kind in ref._PARAMETRIC else ref._PLAIN
    forward, backward = table[kind]

    def wrong(dy, cache, L):
        dx, grads = backward(dy, cache, L)
        return change(dy, cache, L, dx, grads)
    return table, kind, (forward, wrong)


def _keeping_input(kind, change):
    """A patch whose backward also sees the layer's input: change(x, dy, L, dx, grads) -> (dx, grads)."""
    forward, backward = ref._PARAMETRIC[kind]

    def fwd(x, w, b, L):
        y, cache = forward(x, w, b, L)
        return y, (cache, x)

    def bwd(dy, cache, L):
        inner, x = cache
        dx, grads = backward(dy, inner, L)
        return change(x, dy, L, dx, grads)
    return ref._PARAMETRIC, kind, (fwd, bwd)
