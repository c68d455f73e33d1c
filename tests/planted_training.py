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
        def loss(y, target, round_off=None, *args, **options):  # reduction and options pass through
            return change(kind, y, target, *plain(y, target, round_off, *args, **options))
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



# ---------------------------------------------------------------- SPEC §1.10: losses, optimizers, the loop
# Each swaps one declaration of gradconf.vocab (its update rule or its loss) for a wrong one while it runs,
# or changes the reference's training loop (schedule, clip, per-step data).

from gradconf import training as _training  # noqa: E402
from gradconf import vocab as _vocab  # noqa: E402
from gradconf.vocab import losses as _losses  # noqa: E402
from gradconf.vocab import optimizers as _optim  # noqa: E402


def _rule(kind: str, rule):
    return [(_vocab.OPTIMIZERS, kind, dataclasses.replace(_vocab.OPTIMIZERS[kind], make=rule))]


def _loss_decl(kind: str, fn):
    """fn(y, t, reduction, options, L, dL) -> (L, dL): a change to the declaration's loss and gradient."""
    plain = _vocab.LOSSES[kind].loss

    def wrong(y, target, round_off=None, reduction="mean", **options):
        value, grad = plain(y, target, round_off, reduction, **options)
        return fn(y, target, reduction, options, value, grad)
    return [(_vocab.LOSSES, kind, dataclasses.replace(_vocab.LOSSES[kind], loss=wrong))]


class RmspropEpsInsideRoot(Planted):
    bug = "RMSprop ε inside the square root (Keras')"

    def patches(self, case):
        class Inside(_optim.RMSprop):
            def update(self, name, p, g, lr=None):
                h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
                g = g + h["weight_decay"] * p
                v = s["v"] = h["alpha"] * s.get("v", 0.0) + (1 - h["alpha"]) * g * g
                if h["centered"]:
                    ga = s["ga"] = h["alpha"] * s.get("ga", 0.0) + (1 - h["alpha"]) * g
                    v = v - ga * ga
                step = g / np.sqrt(v + h["eps"])
                if h["momentum"]:
                    step = s["b"] = h["momentum"] * s.get("b", 0.0) + step
                return p - lr * step
        return _rule("rmsprop", Inside)


class AdagradAccumulatorFromZero(Planted):
    bug = "Adagrad's initial_accumulator_value ignored"

    def patches(self, case):
        return _rule("adagrad", lambda opt: _optim.Adagrad({**opt.hp, "initial_accumulator_value": 0.0}))


class AdagradLrDecayIgnored(Planted):
    bug = "Adagrad's lr_decay ignored"

    def patches(self, case):
        return _rule("adagrad", lambda opt: _optim.Adagrad({**opt.hp, "lr_decay": 0.0}))


class NadamWithoutSchedule(Planted):
    bug = "NAdam's μ_t schedule dropped (momentum_decay 0)"

    def patches(self, case):
        return _rule("nadam", lambda opt: _optim.NAdam({**opt.hp, "momentum_decay": 0.0}))


class AmsgradBiasCorrectedMax(Planted):
    bug = "AMSGrad's maximum over the bias-corrected v̂ (optax's)"

    def patches(self, case):
        class Corrected(_optim.Adam):
            def update(self, name, p, g, lr=None):
                h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
                if not h["amsgrad"]:
                    return super().update(name, p, g, lr)
                b1, b2 = h["betas"]
                g = g + h["weight_decay"] * p
                t = s["t"] = s["t"] + 1
                m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                v = s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                vh = s["vmax"] = np.maximum(s.get("vmax", 0.0), v / (1 - b2 ** t))
                return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(vh) + h["eps"])
        return _rule("adam", Corrected)


class DampenedFirstStep(Planted):
    bug = "SGD dampening applied on the first step too"

    def patches(self, case):
        class Early(_optim.SGD):
            def update(self, name, p, g, lr=None):
                self._slot(name, p).setdefault("b", np.zeros_like(g))
                return super().update(name, p, g, lr)
        return _rule("sgd", Early)


class AdamwDecayCoupled(Planted):
    bug = "AdamW's decay added to the gradient (Adam's L2)"

    def patches(self, case):
        return _rule("adamw", _optim.Adam)


class AdamaxEpsAfterMax(Planted):
    bug = "Adamax ε added after the max (Keras')"

    def patches(self, case):
        class After(_optim.Adamax):
            def update(self, name, p, g, lr=None):
                h, s, lr = self.hp, self._slot(name, p), self._lr(lr)
                b1, b2 = h["betas"]
                t = s["t"] = s["t"] + 1
                g = g + h["weight_decay"] * p
                m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                u = s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g))
                return p - lr / (1 - b1 ** t) * m / (u + h["eps"])
        return _rule("adamax", After)


class HuberGradientWithoutDelta(Planted):
    bug = "huber's gradient outside δ as sign(d), δ dropped"

    def patches(self, case):
        def change(y, t, reduction, o, value, grad):
            d = y - t
            g = np.where(np.abs(d) < o["delta"], d, np.sign(d))
            return value, g if reduction == "sum" else g / d.size
        return _loss_decl("huber", change)


class SmoothL1AsHuber(Planted):
    bug = "smooth_l1 computed as huber (β not divided out)"

    def patches(self, case):
        return _loss_decl("smooth_l1", lambda y, t, r, o, value, grad: _losses.huber(y, t, r, o["beta"]))


class CrossEntropySmoothingUnweighted(Planted):
    bug = "cross-entropy's gradient with label smoothing ignores the class weights"

    def patches(self, case):
        def change(y, t, reduction, o, value, grad):
            if o.get("weight") is None or not o["label_smoothing"]:
                return value, grad
            return value, _losses.cross_entropy(y, t, reduction, None, o["label_smoothing"])[1]
        return _loss_decl("cross_entropy", change)


class PosWeightOnNegatives(Planted):
    bug = "bce_with_logits' pos_weight applied to the negative term"

    def patches(self, case):
        def change(y, t, reduction, o, value, grad):
            w = 1.0 if o.get("pos_weight") is None else np.asarray(o["pos_weight"])
            g = _losses._sigmoid(y) * (t + w * (1 - t)) - t
            return value, g if reduction == "sum" else g / y.size
        return _loss_decl("bce_with_logits", change)


class WeightedMeanOverN(Planted):
    bug = "a class-weighted mean divided by N, not Σ weight[target]"

    def patches(self, case):
        def change(y, t, reduction, o, value, grad):
            if reduction == "sum" or o.get("weight") is None:
                return value, grad
            total, g = _losses.nll(y, t, "sum", o["weight"])
            return total / y.shape[0], g / y.shape[0]
        return _loss_decl("nll", change)


class SumReductionAsMean(Planted):
    bug = "reduction: sum computed as the mean"

    def patches(self, case):
        kind = case.loss.kind
        if kind not in ("mse", "l1", "smooth_l1", "huber", "bce", "bce_with_logits", "nll", "cross_entropy"):
            return []
        plain = _vocab.LOSSES[kind].loss

        def wrong(y, target, round_off=None, reduction="mean", **options):
            return plain(y, target, round_off, "mean", **options)
        return [(_vocab.LOSSES, kind, dataclasses.replace(_vocab.LOSSES[kind], loss=wrong))]


class ScheduleOneStepEarly(Planted):
    bug = "the lr schedule stepped before the first update"

    def patches(self, case):
        plain = _training.scheduled_lr
        return [(ref, "scheduled_lr", lambda lr, schedule, step: plain(lr, schedule, step + 1))]


class CosineHeldPastTmax(Planted):
    bug = "cosine schedule held at η_min past t_max (Keras', optax's)"

    def patches(self, case):
        plain = _training.scheduled_lr

        def held(lr, schedule, step):
            if schedule is not None and schedule[0] == "cosine":
                step = min(step, schedule[1]["t_max"] + 1)
            return plain(lr, schedule, step)
        return [(ref, "scheduled_lr", held)]


class ClipIgnored(Planted):
    bug = "gradient clipping ignored"

    def patches(self, case):
        return [(ref, "clipped", lambda grads, clip: grads)]


class GlobalClipPerParameter(Planted):
    bug = "clip: {norm} applied to each parameter alone"

    def patches(self, case):
        plain = _training.clipped

        def per_param(grads, clip):
            if clip is not None and clip[0] == "norm":
                return {k: plain({k: g}, clip)[k] for k, g in grads.items()}
            return plain(grads, clip)
        return [(ref, "clipped", per_param)]


class ClippedGradientReported(Planted):
    bug = "the clipped gradient compared instead of the computed one"

    def run(self, case, initial):
        trace = super().run(case, initial)
        if case.clip is None:
            return trace
        for s in trace.steps:
            s.grads.update(_training.clipped({k: g for k, g in s.grads.items() if k != "input"}, case.clip))
        return trace


class PerStepDataIgnored(Planted):
    bug = "per-step input and target ignored (step 1's at every step)"

    def run(self, case, initial):
        return super().run(case, dataclasses.replace(initial, inputs=None, targets=None))
