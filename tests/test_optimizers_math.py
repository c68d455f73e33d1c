"""The reference update rules (harness/vocab/optimizers.py), schedules and clipping (harness/training.py) against textbook formulations,
written element by element in plain Python, over STEPS steps; against torch.optim, torch.optim.lr_scheduler
and torch.nn.utils in float64 to 1e-13; and planted bugs (each a common porting slip) that these checks catch."""
import math

import numpy as np
import pytest

from gradconf import training as T
from gradconf.vocab import optimizers as O

STEPS = 5
RNG = np.random.default_rng(5)
P0 = RNG.normal(size=6)
# A gradient that changes sign and scale between steps, as upstream optimizer tests drive it.
GRADS = [RNG.normal(size=6) * 10.0 ** -(k % 3) for k in range(STEPS)]

DEFAULTS = {
    "sgd": dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    "adam": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
    "adamw": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False),
    "rmsprop": dict(alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0),
    "adagrad": dict(lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, weight_decay=0.0),
    "adamax": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    "nadam": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=0.004),
}

SETTINGS = [
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.3)), ("sgd", dict(lr=0.05, momentum=0.5, dampening=0.5,
                                                                    weight_decay=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01, amsgrad=True)), ("adam", dict(lr=0.02, betas=(0.8, 0.9), amsgrad=True, weight_decay=0.1)),
    ("adamw", dict(lr=0.01)), ("adamw", dict(lr=0.05, weight_decay=0.3, amsgrad=True, eps=1e-6)),
    ("rmsprop", dict(lr=0.01)), ("rmsprop", dict(lr=0.01, alpha=0.9, momentum=0.8)),
    ("rmsprop", dict(lr=0.01, centered=True)), ("rmsprop", dict(lr=0.005, centered=True, momentum=0.5,
                                                                weight_decay=0.1, eps=1e-4)),
    ("adagrad", dict(lr=0.1)), ("adagrad", dict(lr=0.1, initial_accumulator_value=0.1, lr_decay=0.05)),
    ("adagrad", dict(lr=0.2, weight_decay=0.1, eps=1e-3)),
    ("adamax", dict(lr=0.01)), ("adamax", dict(lr=0.02, betas=(0.7, 0.95), weight_decay=0.05, eps=1e-4)),
    ("nadam", dict(lr=0.01)), ("nadam", dict(lr=0.02, momentum_decay=0.1, weight_decay=0.05)),
    ("nadam", dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=1.0)),
]
IDS = [f"{k}-{'-'.join(f'{a}={b}' for a, b in s.items())}" for k, s in SETTINGS]


def _hp(kind, settings):
    return {**DEFAULTS[kind], **settings}


def reference(kind, settings, grads=GRADS, schedule=None, clip=None, rules=O.RULES):
    hp = _hp(kind, settings)
    rule, p, out = rules[kind](hp), P0.copy(), []
    for step, g in enumerate(grads, start=1):
        g = T.clipped({"w": g}, clip)["w"]
        p = rule.update("w", p, g, T.scheduled_lr(hp["lr"], schedule, step))
        out.append(p)
    return out


# ---------------------------------------------------------------- textbook formulations, element by element

def textbook(kind, hp, grads=GRADS):
    """Each optimizer as its paper writes it (with torch.optim's conventions stated), one scalar at a time."""
    out, p, st = [], list(P0), [dict() for _ in P0]
    b1, b2 = hp.get("betas", (0, 0))
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            s, lr = st[i], hp["lr"]
            d = g[i] + (0.0 if kind == "adamw" else hp["weight_decay"]) * p[i]
            if kind == "sgd":  # Polyak momentum with dampening: the first step takes the gradient whole
                if hp["momentum"]:
                    s["b"] = d if t == 1 else hp["momentum"] * s["b"] + (1 - hp["dampening"]) * d
                    d = d + hp["momentum"] * s["b"] if hp["nesterov"] else s["b"]
                p[i] -= lr * d
            elif kind in ("adam", "adamw"):  # Kingma & Ba, Alg. 1, in its "efficient" form (step size α_t,
                # ε scaled by √(1 − β2ᵗ)); AMSGrad (Reddi et al.) keeps the largest raw v; AdamW
                # (Loshchilov & Hutter) subtracts lr·λ·θ beside the Adam step
                s["m"] = b1 * s.get("m", 0) + (1 - b1) * d
                s["v"] = b2 * s.get("v", 0) + (1 - b2) * d * d
                s["vmax"] = max(s.get("vmax", 0), s["v"]) if hp["amsgrad"] else s["v"]
                a_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                decay = lr * hp["weight_decay"] * p[i] if kind == "adamw" else 0.0
                p[i] -= a_t * s["m"] / (math.sqrt(s["vmax"]) + hp["eps"] * math.sqrt(1 - b2 ** t)) + decay
            elif kind == "rmsprop":  # Hinton's lecture 6e; centered: Graves (2013) eq. 38–40
                a = hp["alpha"]
                s["v"] = a * s.get("v", 0) + (1 - a) * d * d
                var = s["v"]
                if hp["centered"]:
                    s["ga"] = a * s.get("ga", 0) + (1 - a) * d
                    var -= s["ga"] ** 2
                step = d / (math.sqrt(var) + hp["eps"])
                if hp["momentum"]:
                    s["b"] = hp["momentum"] * s.get("b", 0) + step
                    step = s["b"]
                p[i] -= lr * step
            elif kind == "adagrad":  # Duchi et al.: G_t = G_0 + Σ g², lr decayed as 1/(1 + (t − 1)·decay)
                s["G"] = s.get("G", hp["initial_accumulator_value"]) + d * d
                p[i] -= lr / (1 + (t - 1) * hp["lr_decay"]) * d / (math.sqrt(s["G"]) + hp["eps"])
            elif kind == "adamax":  # Kingma & Ba, Alg. 2; torch adds ε to |g| inside the max
                s["m"] = b1 * s.get("m", 0) + (1 - b1) * d
                s["u"] = max(b2 * s.get("u", 0), abs(d) + hp["eps"])
                p[i] -= lr / (1 - b1 ** t) * s["m"] / s["u"]
            else:  # NAdam, Dozat (2016) eq. (m̄ form), with torch's μ_t = β1(1 − ½·0.96^(tψ))
                mu = [b1 * (1 - 0.5 * 0.96 ** (k * hp["momentum_decay"])) for k in range(1, t + 2)]
                s["m"] = b1 * s.get("m", 0) + (1 - b1) * d
                s["v"] = b2 * s.get("v", 0) + (1 - b2) * d * d
                m_bar = (mu[t] * s["m"] / (1 - math.prod(mu[:t + 1])) + (1 - mu[t - 1]) * d / (1 - math.prod(mu[:t])))
                p[i] -= lr * m_bar / (math.sqrt(s["v"] / (1 - b2 ** t)) + hp["eps"])
        out.append(np.array(p))
    return out


@pytest.mark.parametrize("kind,settings", SETTINGS, ids=IDS)
def test_update_rule_matches_its_textbook_formula(kind, settings):
    assert STEPS >= 4
    for step, (mine, book) in enumerate(zip(reference(kind, settings), textbook(kind, _hp(kind, settings))), 1):
        np.testing.assert_allclose(mine, book, rtol=1e-12, atol=1e-15, err_msg=f"step {step}")


# ---------------------------------------------------------------- torch.optim

def _torch_optimizer(kind, hp, params):
    import torch
    lr = hp["lr"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=hp["momentum"], dampening=hp["dampening"],
                               nesterov=hp["nesterov"], weight_decay=hp["weight_decay"])
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                   amsgrad=hp["amsgrad"])
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hp["alpha"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                                   momentum=hp["momentum"], centered=hp["centered"])
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, lr_decay=hp["lr_decay"], weight_decay=hp["weight_decay"],
                                   initial_accumulator_value=hp["initial_accumulator_value"], eps=hp["eps"])
    if kind == "adamax":
        return torch.optim.Adamax(params, lr=lr, betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    return torch.optim.NAdam(params, lr=lr, betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                             momentum_decay=hp["momentum_decay"])


def torch_run(kind, settings, grads=GRADS, schedule=None, clip=None, default_dtype="float64"):
    """torch.optim on float64 parameters, with torch's default dtype float64 as a float64 user sets it (and as
    the adapter does): torch.optim keeps scalar state (NAdam's μ product) in the default dtype."""
    import torch
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, default_dtype))
    try:
        return _torch_run(kind, settings, grads, schedule, clip)
    finally:
        torch.set_default_dtype(previous)


def _torch_run(kind, settings, grads, schedule, clip):
    import torch
    hp = _hp(kind, settings)
    p = torch.tensor(P0, dtype=torch.float64, requires_grad=True)
    opt = _torch_optimizer(kind, hp, [p])
    from gradconf.adapters.torch_training import scheduler
    sched = scheduler(schedule, opt)  # the adapter's own torch.optim.lr_scheduler for the schedule
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        if clip is not None and clip[0] == "norm":
            torch.nn.utils.clip_grad_norm_([p], clip[1])
        elif clip is not None and clip[0] == "value":
            torch.nn.utils.clip_grad_value_([p], clip[1])
        opt.step()
        if sched is not None:
            sched.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("kind,settings", SETTINGS, ids=IDS)
def test_update_rule_matches_torch_optim(kind, settings):
    pytest.importorskip("torch")
    for step, (mine, theirs) in enumerate(zip(reference(kind, settings), torch_run(kind, settings)), 1):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-15, err_msg=f"step {step}")


SCHEDULES = [("step", {"step_size": 2, "gamma": 0.5}), ("exponential", {"gamma": 0.8}),
             ("cosine", {"t_max": 3, "eta_min": 0.001}), ("cosine", {"t_max": 10, "eta_min": 0.0})]
CLIPS = [("norm", 0.5), ("value", 0.3), ("norm", 100.0)]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s[0]}-{'-'.join(map(str, s[1].values()))}")
@pytest.mark.parametrize("kind,settings", [SETTINGS[0], SETTINGS[4], SETTINGS[8], SETTINGS[12], SETTINGS[17]],
                         ids=["sgd", "adam", "rmsprop", "adagrad", "nadam"])
def test_schedules_match_torch_lr_scheduler(kind, settings, schedule):
    pytest.importorskip("torch")
    for step, (mine, theirs) in enumerate(zip(reference(kind, settings, schedule=schedule),
                                              torch_run(kind, settings, schedule=schedule)), 1):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-15, err_msg=f"step {step}")


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("kind,settings", [SETTINGS[1], SETTINGS[5], SETTINGS[10]], ids=["sgd", "adamw", "rmsprop"])
def test_clipping_matches_torch_nn_utils(kind, settings, clip):
    pytest.importorskip("torch")
    for step, (mine, theirs) in enumerate(zip(reference(kind, settings, clip=clip),
                                              torch_run(kind, settings, clip=clip)), 1):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-15, err_msg=f"step {step}")


def test_torch_nadam_keeps_its_mu_product_in_the_default_dtype():
    """TORCH-NADAM-MU32 (docs/divergences.md): with torch's default dtype float32, NAdam's μ product is a float32
    scalar, and a float64 run moves by ~1e-9 relative; the adapter sets float64 for float64 cases."""
    pytest.importorskip("torch")
    kind, settings = SETTINGS[16]
    f32 = torch_run(kind, settings, default_dtype="float32")
    worst = max(float(np.max(np.abs(a - b) / np.abs(b))) for a, b in zip(f32, reference(kind, settings)))
    assert 1e-11 < worst < 1e-6


def test_schedule_values_by_hand():
    """lr of steps 1–5: the scheduler steps after each optimizer step, so step 1 runs at the base lr."""
    lrs = lambda s: [T.scheduled_lr(0.1, s, k) for k in range(1, 6)]  # noqa: E731
    assert lrs(("step", {"step_size": 2, "gamma": 0.5})) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert lrs(("exponential", {"gamma": 0.5})) == pytest.approx([0.1, 0.05, 0.025, 0.0125, 0.00625])
    assert lrs(("cosine", {"t_max": 2, "eta_min": 0.0})) == pytest.approx([0.1, 0.05, 0.0, 0.05, 0.1], abs=1e-15)


def test_global_norm_clip_by_hand():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([0.0, 4.0])}  # global norm 5
    out = T.clipped(g, ("norm", 1.0))
    np.testing.assert_allclose(out["a"], [3 / (5 + 1e-6), 0])
    per = T.clipped(g, ("norm_per_param", 3.5))  # a stays (norm 3), b to norm 3.5
    np.testing.assert_allclose(per["a"], [3, 0])
    np.testing.assert_allclose(per["b"], [0, 3.5])


# ---------------------------------------------------------------- the checks can fail

class _EpsInsideRoot(O.RMSprop):  # Keras' RMSprop: ε inside the square root
    def update(self, name, p, g, lr):
        h = self.hp
        s = self._slot(name, p)
        v = s["v"] = h["alpha"] * s.get("v", 0.0) + (1 - h["alpha"]) * g * g
        return p - lr * g / np.sqrt(v + h["eps"])


class _AccumulatorFromZero(O.Adagrad):  # initial_accumulator_value ignored
    def __init__(self, hp):
        super().__init__({**hp, "initial_accumulator_value": 0.0})


class _NadamWithoutSchedule(O.NAdam):  # ψ ignored: μ_t = β1 throughout
    def __init__(self, hp):
        super().__init__({**hp, "momentum_decay": 0.0})


class _AmsgradBiasCorrectedMax(O.Adam):  # the max taken over v̂ = v/(1 − β2ᵗ), as optax does
    def update(self, name, p, g, lr):
        h, s = self.hp, self._slot(name, p)
        b1, b2 = h["betas"]
        t = s["t"] = s["t"] + 1
        m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        vh = s["vmax"] = np.maximum(s.get("vmax", 0.0), v / (1 - b2 ** t))
        return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(vh) + h["eps"])


class _DampenedFirstStep(O.SGD):  # dampening applied on the first step too
    def update(self, name, p, g, lr):
        s = self._slot(name, p)
        s.setdefault("b", np.zeros_like(g))
        return super().update(name, p, g, lr)


class _AdamWCoupled(O.Adam):  # AdamW's decay added to the gradient (Adam with L2)
    pass


PLANTED = [("rmsprop", SETTINGS[7][1], _EpsInsideRoot), ("adagrad", SETTINGS[12][1], _AccumulatorFromZero),
           ("nadam", SETTINGS[16][1], _NadamWithoutSchedule), ("adam", SETTINGS[3][1], _AmsgradBiasCorrectedMax),
           ("sgd", SETTINGS[0][1], _DampenedFirstStep), ("adamw", SETTINGS[6][1], _AdamWCoupled)]


@pytest.mark.parametrize("kind,settings,bug", PLANTED, ids=[b.__name__ for _, _, b in PLANTED])
def test_a_planted_update_bug_fails_both_checks(kind, settings, bug):
    pytest.importorskip("torch")
    planted = reference(kind, settings, rules={**O.RULES, kind: bug})
    book, theirs = textbook(kind, _hp(kind, settings)), torch_run(kind, settings)
    for other in (book, theirs):
        assert any(not np.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(planted, other))


def test_planted_schedule_and_clip_bugs_fail_the_torch_check():
    pytest.importorskip("torch")
    kind, settings = SETTINGS[4]
    theirs = torch_run(kind, settings, schedule=SCHEDULES[0])
    early = reference(kind, settings, schedule=("step", {"step_size": 1, "gamma": 0.5}))  # steps one too early
    assert any(not np.allclose(a, b, rtol=1e-13) for a, b in zip(early, theirs))
    clip_theirs = torch_run(kind, settings, clip=("norm", 0.5))
    per_param = reference(kind, settings, clip=("norm_per_param", 0.5))  # no +1e-6 in the denominator
    assert any(not np.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(per_param, clip_theirs))
