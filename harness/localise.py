"""Localisation (issue 19): for a failing case, the first layer where a framework departs from the reference.

Both sides trace step 1 layer by layer (protocol.LayerTrace): each layer's output, and the loss's gradient with
respect to it. Each tensor is held to the tolerance policy's allowance for its size (tolerance.allowance, as an
output or a gradient of the case) and scored as its worst error over that allowance. The walk:

1. forward, in graph order: the first layer whose output departs is the origin — its inputs agreed, so its
   forward computation is wrong (`forward`);
2. else the loss's gradient of the network output (`loss`);
3. else backward, in reverse graph order: a layer whose output gradient agreed but whose parameter gradient
   departs has a wrong parameter gradient; a layer output (or the network input) whose gradient departs while
   the gradients of every layer reading it agreed was given a wrong input gradient by those readers
   (`backward`) — an earlier layer's difference propagated is never named, since its own inputs agreed;
4. else, when only the updated parameters depart, the optimizer (`update`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .case import Case
from .protocol import LayerTrace, Trace
from .tolerance import allowance


@dataclass
class Localisation:
    layer: str | None   # the layer named (None: the loss, the update, or nothing found)
    stage: str          # forward | loss | backward | update | none
    detail: str         # one sentence for a person
    # per layer in graph order: (name, type, forward error / allowance, output-gradient error / allowance)
    profile: list[tuple[str, str, float | None, float | None]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.detail


def score(case: Case, quantity: str, actual, desired) -> float | None:
    """Worst |actual - desired| over its allowance (inf where the framework's value is not finite)."""
    if actual is None or desired is None:
        return None
    a, d = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    if a.size != d.size:
        return float("inf")
    a = a.reshape(d.shape)
    if d.size == 0:
        return 0.0
    if (~np.isfinite(a) & np.isfinite(d)).any():
        return float("inf")
    allow = allowance(case, quantity, None, 1, d)
    budget = np.maximum(allow.atol + allow.rtol * np.abs(d), np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore"):
        err = np.where(np.isfinite(d), np.abs(a - d), 0.0)
    return float(np.max(err / budget))


def _readers(case: Case) -> dict[str, list[str]]:
    """Each output (and `input`) -> the layers that read it, in graph order."""
    readers: dict[str, list[str]] = {}
    for L, names in zip(case.layers, case.graph):
        for n in names:
            readers.setdefault(n, []).append(L.name)
    return readers


def _grad_departs(case, name, fw: Trace, ref: Trace) -> float | None:
    return score(case, "grad", fw.steps[0].grads.get(name), ref.steps[0].grads.get(name))


def localise(case: Case, fw_layers: LayerTrace, ref_layers: LayerTrace, fw: Trace, ref: Trace) -> Localisation:
    """Where `fw` (traced as `fw_layers`) first departs from the reference (see the module doc)."""
    profile = [(L.name, L.type, score(case, "output", fw_layers.outputs.get(L.name), ref_layers.outputs.get(L.name)),
                score(case, "grad", fw_layers.output_grads.get(L.name), ref_layers.output_grads.get(L.name)))
               for L in case.layers]
    forward = {name: f for name, _, f, _ in profile}
    back = {name: b for name, _, _, b in profile}
    for L in case.layers:
        if (forward[L.name] or 0.0) > 1:
            return Localisation(L.name, "forward", f"{L.name} ({L.type}): its forward output departs "
                                f"({forward[L.name]:.3g}x the allowance) while its inputs agree", profile)
    last = case.layers[-1].name
    if (back[last] or 0.0) > 1:
        return Localisation(None, "loss", f"the loss's gradient of the network output departs ({back[last]:.3g}x "
                            f"the allowance) while the output agrees: the loss ({case.loss.kind}) backward", profile)
    readers = _readers(case)
    for L in reversed(case.layers):
        if (back[L.name] or 0.0) <= 1:  # its output gradient agrees: its own parameter gradients next
            for p in L.params:
                s = _grad_departs(case, p.name, fw, ref)
                if (s or 0.0) > 1:
                    return Localisation(L.name, "backward", f"{L.name} ({L.type}): its gradient of {p.name} departs "
                                        f"({s:.3g}x the allowance) while its output gradient agrees", profile)
        for source in _sources_done(case, L, readers):
            s = _grad_departs(case, "input", fw, ref) if source == "input" else back[source]
            if (s or 0.0) > 1:
                by, types = readers[source], {layer.name: layer.type for layer in case.layers}
                named = [f"{n} ({types[n]})" for n in by]
                who = named[0] if len(by) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
                return Localisation(by[0] if len(by) == 1 else None, "backward",
                                    f"{who}: the input gradient {'it gives' if len(by) == 1 else 'they give'} "
                                    f"{source} departs ({s:.3g}x the allowance) while "
                                    f"{'its' if len(by) == 1 else 'their'} output gradient agrees", profile)
    if any((score(case, "param", fw.steps[0].params.get(n), ref.steps[0].params.get(n)) or 0.0) > 1
           for n in ref.steps[0].params):
        return Localisation(None, "update", "every layer's forward and backward agree at step 1: the parameter "
                            f"update ({case.optimizer.kind if case.optimizer else 'optimizer'}) departs", profile)
    return Localisation(None, "none", "every layer agrees at step 1: the difference starts at a later step", profile)


def _sources_done(case: Case, L, readers: dict) -> list[str]:
    """The outputs read by L whose readers all come at or after L: their gradients are complete once the
    backward walk (reverse graph order) has passed L."""
    order = {layer.name: i for i, layer in enumerate(case.layers)}
    names = dict(zip((layer.name for layer in case.layers), case.graph))[L.name]
    return [n for n in dict.fromkeys(names) if min(order[r] for r in readers[n]) == order[L.name]]
