"""The JSON Schema of a case file (`gradconf schema`), built from the vocabulary's declarations (each
field's schema fragment) and the parser's top-level keys, so the three cannot drift apart. Editors use
it for completion; the parser remains the authority."""
from __future__ import annotations

from .case import DTYPES, INITS
from . import vocab
from .parse import TOP_KEYS
from .parse_training import CLIPS, SCHEDULES

# Shared pieces live in $defs and are referenced, so that the schema stays small for editors.
_DEFS = {
    "draw": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
             "properties": {"choice": {"type": "array", "minItems": 1},
                            "range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}}},
    "int": {"type": "integer", "minimum": 0},
    "pair": {"oneOf": [{"type": "integer", "minimum": 0},
                       {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}]},
    "tensor": {"oneOf": [{"type": "array"}, {"type": "number"}, {
        "type": "object", "additionalProperties": False, "properties": {
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "init": {"enum": list(INITS)}, "low": {"type": "number"}, "high": {"type": "number"},
            "mean": {"type": "number"}, "std": {"type": "number", "minimum": 0}}}]},
}
_TENSOR, _DRAW = ({"$ref": f"#/$defs/{k}"} for k in ("tensor", "draw"))


def _drawable(node):
    """In a family any value, at any depth, may be {choice: [...]} or {range: [lo, hi]} instead."""
    if not isinstance(node, dict) or "$ref" in node:  # shared definitions are made drawable once, in $defs
        return node
    out = {}
    for key, value in node.items():
        if key in ("anyOf", "oneOf"):
            out[key] = [_drawable(v) for v in value]
        elif key == "properties":
            out[key] = {k: _drawable(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _drawable(value)
        else:
            out[key] = value
    return {"anyOf": [out, _DRAW]}


_FROM = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}


def _one_of(table: dict, extra: dict | None = None) -> dict:
    """One variant per declaration; `extra`: keys every entry takes (a layer's `from:`, SPEC §1.8)."""
    variants = []
    for kind, decl in table.items():
        body = {"type": ["object", "null"], "additionalProperties": False,
                "properties": {**(extra or {}), **{f.name: f.schema for f in decl.fields}}}
        variants.append({"type": "object", "additionalProperties": False, "required": [kind],
                         "properties": {kind: body}})
    return {"oneOf": variants}


def _per_step(node: dict) -> dict:
    """A tensor, or {per_step: [tensor, ...]} (SPEC §1.10)."""
    return {"anyOf": [node, {"type": "object", "additionalProperties": False, "required": ["per_step"],
                             "properties": {"per_step": {"type": "array", "minItems": 1, "items": node}}}]}


def _one_key(kind: str, params: dict | None) -> dict:
    """{kind: {params}} or, params None, {kind: number > 0}."""
    body = ({"type": "number", "exclusiveMinimum": 0} if params is None else
            {"type": "object", "additionalProperties": False, "properties": params})
    return {"type": "object", "additionalProperties": False, "required": [kind], "properties": {kind: body}}


def case_schema() -> dict:
    tol = {"type": "object", "additionalProperties": False,
           "properties": {"rtol": {"type": "number", "minimum": 0}, "atol": {"type": "number", "minimum": 0}}}
    golden = {"loss": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
              "output": _TENSOR, "grad": {"type": "object"}, "param": {"type": "object"},
              "state": {"type": "object"}}
    props = {
        # no `[`, `]`, `::` or control characters: they delimit variant and pytest ids
        "name": {"type": "string", "minLength": 1, "pattern": r"^[^\[\]\x00-\x1f\x7f]*$", "not": {"pattern": "::"}},
        "description": {"type": "string"},
        "tags": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "dtype": {"enum": list(DTYPES)},
        "seed": {"$ref": "#/$defs/int"}, "input": _per_step(_TENSOR),
        "model": {"type": "array", "minItems": 1, "items": {"anyOf": [_one_of(vocab.LAYERS, {"from": _FROM}), {"enum": [
            k for k, d in vocab.LAYERS.items() if not set(d.keys) - {"name"}]}]}},  # `- relu` for a parameterless layer
        "loss": _one_of(vocab.LOSSES), "optimizer": _one_of(vocab.OPTIMIZERS), "steps": {"type": "integer", "minimum": 1},
        "schedule": {"oneOf": [{"type": "null"}, *(_one_key(kind, {k: {"type": "number", "minimum": 0}
                                                                    for k in keys}) for kind, keys in SCHEDULES.items())]},
        "clip": {"oneOf": [{"type": "null"}, *(_one_key(kind, None) for kind in CLIPS)]},
        "expect": {"type": "object", "additionalProperties": False, "properties": {
            **golden, "step": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False, "properties": golden}},
            "tolerance": tol}},
        "tolerance": {"anyOf": [tol, {"type": "object", "additionalProperties": tol}]},  # whole case, or keyed
        "xfail": {"type": "object", "additionalProperties": {"type": "string"}},
        "count": {"type": "integer", "minimum": 1},
    }
    assert set(props) == set(TOP_KEYS)
    props = {k: (v if k in ("count", "name") else _drawable(v)) for k, v in props.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "gradconf case file",
            "$defs": {k: (v if k == "draw" else _drawable(v)) for k, v in _DEFS.items()},
            "description": "One case, or a family (with `count:`) whose values may be {choice: [...]} or "
                           "{range: [lo, hi]}. See SPEC.md §1.",
            "type": "object", "additionalProperties": False, "required": ["input", "model", "loss"],
            "properties": props}
