"""The reference: every layer, loss and optimizer written out by hand in NumPy — no autodiff.

The math is the vocabulary's (gradconf.vocab: each declaration's forward/backward, loss or update
rule, side by side); this module drives it: forward through every layer, the loss, backward in
reverse, the optimizer's update, step after step. Computation is float64 whatever the case dtype:
the inputs were rounded to the case dtype once, so the reference is the exact answer for the numbers
every framework was given.
"""
from __future__ import annotations

import numpy as np

from gradconf import vocab
from gradconf.training import clipped, scheduled_lr
from gradconf.protocol import Rounding, own_params
from gradconf.vocab.optimizers import SGD, Adam  # noqa: F401 (re-exported: the reference's optimizers)

from . import Initial, LayerTrace, Step, Trace, one_thread_native_pools


def layer_forward(L, xs, params: dict, states: dict | None = None):
    """One layer's (output, cache) from its inputs (a list: a merge has several) and the case's parameters by
    full name. A stateful layer (its declaration's `init_state`) gets its state from `states` (by layer name),
    kept across steps."""
    decl = vocab.LAYERS[L.type]
    if decl.init_state is None:
        return decl.forward(L, list(xs), own_params(L, params))
    if states is None or L.name not in states:  # (not setdefault: init_state cannot draw a seeded state)
        state = decl.init_state(L) if states is None else states.setdefault(L.name, decl.init_state(L))
    else:
        state = states[L.name]
    return decl.forward(L, list(xs), own_params(L, params), state=state)


def layer_backward(L, dy, cache):
    """([gradient per input; None where an input has none], {full parameter name: gradient})."""
    dxs, grads = vocab.LAYERS[L.type].backward(L, dy, cache)
    return dxs, {f"{L.name}.{kind}": g for kind, g in grads.items()}


def loss_and_grad(kind: str, y, target, rounding=None, loss=None):
    """The loss value and dL/dy (`rounding`: a conditioning run's, protocol.Rounding); `loss`: the case's Loss
    (its reduction and options; None: the defaults)."""
    options = {} if loss is None else {"reduction": loss.reduction, **loss.options}
    return vocab.LOSSES[kind].loss(y, target, rounding, **options)


def make_optimizer(opt):
    return None if opt is None else vocab.OPTIMIZERS[opt.kind].make(opt)


# ---------------------------------------------------------------- the adapter

class NumpyReference:
    """The hand-written float64 reference (SPEC §5). It implements the optional `run_rounded`
    (protocol.rounds_off): the conditioning runs round its intermediate results as a framework stores them."""
    name = "numpy"

    def missing(self):
        return None

    def version(self):
        return np.__version__

    def run(self, case, initial: Initial) -> Trace:
        return self._trace(case, initial, None, np.float64)

    def run_rounded(self, case, initial: Initial, rounding: Rounding) -> Trace:
        """`run`, with `rounding`'s hooks called in place on each layer output, gradient and updated parameter
        (protocol.Rounding; the runner's conditioning runs only)."""
        return self._trace(case, initial, rounding, np.float64)

    def run_precise(self, case, initial: Initial) -> Trace:
        """The same computation carried out in np.longdouble (harness.blame's recheck of a reference in
        question): x87 extended precision on x86-64, a 64-bit mantissa to float64's 53."""
        return self._trace(case, initial, None, np.longdouble)

    def trace_layers(self, case, initial: Initial) -> LayerTrace:
        """Step 1 layer by layer (protocol.LayerTrace): every layer's output and output gradient."""
        params = {k: np.array(v, dtype=np.float64) for k, v in initial.params.items()}
        target = initial.target_at(1)
        x = np.array(initial.input_at(1), dtype=np.float64)
        traced = LayerTrace()
        with np.errstate(all="ignore"):
            y, caches, _ = _forward(case, x, params, None, {}, traced.outputs)
            _, dy = loss_and_grad(case.loss.kind, y, None if target is None else np.asarray(target, dtype=np.float64),
                                  None, case.loss)
            backward(case, caches, dy, None, traced.output_grads)
        return traced

    def _trace(self, case, initial: Initial, rounding: Rounding | None, dtype) -> Trace:
        one_thread_native_pools("numpy")  # NumPy's BLAS too: a big layer splits its batch instead (numerics.over_batch)
        params = {k: np.array(v, dtype=dtype) for k, v in initial.params.items()}
        opt = make_optimizer(case.optimizer)
        steps, states = [], initial_states(case, initial, dtype)  # the stateful layers', kept across steps
        for k in range(1, case.steps + 1):  # per-step data (SPEC §1.10): step k's input and target
            x = np.array(initial.input_at(k), dtype=dtype)
            target = initial.target_at(k)
            target = None if target is None else np.asarray(target, dtype=dtype)
            with np.errstate(all="ignore"):  # overflow shows up as non-finite values, which the runner reports
                loss, output, grads, magnitude = gradients(case, x, params, target, rounding, states)
            if opt is not None:
                lr = scheduled_lr(opt.hp["lr"], case.schedule, k)  # the rule's lr; the scheduler steps after each step
                step = clipped({n: grads[n] for n in params}, case.clip)  # the compared grads stay unclipped
                params = {n: opt.update(n, p, step[n], lr) for n, p in params.items()}
                for p in params.values() if rounding is not None else ():
                    rounding.param(p)
            state = {f"{name}.{kind}": v for name, own in states.items() for kind, v in own.items()}
            for v in state.values() if rounding is not None else ():
                rounding.param(v)  # stored in the dtype, as a framework keeps its running statistics
            steps.append(Step(np.asarray(loss), output, grads, dict(params) if opt is not None else {}, magnitude,
                              {k: v.copy() for k, v in state.items()}))
        return Trace(steps)


def initial_states(case, initial: Initial, dtype) -> dict:
    """Layer name -> {kind: array}: each stateful layer's state (batch-norm running statistics) as the case
    materialised it (protocol.Initial.state), or its declaration's `init_state` where the Initial lacks it."""
    states = {}
    for L in case.layers:
        if not L.state:
            continue
        own = vocab.LAYERS[L.type].init_state(L) if any(s.name not in initial.state for s in L.state) else {}
        own.update({s.name.rsplit(".", 1)[1]: initial.state[s.name] for s in L.state if s.name in initial.state})
        states[L.name] = {k: np.array(v, dtype=dtype) for k, v in own.items()}
    return states


def _forward(case, x, params, rounding, states, keep: dict | None = None):
    """Every layer's output in turn, over the graph (SPEC §1.8: each layer fed the outputs its `from:` names),
    rounded as `rounding` says: (output, caches, each layer's inputs). `keep` receives each output by name."""
    outputs, caches, inputs = {"input": x}, [], []
    for L, names in zip(case.layers, case.graph):
        xs = [outputs[n] for n in names]
        x, cache = layer_forward(L, xs, params, states)
        decl = vocab.LAYERS[L.type]
        accumulates = decl.accumulates
        if rounding is not None and decl.normalised is not None:
            rounding.normalised(decl.normalised(cache))
        bias = params.get(f"{L.name}.bias") if accumulates else None
        if rounding is not None and bias is not None and rounding.splits_bias:  # a framework adding the bias as its own op
            b = bias.reshape((1, -1) + (1,) * (x.ndim - 2))
            before = x - b
            rounding.before_bias(before)
            x[...] = before + b
        if rounding is not None and rounding.wants_terms and accumulates:
            # Σ|terms| of each output (|x|·|W| + |b|): the scale a framework's rounded accumulation works at
            own = {p.name: np.abs(params[p.name]) for p in L.params}
            terms, _ = layer_forward(L, [np.abs(a) for a in xs], own)
            rounding.output(x, L, terms=terms)
        elif rounding is not None and not L.type == "flatten":  # a flatten's output is a view of its input
            rounding.output(x, L)  # in place: an activation's cache holds this same array, and its derivative reads it
        outputs[L.name] = x
        if keep is not None:
            keep[L.name] = x.copy()
        caches.append(cache)
        inputs.append(xs)
    return x, caches, inputs


def gradients(case, x, params, target, rounding: Rounding | None = None, states: dict | None = None):
    """Forward through every layer, then backward in reverse: (loss, output, {name: gradient}, magnitudes).
    No `input` gradient where the input is an embedding's integer ids (case.input_grad)."""
    x, caches, inputs = _forward(case, x, params, rounding, states)
    loss, dy = loss_and_grad(case.loss.kind, x, target, rounding, case.loss)
    # How big an error in the loss an output error of one part in max|y| makes: Σ|dL/dy|·max|y|.
    magnitude = {"loss": float(abs(loss) + np.abs(dy).sum() * np.abs(x).max())}
    if case.layers[-1].type == "sum":
        magnitude["output"] = float(np.abs(inputs[-1][0]).sum())  # the terms the output was summed from
    if rounding is not None:
        dy = np.require(dy, requirements="W")  # a copy only where dy is read-only
        rounding.gradient(dy)
    grads, pending = backward(case, caches, dy, rounding)
    if case.input_grad:
        grads["input"] = pending["input"] if "input" in pending else np.zeros(case.input.shape, dtype=dy.dtype)
    return loss, x, grads, magnitude


def backward(case, caches, dy, rounding: Rounding | None = None, taps: dict | None = None):
    """The graph walked backward from the output's gradient `dy`: ({parameter: gradient}, {name: gradient of
    its output}). Where one output feeds several layers its gradient is the sum of theirs (fan-out), rounded
    as a framework stores each sum; a layer nothing reads (a dead branch) gets a zero gradient."""
    grads, pending = {}, {case.layers[-1].name: dy}
    for L, names, cache in zip(reversed(case.layers), reversed(case.graph), reversed(caches)):
        g_out = pending.pop(L.name, None)
        if g_out is None:
            g_out = np.zeros(L.out_shape, dtype=dy.dtype)
        if taps is not None:  # trace_layers: the loss's gradient with respect to this layer's output
            taps[L.name] = g_out
        dxs, g = layer_backward(L, g_out, cache)
        if rounding is not None:  # as a framework stores them: each layer's input gradient and parameter gradients
            dxs = [None if d is None else np.require(d, requirements="W") for d in dxs]
            for v in [*(d for d in dxs if d is not None), *g.values()]:
                rounding.gradient(v)
        grads.update(g)
        for name, dx in zip(names, dxs):
            if dx is None:  # no gradient (an embedding's ids)
                continue
            if name in pending:
                pending[name] = pending[name] + dx  # fan-out: the gradients of every reader add up
                if rounding is not None:
                    rounding.gradient(pending[name])
            else:
                pending[name] = dx
    return grads, pending
