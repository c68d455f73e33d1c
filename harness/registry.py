"""The adapter registry: which frameworks exist (built-ins, the `gradconf.adapters` entry points,
`--adapter module:attr`) and how to load one. Adapter modules are imported here only, by name, when a
front end asks for one: the rest of the harness never imports an adapter (tests/test_imports.py)."""
from __future__ import annotations

import functools
import importlib
import importlib.metadata

from .errors import COMMAND_LINE, CaseError, did_you_mean
from .protocol import Adapter, Initial, Trace

_BUILTIN = {"numpy": "gradconf.adapters.numpy_ref:NumpyReference", "torch": "gradconf.adapters.torch_adapter:TorchAdapter",
            "tensorflow": "gradconf.adapters.tensorflow_adapter:TensorflowAdapter", "jax": "gradconf.adapters.jax_adapter:JaxAdapter",
            # Keras 3's layers and optimizers, one framework per backend, each in its own process (keras_adapter)
            "keras-tensorflow": "gradconf.adapters.keras_adapter:KerasTensorflow",
            "keras-jax": "gradconf.adapters.keras_adapter:KerasJax",
            "keras-torch": "gradconf.adapters.keras_adapter:KerasTorch"}
ENTRY_POINT_GROUP = "gradconf.adapters"


@functools.lru_cache(maxsize=1)  # scanning installed distributions costs milliseconds; once is enough
def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution must not break the harness
        return {}


_LOADED: dict[str, str] = {}  # name -> spec of adapters loaded by `module:attr` in this process


def known_names() -> list[str]:
    """Every framework name a case may mention (in `xfail:`): built-ins, installed plug-ins, and any
    adapter loaded with --adapter."""
    return list(dict.fromkeys([*_BUILTIN, *_entry_points(), *_LOADED]))


def load_adapter(spec: str) -> Adapter:
    """`module:attr` -> an adapter instance. Raises ValueError with a readable reason."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--adapter wants `module:attr`, got {spec!r}")
    try:  # a third party's module may raise anything while it imports: name it, don't trace back
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load adapter {spec!r}: {e}") from None
    except Exception as e:
        raise ValueError(f"cannot load adapter {spec!r}: importing {module_name} raised "
                         f"{type(e).__name__}: {e}") from None
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "run")):  # a class or a factory
        try:
            obj = obj()
        except Exception as e:
            raise ValueError(f"adapter {spec!r}: calling it to make the adapter raised "
                             f"{type(e).__name__}: {e}") from None
    adapter = obj
    for attr_name in ("name", "missing", "version", "run"):
        if not hasattr(adapter, attr_name):
            raise ValueError(f"adapter {spec!r} lacks `{attr_name}` (see the adapter protocol in the README)")
    if not isinstance(adapter.name, str) or not adapter.name.isprintable() or not adapter.name.strip() \
            or any(c in adapter.name for c in ",[]:"):  # it becomes a --frameworks item, a test id, a key
        raise ValueError(f"adapter {spec!r}: `name` must be a short plain string, got {adapter.name!r:.60}")
    _LOADED.setdefault(adapter.name, spec)
    return adapter


def builtin(name: str) -> Adapter:
    return load_adapter(all_specs()[name])


class Unloadable:
    """Stands in for an installed adapter (an entry point) that fails to load when nobody asked for it
    by name: the other frameworks still run, and every case gets one `error` record saying why."""

    def __init__(self, name: str, why: str):
        self.name, self.why = name, why

    def missing(self) -> str | None:
        return None

    def version(self) -> str:
        return f"unloadable ({self.why})"

    def run(self, case, initial: Initial) -> Trace:
        raise RuntimeError(self.why)


def builtin_or_unloadable(name: str) -> Adapter:
    try:
        return builtin(name)
    except ValueError as e:
        return Unloadable(name, str(e))


def all_specs() -> dict[str, str]:
    return {**_entry_points(), **_BUILTIN}


def select(frameworks: str | None, reference: str, extra: list[str]):
    """The front ends' choice (`--frameworks`, `--reference`, `--adapter`): (reference adapter, [adapters to
    compare]). Raises CaseError for an unknown name or bad spec."""
    plugins = {}
    for spec in extra:
        try:
            a = load_adapter(spec)
        except ValueError as e:
            raise CaseError(str(e), ("--adapter",), COMMAND_LINE) from None
        plugins[a.name] = a
    known = {**all_specs(), **dict.fromkeys(plugins)}

    def get(name):
        if name in plugins:
            return plugins[name]
        try:
            return builtin(name)
        except ValueError as e:  # a broken entry point: report, do not crash
            raise CaseError(str(e), ("--frameworks",), COMMAND_LINE) from None

    if reference not in known:
        raise CaseError(f"unknown reference `{reference}`; known: {', '.join(known)}", ("--reference",),
                        COMMAND_LINE)
    if frameworks:
        names = [n.strip() for n in frameworks.split(",") if n.strip()]
        for n in names:
            if n not in known:
                raise CaseError(f"unknown framework `{n}`{did_you_mean(n, known)}; known: {', '.join(known)}",
                                ("--frameworks",), COMMAND_LINE)
        chosen = [get(n) for n in dict.fromkeys([*names, *plugins])]  # an --adapter always runs
    else:  # every known one, plus every --adapter; a broken plug-in nobody named costs only its own records, and
        # one that is not installed here a `skipped` record per case saying so (the runner asks `missing()`)
        chosen = [plugins.get(n) or builtin_or_unloadable(n) for n in known]
    return get(reference), chosen
