"""The JSON Schema of a case file (`gradconf schema`), built from the loader's own key tables so
the two cannot drift apart. Editors use it for completion; the loader remains the authority."""
from __future__ import annotations

from .case import DTYPES, INITS
from .loader import LAYER_KEYS, LOSS_KEYS, OPT_KEYS, TOP_KEYS

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
_INT, _PAIR, _TENSOR, _DRAW = ({"$ref": f"#/$defs/{k}"} for k in ("int", "pair", "tensor", "draw"))
_PARAM_SCHEMA = {
    "name": {"type": "string"}, "in_channels": _INT, "out_channels": _INT, "in_features": _INT,
    "out_features": _INT, "kernel_size": _PAIR, "stride": _PAIR, "dilation": _PAIR, "groups": _INT,
    "output_padding": _PAIR, "count_include_pad": {"type": "boolean"},
    "padding": {"anyOf": [_PAIR, {"enum": ["same", "valid"]},
                          {"type": "array", "items": {"type": "array", "items": _INT}}]},
    "bias": {"anyOf": [{"type": "boolean"}, _TENSOR]}, "weight": _TENSOR,
    "target": _TENSOR, "value": _TENSOR,  # a tensor, or a number broadcast to the output's shape
    "lr": {"type": "number", "minimum": 0}, "momentum": {"type": "number", "minimum": 0},
    "nesterov": {"type": "boolean"}, "weight_decay": {"type": "number", "minimum": 0},
    "betas": {"type": "array", "items": {"type": "number"}}, "eps": {"type": "number"},
}


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


def _one_of(table: dict) -> dict:
    variants = []
    for kind, keys in table.items():
        body = {"type": ["object", "null"], "additionalProperties": False,
                "properties": {k: _PARAM_SCHEMA[k] for k in keys}}
        variants.append({"type": "object", "additionalProperties": False, "required": [kind],
                         "properties": {kind: body}})
    return {"oneOf": variants}


def case_schema() -> dict:
    tol = {"type": "object", "additionalProperties": False,
           "properties": {"rtol": {"type": "number", "minimum": 0}, "atol": {"type": "number", "minimum": 0}}}
    props = {
        # no `[`, `]`, `::` or control characters: they delimit variant and pytest ids
        "name": {"type": "string", "minLength": 1, "pattern": r"^[^\[\]\x00-\x1f\x7f]*$", "not": {"pattern": "::"}},
        "description": {"type": "string"},
        "tags": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "dtype": {"enum": list(DTYPES)},
        "seed": _INT, "input": _TENSOR,
        "model": {"type": "array", "minItems": 1, "items": {"anyOf": [_one_of(LAYER_KEYS), {"enum": [
            k for k in LAYER_KEYS if not set(LAYER_KEYS[k]) - {"name"}]}]}},  # `- relu` for a parameterless layer
        "loss": _one_of(LOSS_KEYS), "optimizer": _one_of(OPT_KEYS), "steps": {"type": "integer", "minimum": 1},
        "expect": {"type": "object", "additionalProperties": False, "properties": {
            "loss": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
            "output": _TENSOR, "grad": {"type": "object"}, "param": {"type": "object"}}},
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
