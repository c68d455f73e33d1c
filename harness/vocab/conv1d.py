"""conv1d (NCL input, OIL weight): parameters, shape rule, and its reference math as the height-1 case of
conv2d's (a (N, C, 1, L) input, an (O, I, 1, K) kernel): the same cross-correlation, exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..case import Conv2d, Param
from ..errors import CaseError, ShapeError
from ..fields import (bias_params, check_size, default_param, integer, literal, out_size, same_padding,
                      sizes_in_reach, tensor)
from .base import BOOL, INT, NAME, REQUIRED, TENSOR, Field, LayerDecl, Site
from .conv import PADDING_MODE, conv2d_backward_any, conv2d_forward_any, macs, padding_mode


@dataclass(frozen=True, kw_only=True)
class Conv1d(Conv2d):
    """Held as its 2-D twin's geometry (kernel (1, k), stride (1, s), padding ((0, 0), (l, r)), dilation
    (1, d)) with the 3-D shapes (N, C, L) -> (N, O, L_out)."""
    TYPE = "conv1d"

    def as_2d(self) -> Conv2d:
        (n, c, length), (_, o, out) = self.in_shape, self.out_shape
        return dataclasses.replace(self, in_shape=(n, c, 1, length), out_shape=(n, o, 1, out))


_PADDING = {"anyOf": [INT, {"enum": ["same", "valid"]}]}
FIELDS = (Field("name", NAME, doc_default="<type>_<index>"), Field("in_channels", INT, doc_default="checked if given"),
          Field("out_channels", INT, REQUIRED, doc_default="required (or from a literal weight)"),
          Field("kernel_size", INT, REQUIRED, doc_default="required (or from a literal weight)"),
          Field("stride", INT, 1), Field("padding", _PADDING, 0), Field("dilation", INT, 1), Field("groups", INT, 1),
          Field("bias", {"anyOf": [BOOL, TENSOR]}, True), Field("weight", TENSOR, doc_default="PyTorch's init"),
          PADDING_MODE)


def _padding(v, path, n, k, s, d):
    if v == "valid":
        return (0, 0)
    if v == "same":
        return same_padding(n, k, s, d)
    if isinstance(v, str):
        raise CaseError(f"must be an integer, `valid` or `same`, got {v!r}", path)
    x = integer(v, path, min=0)
    return (x, x)


def _build(p: dict, site: Site) -> Conv1d:
    path, shape = site.path, site.shape
    if len(shape) != 3:
        raise ShapeError(f"conv1d needs a 3-D NCL input, got shape {list(shape)}", path)
    sizes_in_reach(p, path, ("out_channels", "kernel_size", "stride", "dilation", "padding"))
    n, c, length = shape
    if "in_channels" in p and integer(p["in_channels"], path + ("in_channels",), min=1) != c:
        raise ShapeError(f"in_channels is {p['in_channels']} but the incoming tensor has {c} channels", path + ("in_channels",))
    wshape = literal(p["weight"], path + ("weight",), "weight").shape if isinstance(p.get("weight"), list) else None
    if wshape is not None and len(wshape) != 3:
        raise CaseError(f"a conv1d weight is 3-D (OIL), got shape {list(wshape)}", path + ("weight",))
    groups = integer(p["groups"], path + ("groups",), min=1)
    out_c = (integer(p["out_channels"], path + ("out_channels",), min=1) if "out_channels" in p
             else wshape[0] if wshape is not None else None)
    k = (integer(p["kernel_size"], path + ("kernel_size",), min=1) if "kernel_size" in p
         else wshape[2] if wshape is not None else None)
    if out_c is None or k is None:
        raise CaseError(f"missing `{'out_channels' if out_c is None else 'kernel_size'}`", path)
    s, d = integer(p["stride"], path + ("stride",), min=1), integer(p["dilation"], path + ("dilation",), min=1)
    if c % groups or out_c % groups:
        raise ShapeError(f"channels {c} -> {out_c} are not divisible by groups {groups}", path + ("groups",))
    pad = _padding(p["padding"], path + ("padding",), length, k, s, d)
    out = out_size(length, pad, k, s, d)
    if out < 1:
        raise ShapeError(f"output length would be {out} for a length-{length} input "
                         f"(kernel {k}, stride {s}, padding {pad}, dilation {d})", path)
    mode = padding_mode(p, path, (pad,), (length,))
    wshape = check_size((out_c, c // groups, k), path + ("weight",), "the weight")
    fan_in = c // groups * k
    weight = tensor(p["weight"], path + ("weight",), wshape, "weight") if "weight" in p else default_param(wshape, fan_in)
    params = (Param(f"{site.name}.weight", weight), *bias_params(p, path, site.name, out_c, fan_in))
    return Conv1d(name=site.name, in_shape=shape, out_shape=(n, out_c, out), params=params, out_channels=out_c,
                  kernel_size=(1, k), stride=(1, s), padding=((0, 0), pad), dilation=(1, d), groups=groups,
                  padding_mode=mode)


def conv1d_forward(L: Conv1d, xs, p):
    # y[n,o,t] = Σ_{c,j} w[o,c,j] · xpad[n, c, t·s + j·d] + b[o]   (conv2d's, on a height-1 input)
    w = p["weight"]
    y, cache = conv2d_forward_any(L.as_2d(), [xs[0][:, :, None, :]], {**p, "weight": w[:, :, None, :]})
    return y[:, :, 0, :], cache


def conv1d_backward(L: Conv1d, dy, cache):
    # conv2d's backward on the height-1 case, the unit axis dropped from dX and dW
    (dx,), grads = conv2d_backward_any(L.as_2d(), dy[:, :, None, :], cache)
    grads["weight"] = grads["weight"][:, :, 0, :]
    return [dx[:, :, 0, :]], grads


CONV1D = LayerDecl("conv1d", "1-D cross-correlation, NCL input, OIL weight; as conv2d (padding an integer, `valid` "
                   "or `same`)", FIELDS, _build, conv1d_forward, conv1d_backward, accumulates=True,
                   macs=lambda L: macs(L.as_2d()))
DECLS = (CONV1D,)
