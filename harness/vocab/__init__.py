"""The vocabulary: one declaration per layer, loss and optimizer (README, "Adding a layer").

`LAYERS`, `LOSSES`, `OPTIMIZERS` map each name a case file may use to its declaration (vocab.base).
The loader, `gradconf schema`, the NumPy reference's dispatch, the thread policy and the README's
vocabulary table are derived from them; each adapter keeps one function per name.
"""
from __future__ import annotations

from . import activations, conv, conv1d, dense, embedding, losses, merge, norm, optimizers, pool, resize, shape, softmax
from .base import ABSENT, REQUIRED, Field, LayerDecl, LossDecl, OptimizerDecl, Site, register

__all__ = ["LAYERS", "LOSSES", "OPTIMIZERS", "Field", "LayerDecl", "LossDecl", "OptimizerDecl", "Site",
           "case_macs", "docs_table", "with_defaults"]

LAYERS: dict[str, LayerDecl] = {}
LOSSES: dict[str, LossDecl] = {}
OPTIMIZERS: dict[str, OptimizerDecl] = {}
register(LAYERS, *conv.DECLS, *conv1d.DECLS, *pool.DECLS, *resize.DECLS, *activations.DECLS, *softmax.DECLS,
         *shape.DECLS, *dense.DECLS, *merge.DECLS, *embedding.DECLS, *norm.DECLS)
register(LOSSES, *losses.DECLS)
register(OPTIMIZERS, *optimizers.DECLS)


def with_defaults(decl, p: dict) -> dict:
    """The parameters as written, with every constant default of the declaration filled in."""
    return {**{f.name: f.default for f in decl.fields if f.default is not ABSENT and f.default is not REQUIRED}, **p}


def case_macs(case) -> int:
    """Multiply-adds of the case's largest layer (forward pass; a backward costs about twice as much)."""
    return max((LAYERS[L.type].macs(L) for L in case.layers if LAYERS[L.type].macs is not None), default=0)


def docs_table() -> str:
    """The README's vocabulary table (tests/test_vocab.py checks the README holds exactly this)."""
    rows = ["| kind | name | parameters (default) | what |", "|---|---|---|---|"]
    for kind, table in (("layer", LAYERS), ("loss", LOSSES), ("optimizer", OPTIMIZERS)):
        for key, d in table.items():
            if key != d.name:  # an alias: named on its declaration's row
                continue
            params = ", ".join(f"`{f.name}` ({f.default_text()})" for f in d.fields if f.name != "name") or "—"
            rows.append(f"| {kind} | `{d.name}` | {params} | {d.doc} |")
    return "\n".join(rows)
