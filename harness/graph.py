"""Graph models (SPEC §1.8): where each layer's inputs come from, checked while the model is parsed.

A layer's `from:` names an earlier layer, `input` (the network input), or a list of them for a merge;
without it the layer takes the previous layer's output. Names are unique; a dangling, later or own
name is an error naming the file, line and field (`model[3].add.from[1]`). The typed layer keeps the
resolved names (`Layer.sources`) and every input's shape (`Layer.in_shapes`); `case.graph` walks them.
"""
from __future__ import annotations

import numpy as np

from .case import Shape, TensorSpec
from .errors import CaseError, did_you_mean
from .fields import kind_of


def declared_names(model) -> dict[str, int]:
    """Every layer's name (as written, or `<type>_<index>`) -> its first index; best effort, for messages
    that tell a later layer from a name nobody declares."""
    out: dict[str, int] = {}
    for i, item in enumerate(model if isinstance(model, list) else ()):
        if isinstance(item, str):
            kind, p = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            (kind, p), = item.items()
        else:
            continue
        name = p.get("name") if isinstance(p, dict) and isinstance(p.get("name"), str) else f"{kind}_{i}"
        out.setdefault(name, i)
    return out


def sources(written, path, index: int, merge: bool, known: dict[str, Shape], declared: dict[str, int],
            previous: str) -> tuple[tuple[str, ...], tuple[Shape, ...]]:
    """(names, shapes) of a layer's inputs. `written`: its `from:` (None: the previous layer's output);
    `known`: the names before it -> their output shapes ("input" included); `path`: the layer's field path."""
    if written is None:
        if merge:
            raise CaseError("a merge needs `from:`, a list of two or more earlier layers' names (or `input`)", path)
        return (previous,), (known[previous],)
    here = path + ("from",)
    if isinstance(written, str):
        names, paths = [written], [here]
    elif isinstance(written, list) and written:
        names, paths = written, [here + (i,) for i in range(len(written))]
    else:
        raise CaseError(f"must be a layer name or a non-empty list of names, got {kind_of(written)}", here)
    if merge and len(names) < 2:
        raise CaseError(f"a merge takes two or more inputs, got {len(names)}", here)
    if not merge and len(names) != 1:
        raise CaseError(f"this layer takes one input, got {len(names)}; merge them first (`add`, `concat`)", here)
    for name, where in zip(names, paths):
        _known(name, where, index, known, declared)
    return tuple(names), tuple(known[n] for n in names)


def _known(name, where, index: int, known: dict, declared: dict) -> None:
    if not isinstance(name, str):
        raise CaseError(f"must be a layer name, got {kind_of(name)} {name!r:.40}", where)
    if name in known:
        return
    at = declared.get(name)
    if at == index:
        raise CaseError(f"`{name}` is this layer itself; `from` names an earlier layer or `input`", where)
    if at is not None and at > index:
        raise CaseError(f"`{name}` is a later layer (model[{at}]); `from` names an earlier layer or `input` "
                        f"(the model is a list in order: no cycles)", where)
    raise CaseError(f"no layer is named `{name}`{did_you_mean(name, known)} (earlier layers: "
                    f"{', '.join(known)})", where)


# ---------------------------------------------------------------- integer ids (an embedding's input)

def check_ids(layers, graph, specs: tuple[TensorSpec, ...], paths) -> None:
    """An embedding must be the first layer and the only one fed the network input, which then holds
    integer ids in [0, num_embeddings): a literal of integers, or `init: randint` within that range."""
    for i, (L, src) in enumerate(zip(layers, graph)):
        if not L.INPUT_GRAD and i != 0:
            raise CaseError(f"`{L.type}` must be the first layer (its input is the network's integer ids)",
                            ("model", i, L.type))
        if i > 0 and "input" in src and not layers[0].INPUT_GRAD:
            raise CaseError("the network input holds an embedding's integer ids: no other layer may take it",
                            ("model", i, L.type, "from"))
    first = layers[0] if layers else None
    if first is None or first.INPUT_GRAD:
        return
    n = first.num_embeddings
    for spec, path in zip(specs, paths):
        if spec.values is not None:
            v = spec.values
            if not np.all(v == np.round(v)):
                raise CaseError("an embedding's input holds integer ids; this one has fractions", path)
            bad = v[(v < 0) | (v >= n)]
            if bad.size:
                raise CaseError(f"id {bad.flat[0]:g} is out of range: `{first.name}` has num_embeddings {n}, "
                                f"so ids are 0 … {n - 1}", path)
        elif spec.init != "randint":
            raise CaseError(f"an embedding's input holds integer ids: a literal, or `init: randint` "
                            f"(got `init: {spec.init}`)", path + ("init",))
        elif spec.low < 0 or spec.high > n:
            raise CaseError(f"ids drawn from [{spec.low:g}, {spec.high:g}) are out of range: `{first.name}` has "
                            f"num_embeddings {n}, so ids are 0 … {n - 1} (high at most {n})",
                            path + ("high" if spec.high > n else "low",))
