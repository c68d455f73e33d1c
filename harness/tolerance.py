"""The tolerance policy: how far a framework may be from the reference and still be right.

An element passes when |actual - ref| <= atol + rtol·|ref|, where, unless the case overrides them,

    rtol = C[dtype] · eps[dtype] · sqrt(K) · (1 + (step - 1) / 2)     (half types: sqrt(depth), not sqrt(K))
    atol = rtol · max|ref over the tensor|  (+ a tiny floor for all-zero tensors)

- eps is the unit roundoff of the dtype the framework computes in; C a safety factor.
- K is the case's widest reduction (conv fan-in Cin/g·kh·kw, the N·Ho·Wo of a weight gradient,
  a dense fan-in, a `sum`, a mean loss): rounding error of a K-term sum grows like sqrt(K)·eps.
- atol scales with the tensor's own magnitude: an element that is small because large terms
  cancelled carries the error of those terms, not of its own size, so it is judged against the
  tensor's scale. A fixed elementwise rtol would flag every such element (false alarms), and a
  fixed atol would hide real errors in tensors of small magnitude (missed bugs).
- Multi-step runs let rounding differences feed back through the parameters: rtol grows with
  the step.
- float16 / bfloat16: the frameworks accumulate in float32 but round every layer's output, so the
  error grows like eps·sqrt(depth) rather than with the reduction width.

- Conditioning, measured: the reference is re-run from initial tensors perturbed at the rounding
  level above (relative PERTURBATION·rounding_scale, random signs, twice), and, where the reference
  can (the NumPy one), with each sigmoid and tanh output rounded by PERTURBATION·eps as well: a
  framework's last bits of tanh(x) ≈ 1 decide tanh' = 1 − y² outright, which no input perturbation
  shows. Half types get two more runs: the given tensors, every stored value (layer outputs,
  gradients, parameters; in one run also a conv or dense output before its bias) rounded to the
  dtype and sigmoid/tanh outputs to two ulps (stored_in_dtype), for the max-pool ties and ReLU zeros
  that rounding makes; in one run also each conv or dense output whose sign the frameworks' rounded
  accumulation leaves undetermined flipped (UNDETERMINED). How far a
  tensor moves is how far rounding alone can move it — through cancellation (an MSE gradient y - t
  once the net fits its target), through multi-step feedback, through an ill-conditioned optimizer
  step — and NOISE_FACTOR[dtype] times its largest movement is added to its atol. For a well-conditioned
  tensor that is about the allowance above; it grows only where the numerics really are sensitive,
  and never to the O(1) errors of a real bug.

A genuinely wrong gradient (transposed kernel, off-by-one window, wrong derivative) is wrong by
a sizeable fraction of the tensor's magnitude — orders of magnitude above these allowances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .case import Activation, Case, Conv2d, ConvTranspose2d, Dense, Pool2d, Sum, Tol
from .protocol import Rounding
from .tensors import round_to

EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
# The largest finite value of each dtype: a reference value beyond it cannot be computed in it.
LARGEST = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max),
           "float16": 65504.0, "bfloat16": (2.0 - 2.0 ** -7) * 2.0 ** 127}
SAFETY = {"float64": 16.0, "float32": 16.0, "float16": 2.0, "bfloat16": 2.0}
HALF = ("float16", "bfloat16")
PERTURBATION = 2.0   # relative size of the rounding-level perturbation, in units of rounding_scale(case)
# Allowance per unit of measured movement: half types round once per layer output, which the
# perturbation models closely; float32/64 round inside every K-term sum, which it models loosely.
NOISE_FACTOR = {"float64": 4.0, "float32": 4.0, "float16": 2.0, "bfloat16": 2.0}


@dataclass(frozen=True)
class Allowance:
    rtol: float
    atol: float  # absolute allowance actually applied (already scaled by the tensor's magnitude)


def reduction_width(case: Case) -> int:
    """The longest sum anywhere in the forward or backward pass."""
    # a mean or weighted loss sums over the output; half_sse, sum and grad_output have no reduction of their own
    k = int(np.prod(case.output_shape)) if case.loss.kind not in ("half_sse", "sum", "grad_output") else 1
    for L in case.layers:
        if isinstance(L, Conv2d):
            n, hw_out = L.in_shape[0], int(np.prod(L.out_shape[2:]))
            hw_in = int(np.prod(L.in_shape[2:]))
            taps = L.kernel_size[0] * L.kernel_size[1]
            c_in, c_out = L.in_shape[1] // L.groups, L.out_channels // L.groups
            batch_hw = n * (hw_in if isinstance(L, ConvTranspose2d) else hw_out)
            k = max(k, c_in * taps, c_out * taps, batch_hw)
        elif isinstance(L, Dense):
            k = max(k, L.in_shape[0], L.in_shape[1], L.out_features)
        elif isinstance(L, Pool2d):
            k = max(k, L.kernel_size[0] * L.kernel_size[1])
        elif isinstance(L, Sum):
            k = max(k, int(np.prod(L.in_shape)))
        k = max(k, getattr(L, "reduces", 0))  # a normalisation's statistics (vocab/norm.py)
    return k


def depth(case: Case) -> int:
    return sum(1 for L in case.layers if isinstance(L, (Conv2d, Dense, Pool2d, Activation, Sum)) or hasattr(L, "reduces"))


def default_rtol(case: Case, step: int) -> float:
    dt = case.dtype
    return SAFETY[dt] * rounding_scale(case) * (1.0 + 0.5 * (step - 1))


def rounding_scale(case: Case) -> float:
    """The relative rounding error one pass can build up: eps·sqrt(K) where sums accumulate in the
    dtype (float32, float64); eps·sqrt(depth) for half types, accumulated in float32 and rounded
    once per layer."""
    known = _SCALES.get(id(case))
    if known is not None and known[0] is case:
        return known[1]
    if case.dtype in HALF:
        scale = EPS[case.dtype] * math.sqrt(max(depth(case), 1))
    else:
        scale = EPS[case.dtype] * math.sqrt(reduction_width(case))
    if len(_SCALES) >= 64:
        _SCALES.clear()
    _SCALES[id(case)] = (case, scale)  # the case held with it: its id cannot be reused while it is here
    return scale


# id(case) -> (case, rounding_scale): asked for every record judged, and a walk over the layers each time
# (a Case holds lists, so it cannot be a dict key or go through functools.cache)
_SCALES: dict[int, tuple[Case, float]] = {}


def override(case: Case, quantity: str, tensor: str | None) -> Tol:
    """The case's own tolerance, most specific key first: `grad.conv.weight` > `grad` > `default`."""
    keys = ([f"{quantity}.{tensor}"] if tensor else []) + [quantity, "default"]
    rtol = atol = None
    for key in keys:
        tol = case.tolerance.get(key)
        if tol is not None:
            rtol = tol.rtol if rtol is None else rtol
            atol = tol.atol if atol is None else atol
    return Tol(rtol, atol)


def allowance(case: Case, quantity: str, tensor: str | None, step: int, ref: np.ndarray,
              magnitude: float | None = None) -> Allowance:
    """`magnitude`: the size of the terms a scalar was summed from, when the reference knows it."""
    own = override(case, quantity, tensor)
    rtol = own.rtol if own.rtol is not None else default_rtol(case, step)
    if own.atol is not None:
        return Allowance(rtol, own.atol)
    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    scale = max(scale, magnitude or 0.0)
    return Allowance(rtol, rtol * scale + EPS[case.dtype] * 1e-3)


ADAPTIVE = ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad")  # steps normalised by a gradient moment


def adam_slack(case: Case, tensor: str, grads: list[np.ndarray]):
    """Extra allowance for a parameter after len(grads) steps of an adaptive optimizer (0 for SGD).

    Adam steps by about lr·g/(|g| + ε), normalised through its moment ratio. A gradient error δ moves
    that step by lr·δ·ε/(|g| + ε)² at step 1 and by about lr·δ/|g| once the moments mix steps; at most
    2·lr, where |g| ~ δ and the step's sign is not determined by the numerics. Summed over the steps
    taken, with δ the gradient's own allowance, at each step's (scheduled) lr. Every optimizer in ADAPTIVE
    normalises so; RMSprop's first step is lr/√(1 − α) (and 1/(1 − μ) more with momentum). It vanishes for
    well-determined gradients.
    """
    opt = case.optimizer
    if opt is None or opt.kind not in ADAPTIVE:
        return 0.0
    from .training import scheduled_lr
    scale = 1.0
    if opt.kind == "rmsprop":
        scale = 1.0 / (math.sqrt(max(1.0 - opt.alpha, 1e-12)) * (1.0 - opt.momentum))
    slack = 0.0
    for step, g in enumerate(grads, start=1):
        a = allowance(case, "grad", tensor, step, g)
        delta, size = a.atol + a.rtol * np.abs(g), np.abs(g) + opt.eps
        lr = scheduled_lr(opt.lr, case.schedule, step)
        slack = slack + lr * scale * np.minimum(2.0, delta * opt.eps / size ** 2 + delta / size)
    return slack


def value_signs(a, salt: int) -> np.ndarray:
    """±1 per element, a function of |value| and `salt` alone: pseudo-random across distinct values, and the
    same for equal ones. Every framework receives the same numbers and rounds an elementwise result as a
    function of its input, so the conditioning runs must keep what the given numbers fix: an exact tie in a
    max-pool window stays a tie (the first cell wins), a 0 stays 0, and x·w − x·w stays 0. Random signs per
    position broke such ties, and the reference's gradient then moved by whole units: slack that let a
    max-pool routing to the last maximum pass (measured: an error of 88 under an atol of 236)."""
    bits = np.atleast_1d(np.abs(np.asarray(a, dtype=np.float64))).view(np.uint64)
    h = (bits ^ np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)  # arrays wrap around silently (a hash)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return np.where((h >> np.uint64(63)) == 1, 1.0, -1.0).reshape(np.shape(a))


def perturbed(case: Case, initial, draw: int):
    """The initial tensors, each element scaled by (1 ± PERTURBATION·rounding_scale), the sign a function of
    its value (value_signs: equal values stay equal); class ids and an embedding's ids left alone. Every step's input and target."""
    from .protocol import Initial
    salt = int(np.random.default_rng([case.seed, 0x6E015E, draw]).integers(1 << 62))
    delta = PERTURBATION * rounding_scale(case)
    keep_target = case.loss.kind in ("cross_entropy", "nll")

    def shake(a):
        return a if a is None else a * (1.0 + delta * value_signs(a, salt))
    target = initial.target if keep_target else shake(initial.target)
    targets = initial.targets if keep_target or initial.targets is None else tuple(map(shake, initial.targets))
    keep = (lambda a: a) if not case.input_grad else shake  # an embedding's ids, like class ids, are left alone
    inputs = None if initial.inputs is None else tuple(map(keep, initial.inputs))
    return Initial(keep(initial.input), {k: shake(v) for k, v in initial.params.items()}, target, inputs, targets,
                   {k: shake(v) for k, v in initial.state.items()})


class RoundedLayers(Rounding):
    """The rounding of the reference's perturbed runs: scales a sigmoid, tanh or softmax output in place
    by (1 ± PERTURBATION·eps). Every framework computes tanh and the sigmoid to within a few ulps of the
    dtype (measured: up to 7 in TensorFlow's float64 tanh, 1 in torch's), each with its own last bits,
    and reads the derivative back from that output (tanh' = 1 − y², σ' = σ(1 − σ)); near saturation
    those bits decide it. Their errors are not random: a tanh that is a few ulps high everywhere moves a
    sum of many derivatives coherently. So draw 0 picks the signs pseudo-randomly by value, and draw 1 rounds every
    output up. Cross-entropy's softmax is rounded the same way: for a confident row its sum is 1 + tiny
    and p − 1 at the true class a difference of nearly equal numbers; a framework rounds both at eps·1,
    where the float64 reference keeps the tiny part exactly."""

    def __init__(self, case: Case, draw: int):
        self.case, self.draw = case, draw
        self.salt = int(np.random.default_rng([case.seed, 0x6E015E, draw, 1]).integers(1 << 62))
        self.delta = PERTURBATION * EPS[case.dtype]

    def _scale(self, a: np.ndarray) -> None:  # signs by value (value_signs): equal outputs stay tied
        a *= 1.0 + self.delta * (value_signs(a, self.salt) if self.draw == 0 else 1.0)

    def output(self, a, layer, terms=None) -> None:
        if isinstance(layer, Activation) and layer.kind != "relu":
            self._scale(a)

    def softmax(self, a) -> None:
        self._scale(a)

    def normalised(self, a) -> None:
        # A norm's x̂ sums to 0 over its statistics, and Σ dy·x̂ (its weight gradient) is 0 wherever dy is
        # constant there (a `sum` after it): the frameworks' x̂ sums to rounding noise instead, and the float64
        # reference's exact 0 would judge that noise against nothing (measured: 4.3e-6 under an atol of
        # 1.2e-10, float32). Draw 0 scales each x̂ by its value's sign; draw 1 shifts them all by
        # PERTURBATION·eps·max|x̂|, as a framework's rounded mean μ shifts every x − μ of a group alike.
        if self.draw == 0:
            self._scale(a)
        elif a.size:
            a += self.delta * float(np.max(np.abs(a)))

    def param(self, a) -> None:
        if self.case.dtype == "float32":
            # An updated parameter, stored in float32 as every float32 framework stores it: over steps its
            # rounding feeds back through the net (measured: a 3-step SGD net fitting its half_sse target,
            # whose gradients y − t of 6e-5 TensorFlow got to 1.4e-7, 1.3x the allowance without this).
            a[...] = round_to(a, self.case.dtype)


def rounded_layers(case: Case, draw: int) -> RoundedLayers:
    return RoundedLayers(case, draw)


# Mantissa bits and smallest normal exponent of the half types (their ulp, for stored_in_dtype).
MANTISSA = {"float16": (10, -14), "bfloat16": (7, -126)}
# A half-type conv or dense output within this many eps of its terms' Σ|t| of 0 has no determined sign:
# the frameworks round as they accumulate, and a ReLU after it passes or blocks the gradient (torch and
# TF both put a float16 transposed-conv output of 3.0e-4, 0.27 eps of its Σ|t| = 1.1, at exactly 0).
# Measured on outputs within 5% of their Σ|t| of 0 (float16, torch 2.13 and TF 2.21, 3,400 of them):
# the largest errors were 0.42 (torch's transposed conv), 0.18 (TF's conv), 0.05 (dense, either).
UNDETERMINED = {ConvTranspose2d: 0.5, Conv2d: 0.25, Dense: 0.1}


class StoredInDtype(Rounding):
    """Rounds every layer output, gradient and updated parameter to the case dtype, as
    a float16 / bfloat16 framework stores them, and each sigmoid and tanh output onto a grid of two ulps
    (moved by `shift` of its step; the runner uses shifts 0 and 1/2). From the given tensors, that makes
    the ties a framework meets: two cells of a max-pool window that round to the same value (the
    gradient goes to the first), an output that rounds to 0 before a ReLU. The float64 reference sees
    neither. The two-ulp grid is for the frameworks' own last bits: TensorFlow's float16 sigmoid is one
    ulp off on 24% of inputs (up to 1.76), so it ties cells whose correctly rounded values differ by one;
    every pair within an ulp shares a grid cell under one of the two shifts. The shifted run also asks
    for each conv or dense output's Σ|terms| (`wants_terms`) and flips the sign of the outputs within
    UNDETERMINED·eps·Σ|terms| of 0, which a framework may round to either side of a ReLU."""

    def __init__(self, case: Case, shift: float):
        self.dtype, self.shift = case.dtype, shift
        self.wants_terms = shift != 0.0

    def output(self, a, layer, terms=None) -> None:
        bits, lowest = MANTISSA[self.dtype]
        a[...] = round_to(a, self.dtype)
        if isinstance(layer, Activation) and layer.kind != "relu":
            exponent = np.maximum(np.floor(np.log2(np.maximum(np.abs(a), 2.0 ** lowest))), lowest)
            step = 2.0 ** (exponent - bits + 1)
            a[...] = round_to((np.floor(a / step + 0.5 + self.shift) - self.shift) * step, self.dtype)
        if terms is not None:  # the shifted run: flip the signs rounding leaves undetermined
            near = (np.abs(a) <= UNDETERMINED[type(layer)] * EPS[self.dtype] * terms) & (a != 0)
            a[near] = -a[near]

    def before_bias(self, a) -> None:
        if self.shift != 0.0:  # one run rounds a conv or dense output once, bias included (torch); the
            a[...] = round_to(a, self.dtype)  # other before the bias too (TF)

    def softmax(self, a) -> None:
        a[...] = round_to(a, self.dtype)

    gradient = param = softmax


def stored_in_dtype(case: Case, shift: float) -> StoredInDtype:
    return StoredInDtype(case, shift)


class ExactZeros(Rounding):
    """The layer outputs that are exactly 0 for the given tensors, recorded in order from one reference run
    (this, as its rounding, changing nothing), then held at 0 in each conditioning run (`pin`).
    A 0 the given numbers fix — integer inputs and weights that cancel, a zero-padded window — is 0 in every
    framework, and ReLU′(0) = 0 there; a perturbed run that moved it off 0 would let the ReLU pass a
    gradient and turn the routing of that 0 into slack (the slack that hides ReLU′(0) = 1)."""

    splits_bias = False  # it only looks: the run that records the zeros is the reference's own run

    def __init__(self):
        self.masks: list = []

    def output(self, a: np.ndarray, layer, terms=None) -> None:
        self.masks.append(np.asarray(a) == 0)

    def pin(self, rounding: Rounding) -> Rounding:
        """`rounding`, then every recorded 0 of each layer output put back to 0 (outputs come in the same order)."""
        return _Pinned(rounding, iter(self.masks))


class _Pinned(Rounding):
    def __init__(self, inner: Rounding, masks):
        self.inner, self.masks, self.wants_terms, self.splits_bias = inner, masks, inner.wants_terms, inner.splits_bias
        self.before_bias, self.softmax, self.normalised = inner.before_bias, inner.softmax, inner.normalised
        self.gradient, self.param = inner.gradient, inner.param

    def output(self, a, layer, terms=None) -> None:
        self.inner.output(a, layer, terms)
        mask = next(self.masks, None)
        if mask is not None and mask.shape == np.shape(a):
            np.copyto(a, 0.0, where=mask)


def takes_slack(case: Case, quantity: str, tensor: str | None) -> bool:
    """Whether the measured slack is added to a quantity's atol: not where the case's own `tolerance:` sets
    an atol, which is applied exactly as written (the one place this rule is decided; `allowance` applies
    the case's own bounds)."""
    return override(case, quantity, tensor).atol is None
