"""The reference optimizers against the textbook update rules, written out element by element."""
import math

import numpy as np
import pytest

from gradconf.adapters.numpy_ref import Adam, SGD, make_optimizer
from gradconf.case import Optimizer

STEPS = 4


def _run(opt: Optimizer, p0, grads):
    o, p = make_optimizer(opt), p0.copy()
    out = []
    for g in grads:
        p = o.update("w", p, g)
        out.append(p)
    return out


def textbook_sgd(lr, momentum, nesterov, wd, p0, grads):
    """Sutskever-style momentum as torch.optim.SGD writes it (dampening 0), per element."""
    out, p, buf = [], list(p0), [None] * len(p0)
    for g in grads:
        for i in range(len(p)):
            d = g[i] + wd * p[i]
            if momentum:
                buf[i] = d if buf[i] is None else momentum * buf[i] + d
                d = d + momentum * buf[i] if nesterov else buf[i]
            p[i] = p[i] - lr * d
        out.append(np.array(p))
    return out


def textbook_adam(lr, b1, b2, eps, wd, p0, grads):
    """Kingma & Ba, Algorithm 1, with coupled L2 added to the gradient (torch.optim.Adam)."""
    out, p = [], list(p0)
    m, v = [0.0] * len(p0), [0.0] * len(p0)
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            d = g[i] + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * d
            v[i] = b2 * v[i] + (1 - b2) * d * d
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p[i] = p[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(np.array(p))
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=6), [rng.normal(size=6) * 10.0 ** -k for k in range(STEPS)]


SGDS = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.1, weight_decay=0.01), dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.1)]
ADAMS = [dict(lr=0.01), dict(lr=0.001, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.01, weight_decay=0.05)]


@pytest.mark.parametrize("kw", SGDS, ids=str)
def test_sgd_matches_textbook(kw, data):
    p0, grads = data
    got = _run(Optimizer("sgd", **kw), p0, grads)
    want = textbook_sgd(kw["lr"], kw.get("momentum", 0), kw.get("nesterov", False), kw.get("weight_decay", 0), p0, grads)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kw", ADAMS, ids=str)
def test_adam_matches_textbook(kw, data):
    p0, grads = data
    got = _run(Optimizer("adam", **kw), p0, grads)
    b1, b2 = kw.get("betas", (0.9, 0.999))
    want = textbook_adam(kw["lr"], b1, b2, kw.get("eps", 1e-8), kw.get("weight_decay", 0), p0, grads)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind,kw", [("sgd", k) for k in SGDS] + [("adam", k) for k in ADAMS], ids=str)
def test_matches_torch_optim(kind, kw, data):
    torch = pytest.importorskip("torch")
    p0, grads = data
    got = _run(Optimizer(kind, **kw), p0, grads)
    w = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)([w], **kw)
    for g, mine in zip(grads, got):
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), mine, rtol=1e-13, atol=1e-15)


def test_optimizer_classes():
    assert isinstance(make_optimizer(Optimizer("sgd", 0.1)), SGD)
    assert isinstance(make_optimizer(Optimizer("adam", 0.1)), Adam)
    assert make_optimizer(None) is None
