"""Parameter layouts between the canonical ones (OIHW, IOHW, dense (out, in)) and TensorFlow's (HWIO, Keras'
(in, out)): the TensorFlow adapter and its repro script writer (tf_script.py) share them."""
from __future__ import annotations

import numpy as np

from gradconf.case import Case

_WEIGHT_LAYOUT = {"conv2d": "conv", "conv_transpose2d": "conv_t", "dense": "dense"}  # others: canonical


def _kinds(case: Case) -> dict[str, str]:
    """Parameter name -> how its layout converts (conv, conv_t, dense, bias: as it is)."""
    return {p.name: "bias" if p.name.endswith(".bias") else _WEIGHT_LAYOUT.get(L.type, "bias")
            for L in case.layers for p in L.params}


_TO_TF = {"conv": (2, 3, 1, 0), "conv_t": (2, 3, 1, 0), "dense": (1, 0)}  # OIHW->HWIO, IOHW->HW,O/g,I ; (o,i)->(i,o)
_FROM_TF = {"conv": (3, 2, 0, 1), "conv_t": (3, 2, 0, 1), "dense": (1, 0)}


def to_tf_layout(kind: str, a: np.ndarray) -> np.ndarray:
    return a if kind == "bias" else np.transpose(a, _TO_TF[kind])


def from_tf_layout(kind: str, a: np.ndarray) -> np.ndarray:
    return a if kind == "bias" else np.transpose(a, _FROM_TF[kind])


def nhwc_axis(dim: int, ndim: int) -> int:
    """A canonical (NCHW) axis of a `ndim`-D activation, in TensorFlow's NHWC: channels last."""
    return (0, 3, 1, 2)[dim] if ndim == 4 else dim
