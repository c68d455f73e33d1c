"""Planted bugs in training: losses, optimizers and the training loop (tests/planted.py)."""
from __future__ import annotations

import dataclasses

import numpy as np

from gradconf import vocab
from gradconf.adapters import Step, Trace
from gradconf.adapters import numpy_ref as ref
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.vocab.optimizers import SGD, Adam
from tests.planting import Planted, swap


# ---------------------------------------------------------------- losses

def _loss(change):
    """Every loss's declaration, its (loss, dy) passed through change(kind, y, target, loss, dy)."""
    def wrong(kind, plain):
        def loss(y, target, round_off=None):
            return change(kind, y, target, *plain(y, target, round_off))
        return loss
    return [swap(vocab.LOSSES, kind, loss=wrong(kind, d.loss)) for kind, d in vocab.LOSSES.items()]


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

class _SGD(SGD):
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
        return [swap(vocab.OPTIMIZERS, "sgd", make=Damped)]


class NesterovAsPlain(Planted):
    bug = "nesterov run as plain momentum"

    def patches(self, case):
        return [swap(vocab.OPTIMIZERS, "sgd", make=type("Plain", (_SGD,), {"nesterov_ok": False}))]


class WeightDecayAfterStep(Planted):
    bug = "weight decay applied after the step"

    def patches(self, case):
        class After(_SGD):
            def update(self, name, p, g):
                o = self.opt
                q = super().update(name, p, g - o.weight_decay * p)  # the step without the decay, then the decay
                return q - o.lr * o.weight_decay * q
        return [swap(vocab.OPTIMIZERS, "sgd", make=After)]


class _Adam(Adam):
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
        return [swap(vocab.OPTIMIZERS, "adam", make=type("Inside", (_Adam,), {"eps_inside": True}))]


class AdamNoBiasCorrection(Planted):
    bug = "Adam without bias correction"

    def patches(self, case):
        return [swap(vocab.OPTIMIZERS, "adam", make=type("Uncorrected", (_Adam,), {"corrections": lambda self, t: (1.0, 1.0)}))]


class AdamBiasCorrectionOffByOne(Planted):
    bug = "Adam bias correction off by one step (t + 1)"

    def patches(self, case):
        return [swap(vocab.OPTIMIZERS, "adam", make=type("OffByOne", (_Adam,), {"corrections": lambda self, t: _Adam.corrections(self, t + 1)}))]


class AdamDecoupledDecay(Planted):
    bug = "Adam weight decay decoupled (AdamW) instead of L2"

    def patches(self, case):
        return [swap(vocab.OPTIMIZERS, "adam", make=type("Decoupled", (_Adam,), {"decoupled": True}))]


class LrRoundedToFloat16(Planted):
    bug = "learning rate rounded to float16"

    def patches(self, case):
        def rounded(plain):
            return lambda opt: plain(dataclasses.replace(opt, lr=float(np.float16(opt.lr))))
        return [swap(vocab.OPTIMIZERS, kind, make=rounded(d.make)) for kind, d in vocab.OPTIMIZERS.items()]


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

