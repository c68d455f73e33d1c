"""Planted bugs in the layers: convolutions, pooling, activations, flatten, dense (tests/planted.py)."""
from __future__ import annotations

import dataclasses

import numpy as np

from gradconf import vocab
from gradconf.case import Conv2d
from gradconf.vocab import conv, numerics, pool
from tests.planting import Planted, _keeping_input, _wrap_backward, swap


def _conv_dw(x, dy, L, dilation, group_shift=0):
    """A conv's weight gradient from its input windows at `dilation`, group g's from group g + shift."""
    n, g = x.shape[0], L.groups
    win = numerics.windows(x, L.kernel_size, L.stride, dilation, L.padding, L.out_shape[2:])
    win = np.roll(win.reshape(n, g, -1, *win.shape[2:]), -group_shift, axis=1)
    dyg = dy.reshape(n, g, -1, *dy.shape[2:])
    return np.einsum("ngcijyx,ngoyx->gocij", win, dyg).reshape(L.out_channels, -1, *L.kernel_size)


# ---------------------------------------------------------------- convolutions

class ConvDxNoRotation(Planted):
    bug = "conv dX without kernel rotation"

    def patches(self, case):
        plain = conv.conv2d_input_grad
        return [(conv, "conv2d_input_grad", lambda dy, dyg, w, L, shape: plain(dy, dyg, w[..., ::-1, ::-1], L, shape))]


class ConvDwOperandOrder(Planted):
    bug = "conv dW operand order (cols·dYᵀ read as dY·colsᵀ)"

    def patches(self, case):
        def change(dy, cache, L, dx, grads):
            w = grads["weight"]
            return dx, {**grads, "weight": np.ascontiguousarray(w.reshape(w.shape[0], -1).T).reshape(w.shape)}
        return [_wrap_backward("conv2d", change)]


class StrideRemainderWrongEdge(Planted):
    bug = "stride remainder aligned to the bottom/right edge"

    def patches(self, case):
        forward, backward = vocab.LAYERS["conv2d"].forward, vocab.LAYERS["conv2d"].backward

        def remainder(L):
            (t, b), (le, r) = L.padding
            eff = [d * (k - 1) + 1 for d, k in zip(L.dilation, L.kernel_size)]
            return [(size + p - e) % s for size, p, e, s in zip(L.in_shape[2:], (t + b, le + r), eff, L.stride)]

        def fwd(L, xs, p):
            (x,), (rh, rw) = xs, remainder(L)
            shifted = np.zeros_like(x)
            shifted[:, :, :x.shape[2] - rh, :x.shape[3] - rw] = x[:, :, rh:, rw:]
            return forward(L, [shifted], p)

        def bwd(L, dy, cache):
            rh, rw = remainder(L)
            (dshift,), grads = backward(L, dy, cache)
            dx = np.zeros_like(dshift)
            dx[:, :, rh:, rw:] = dshift[:, :, :dx.shape[2] - rh, :dx.shape[3] - rw]
            return [dx], grads
        return [swap(vocab.LAYERS, "conv2d", forward=fwd, backward=bwd)]


class DilationIgnoredInDw(Planted):
    bug = "dilation ignored in dW"

    def patches(self, case):
        return [_keeping_input("conv2d", lambda x, dy, L, dx, grads: (dx, {**grads, "weight": _conv_dw(x, dy, L, (1, 1))}))]


class GroupedDwWrongGroup(Planted):
    bug = "grouped dW from the wrong group"

    def patches(self, case):
        return [_keeping_input("conv2d", lambda x, dy, L, dx, grads:
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
    return [_wrap_backward(kind, fix) for kind in ("conv2d", "conv_transpose2d", "dense")]


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
        forward, backward = vocab.LAYERS["conv_transpose2d"].forward, vocab.LAYERS["conv_transpose2d"].backward

        def without(L):
            (oh, ow), (n, c, h, w) = L.output_padding, L.out_shape
            return dataclasses.replace(L, output_padding=(0, 0), out_shape=(n, c, h - oh, w - ow)), oh, ow

        def fwd(L, xs, p):
            L0, oh, ow = without(L)
            y0, cache = forward(L0, xs, p)
            return np.pad(y0, ((0, 0), (0, 0), (0, oh), (0, ow))), cache

        def bwd(L, dy, cache):
            L0, oh, ow = without(L)
            return backward(L0, np.ascontiguousarray(dy[:, :, :dy.shape[2] - oh, :dy.shape[3] - ow]), cache)
        return [swap(vocab.LAYERS, "conv_transpose2d", forward=fwd, backward=bwd)]


class Float64ConvInFloat32(Planted):
    bug = "float64 conv computed in float32"

    def patches(self, case):
        if case.dtype != "float64":
            return []
        forward = vocab.LAYERS["conv2d"].forward

        def fwd(L, xs, p):
            y, cache = forward(L, [xs[0].astype(np.float32)], {k: v.astype(np.float32) for k, v in p.items()})
            return y.astype(np.float64), cache
        return [swap(vocab.LAYERS, "conv2d", forward=fwd)]


# ---------------------------------------------------------------- pooling

def _max_forward(pick, fill=-np.inf):
    def forward(L, xs, p):
        (x,), k, out_hw = xs, L.kernel_size, L.out_shape[2:]
        flat = numerics.windows(x, k, L.stride, L.dilation, pool.grid(L), out_hw, fill=fill).reshape(*x.shape[:2], -1, *out_hw)
        arg = pick(flat)
        return np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0], (x.shape, arg)
    return forward


def _first(flat):
    return flat.argmax(axis=2)


class MaxPoolLastMax(Planted):
    bug = "max-pool gradient to the last maximum"

    def patches(self, case):
        last = _max_forward(lambda flat: flat.shape[2] - 1 - flat[:, :, ::-1].argmax(axis=2))
        return [swap(vocab.LAYERS, "max_pool2d", forward=last)]


class MaxPoolSpreadTies(Planted):
    bug = "max-pool gradient spread over tied maxima"

    def patches(self, case):
        def forward(L, xs, p):
            (x,), k, out_hw = xs, L.kernel_size, L.out_shape[2:]
            win = numerics.windows(x, k, L.stride, L.dilation, pool.grid(L), out_hw, fill=-np.inf)
            y = win.max(axis=(2, 3))
            return y, (x.shape, win == y[:, :, None, None])

        def backward(L, dy, cache):
            shape, tied = cache
            share = tied / tied.sum(axis=(2, 3), keepdims=True)
            return [numerics.col2im(share * dy[:, :, None, None], shape, L.kernel_size, L.stride, L.dilation,
                                    pool.grid(L), L.out_shape[2:])], {}
        return [swap(vocab.LAYERS, "max_pool2d", forward=forward, backward=backward)]


class MaxPoolPadsWithZero(Planted):
    bug = "max-pool padding with 0 instead of -inf"

    def patches(self, case):
        return [swap(vocab.LAYERS, "max_pool2d", forward=_max_forward(_first, fill=0.0))]


class AvgPoolIgnoresExcludePad(Planted):
    bug = "avg-pool count_include_pad: false ignored"

    def patches(self, case):
        return [(pool, "avg_divisor", lambda shape, L: float(L.kernel_size[0] * L.kernel_size[1]))]


class AvgPoolMissingDivisor(Planted):
    bug = "avg-pool gradient missing 1/k²"

    def patches(self, case):
        backward = vocab.LAYERS["avg_pool2d"].backward
        return [swap(vocab.LAYERS, "avg_pool2d", backward=lambda L, dy, cache: backward(L, dy, (cache[0], 1.0)))]


# ---------------------------------------------------------------- activations, flatten, dense

def _activation(kind, derivative):
    return [swap(vocab.LAYERS, kind, backward=lambda L, dy, cache: ([derivative(dy, *cache)], {}))]


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
        def forward(L, xs, p):
            (x,) = xs
            return (x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x.reshape(x.shape[0], -1)), x.shape

        def backward(L, dy, shape):
            if len(shape) != 4:
                return [dy.reshape(shape)], {}
            n, c, h, w = shape
            return [dy.reshape(n, h, w, c).transpose(0, 3, 1, 2)], {}
        return [swap(vocab.LAYERS, "flatten", forward=forward, backward=backward)]


class DenseDwTransposed(Planted):
    bug = "dense dW transposed (shows on square weights)"

    def patches(self, case):
        def change(dy, cache, L, dx, grads):
            w = grads["weight"]
            return dx, {**grads, "weight": w.T.copy()} if w.shape[0] == w.shape[1] else grads
        return [_wrap_backward("dense", change)]

