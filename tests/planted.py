"""Adapters with planted bugs — the mutation suite (tests/mutation.py runs it; loadable with
--adapter tests.planted:NAME).

Each is the NumPy reference with one hand-backprop slip put in while it runs: a function of
adapters/numpy_ref.py swapped for a wrong one, or the case's layers or training loop changed. Every one
changes the mathematics for some case, so a bundled case that exercises it must fail it. `Copy` is the
control: the reference under another name, which must fail nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from adapters import Step, Trace
from adapters import numpy_ref as ref
from adapters.numpy_ref import NumpyReference
from harness.case import Activation, Conv2d, ConvTranspose2d, Dense, Flatten, Pool2d


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


def _conv_dw(x, dy, L, dilation, group_shift=0):
    """A conv's weight gradient from its input windows at `dilation`, group g's from group g + shift."""
    n, g = x.shape[0], L.groups
    win = ref._windows(x, L.kernel_size, L.stride, dilation, L.padding, L.out_shape[2:])
    win = np.roll(win.reshape(n, g, -1, *win.shape[2:]), -group_shift, axis=1)
    dyg = dy.reshape(n, g, -1, *dy.shape[2:])
    return np.einsum("ngcijyx,ngoyx->gocij", win, dyg).reshape(L.out_channels, -1, *L.kernel_size)


# ---------------------------------------------------------------- convolutions

class ConvDxNoRotation(Planted):
    bug = "conv dX without kernel rotation"

    def patches(self, case):
        plain = ref._conv2d_input_grad
        return [(ref, "_conv2d_input_grad", lambda dy, dyg, w, L, shape: plain(dy, dyg, w[..., ::-1, ::-1], L, shape))]


class ConvDwOperandOrder(Planted):
    bug = "conv dW operand order (cols·dYᵀ read as dY·colsᵀ)"

    def patches(self, case):
        def change(dy, cache, L, dx, grads):
            w = grads["weight"]
            return dx, {**grads, "weight": np.ascontiguousarray(w.reshape(w.shape[0], -1).T).reshape(w.shape)}
        return [_wrap_backward(Conv2d, change)]


class StrideRemainderWrongEdge(Planted):
    bug = "stride remainder aligned to the bottom/right edge"

    def patches(self, case):
        forward, backward = ref._PARAMETRIC[Conv2d]

        def remainder(L):
            (t, b), (le, r) = L.padding
            eff = [d * (k - 1) + 1 for d, k in zip(L.dilation, L.kernel_size)]
            return [(size + p - e) % s for size, p, e, s in zip(L.in_shape[2:], (t + b, le + r), eff, L.stride)]

        def fwd(x, w, b, L):
            rh, rw = remainder(L)
            shifted = np.zeros_like(x)
            shifted[:, :, :x.shape[2] - rh, :x.shape[3] - rw] = x[:, :, rh:, rw:]
            return forward(shifted, w, b, L)

        def bwd(dy, cache, L):
            rh, rw = remainder(L)
            dshift, grads = backward(dy, cache, L)
            dx = np.zeros_like(dshift)
            dx[:, :, rh:, rw:] = dshift[:, :, :dx.shape[2] - rh, :dx.shape[3] - rw]
            return dx, grads
        return [(ref._PARAMETRIC, Conv2d, (fwd, bwd))]


class DilationIgnoredInDw(Planted):
    bug = "dilation ignored in dW"

    def patches(self, case):
        return [_keeping_input(Conv2d, lambda x, dy, L, dx, grads: (dx, {**grads, "weight": _conv_dw(x, dy, L, (1, 1))}))]


class GroupedDwWrongGroup(Planted):
    bug = "grouped dW from the wrong group"

    def patches(self, case):
        return [_keeping_input(Conv2d, lambda x, dy, L, dx, grads:
                               (dx, {**grads, "weight": _conv_dw(x, dy, L, L.dilation, 1)}))]


class OddSamePaddingWrongSide(Planted):
    bug = "odd SAME padding on the top/left instead of bottom/right"

    def run(self, case, initial):
        def swap(pair):
            return pair[::-1] if pair[1] == pair[0] + 1 else pair
        layers = tuple(dataclasses.replace(L, padding=(swap(L.padding[0]), swap(L.padding[1])))
                       if type(L) is Conv2d else L for L in case.layers)
        return super().run(dataclasses.replace(case, layers=layers), initial)


def _bias_patches(change):
    def fix(dy, cache, L, dx, grads):
        return dx, ({**grads, "bias": change(dy, grads["bias"])} if "bias" in grads else grads)
    return [_wrap_backward(kind, fix) for kind in (Conv2d, ConvTranspose2d, Dense)]


class BiasGradOneSample(Planted):
    bug = "bias gradient from the first sample only"

    def patches(self, case):
        return _bias_patches(lambda dy, g: dy[:1].sum(axis=tuple(i for i in range(dy.ndim) if i != 1)))


class BiasGradDividedByN(Planted):
    bug = "bias gradient divided by the batch size"

    def patches(self, case):
        return _bias_patches(lambda dy, g: g / dy.shape[0])


class OutputPaddingDropped(Planted):
    bug = "transposed-conv output_padding dropped (zero rows instead)"

    def patches(self, case):
        forward, backward = ref._PARAMETRIC[ConvTranspose2d]

        def without(L):
            (oh, ow), (n, c, h, w) = L.output_padding, L.out_shape
            return dataclasses.replace(L, output_padding=(0, 0), out_shape=(n, c, h - oh, w - ow)), oh, ow

        def fwd(x, w, b, L):
            L0, oh, ow = without(L)
            y0, cache = forward(x, w, b, L0)
            return np.pad(y0, ((0, 0), (0, 0), (0, oh), (0, ow))), cache

        def bwd(dy, cache, L):
            L0, oh, ow = without(L)
            return backward(np.ascontiguousarray(dy[:, :, :dy.shape[2] - oh, :dy.shape[3] - ow]), cache, L0)
        return [(ref._PARAMETRIC, ConvTranspose2d, (fwd, bwd))]


class Float64ConvInFloat32(Planted):
    bug = "float64 conv computed in float32"

    def patches(self, case):
        if case.dtype != "float64":
            return []
        forward, backward = ref._PARAMETRIC[Conv2d]

        def fwd(x, w, b, L):
            y, cache = forward(x.astype(np.float32), w.astype(np.float32), None if b is None else b.astype(np.float32), L)
            return y.astype(np.float64), cache
        return [(ref._PARAMETRIC, Conv2d, (fwd, backward))]


# ---------------------------------------------------------------- pooling

def _max_forward(pick, fill=-np.inf):
    def forward(x, L):
        k, out_hw = L.kernel_size, L.out_shape[2:]
        flat = ref._windows(x, k, L.stride, (1, 1), L.padding, out_hw, fill=fill).reshape(*x.shape[:2], -1, *out_hw)
        arg = pick(flat)
        return np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0], (x.shape, arg)
    return forward


def _first(flat):
    return flat.argmax(axis=2)


class MaxPoolLastMax(Planted):
    bug = "max-pool gradient to the last maximum"

    def patches(self, case):
        last = _max_forward(lambda flat: flat.shape[2] - 1 - flat[:, :, ::-1].argmax(axis=2))
        return [(ref._POOLS, "max", (last, ref._POOLS["max"][1]))]


class MaxPoolSpreadTies(Planted):
    bug = "max-pool gradient spread over tied maxima"

    def patches(self, case):
        def forward(x, L):
            k, out_hw = L.kernel_size, L.out_shape[2:]
            win = ref._windows(x, k, L.stride, (1, 1), L.padding, out_hw, fill=-np.inf)
            y = win.max(axis=(2, 3))
            return y, (x.shape, win == y[:, :, None, None])

        def backward(dy, cache, L):
            shape, tied = cache
            share = tied / tied.sum(axis=(2, 3), keepdims=True)
            return ref._col2im(share * dy[:, :, None, None], shape, L.kernel_size, L.stride, (1, 1), L.padding,
                               L.out_shape[2:]), {}
        return [(ref._POOLS, "max", (forward, backward))]


class MaxPoolPadsWithZero(Planted):
    bug = "max-pool padding with 0 instead of -inf"

    def patches(self, case):
        return [(ref._POOLS, "max", (_max_forward(_first, fill=0.0), ref._POOLS["max"][1]))]


class AvgPoolIgnoresExcludePad(Planted):
    bug = "avg-pool count_include_pad: false ignored"

    def patches(self, case):
        return [(ref, "_avg_divisor", lambda shape, L: float(L.kernel_size[0] * L.kernel_size[1]))]


class AvgPoolMissingDivisor(Planted):
    bug = "avg-pool gradient missing 1/k²"

    def patches(self, case):
        forward, backward = ref._POOLS["avg"]
        return [(ref._POOLS, "avg", (forward, lambda dy, cache, L: backward(dy, (cache[0], 1.0), L)))]


# ---------------------------------------------------------------- activations, flatten, dense

def _activation(kind, derivative):
    forward, backward = ref._PLAIN[Activation]

    def wrong(dy, cache, L):
        return (derivative(dy, *cache), {}) if L.kind == kind else backward(dy, cache, L)
    return [(ref._PLAIN, Activation, (forward, wrong))]


class SigmoidDerivativeAsSigmoid(Planted):
    bug = "σ′ written as σ"

    def patches(self, case):
        return _activation("sigmoid", lambda dy, x, y: dy * y)


class WrongTanhDerivative(Planted):
    """tanh' written as 1 - y instead of 1 - y², a classic slip when deriving backprop by hand."""
    name = "wrong_tanh"
    bug = "tanh′ written as 1 − tanh"

    def patches(self, case):
        return _activation("tanh", lambda dy, x, y: dy * (1.0 - y))


class ReluDerivativeAtZeroIsOne(Planted):
    bug = "ReLU′(0) = 1"

    def patches(self, case):
        return _activation("relu", lambda dy, x, y: dy * (x >= 0))


class FlattenNhwc(Planted):
    bug = "flatten in NHWC order"

    def patches(self, case):
        def forward(x, L):
            return (x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x.reshape(x.shape[0], -1)), x.shape

        def backward(dy, shape, L):
            if len(shape) != 4:
                return dy.reshape(shape), {}
            n, c, h, w = shape
            return dy.reshape(n, h, w, c).transpose(0, 3, 1, 2), {}
        return [(ref._PLAIN, Flatten, (forward, backward))]


class DenseDwTransposed(Planted):
    bug = "dense dW transposed (shows on square weights)"

    def patches(self, case):
        def change(dy, cache, L, dx, grads):
            w = grads["weight"]
            return dx, {**grads, "weight": w.T.copy()} if w.shape[0] == w.shape[1] else grads
        return [_wrap_backward(Dense, change)]


# ---------------------------------------------------------------- losses

def _loss(change):
    plain = ref.loss_and_grad

    def wrong(kind, y, target, round_off=None):
        loss, dy = plain(kind, y, target, round_off)
        return change(kind, y, target, loss, dy)
    return [(ref, "loss_and_grad", wrong)]


class CrossEntropyWithoutMean(Planted):
    bug = "cross-entropy gradient without 1/N"

    def patches(self, case):
        return _loss(lambda kind, y, t, loss, dy: (loss, dy * y.shape[0] if kind == "cross_entropy" else dy))


class MseWithoutTwo(Planted):
    bug = "MSE gradient without ×2"

    def patches(self, case):
        return _loss(lambda kind, y, t, loss, dy: (loss, dy / 2 if kind == "mse" else dy))


class MseSumForMean(Planted):
    bug = "MSE summed instead of averaged"

    def patches(self, case):
        return _loss(lambda kind, y, t, loss, dy: (loss * y.size, dy * y.size) if kind == "mse" else (loss, dy))


# ---------------------------------------------------------------- optimizers

class _SGD(ref.SGD):
    def update(self, name, p, g):
        o = self.opt
        g = g + o.weight_decay * p
        if o.momentum:
            b = self.buf[name] = g if name not in self.buf else o.momentum * self.buf[name] + self.damped(g)
            g = g + o.momentum * b if (o.nesterov and self.nesterov_ok) else b
        return p - o.lr * g

    nesterov_ok = True

    def damped(self, g):
        return g


class MomentumDampening(Planted):
    bug = "momentum with dampening (b ← μb + (1 − μ)g)"

    def patches(self, case):
        class Damped(_SGD):
            def damped(self, g):
                return (1 - self.opt.momentum) * g
        return [(ref, "SGD", Damped)]


class NesterovAsPlain(Planted):
    bug = "nesterov run as plain momentum"

    def patches(self, case):
        return [(ref, "SGD", type("Plain", (_SGD,), {"nesterov_ok": False}))]


class WeightDecayAfterStep(Planted):
    bug = "weight decay applied after the step"

    def patches(self, case):
        class After(_SGD):
            def update(self, name, p, g):
                o = self.opt
                q = super().update(name, p, g - o.weight_decay * p)  # the step without the decay, then the decay
                return q - o.lr * o.weight_decay * q
        return [(ref, "SGD", After)]


class _Adam(ref.Adam):
    def update(self, name, p, g):
        o, (b1, b2) = self.opt, self.opt.betas
        g = g + (0.0 if self.decoupled else o.weight_decay) * p
        t = self.t[name] = self.t.get(name, 0) + 1
        m = self.m[name] = b1 * self.m.get(name, 0.0) + (1 - b1) * g
        v = self.v[name] = b2 * self.v.get(name, 0.0) + (1 - b2) * g * g
        c1, c2 = self.corrections(t)
        step = (m / c1) / (np.sqrt(v / c2 + o.eps) if self.eps_inside else np.sqrt(v / c2) + o.eps)
        return p - o.lr * step - (o.lr * o.weight_decay * p if self.decoupled else 0.0)

    eps_inside = decoupled = False

    def corrections(self, t):
        return 1 - self.opt.betas[0] ** t, 1 - self.opt.betas[1] ** t


class AdamEpsInsideRoot(Planted):
    bug = "Adam ε inside the square root"

    def patches(self, case):
        return [(ref, "Adam", type("Inside", (_Adam,), {"eps_inside": True}))]


class AdamNoBiasCorrection(Planted):
    bug = "Adam without bias correction"

    def patches(self, case):
        return [(ref, "Adam", type("Uncorrected", (_Adam,), {"corrections": lambda self, t: (1.0, 1.0)}))]


class AdamBiasCorrectionOffByOne(Planted):
    bug = "Adam bias correction off by one step (t + 1)"

    def patches(self, case):
        return [(ref, "Adam", type("OffByOne", (_Adam,), {"corrections": lambda self, t: _Adam.corrections(self, t + 1)}))]


class AdamDecoupledDecay(Planted):
    bug = "Adam weight decay decoupled (AdamW) instead of L2"

    def patches(self, case):
        return [(ref, "Adam", type("Decoupled", (_Adam,), {"decoupled": True}))]


class LrRoundedToFloat16(Planted):
    bug = "learning rate rounded to float16"

    def patches(self, case):
        plain = ref.make_optimizer
        return [(ref, "make_optimizer", lambda opt: plain(None if opt is None else
                                                          dataclasses.replace(opt, lr=float(np.float16(opt.lr)))))]


# ---------------------------------------------------------------- the training loop

class _Loop(NumpyReference):
    """The reference's training loop, with one step of it done wrong (`wrong`)."""
    bug = ""

    def run(self, case, initial):
        params = {k: np.array(v, dtype=np.float64) for k, v in initial.params.items()}
        x0, opt, steps, held = np.array(initial.input, dtype=np.float64), ref.make_optimizer(case.optimizer), [], {}
        for i in range(1, case.steps + 1):
            with np.errstate(all="ignore"):
                loss, output, grads, magnitude = ref.gradients(case, x0, params, initial.target)
            grads, update = self.wrong(i, grads, held)
            if opt is not None and update:
                params = {k: opt.update(k, p, grads[k]) for k, p in params.items()}
            steps.append(Step(np.asarray(loss), output, grads, dict(params) if opt is not None else {}, magnitude))
        return Trace(steps)


class ZeroGradForgotten(_Loop):
    bug = "zero_grad forgotten: gradients accumulate over steps"

    def wrong(self, step, grads, held):
        total = {k: g + held.get(k, 0.0) for k, g in grads.items()}
        held.update(total)
        return total, True


class StaleInputGradient(_Loop):
    bug = "input gradient of step 1 reported at every step"

    def wrong(self, step, grads, held):
        held.setdefault("input", grads["input"])
        return {**grads, "input": held["input"]}, True


class FirstStepSkipped(_Loop):
    bug = "the first optimizer step skipped"

    def wrong(self, step, grads, held):
        return grads, step > 1


# ---------------------------------------------------------------- not bugs in the maths

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
    """The reference under another name: a second framework that conforms (the mutation suite's control)."""
    name = "copy"


class Hangs(NumpyReference):
    """Hangs for ever on the case named in GRADCONF_TEST_HANG (default `sum_3x3`), as a deadlock in
    native code does: it ignores SIGTERM and SIGINT, so only SIGKILL ends it. Before it hangs it writes
    its pid to GRADCONF_TEST_PIDFILE, if set, so that a test can check the process is gone afterwards."""
    name = "hangs"

    def run(self, case, initial):
        import os
        import signal
        import time
        if case.id == os.environ.get("GRADCONF_TEST_HANG", "sum_3x3"):
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, signal.SIG_IGN)
            pidfile = os.environ.get("GRADCONF_TEST_PIDFILE")
            if pidfile:
                with open(pidfile + ".tmp", "w") as fh:
                    fh.write(str(os.getpid()))
                os.replace(pidfile + ".tmp", pidfile)
            while True:
                time.sleep(0.05)
        return super().run(case, initial)


class MissingRaises(NumpyReference):
    """Its availability check itself fails, as a plug-in's broken import probe does."""
    name = "missing_raises"

    def missing(self):
        raise RuntimeError("probe exploded")


class VersionRaises(NumpyReference):
    """Runs, but cannot say which version it is."""
    name = "version_raises"

    def version(self):
        raise RuntimeError("no version here")


class FillsDisk(NumpyReference):
    """On its second case, fills the file system of GRADCONF_TEST_FILL (a path) to the last byte, as
    another program on a shared disk may do in the middle of a run."""
    name = "fills_disk"
    seen = 0

    def run(self, case, initial):
        import os
        FillsDisk.seen += 1
        if FillsDisk.seen == 2:
            with open(os.environ["GRADCONF_TEST_FILL"], "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 4096)
                except OSError:
                    pass
        return super().run(case, initial)


class ScribblesOnSockets(NumpyReference):
    """On `sum_3x3`, writes the start of a message that never ends to every socket it holds (the child's
    pipe to gradconf among them), then goes on as the reference: a parent that trusts the pipe hangs."""
    name = "scribbles"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import stat
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    if stat.S_ISSOCK(os.fstat(fd).st_mode):
                        os.write(fd, b"\x00\x00\x10\x00garbage")  # "a 1 MiB message follows"
                except OSError:
                    pass
        return super().run(case, initial)


class ExitsQuietly(NumpyReference):
    """Calls sys.exit(3) on `sum_3x3`, as a library that 'handles' an error by exiting does."""
    name = "exits"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import sys
            sys.exit(3)
        return super().run(case, initial)


class ClosesItsFiles(NumpyReference):
    """On `sum_3x3`, closes every file descriptor above stderr (its pipe to gradconf too) and hangs,
    as a library that 'daemonises' itself might: a parent that waits for the child's exit hangs with it."""
    name = "closes"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import time
            os.closerange(3, 65536)
            while True:
                time.sleep(0.05)
        return super().run(case, initial)


def hangs_while_loading():
    """An adapter factory that never returns (a plug-in whose import waits on a lock)."""
    import time
    while True:
        time.sleep(0.05)


def _planted():
    kinds = [c for c in globals().values() if isinstance(c, type) and issubclass(c, (Planted, _Loop))
             and getattr(c, "bug", "") and c not in (Planted, _Loop)]
    for c in kinds:
        if c.name in ("planted", "numpy"):
            c.name = "".join("_" + ch.lower() if ch.isupper() else ch for ch in c.__name__).lstrip("_")
    return kinds


MUTANTS = _planted()  # every planted bug, each a class with `name` and `bug`
