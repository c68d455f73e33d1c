"""The machinery of the planted bugs (tests/planted.py): the NumPy reference with some of the vocabulary's
declarations (or the functions they are built from) swapped for wrong ones while it runs, and helpers to
write such swaps."""
from __future__ import annotations

import contextlib
import dataclasses

from gradconf import vocab
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

    def trace_layers(self, case, initial):
        with _patched(self.patches(case)):
            return super().trace_layers(case, initial)


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


def swap(table: dict, name: str, **changes):
    """A patch: declaration `name` of `table` (vocab.LAYERS, LOSSES or OPTIMIZERS) with `changes`."""
    return table, name, dataclasses.replace(table[name], **changes)


def _wrap_backward(kind, change):
    """A patch of layer `kind`'s backward: (dx, grads) -> change(dy, cache, L, dx, grads)."""
    backward = vocab.LAYERS[kind].backward

    def wrong(L, dy, cache):
        (dx,), grads = backward(L, dy, cache)
        dx, grads = change(dy, cache, L, dx, grads)
        return [dx], grads
    return swap(vocab.LAYERS, kind, backward=wrong)


def _keeping_input(kind, change):
    """A patch whose backward also sees the layer's input: change(x, dy, L, dx, grads) -> (dx, grads)."""
    decl = vocab.LAYERS[kind]

    def fwd(L, xs, p):
        y, cache = decl.forward(L, xs, p)
        return y, (cache, xs[0])

    def bwd(L, dy, cache):
        inner, x = cache
        (dx,), grads = decl.backward(L, dy, inner)
        dx, grads = change(x, dy, L, dx, grads)
        return [dx], grads
    return swap(vocab.LAYERS, kind, forward=fwd, backward=bwd)
