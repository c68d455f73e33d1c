"""The divergence catalogue's conditions, machine-checkable (the prose and sources: docs/divergences.md).

Each entry says, for a case and the detected platform, whether its divergence *shows* (a mismatch is
expected: `xfail: {FRAMEWORK: ID}` applies), *may* show (named as a hint on a failure, never expected),
or cannot. Conditions are the case's dtype, optimizer, layer options and steps, and the platform facts
the run detects (harness.hardware). An entry whose appearance the run cannot fully predict is
non-strict: where it applies, a mismatch is an xfail and a match is a pass that says the divergence did
not show, never an xpass.

`xfail:` in a case: a value made only of catalogue ids ("TF-ADAM-EPS" or "TF-ADAM-EPS, TF-WD") applies to
the variants where one of those entries shows; any other text is a free-text reason and applies always.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .case import Case, Conv2d, TensorSpec
from .divergences_layers import entries as layer_entries
from .divergences_training import KERAS
from .divergences_training import entries as training_entries
from .hardware import Platform, detect

SHOWS, MAY = "shows", "may"
_ID_LIST = re.compile(r"^\s*[A-Z][A-Z0-9]*(-[A-Z0-9]+)+(\s*[,\s]\s*[A-Z][A-Z0-9]*(-[A-Z0-9]+)+)*\s*$")


@dataclass(frozen=True)
class Entry:
    id: str
    frameworks: tuple[str, ...]
    gist: str
    condition: Callable[[Case, Platform], tuple[str | None, str]]  # -> (SHOWS | MAY | None, why)
    strict: bool = True
    not_strict_because: str = ""
    loose_on: tuple[str, ...] = ()  # frameworks on which the entry is non-strict (not_strict_because says why)


def _bound(spec: TensorSpec | None) -> float | None:
    """The largest |value| a tensor spec can hold (None: unbounded or unknown)."""
    if spec is None:
        return None
    if spec.values is not None:
        return float(np.max(np.abs(spec.values), initial=0.0))
    if spec.init == "uniform":
        return max(abs(spec.low), abs(spec.high))
    if spec.init == "normal":
        return abs(spec.mean) + 6.0 * spec.std
    return {"zeros": 0.0, "ones": 1.0}.get(spec.init)


def _tiny_gradients(case: Case, bound: float) -> bool:
    """The backpropagated gradient is given (`grad_output`) and no larger than `bound`."""
    b = _bound(case.loss.target) if case.loss.kind == "grad_output" else None
    return b is not None and b <= bound


def _f32_inexact(x: float) -> bool:
    return x != float(np.float32(x))


def _onednn_1ch(case: Case, p: Platform):
    wide = [L for L in case.layers if type(L) is Conv2d and L.in_shape[1] // L.groups == 1 and L.stride[0] == 1
            and L.stride[1] >= 2 and L.dilation[1] * (L.kernel_size[1] - 1) + 1 >= 6]
    if case.dtype != "float32" or not wide:
        return None, "no float32 conv with one input channel, a kernel 6+ wide and stride (1, 2+)"
    if not p.onednn:
        return None, f"oneDNN is off ({p.describe()})"
    if p.onednn_avx512 is False:
        return None, f"oneDNN's AVX-512 kernels are not in use ({p.describe()})"
    return SHOWS, f"conv {wide[0].name}: one input channel, wide strided kernel, float32; {p.describe()}"


def _bf16_biasadd(case: Case, p: Platform):
    if case.dtype != "bfloat16":
        return None, "not bfloat16"
    terms = max((int(np.prod(L.out_shape)) // L.out_shape[1] for L in case.layers if L.param("bias")), default=0)
    if terms >= 4096:
        return SHOWS, f"a bfloat16 bias gradient summed over {terms} terms"
    return (MAY, f"a bfloat16 bias gradient over {terms} terms") if terms >= 64 else (None, "short bias sums")


def _adam_eps(case: Case, p: Platform):
    opt = case.optimizer
    if opt is None or opt.kind not in ("adam", "adamw"):
        return None, "no Adam"
    if case.dtype == "float64":
        return SHOWS, "Adam in float64: the epsilon placement is far above float64 rounding"
    if _tiny_gradients(case, 1e-4):
        return SHOWS, "Adam with backpropagated gradients below 1e-4"
    return MAY, "Adam: visible where gradients come near epsilon"


def _wd(case: Case, p: Platform):
    opt = case.optimizer
    if opt is None or not opt.weight_decay:
        return None, "no weight decay"
    if opt.kind == "adamw":
        return None, "AdamW: decoupled in both"
    if opt.kind != "sgd":
        return SHOWS, f"{opt.kind} with weight decay"
    if opt.momentum and (opt.nesterov or case.steps >= 2):  # plain momentum: the same update at step 1
        return SHOWS, "momentum with weight decay" + ("" if opt.nesterov else " over 2+ steps")
    return None, "plain SGD: coupled and decoupled decay are the same update"


def _hyper32(case: Case, p: Platform):
    opt = case.optimizer
    if opt is None or case.dtype != "float64":
        return None, "not a float64 optimizer"
    if _f32_inexact(opt.weight_decay):
        return SHOWS, f"weight_decay {opt.weight_decay} is not a float32 number"
    if opt.kind == "sgd" and opt.momentum and _f32_inexact(opt.momentum) and (opt.nesterov or case.steps >= 2):
        return SHOWS, f"momentum {opt.momentum} is not a float32 number"
    if opt.kind in ("adam", "adamw", "adamax", "nadam") and any(map(_f32_inexact, opt.betas)) and case.steps >= 2:
        return SHOWS, f"betas {list(opt.betas)} are not float32 numbers"  # step 1: betas cancel
    if opt.kind == "rmsprop" and _f32_inexact(opt.alpha):
        return SHOWS, f"alpha (rho) {opt.alpha} is not a float32 number"
    return None, "every hyperparameter is a float32 number (or not used yet)"


def _adam_bf16(case: Case, p: Platform):
    opt = case.optimizer
    if opt is not None and opt.kind == "adam" and case.dtype == "bfloat16" and 1.0 - opt.betas[1] <= 2.0 ** -9:
        return SHOWS, "beta_2 rounds to 1.0 in bfloat16"
    return None, "not bfloat16 Adam with beta_2 near 1"


def _half_adam(case: Case, p: Platform):
    opt = case.optimizer
    if opt is None or opt.kind != "adam" or case.dtype != "float16":
        return None, "not float16 Adam"
    if _tiny_gradients(case, 8e-3):
        return SHOWS, "float16 Adam with gradients below 8e-3"
    return MAY, "float16 Adam"


def _keras_x64(backend: str):
    """Keras' type promotion (keras.backend.result_type) turns float64 into float32 on the jax and torch
    backends ("aligned with JAX's default"): on torch ops.matmul (Dense), ops.sum and ops.mean; on jax ops.mean
    (every Keras loss: they average over the last axis; a `mean` reduction); on both GlobalAveragePooling2D
    (ops.mean), BatchNormalization,
    LayerNormalization and GroupNormalization (they compute in result_type(dtype, "float32")), so a float64
    model rounds there."""
    def condition(case: Case, p: Platform):
        if case.dtype != "float64":
            return None, "not float64"
        loss, clip = case.loss.kind, case.clip[0] if case.clip else None
        through = [f"loss {loss}"] if loss not in ("half_sse", "sum", "grad_output") else []
        # the normalisation layers compute in result_type(dtype, "float32") (keras/src/layers/normalization)
        through += [f"layer {L.name}" for L in case.layers if L.type in ("batch_norm2d", "layer_norm", "group_norm")]
        # GlobalAveragePooling2D is ops.mean over H, W (keras/src/layers/pooling); measured on torch, resize_random[36]
        through += [f"layer {L.name}" for L in case.layers if L.type == "global_avg_pool2d"]
        if backend == "jax":  # measured (families nets, nets_*_f64): conv nets' outputs round too; tanh is pinned
            # (keras/src/backend/jax/numpy.py, tanh: cast to result_type(x.dtype, float), float32; graph_small[12],
            # resize_random[0])
            through += [f"layer {L.name}" for L in case.layers if L.type in ("dense", "max_pool2d", "avg_pool2d", "tanh")]
        if backend == "torch":
            through += [f"layer {L.name}" for L in case.layers if L.type in ("dense", "sum")]
            through += [f"clip {clip}"] if clip in ("norm", "norm_per_param") else []
        if through:
            return SHOWS, f"float64 through {', '.join(through)}"
        return None, "no float64 op that Keras promotes to float32 here"
    return condition


_X64_LOOSE = ("a value rounded to float32 may be exact (integers, short binary fractions), and a gradient "
              "taken through the cast back is exact where the rounded value only feeds the loss")

def _bn_biased_var(case: Case, p: Platform):
    bn = [L for L in case.layers if L.type == "batch_norm2d" and L.training and L.momentum > 0]
    if not bn:
        return None, "no batch_norm2d in training mode with momentum > 0"
    return SHOWS, (f"batch norm {bn[0].name} in training mode: the moving variance takes momentum·σ²/(m − 1) less "
                   f"(m = N·H·W = {bn[0].reduces})")


def _keras_tf_bilinear32(case: Case, p: Platform):
    if case.dtype != "float64":
        return None, "not float64"
    up = [L for L in case.layers if L.type == "upsample" and L.mode == "bilinear" and not L.align_corners]
    if not up:
        return None, "no bilinear upsample that Keras runs (align_corners: false)"
    return SHOWS, f"upsample {up[0].name} bilinear in float64: tf.image.resize interpolates in float32"


def _keras_torch_moments(case: Case, p: Platform):
    norms = [L for L in case.layers if L.type in ("batch_norm2d", "group_norm")]  # LayerNormalization: not moments
    if not norms:
        return None, "no batch_norm2d or group_norm"
    return SHOWS, f"{norms[0].type} {norms[0].name}: Keras' torch moments take the variance as E[x²] − E[x]²"


CATALOGUE: dict[str, Entry] = {e.id: e for e in [
    Entry("KERAS-JAX-X64", ("keras-jax",), "Keras' ops.mean on jax computes float64 in float32 (result_type)",
          _keras_x64("jax"), strict=False, not_strict_because=_X64_LOOSE),
    Entry("KERAS-TORCH-X64", ("keras-torch",), "Keras' ops.matmul, sum and mean on torch compute float64 in float32 "
          "(result_type)", _keras_x64("torch"), strict=False, not_strict_because=_X64_LOOSE),
    Entry("TF-ADAM-EPS", ("tensorflow", *KERAS), "Keras' Adam adds epsilon to sqrt(v), torch.optim to the bias-corrected "
          "sqrt(v̂)", _adam_eps),
    # Not keras-torch: Keras' torch optimizers multiply by the Python floats (torch._foreach_mul_(bufs, self.momentum)).
    Entry("TF-HYPER32", ("tensorflow", "keras-tensorflow", "keras-jax"), "Keras casts momentum, betas and weight_decay "
          "through float32", _hyper32, loose_on=("keras-jax",),
          not_strict_because="on keras-jax the cast is not certain: graph_norm[177] (--count 1000; float64 SGD, "
                             "momentum 0.9, 2 steps, no layer Keras computes in float32 there) matched to 0.004 of "
                             "its allowance"),
    Entry("TF-WD", ("tensorflow", *KERAS), "Keras' weight_decay is decoupled; torch.optim's is L2 added to the gradient", _wd),
    Entry("TF-ADAM-BF16", ("tensorflow", *KERAS), "beta_2 is 1.0 in bfloat16, so Keras' Adam step size is 0", _adam_bf16),
    Entry("TF-ONEDNN-1CH", ("tensorflow", "keras-tensorflow"), "oneDNN's float32 conv is wrong for one input channel, wide kernels, "
          "strides", _onednn_1ch, strict=False,
          not_strict_because="it shows only at some shapes of that kind, and was measured on one CPU (AMD Zen 4, "
                             "AVX-512); another AVX-512 CPU may take other oneDNN kernels"),
    Entry("TF-BF16-BIASADD", ("tensorflow", "keras-tensorflow"), "Keras' bias_add sums a bfloat16 bias gradient in bfloat16",
          _bf16_biasadd),
    # JAX's backward of a broadcast sums in bfloat16 too (4096 ones reach 1024; TensorFlow's 256): the
    # same bias-sum lengths decide it as for TF-BF16-BIASADD, so the same condition.
    Entry("JAX-BF16-BCAST-GRAD", ("jax", "keras-jax"), "the gradient of a broadcast (a bias add) sums bfloat16 in bfloat16",
          _bf16_biasadd),
    # On jax the underflow is not certain: XLA's CPU fusions may carry float16 elementwise ops in float32,
    # and the same case showed it at a787fa7 and not after the per-step inputs became jit arguments.
    Entry("HALF-ADAM", ("torch", "tensorflow", "jax", *KERAS), "Adam's moments kept in float16 underflow for small gradients",
          _half_adam, loose_on=("jax", "keras-jax"), not_strict_because="on jax (and Keras on jax): whether (1 − β2)·g² is rounded to float16 "
          "(and underflows) depends on how XLA fuses the program"),
    Entry("TF-BN-BIASED-VAR", ("tensorflow", *KERAS), "Keras' BatchNormalization moves its moving variance toward the "
          "biased batch variance; PyTorch's running_var takes the unbiased one", _bn_biased_var, strict=False,
          not_strict_because="its size, momentum·σ²/(N·H·W − 1) of the channel's variance, can sink below float32 "
                             "rounding for a large batch or a channel of near-constant values"),
    Entry("KERAS-TF-BILINEAR32", ("keras-tensorflow",), "Keras' UpSampling2D(interpolation='bilinear') on TensorFlow "
          "is tf.image.resize, which interpolates and returns float32 for a float64 image", _keras_tf_bilinear32),
    Entry("KERAS-TORCH-MOMENTS", ("keras-torch",), "Keras' ops.moments on torch computes the variance as "
          "mean(x²) − mean(x)², which cancels where the mean is large against the spread", _keras_torch_moments,
          strict=False, not_strict_because="the cancellation costs digits only where |mean| is large against the "
                                           "standard deviation, which the data decide"),
    *training_entries(Entry),
    *layer_entries(Entry),
]}
# Catalogued in docs/divergences.md but avoided by the adapter's configuration: no case can show them.
AVOIDED = {"TF-LR32", "TORCH-NADAM-MU32"}


def cited_ids(text: str) -> list[str] | None:
    """The ids of an `xfail:` value made only of catalogue-style ids, else None (free text)."""
    if not _ID_LIST.match(text):
        return None
    return re.findall(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+", text)


def known(framework: str, case: Case, platform: Platform | None = None) -> dict[str, str]:
    """id -> gist of the entries for `framework` that show or may show on `case` (a failure's hint)."""
    platform = platform or detect()
    return {e.id: e.gist for e in CATALOGUE.values()
            if framework in e.frameworks and e.condition(case, platform)[0] is not None}


@dataclass(frozen=True)
class Expectation:
    """How a case's `xfail:` mark for one framework applies on this platform."""
    applies: bool
    strict: bool
    why: str


def expectation(case: Case, framework: str, platform: Platform | None = None) -> Expectation | None:
    """None: no mark for this framework. Else whether it applies here, strictly or not, and why."""
    text = case.xfail.get(framework)
    if text is None:
        return None
    ids = cited_ids(text)
    if ids is None:
        return Expectation(True, True, text)
    platform = platform or detect()
    shown, absent = [], []
    for i in ids:
        entry = CATALOGUE[i]
        level, why = entry.condition(case, platform) if framework in entry.frameworks else (None, f"not {framework}")
        (shown if level == SHOWS else absent).append((entry, why))
    if not shown:
        return Expectation(False, True, "; ".join(f"{e.id} not expected here: {why}" for e, why in absent))
    loose = [e for e, _ in shown if not e.strict or framework in e.loose_on]
    why = "; ".join(f"{e.id} ({why})" for e, why in shown)
    if loose:
        why += "; non-strict: " + "; ".join(f"{e.id} {e.not_strict_because}" for e in loose)
    return Expectation(True, not loose, why)


def unknown_ids(text: str) -> list[str]:
    """The ids in an id-only `xfail:` value that the catalogue does not hold (for the loader)."""
    return [i for i in cited_ids(text) or () if i not in CATALOGUE]
