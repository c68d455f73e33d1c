"""Data -> a typed, validated `Case` (one drawn variant, or a plain case). Every check happens here,
once, before anything runs. What each layer, loss and optimizer accepts is its declaration's
(gradconf.vocab); this module walks the case and collects every error of every independent part."""
from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Collection, Sequence

import numpy as np

from . import graph, vocab
from .case import DTYPES, QUANTITIES, Case, Expect, Layer, Loss, Optimizer, Shape, TensorSpec, Tol
from .case import graph as case_graph
from .divergences import CATALOGUE, unknown_ids
from .errors import CaseError, CaseErrors, Conflict, ShapeError, did_you_mean, every_error, unknown
from .fields import check_keys, check_size, integer, kind_of, literal, number, string, tensor
from .parse_training import check_steps, clip, expect_steps, expect_tolerance, per_step, schedule
from .tolerance import LARGEST

TOP_KEYS = ("name", "description", "tags", "dtype", "seed", "input", "model", "loss", "optimizer", "schedule",
            "clip", "steps", "expect", "tolerance", "xfail", "count")
TOL_KEYS = ("rtol", "atol")
MAX_STEPS = 1000  # optimizer steps per case; the bundled ones take at most 4


# ---------------------------------------------------------------- layers, loss, optimizer (from the vocabulary)

def _one_key(item, path, what: str, example: str, names) -> tuple[str, dict]:
    if not isinstance(item, dict) or len(item) != 1:
        raise CaseError(f"{what} is a one-key mapping such as `{example}`{names}", path)
    (kind, p), = item.items()
    return kind, p


def _layer(item, path, index: int, known: dict[str, Shape], declared: dict[str, int], previous: str) -> Layer:
    if isinstance(item, str) and item in vocab.LAYERS:  # `- relu` for `- relu: {}`
        item = {item: {}}
    kind, p = _one_key(item, path, "each layer", "{conv2d: {...}}", "")
    if kind not in vocab.LAYERS:
        raise CaseError(unknown("layer type", kind, vocab.LAYERS), path + (kind,))
    decl, path = vocab.LAYERS[kind], path + (kind,)
    p = dict(check_keys(p, (*decl.keys, "from"), path, f"{kind} parameters"))  # every layer takes `from` (§1.8)
    name = string(p["name"], path + ("name",)) if "name" in p else f"{kind}_{index}"  # as written: linear_0
    if name in known:
        raise CaseError(f"layer name `{name}` is already used" if name != "input" else
                        "`input` names the network input; a layer cannot take that name", path + ("name",))
    names, shapes = graph.sources(p.pop("from", None), path, index, decl.inputs > 1, known, declared, previous)
    layer = decl.build(vocab.with_defaults(decl, p), vocab.Site(path, name, shapes))
    layer = dataclasses.replace(layer, sources=names, in_shapes=shapes)
    check_size(layer.out_shape, path, "the output")
    for param in layer.params:
        check_size(param.spec.shape, path, param.name)
    return layer


def _loss(v, out_shape: Shape) -> Loss:
    path = ("loss",)
    kind, p = _one_key(v, path, "the loss", "{mse: {target: 0}}", f"; one of {', '.join(vocab.LOSSES)}")
    if kind not in vocab.LOSSES:
        raise CaseError(unknown("loss", kind, vocab.LOSSES), path + (kind,))
    decl, path = vocab.LOSSES[kind], path + (kind,)
    p = check_keys(p, decl.keys, path, f"{kind} parameters")
    return decl.build(vocab.with_defaults(decl, p), vocab.Site(path, kind, (out_shape,)))


def _optimizer(v) -> Optimizer | None:
    if v is None:
        return None
    path = ("optimizer",)
    kind, p = _one_key(v, path, "the optimizer", "{sgd: {lr: 0.1}}", "")
    if kind not in vocab.OPTIMIZERS:
        raise CaseError(unknown("optimizer", kind, vocab.OPTIMIZERS), path + (kind,))
    decl, path = vocab.OPTIMIZERS[kind], path + (kind,)
    p = check_keys(p, decl.keys, path, f"{kind} parameters")
    return decl.build(vocab.with_defaults(decl, p), path)


# ---------------------------------------------------------------- expectations, tolerance

def _expect(v, steps: int, out_shape: Shape, params: dict[str, Shape], in_shape: Shape,
            states: dict[str, Shape] | None = None) -> Expect:
    path = ("expect",)
    v = check_keys(v, (*QUANTITIES, "step", "tolerance"), path, "expect")
    loss = None
    if "loss" in v:
        raw = v["loss"] if isinstance(v["loss"], list) else [v["loss"]]
        if isinstance(v["loss"], list) and len(raw) != steps:  # a short list is more likely a slip than a choice
            raise CaseError(f"{len(raw)} loss(es) for {steps} step(s): give one per step, or a single number "
                            f"for step 1", path + ("loss",))
        loss = tuple(number(x, path + ("loss", i) if isinstance(v["loss"], list) else path + ("loss",))
                     for i, x in enumerate(raw))
    output = None
    if "output" in v:
        output = literal(v["output"], path + ("output",), "output")
        if output.shape != out_shape and not (out_shape == () and output.size == 1):
            raise ShapeError(f"shape {list(output.shape)} does not match the output shape {list(out_shape)}",
                             path + ("output",))
        output = output.reshape(out_shape)
    named = {"grad": {**params, **({"input": in_shape} if in_shape is not None else {})}, "param": params,
             "state": states or {}}
    tensors: dict[str, dict] = {}
    for q in ("grad", "param", "state"):
        tensors[q] = {}
        d = check_keys(v.get(q), list(named[q]), path + (q,), q)
        for name, value in d.items():
            tensors[q][name] = literal(value, path + (q, name), name)
            if tensors[q][name].shape != named[q][name]:
                raise ShapeError(f"shape {list(tensors[q][name].shape)} does not match {name}'s "
                                 f"{list(named[q][name])}", path + (q, name))
    return Expect(loss, output, tensors["grad"], tensors["param"], expect_steps(v.get("step"), steps, out_shape, named),
                  expect_tolerance(v.get("tolerance")), tensors["state"])


def _tolerance(v, params: Sequence[str], input_grad: bool = True, states: Sequence[str] = ()) -> dict[str, Tol]:
    """{rtol, atol} for the whole case, or keyed: default, loss, output, grad, param, state, grad.<tensor>,
    param.<tensor>, state.<tensor>."""
    path = ("tolerance",)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CaseError(f"must be a mapping, got {kind_of(v)}", path)
    if set(v) <= set(TOL_KEYS):
        v = {"default": v}
        path_of = lambda key: path  # noqa: E731
    else:
        path_of = lambda key: path + (key,)  # noqa: E731
    keys = ["default", *QUANTITIES, *(f"grad.{p}" for p in (*params, *(("input",) if input_grad else ()))),
            *(f"param.{p}" for p in params), *(f"state.{s}" for s in states)]
    out = {}
    for key, tol in v.items():
        if key not in keys:
            raise CaseError(f"unknown tolerance key `{key}`{did_you_mean(key, keys)} (keys: default, loss, output, "
                            f"grad, param, state, grad.<tensor>, param.<tensor>, state.<tensor>)", path + (key,))
        tol = check_keys(tol, TOL_KEYS, path_of(key), "a tolerance")
        out[key] = Tol(*(None if tol.get(k) is None else number(tol[k], path_of(key) + (k,), min=0)
                         for k in TOL_KEYS))
    return out


# ---------------------------------------------------------------- the case

def _fits_dtype(spec: TensorSpec, path, dtype: str) -> None:
    """Rounding to the case dtype turns a value beyond its largest into inf, silently: refuse it here."""
    if spec.values is not None:
        worst, field, what = float(np.max(np.abs(spec.values), initial=0.0)), path, "an entry"
    elif spec.init == "uniform":
        side = "high" if abs(spec.high) >= abs(spec.low) else "low"
        worst, field, what = abs(getattr(spec, side)), path + (side,), "the range"
    elif spec.init == "normal":
        worst, field, what = abs(spec.mean) + 6.0 * spec.std, path + ("std",), "six standard deviations from the mean"
    elif spec.init == "arange":
        worst, field, what = float(np.prod(spec.shape)) - 1.0, path + ("shape",), "the arange"
    else:
        return
    if worst > LARGEST[dtype]:
        raise Conflict(f"{what} reaches {worst:.4g}, beyond {dtype}'s largest value {LARGEST[dtype]:.6g} (it would "
                       f"be inf)", field)


def case_name(data: dict, file: str) -> str:
    """A case's (or family's) `name`, by default the file's stem. It becomes a pytest node id and, for a
    family, `name[i]`: the characters that delimit those would make ids that cannot be selected."""
    stem = os.path.splitext(os.path.basename(file))[0].removesuffix(".case")  # `x.case.yaml` (pytest opt-in) is x
    name = string(data["name"], ("name",)) if "name" in data else stem
    clash = next((d for d in ("::", "[", "]") if d in name), None)
    if clash or not name.isprintable():
        which = f"name {name!r}" if "name" in data else f"the default name, the file's stem {name!r},"
        why = (f"holds `{clash}`; `::`, `[` and `]` delimit case ids (`family[3]`, pytest's `file::id`)"
               if clash else "holds a control character")
        raise CaseError(f"{which} {why}" + ("" if "name" in data else "; set `name:`"), ("name",))
    return name


class _Collect:
    """Gathers the errors of a case's independent parts, so that one file's every error is reported at once."""

    def __init__(self):
        self.errors: list[CaseError] = []

    def __call__(self, check, *args, **kw):
        """check(*args, **kw), or None after recording its error(s)."""
        try:
            return check(*args, **kw)
        except CaseError as e:
            self.errors += every_error(e)
            return None

    def raise_any(self, one_only: bool) -> None:
        """A family variant raises its first error alone (a Conflict there means: draw again)."""
        if self.errors:
            raise self.errors[0] if one_only or len(self.errors) == 1 else CaseErrors(self.errors)


def _top_keys(data: dict) -> None:
    unknown_keys = [CaseError(unknown("key", k, TOP_KEYS), (k,)) for k in data if k not in TOP_KEYS]
    if unknown_keys:
        raise CaseErrors(unknown_keys)


def _meta(data: dict, collect: _Collect) -> tuple:
    dtype = data.get("dtype", "float32")
    if dtype not in DTYPES:
        collect.errors.append(CaseError(unknown("dtype", dtype, DTYPES), ("dtype",)))
        dtype = "float32"  # the other checks go on as for the default
    seed = collect(integer, data.get("seed", 0), ("seed",), min=0) or 0
    tags = data.get("tags") or []  # `tags:` left empty is no tags
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list):
        collect.errors.append(CaseError("must be a list of words", ("tags",)))
        tags = []
    tags = tuple(t for t in (collect(string, t, ("tags", i)) for i, t in enumerate(tags)) if t is not None)
    description = data.get("description") or ""
    if not isinstance(description, str):
        collect.errors.append(CaseError("must be a string", ("description",)))
        description = ""
    return dtype, seed, tags, description


def _network(data: dict, collect: _Collect):
    """(input, every step's input or None, layers, output shape), or Nones where an error stops what depends
    on it."""
    inp, inputs = collect(per_step, data["input"], ("input",), None, "input") or (None, None)
    layers, shape = _layers(data, inp, collect)
    if layers is not None:
        specs = inputs or (inp,)
        paths = [("input", "per_step", i) for i in range(len(specs))] if inputs else [("input",)]
        if collect(graph.check_ids, layers, case_graph(layers), specs, paths) is None and collect.errors:
            return inp, inputs, None, None
    return inp, inputs, layers, shape


def _layers(data: dict, inp, collect: _Collect):
    if not isinstance(data["model"], list) or not data["model"]:
        collect.errors.append(CaseError("must be a non-empty list of layers", ("model",)))
        return None, None
    if inp is None:
        return None, None
    layers, known, declared, previous = [], {"input": inp.shape}, graph.declared_names(data["model"]), "input"
    for i, item in enumerate(data["model"]):
        layer = collect(_layer, item, ("model", i), i, known, declared, previous)
        if layer is None:  # later layers' shapes depend on this one
            return None, None
        layers.append(layer)
        known[layer.name], previous = layer.out_shape, layer.name
    return layers, layers[-1].out_shape


def _fits(data: dict, dtype: str, inp, inputs, layers, loss, collect: _Collect) -> None:
    for i, spec in enumerate(inputs or (inp,) if inp is not None else ()):
        collect(_fits_dtype, spec, ("input",) + (("per_step", i) if inputs else ()), dtype)
    for i, layer in enumerate(layers or ()):
        written = data["model"][i] if isinstance(data["model"][i], str) else next(iter(data["model"][i]))
        for p in (*layer.params, *layer.state):
            collect(_fits_dtype, p.spec, ("model", i, written, p.name.rsplit(".", 1)[1]), dtype)
    if loss is not None and loss.target is not None and loss.kind not in ("cross_entropy", "nll"):  # ids: not values
        where = ("loss", loss.kind, "value" if loss.kind == "grad_output" else "target")
        for i, spec in enumerate(loss.per_step or (loss.target,)):
            collect(_fits_dtype, spec, where + (("per_step", i) if loss.per_step else ()), dtype)


def _xfail(data: dict, frameworks: Collection[str] | None) -> dict:
    """`xfail:` keys are framework names: those in `frameworks` (the front end asks the registry), or any."""
    raw = data.get("xfail")
    names = list(frameworks) if frameworks is not None else list(raw) if isinstance(raw, dict) else []
    xfail = check_keys(raw, names, ("xfail",), "xfail")
    for fw, why in xfail.items():
        string(why, ("xfail", fw))
        bad = unknown_ids(why)
        if bad:
            raise CaseError(f"unknown divergence id(s) {', '.join(bad)}; the catalogue holds "
                            f"{', '.join(CATALOGUE)} (docs/divergences.md); any other text is a free-text reason",
                            ("xfail", fw))
    return dict(xfail)


def parse_case(data: dict, file: str, lines: dict, *, case_id: str | None = None, family: str | None = None,
               frameworks: Collection[str] | None = None) -> Case:
    """Validate one (already drawn) case mapping. Raises CaseError with the field path (CaseErrors: several,
    each part of the case that does not depend on a broken one is checked too). `frameworks`: the names an
    `xfail:` key may take (None: any; validation itself never asks the adapter registry)."""
    collect = _Collect()
    collect(_top_keys, data)
    # A variant's `f[i]` and a shrink candidate's id were made from names already checked.
    name = case_id or (data["name"] if family else collect(case_name, data, file))
    dtype, seed, tags, description = _meta(data, collect)
    # A misspelt key (`modle:`) already says what is missing: no second error for it.
    meant = {m for k in data if k not in TOP_KEYS for m in difflib.get_close_matches(str(k), TOP_KEYS, n=1, cutoff=0.6)}
    missing = [key for key in ("input", "model", "loss") if key not in data]
    collect.errors += [CaseError(f"missing `{key}` (every case needs `input`, `model` and `loss`)", ())
                       for key in missing if key not in meant]
    if missing:
        collect.raise_any(family is not None)
    inp, inputs, layers, shape = _network(data, collect)
    loss = collect(_loss, data["loss"], shape) if layers is not None else None
    optimizer = collect(_optimizer, data.get("optimizer"))
    sched, clipping = collect(schedule, data.get("schedule")), collect(clip, data.get("clip"))
    steps = collect(integer, data.get("steps", 1), ("steps",), min=1) or 1
    if steps > MAX_STEPS:  # every step is run, compared and re-run for conditioning: a typo must not hang a run
        collect.errors.append(CaseError(f"{steps:,} steps is more than a case may take (the limit is {MAX_STEPS:,})",
                                        ("steps",)))
        steps = 1
    if steps > 1 and optimizer is None and data.get("optimizer") is None:
        collect.errors.append(Conflict(f"{steps} steps need an `optimizer` (without one every step is the same)",
                                       ("steps",)))
    for key in ("schedule", "clip"):
        if data.get(key) is not None and data.get("optimizer") is None:
            collect.errors.append(Conflict(f"`{key}` needs an `optimizer`", (key,)))
    collect(check_steps, inputs, steps, ("input",))
    if loss is not None:
        collect(check_steps, loss.per_step, steps, ("loss", loss.kind, "value" if loss.kind == "grad_output" else
                                                    "target"))
    expect = tolerance = None
    if layers is not None:
        params = {p.name: p.spec.shape for layer in layers for p in layer.params}
        input_grad = all(L.INPUT_GRAD for L in layers[:1])  # an embedding's ids have no gradient
        states = {s.name: s.spec.shape for layer in layers for s in layer.state}
        expect = collect(_expect, data.get("expect"), steps, shape, params, inp.shape if input_grad else None, states)
        if expect is not None and (expect.param or any(g.quantity == "param" for g in expect.at)) \
                and data.get("optimizer") is None:
            collect.errors.append(Conflict("expected parameters need an `optimizer` (without one nothing is "
                                           "updated; gradients go under `expect.grad`)", ("expect", "param")))
        tolerance = collect(_tolerance, data.get("tolerance"), list(params), input_grad, list(states))
    _fits(data, dtype, inp, inputs, layers, loss, collect)
    xfail = collect(_xfail, data, frameworks)
    collect.raise_any(family is not None)
    return Case(id=case_id or name, file=file, line=lines.get((), 1), description=description, tags=tags,
                dtype=dtype, seed=seed, input=inp, layers=tuple(layers), loss=loss, optimizer=optimizer, steps=steps,
                expect=expect, tolerance=tolerance, xfail=xfail, family=family, source=data, lines=lines,
                inputs=inputs, schedule=sched, clip=clipping)
