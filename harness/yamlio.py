"""YAML in and out: safe, YAML-1.2 numbers, no duplicate keys, and the line of every field.

PyYAML alone reads `1e-5` as a string (YAML 1.1 wants `1.0e-5`) and silently keeps the
last of two duplicate keys; both are traps in hand-written case files, so we fix them here.
"""
from __future__ import annotations

import re

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from .errors import CaseError

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Counting(Composer):
    """Counts nodes as it composes them: a file of too many values is refused while it is read, after
    MAX_NODES of them, not once the tree of all of them is built."""
    nodes = 0

    def compose_node(self, parent, index):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooMany(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


class _TooMany(Exception):
    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _Loader(_Counting, CParser, SafeConstructor, Resolver):
        """libyaml scans and parses (in C, ~4x faster than PyYAML's Python scanner); composing stays in
        Python, so that it can count."""

        def __init__(self, text):
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        get_single_node = Composer.get_single_node  # CParser's own builds the whole tree in C
else:  # a PyYAML built without libyaml
    class _Loader(_Counting, yaml.SafeLoader):
        pass


# Replace the YAML 1.1 float resolver by the 1.2 one (ints still win: they are checked first).
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in Resolver.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


# Far beyond any case file, and bounds what a hostile one costs: aliases (`*a`) repeat their anchor's
# value, so eight lines of them can stand for 43 million values; and nesting is read recursively.
MAX_VALUES = 1_000_000
MAX_DEPTH = 32
# Values as written (before aliases repeat them): a 64x64 RGB image written out is 12,288; a case
# file needing more should draw its tensors ({shape, init}) instead.
MAX_NODES = 100_000


def load(text: str, file: str = "<string>") -> tuple[object, dict[tuple, int]]:
    """Parse YAML text. Returns the data and a map from field path to its 1-based line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = str(getattr(e, "problem", None) or e)
        if "maximum nesting depth" in problem:  # libyaml's words for what RecursionError is below
            problem = "nested too deeply to read"
        raise CaseError(f"not valid YAML: {problem}", (), file, line) from None
    except RecursionError:
        raise CaseError("not valid YAML: nested too deeply to read", (), file, 1) from None
    except _TooMany as e:
        raise CaseError(f"more than {MAX_NODES:,} values written in one file (the limit); draw large tensors "
                        "with {shape: [...], init: ...} instead of writing them out", (), file, e.line) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines
    return _build(node, (), lines, loader, file), lines


def _build(node, path, lines, loader, file):
    lines[path] = node.start_mark.line + 1
    if len(lines) > MAX_VALUES:
        top = path[:1]  # where it happens, not the anchor's deep copy being expanded
        raise CaseError(f"the file stands for more than {MAX_VALUES:,} values (YAML aliases `*name` repeat "
                        "their anchor's value); no case file needs that many", top, file, lines[top])
    if len(path) > MAX_DEPTH:
        raise CaseError(f"nested deeper than a case file can be (limit {MAX_DEPTH})", path[:MAX_DEPTH], file,
                        lines[path])
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise CaseError(f"keys must be plain names, got {key!r}", path, file, key_node.start_mark.line + 1)
            key = str(key)
            if key in out:
                raise CaseError(f"duplicate key `{key}`", path + (key,), file, key_node.start_mark.line + 1)
            out[key] = _build(value_node, path + (key,), lines, loader, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), lines, loader, file) for i, v in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as e:  # a tag safe loading does not construct: `!!python/name:...`, `!custom`
        raise CaseError(f"not valid here: {getattr(e, 'problem', None) or e}", path, file, lines[path]) from None


def dump(data: object) -> str:
    """Case data back to YAML: block style for mappings, flow style for number lists."""
    class _Dumper(yaml.SafeDumper):
        pass

    def _list(dumper, value):
        flow = all(not isinstance(v, dict) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    _Dumper.add_representer(list, _list)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
