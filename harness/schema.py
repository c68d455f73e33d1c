"""The JSON Schema of a case file (`gradconf schema`), built from the loader's own key tables so
the two cannot drift apart. Editors use it for completion; the loader remains the authority."""
from __future__ import annotations

from .case import DTYPES, INITS
from .loader import LAYER_KEYS, LOSS_KEYS, OPT_KEYS, TOP_KEYS

_INT = {"type": "integer", "minimum": 0}
_PAIR = {"oneOf": [_INT, {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2}]}
_NESTED = {"type": "array"}  # nested lists of numbers
_RANDOM = {"type": "object", "additionalProperties": False, "properties": {
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    "init": {"enum": list(INITS)}, "low": {"type": "number"}, "high": {"type": "number"},
    "mean": {"type": "number"}, "std": {"type": "number", "minimum": 0}}}
_TENSOR = {"oneOf": [_NESTED, {"type": "number"}, _RANDOM]}
_DRAW = {"type": "object", "properties": {"choice": {"type": "array"}, "range": {"type": "array"}},
         "minProperties": 1, "maxProperties": 1}
_PARAM_SCHEMA = {
    "name": {"type": "string"}, "in_channels": _INT, "out_channels": _INT, "in_features": _INT,
    "out_features": _INT, "kernel_size": _PAIR, "stride": _PAIR, "dilation": _PAIR, "groups": _INT,
    "output_padding": _PAIR, "count_include_pad": {"type": "boolean"},
    "padding": {"oneOf": [_PAIR, {"enum": ["same", "valid"]},
                          {"type": "array", "items": {"type": "array", "items": _INT}}]},
    "bias": {"oneOf": [{"type": "boolean"}, _TENSOR]}, "weight": _TENSOR,
    "target": {"oneOf": [{"type": "number"}, _TENSOR]}, "value": {"oneOf": [{"type": "number"}, _TENSOR]},
    "lr": {"type": "number", "minimum": 0}, "momentum": {"type": "number", "minimum": 0},
    "nesterov": {"type": "boolean"}, "weight_decay": {"type": "number", "minimum": 0},
    "betas": {"type": "array", "items": {"type": "number"}}, "eps": {"type": "number"},
}


def _one_of(table: dict) -> dict:
    variants = []
    for kind, keys in table.items():
        body = {"type": ["object", "null"], "additionalProperties": False,
                "properties": {k: {"anyOf": [_PARAM_SCHEMA[k], _DRAW]} for k in keys}}
        variants.append({"type": "object", "additionalProperties": False, "required": [kind],
                         "properties": {kind: body}})
    return {"oneOf": variants}


def case_schema() -> dict:
    tol = {"type": "object", "properties": {"rtol": {"type": "number"}, "atol": {"type": "number"}}}
    props = {
        "name": {"type": "string"}, "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}, "dtype": {"enum": list(DTYPES)},
        "seed": _INT, "input": _TENSOR, "model": {"type": "array", "items": _one_of(LAYER_KEYS), "minItems": 1},
        "loss": _one_of(LOSS_KEYS), "optimizer": _one_of(OPT_KEYS), "steps": {"type": "integer", "minimum": 1},
        "expect": {"type": "object", "additionalProperties": False, "properties": {
            "loss": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
            "output": _TENSOR, "grad": {"type": "object"}, "param": {"type": "object"}}},
        "tolerance": {"type": "object", "additionalProperties": tol},
        "xfail": {"type": "object", "additionalProperties": {"type": "string"}},
        "count": {"type": "integer", "minimum": 1},
    }
    assert set(props) == set(TOP_KEYS)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "gradconf case file",
            "description": "One case, or a family (with `count:`) whose values may be {choice: [...]} or "
                           "{range: [lo, hi]}. See SPEC.md §1.",
            "type": "object", "additionalProperties": False, "required": ["input", "model", "loss"],
            "properties": props}
