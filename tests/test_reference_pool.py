"""Finite-difference proofs (float64) of the pooling, resizing and convolution options of issue 17 (dilated
and ceil_mode pools, global and adaptive average pools, upsample, padding modes, conv1d), each with a planted
wrong formula the same check must catch (error > 1e-3). The forwards are checked against closed forms too."""
import dataclasses

import numpy as np
import pytest

from gradconf import vocab
from gradconf.vocab import numerics, pool, resize
from tests.test_reference import TOL, fd_error, net

POOLS = [
    ("max_pool2d", dict(kernel_size=2, dilation=2)), ("max_pool2d", dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("max_pool2d", dict(kernel_size=2, stride=2, padding=1, ceil_mode=True, dilation=[1, 2])),
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=[[1, 0], [0, 1]], dilation=2, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=[2, 3], stride=[3, 2], padding=[[1, 0], [0, 1]], ceil_mode=True)),
    ("global_avg_pool2d", {}), ("adaptive_avg_pool2d", dict(output_size=[4, 3])),
    ("adaptive_avg_pool2d", dict(output_size=5)), ("adaptive_avg_pool2d", dict(output_size=[8, 9])),
    ("upsample", dict(scale_factor=2)), ("upsample", dict(scale_factor=[3, 2], mode="bilinear")),
    ("upsample", dict(scale_factor=[2, 3], mode="bilinear", align_corners=True)),
]


@pytest.mark.parametrize("kind,opts", POOLS, ids=str)
def test_pools_and_resizes(kind, opts):
    assert fd_error(net((2, 2, 6, 7), {kind: opts})) < TOL


CONVS = [
    ("conv2d", dict(kernel_size=3, padding=1, padding_mode="reflect")),
    ("conv2d", dict(kernel_size=3, padding=[[2, 0], [1, 2]], padding_mode="replicate", stride=2)),
    ("conv2d", dict(kernel_size=3, padding=[2, 3], padding_mode="circular", dilation=2)),
    ("conv2d", dict(kernel_size=2, stride=2, padding="same", padding_mode="reflect", groups=2)),
    ("conv1d", dict(kernel_size=3)), ("conv1d", dict(kernel_size=3, stride=2, padding="same", dilation=2)),
    ("conv1d", dict(kernel_size=2, padding=1, groups=2, bias=False)),
    ("conv1d", dict(kernel_size=3, padding=2, padding_mode="reflect")),
    ("conv1d", dict(kernel_size=3, padding=3, padding_mode="circular", stride=2)),
    ("conv1d", dict(kernel_size=4, padding="same", padding_mode="replicate")),
]


@pytest.mark.parametrize("kind,opts", CONVS, ids=str)
def test_conv_padding_modes_and_conv1d(kind, opts):
    shape = (2, 4, 5, 6) if kind == "conv2d" else (2, 4, 7)
    assert fd_error(net(shape, {kind: {"out_channels": 4, **opts}})) < TOL


def test_forwards_match_closed_forms():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 5, 4))
    run = lambda kind, **o: vocab.LAYERS[kind].forward(_layer(kind, x.shape, o), [x], {})[0]  # noqa: E731
    np.testing.assert_allclose(run("global_avg_pool2d")[0, 0], x.mean())
    np.testing.assert_allclose(run("upsample", scale_factor=2)[0, 0], x[0, 0].repeat(2, 0).repeat(2, 1))
    # adaptive 5 -> 3: windows [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(run("adaptive_avg_pool2d", output_size=[3, 4])[0, 0, :, 0],
                               [x[0, 0, 0:2, 0].mean(), x[0, 0, 1:4, 0].mean(), x[0, 0, 3:5, 0].mean()])
    # ceil_mode 5 with k 2, s 2: windows [0,2), [2,4), [4,5) (clipped: divides by 1 cell)
    np.testing.assert_allclose(run("avg_pool2d", kernel_size=2, ceil_mode=True)[0, 0, :, 0],
                               [x[0, 0, 0:2, 0:2].mean(), x[0, 0, 2:4, 0:2].mean(), x[0, 0, 4, 0:2].mean()])
    # dilation 2: taps 0 and 2
    np.testing.assert_allclose(run("max_pool2d", kernel_size=2, dilation=2, stride=1)[0, 0, 0, 0],
                               x[0, 0, [0, 0, 2, 2], [0, 2, 0, 2]].max())


def _layer(kind, shape, opts):
    from gradconf.vocab.base import Site
    decl = vocab.LAYERS[kind]
    return decl.build(vocab.with_defaults(decl, opts), Site(("model", 0, kind), kind, (shape,)))


def test_bilinear_matrix_matches_pytorch_formulas():
    # align_corners false, H 2 -> 4: src = max((i + 0.5)/2 - 0.5, 0) = 0, 0.25, 0.75, 1.25 -> clamp to row 1
    m = resize.interpolation_matrix(2, 2, "bilinear", False)
    np.testing.assert_array_equal(m, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # align_corners true, H 2 -> 4: src = i/3
    m = resize.interpolation_matrix(2, 2, "bilinear", True)
    np.testing.assert_allclose(m, [[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]])


# ---------------------------------------------------------------- planted wrong formulas

def _shift_divisor(L, dy, cache):
    x_shape, div = cache
    return pool.avg_pool2d_backward(L, dy, (x_shape, float(L.kernel_size[0] * L.kernel_size[1])))


def _max_no_dilation(L, dy, cache):
    return pool.max_pool2d_backward(dataclasses.replace(L, dilation=(1, 1), extra=(L.extra[0] + 2, L.extra[1] + 2)),
                                    dy, cache)


def _global_no_mean(L, dy, cache):
    return [np.broadcast_to(dy[:, :, None, None], cache).copy()], {}


def _adaptive_one_divisor(L, dy, cache):
    ah, aw = cache  # every window divided by the longest window's length
    return pool.adaptive_avg_pool2d_backward(L, dy, (ah, (aw > 0) / (aw > 0).sum(1).max()))


def _upsample_not_transposed(L, dy, cache):
    mh, mw = cache
    return resize.upsample_backward(L, dy, (mh[::-1], mw))


PLANTED = [
    ("avg_pool2d", _shift_divisor, lambda: net((1, 1, 5, 5), {"avg_pool2d": {"kernel_size": 2, "ceil_mode": True}})),
    ("max_pool2d", _max_no_dilation, lambda: net((1, 1, 6, 6), {"max_pool2d": {"kernel_size": 2, "dilation": 2}})),
    ("global_avg_pool2d", _global_no_mean, lambda: net((2, 2, 3, 3), {"global_avg_pool2d": {}})),
    ("adaptive_avg_pool2d", _adaptive_one_divisor,
     lambda: net((1, 1, 5, 5), {"adaptive_avg_pool2d": {"output_size": 3}})),
    ("upsample", _upsample_not_transposed,
     lambda: net((1, 1, 3, 3), {"upsample": {"scale_factor": 2, "mode": "bilinear"}})),
]


@pytest.mark.parametrize("layer,fake,case", PLANTED, ids=lambda v: v if isinstance(v, str) else "")
def test_planted_wrong_backward_is_caught(monkeypatch, layer, fake, case):
    c = case()
    assert fd_error(c) < TOL
    monkeypatch.setitem(vocab.LAYERS, layer, dataclasses.replace(vocab.LAYERS[layer], backward=fake))
    assert fd_error(c) > 1e-3


@pytest.mark.parametrize("kind,shape,opts", [
    ("conv2d", (1, 2, 5, 5), dict(kernel_size=3, padding=2, padding_mode="reflect")),
    ("conv1d", (1, 2, 6), dict(kernel_size=3, padding=2, padding_mode="circular")),
], ids=["conv2d-reflect", "conv1d-circular"])
def test_planted_padding_mode_adjoint_is_caught(monkeypatch, kind, shape, opts):
    """dX of the padded cells folded back by the wrong mode's index map (replicate's)."""
    c = net(shape, {kind: {"out_channels": 2, **opts}})
    assert fd_error(c) < TOL
    plain = numerics.mode_pad_adjoint
    from gradconf.vocab import conv
    monkeypatch.setattr(conv, "mode_pad_adjoint", lambda dxp, s, pad, mode: plain(dxp, s, pad, "replicate"))
    assert fd_error(c) > 1e-3


def test_planted_conv1d_kernel_reversed_is_caught(monkeypatch):
    from gradconf.vocab import conv1d
    c = net((1, 2, 7), {"conv1d": {"out_channels": 2, "kernel_size": 3, "stride": 2}})
    assert fd_error(c) < TOL
    plain = conv1d.conv1d_backward

    def reversed_dw(L, dy, cache):
        dx, grads = plain(L, dy, cache)
        return dx, {**grads, "weight": grads["weight"][..., ::-1]}
    monkeypatch.setitem(vocab.LAYERS, "conv1d", dataclasses.replace(vocab.LAYERS["conv1d"], backward=reversed_dw))
    assert fd_error(c) > 1e-3


# ---------------------------------------------------------------- hostile sizes: a CaseError, quickly

HOSTILE = [
    ("max_pool2d", dict(kernel_size=2, dilation=2 ** 40)), ("max_pool2d", dict(kernel_size=2, padding=10 ** 400)),
    ("max_pool2d", dict(kernel_size=2 ** 27, padding=2 ** 27, stride=1)),
    ("max_pool2d", dict(kernel_size=2, dilation=50, padding=[[1, 50], [1, 50]], stride=1, ceil_mode=True)),
    ("max_pool2d", dict(kernel_size=2, dilation=9, padding=[[4, 2 ** 26], [0, 0]], stride=1)),
    ("avg_pool2d", dict(kernel_size=-1)), ("avg_pool2d", dict(kernel_size=2, stride=0, ceil_mode=True)),
    ("adaptive_avg_pool2d", dict(output_size=10 ** 9)), ("adaptive_avg_pool2d", dict(output_size=[2 ** 27, 4])),
    ("adaptive_avg_pool2d", dict(output_size=0)), ("adaptive_avg_pool2d", {}),
    ("upsample", dict(scale_factor=2 ** 40)), ("upsample", dict(scale_factor=[1, 0])),
    ("upsample", dict(scale_factor=2, align_corners=True)), ("upsample", dict(scale_factor=2, mode="bicubic")),
    ("conv2d", dict(out_channels=1, kernel_size=1, padding=3, padding_mode="reflect")),
    ("conv2d", dict(out_channels=1, kernel_size=1, padding=5, padding_mode="circular")),
    ("conv2d", dict(out_channels=1, kernel_size=1, padding_mode="mirror")),
    ("conv1d", dict(out_channels=1, kernel_size=2 ** 40)), ("conv1d", dict(out_channels=1, kernel_size=1, padding=[1, 1])),
    ("conv1d", dict(out_channels=1, kernel_size=1, padding=10 ** 400)),
]


@pytest.mark.parametrize("kind,opts", HOSTILE, ids=str)
def test_hostile_sizes_are_case_errors(kind, opts):
    import time
    from gradconf.errors import CaseError
    shape = (1, 1, 7) if kind == "conv1d" else (1, 1, 3, 4)
    start = time.perf_counter()
    with pytest.raises(CaseError):
        _layer(kind, shape, opts)
    assert time.perf_counter() - start < 1.0


def test_window_check_matches_brute_force():
    """pool.real_in_every_window's closed form (and its window-by-window branch) against every tap."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n, top, k, s, d, out = (int(v) for v in rng.integers(1, [8, 6, 5, 4, 12, 9]))
        top -= 1
        brute = all(any(top <= o * s + j * d < top + n for j in range(k)) for o in range(out))
        assert pool.real_in_every_window(n, top, k, s, d, out) == brute, (n, top, k, s, d, out)


def test_extra_is_negative_only_where_ceil_mode_drops_a_window_that_leaves_far_padding_unread():
    """The adapters pad the far side by padding + extra and pool "valid": after PyTorch's rule drops a
    window that would start in a far padding as wide as a window, a negative extra crops what no window
    reads (else that pool keeps a window of padding alone); floor mode leaves unread cells to the floor."""
    from gradconf.vocab.pool import pool_axis
    assert pool_axis(4, (0, 2), 2, 2, 1, True, (), "width") == (2, -2)   # the 3rd window would start at 4
    assert pool_axis(5, (1, 1), 2, 2, 1, True, (), "width") == (3, -1)   # maxpool_ceil_mode_drops_window
    assert pool_axis(5, (1, 1), 3, 2, 1, True, (), "width") == (3, 0)    # the last window ends in the padding
    assert pool_axis(5, (0, 0), 2, 2, 1, True, (), "width") == (3, 1)    # a window clipped by the input's end
    assert pool_axis(8, (1, 1), 3, 2, 1, False, (), "width") == (4, 0)   # floor: one padding cell unread
