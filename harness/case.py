"""The case model: what a case file means, as typed, validated, normalised objects.

Everything here is in the canonical layout of SPEC §1 (NCHW, OIHW, IOHW, dense (out, in)).
Shorthands are gone by now: every pair is a pair, every padding is ((top, bottom), (left, right)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

DTYPES = ("float64", "float32", "float16", "bfloat16")
INITS = ("uniform", "normal", "zeros", "ones", "arange", "randint")
QUANTITIES = ("loss", "output", "grad", "param", "state")

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]  # ((top, bottom), (left, right))
Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A literal array, or a recipe drawn from the case's seed (SPEC §1.1)."""
    shape: Shape
    values: np.ndarray | None = None
    init: str = "uniform"
    low: float = -1.0
    high: float = 1.0
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class Param:
    name: str  # "<layer>.weight" or "<layer>.bias"
    spec: TensorSpec


@dataclass(frozen=True, kw_only=True)
class Layer:
    name: str
    in_shape: Shape
    out_shape: Shape
    params: tuple[Param, ...] = ()
    # Where its inputs come from (SPEC §1.8): earlier layers' names or "input"; () is the previous layer's output.
    sources: tuple[str, ...] = ()
    in_shapes: tuple[Shape, ...] = ()  # every input's shape (a merge: several); () is (in_shape,)
    state: tuple[Param, ...] = ()  # a stateful layer's (batch-norm running statistics): "<layer>.running_mean"
    TYPE: ClassVar[str] = ""  # its declaration's name in gradconf.vocab (a class serving several: `type`)
    INPUT_GRAD: ClassVar[bool] = True  # False: its input is not differentiable (embedding ids)

    @property
    def type(self) -> str:
        return self.TYPE

    def param(self, kind: str) -> Param | None:
        return next((p for p in self.params if p.name == f"{self.name}.{kind}"), None)


@dataclass(frozen=True, kw_only=True)
class Conv2d(Layer):
    TYPE = "conv2d"
    out_channels: int
    kernel_size: Pair
    stride: Pair
    padding: Padding
    dilation: Pair
    groups: int
    padding_mode: str = "zeros"  # zeros | reflect | replicate | circular (conv2d, conv1d)

    @property
    def in_channels(self) -> int:
        return self.in_shape[1]


@dataclass(frozen=True, kw_only=True)
class ConvTranspose2d(Conv2d):
    """Gradient of a conv2d w.r.t. its input. Output = full transposed output, cropped by padding,
    zero-extended at bottom/right by output_padding (PyTorch's meaning, per side)."""
    TYPE = "conv_transpose2d"
    output_padding: Pair


@dataclass(frozen=True, kw_only=True)
class Pool2d(Layer):
    kind: str  # "max" | "avg"
    kernel_size: Pair
    stride: Pair
    padding: Padding
    count_include_pad: bool = True
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    # ceil_mode's cells past the bottom / right padding (never in the divisor); negative: the far padding's
    # cells past the last window, where ceil_mode dropped a window that would start in that padding
    extra: Pair = (0, 0)

    @property
    def type(self) -> str:
        return f"{self.kind}_pool2d"

    @property
    def window_padding(self) -> Padding:
        """The padding every window reads: the layer's, with extra's cells at the far ends (added or cropped)."""
        (t, b), (le, r) = self.padding
        return (t, b + self.extra[0]), (le, r + self.extra[1])

    @property
    def clipped(self) -> bool:
        """Whether some window reaches past the padded input (ceil_mode): those cells are in no divisor."""
        return max(self.extra) > 0

    @property
    def counted_hw(self) -> Pair:
        """The padded input that the windows read (count_include_pad's cells), before ceil_mode's extra ones."""
        (t, b), (le, r) = self.window_padding
        return self.in_shape[2] + t + b - self.beyond[0], self.in_shape[3] + le + r - self.beyond[1]

    @property
    def beyond(self) -> Pair:
        """ceil_mode's cells past the padded input, on the bottom and the right."""
        return max(self.extra[0], 0), max(self.extra[1], 0)


@dataclass(frozen=True, kw_only=True)
class Activation(Layer):
    kind: str  # sigmoid | tanh | relu

    @property
    def type(self) -> str:
        return self.kind


@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    TYPE = "flatten"


@dataclass(frozen=True, kw_only=True)
class Sum(Layer):
    TYPE = "sum"


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    TYPE = "dense"
    out_features: int

    @property
    def in_features(self) -> int:
        return self.in_shape[1]


@dataclass(frozen=True)
class Loss:
    kind: str  # a name in gradconf.vocab.LOSSES
    target: TensorSpec | None = None  # mse / half_sse / cross_entropy target, grad_output value (step 1's)
    per_step: tuple[TensorSpec, ...] | None = None  # `{per_step: [...]}`: one target / value per step
    reduction: str = "mean"  # "mean" | "sum" (SPEC §1.10)
    options: dict = field(default_factory=dict)  # beta, delta, pos_weight, weight, label_smoothing: every key
    #                                               of the loss, given or defaulted (None: not given)

    def target_at(self, step: int) -> TensorSpec | None:
        return self.target if self.per_step is None else self.per_step[step - 1]


@dataclass(frozen=True)
class Optimizer:
    kind: str  # sgd | adam
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    dampening: float = 0.0                 # sgd
    amsgrad: bool = False                  # adam, adamw
    alpha: float = 0.99                    # rmsprop
    centered: bool = False                 # rmsprop
    lr_decay: float = 0.0                  # adagrad
    initial_accumulator_value: float = 0.0  # adagrad
    momentum_decay: float = 0.004          # nadam

    @property
    def hp(self) -> dict:
        """Every hyperparameter by name (the vocabulary's update rules' and the adapters' form)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "kind"}


class Schedule(NamedTuple):
    """`schedule: {kind: {...}}` (SPEC §1.10): kind step | exponential | cosine, params with defaults filled."""
    kind: str
    params: dict


class Clip(NamedTuple):
    """`clip: {kind: limit}`: kind norm | norm_per_param | value."""
    kind: str
    limit: float


@dataclass(frozen=True)
class Golden:
    """One golden value of `expect:`: the quantity at a step (1-based), and the YAML path it was written at."""
    step: int
    quantity: str
    tensor: str | None
    value: np.ndarray
    path: tuple


@dataclass(frozen=True)
class Tol:
    rtol: float | None = None
    atol: float | None = None


@dataclass(frozen=True)
class Expect:
    loss: tuple[float, ...] | None = None  # one per step, from step 1
    output: np.ndarray | None = None       # first step
    grad: dict[str, np.ndarray] = field(default_factory=dict)   # first step
    param: dict[str, np.ndarray] = field(default_factory=dict)  # after the last step
    at: tuple[Golden, ...] = ()  # `expect.step.K` (SPEC §1.10)
    tolerance: Tol | None = None  # `expect.tolerance`: for golden comparisons only
    state: dict[str, np.ndarray] = field(default_factory=dict)  # after the last step (SPEC §1.9)


@dataclass(frozen=True)
class Case:
    id: str                # the name, or "family[i]" for a family variant
    file: str
    line: int
    description: str
    tags: tuple[str, ...]
    dtype: str
    seed: int
    input: TensorSpec
    layers: tuple[Layer, ...]
    loss: Loss
    optimizer: Optimizer | None
    steps: int
    expect: Expect
    tolerance: dict[str, Tol]
    xfail: dict[str, str]
    family: str | None = None
    source: dict | None = None  # the (drawn) YAML data, for `freeze`
    inputs: tuple[TensorSpec, ...] | None = None  # `input: {per_step: [...]}`: one per step (input is step 1's)
    schedule: Schedule | None = None
    clip: Clip | None = None
    lines: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def params(self) -> tuple[Param, ...]:
        return tuple(p for layer in self.layers for p in layer.params)

    @property
    def graph(self) -> tuple[tuple[str, ...], ...]:
        """Each layer's input names, resolved (SPEC §1.8): `input`, or earlier layers' names."""
        return graph(self.layers)

    @property
    def input_grad(self) -> bool:
        """Whether the network input has a gradient (not when integer ids feed an embedding)."""
        return all(L.INPUT_GRAD for L, src in zip(self.layers, self.graph) if "input" in src)

    @property
    def states(self) -> tuple[Param, ...]:
        """Every stateful layer's initial state (running statistics), by full name."""
        return tuple(p for layer in self.layers for p in layer.state)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape if self.layers else self.input.shape

    def line_of(self, *path) -> int:
        """The YAML line of a field (or of its nearest ancestor that the file has)."""
        for n in range(len(path), -1, -1):
            if tuple(path[:n]) in self.lines:
                return self.lines[tuple(path[:n])]
        return self.line


def graph(layers) -> tuple[tuple[str, ...], ...]:
    """Each layer's input names: its `sources`, or the previous layer's name (the first layer's: `input`)."""
    out, previous = [], "input"
    for L in layers:
        out.append(L.sources or (previous,))
        previous = L.name
    return tuple(out)
