"""What a declaration is. One per layer, loss and optimizer: everything the harness knows about it.

The loader builds a typed layer / loss / optimizer from a declaration's `build`, the schema takes its
fields, the NumPy reference runs its `forward`/`backward` (or `loss`, or `make`), the README's table its
`doc`. Adapters keep one function per declaration name; a name an adapter lacks is `unsupported`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..case import Shape

REQUIRED = object()  # a field without a default: build() says what is missing
ABSENT = None        # an optional field left out stays out of the parameters build() gets

# JSON-schema fragments of the shared value kinds; schema.py defines them under $defs.
INT = {"$ref": "#/$defs/int"}
PAIR = {"$ref": "#/$defs/pair"}
TENSOR = {"$ref": "#/$defs/tensor"}
NAME = {"type": "string"}
BOOL = {"type": "boolean"}
NONNEG = {"type": "number", "minimum": 0}


@dataclass(frozen=True)
class Field:
    """One parameter key: its JSON-schema fragment and its default (filled in before build() runs)."""
    name: str
    schema: dict
    default: Any = ABSENT
    doc_default: str | None = None  # how the README states a default that build() computes

    def default_text(self) -> str:
        if self.doc_default is not None:
            return self.doc_default
        if self.default is REQUIRED:
            return "required"
        return "—" if self.default is ABSENT else str(self.default).lower()


@dataclass(frozen=True)
class Site:
    """Where a layer or loss is being built: the field path (for errors), its name, its input shapes."""
    path: tuple
    name: str
    shapes: tuple[Shape, ...]

    @property
    def shape(self) -> Shape:
        """The one input of a single-input layer (the loss: the model's output)."""
        return self.shapes[0]


@dataclass(frozen=True)
class LayerDecl:
    """A layer. `build(p, site) -> Layer` validates the parameters (defaults filled in) and applies the
    shape rule; `forward(L, xs, params[, state]) -> (y, cache)` takes the list of input arrays and the
    layer's own parameters by kind ("weight", "bias"); `backward(L, dy, cache) -> ([dx per input],
    {kind: grad})`. A stateful layer (running statistics) sets `init_state(L) -> dict`, and its forward
    is then called with `state=` that dict, which it may update."""
    name: str
    doc: str
    fields: tuple[Field, ...]
    build: Callable
    forward: Callable
    backward: Callable
    inputs: int = 1              # incoming tensors (a merge such as add or concat: more)
    accumulates: bool = False    # a sum of products plus bias (conv, dense): see numpy_ref.gradients
    aliases: tuple[str, ...] = ()
    init_state: Callable | None = None
    macs: Callable | None = None  # (L) -> forward multiply-adds, for the thread policy; None: negligible
    # (cache) -> the normalised x̂ the backward reads (a norm layer's): a conditioning run rounds it in place
    # (protocol.Rounding.normalised), since no perturbation of the inputs moves Σx̂ = 0
    normalised: Callable | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class LossDecl:
    """A loss. `build(p, site) -> Loss` (site.shape: the model's output); `loss(y, target, rounding)
    -> (L, dL/dy)`, vectorised; `rounding` is a conditioning run's (protocol.Rounding) or None."""
    name: str
    doc: str
    fields: tuple[Field, ...]
    build: Callable
    loss: Callable

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class OptimizerDecl:
    """An optimizer. `build(p, path) -> Optimizer`; `make(opt)` -> an object whose `update(name, p, g)`
    returns the parameter after one step, keeping its own per-parameter state."""
    name: str
    doc: str
    fields: tuple[Field, ...]
    build: Callable
    make: Callable

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def register(table: dict, *decls) -> None:
    """Add declarations to a registry (name -> declaration), each under its name and its aliases."""
    for d in decls:
        for key in (d.name, *getattr(d, "aliases", ())):
            if key in table:
                raise ValueError(f"`{key}` is declared twice")
            table[key] = d
