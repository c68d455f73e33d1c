"""`gradconf import` (SPEC §2): a case file from a real model. What every importer shares.

An importer (the optional adapter method `import_model(source, input_shape, reinit) -> Imported`: the torch
adapter for `torch.nn.Module`s through torch.fx, the TensorFlow adapter for Keras 3 models) maps the model's
layers onto the vocabulary, one layer entry each, with `from:` where a layer does not read the previous one;
this module adds the input, loss and optimizer, writes the YAML and proves it loads. A model with layers the
vocabulary lacks is refused with every such layer listed, not just the first.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from . import yamlio
from .errors import COMMAND_LINE, CaseError

LOSSES = {  # --loss: the loss an imported case takes (a model carries none)
    "grad_output": {"grad_output": {"value": {"init": "normal"}}},  # every output element its own gradient
    "sum": {"sum": {}},
    "mse": {"mse": {"target": {"init": "normal"}}},
}


@dataclass
class Imported:
    """An importer's result: the layer entries (`{type: {params}}`, canonical layouts), the dtype, and where each
    case parameter came from in the model ("c1.weight" -> "features.0.weight"), for the round-trip test."""
    model: list[dict]
    dtype: str
    source: str
    param_names: dict[str, str] = field(default_factory=dict)
    input_layout: str = "NCHW"  # how the model itself takes its input (a Keras model: NHWC)


class Unmappable(CaseError):
    """Layers of the model the vocabulary has no entry for: every one of them, with its type and place."""

    def __init__(self, source: str, nodes: list[str]):
        super().__init__(f"{len(nodes)} layer(s) or op(s) of {source} have no gradconf vocabulary entry: "
                         + "; ".join(nodes), ("MODEL",), COMMAND_LINE)


def tensor(a) -> list:
    """A parameter as the literal the case file holds (exact: a float32 value is a float64 exactly)."""
    return np.asarray(a, dtype=np.float64).tolist()


def case_text(imp: Imported, name: str, input_shape: tuple[int, ...], loss: str, optimizer: str | None,
              lr: float, steps: int, seed: int, command: str) -> str:
    if loss not in LOSSES:
        raise CaseError(f"one of {', '.join(LOSSES)}, got `{loss}`", ("--loss",), COMMAND_LINE)
    data = {"name": name, "description": f"imported from {imp.source} by gradconf import",
            "tags": ["imported"], "dtype": imp.dtype, "seed": seed,
            "input": {"shape": list(input_shape), "init": "normal"}, "model": imp.model, "loss": LOSSES[loss]}
    if optimizer is not None:
        data["optimizer"] = {optimizer: {"lr": lr}}
        data["steps"] = steps
    return f"# {command}\n" + yamlio.dump(data)


def check_loads(text: str, path_hint: str = "<imported>"):
    """The written case, parsed as any case file is: an importer's mistake shows here, not in a later run."""
    from . import registry
    from .parse import parse_case
    data, lines = yamlio.load(text, path_hint)
    try:
        return parse_case(data, path_hint, lines, frameworks=registry.known_names())
    except CaseError as e:
        raise e.located(path_hint, lines) from None


def load_object(spec: str):
    """`package.module:attr` (found from the current directory too, as `python -m` finds it) or
    `path/to/file.py:attr` -> that attribute; every failure a CaseError naming the spec."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise CaseError(f"`{spec}` is not MODULE:FACTORY (or FILE.py:FACTORY)", ("MODEL",), COMMAND_LINE)
    try:
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise CaseError(f"no file {where}", ("MODEL",), COMMAND_LINE)
            loaded = importlib.util.spec_from_file_location(os.path.basename(where)[:-3], where)
            module = importlib.util.module_from_spec(loaded)
            sys.modules.setdefault(loaded.name, module)
            loaded.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(where)
        return getattr(module, attr)
    except CaseError:
        raise
    except Exception as e:  # noqa: BLE001 — the user's code: its error, named
        raise CaseError(f"cannot load {spec}: {type(e).__name__}: {e}", ("MODEL",), COMMAND_LINE) from None
