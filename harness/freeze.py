"""`gradconf freeze ID`: one family variant as a standalone case file that reproduces its numbers."""
from __future__ import annotations

from . import yamlio
from .errors import COMMAND_LINE, CaseError
from .family import draw_variant, is_family, split_id
from .loader import discover, read_file


def find_family(name: str, paths) -> tuple[str, dict, dict]:
    for f in discover(paths):
        try:
            data, lines = read_file(f)
        except CaseError:
            continue
        stem = f.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if is_family(data) and data.get("name", stem) == name:
            return f, data, lines
    raise CaseError(f"no family named `{name}` under {', '.join(paths)}", ("ID",), COMMAND_LINE)


def freeze(case_id: str, paths) -> str:
    parsed = split_id(case_id)
    if parsed is None:
        raise CaseError(f"`{case_id}` is not a family variant id like `conv_random[17]`", ("ID",), COMMAND_LINE)
    name, index = parsed
    file, data, lines = find_family(name, paths)
    try:
        case = draw_variant(data, file, lines, index)
    except CaseError as e:
        raise e.located(file, lines) from None
    src = dict(case.source)
    src["name"] = f"{name}_{index}"
    src["tags"] = [t for t in src.get("tags", []) if t != "family"] + ["frozen"]
    src["description"] = (f"{case_id} from {file}, frozen. " + src.get("description", "")).strip()
    return f"# gradconf freeze {case_id}: a standalone copy of that variant (same tensors, same numbers)\n" + \
        yamlio.dump(src)
