"""Adapters with planted bugs, for tests (loadable with --adapter tests.planted:NAME)."""
from adapters import numpy_ref
from adapters.numpy_ref import NumpyReference


class WrongTanhDerivative(NumpyReference):
    """tanh' written as 1 - y instead of 1 - y², a classic slip when deriving backprop by hand."""
    name = "wrong_tanh"

    def run(self, case, initial):
        original = numpy_ref._PLAIN[numpy_ref.Activation]

        def backward(dy, cache, L):
            x, y = cache
            return (dy * (1.0 - y), {}) if L.kind == "tanh" else original[1](dy, cache, L)
        numpy_ref._PLAIN[numpy_ref.Activation] = (original[0], backward)
        try:
            return super().run(case, initial)
        finally:
            numpy_ref._PLAIN[numpy_ref.Activation] = original


class CrashesOnSum3x3(NumpyReference):
    """Kills its own process with SIGSEGV on the case `sum_3x3`, as a native kernel bug does: no Python
    `except` sees it. Elsewhere it is the reference itself."""
    name = "crashes"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(case, initial)


class Copy(NumpyReference):
    """The reference under another name: a second framework that conforms."""
    name = "copy"
