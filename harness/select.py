"""`-k EXPR`: pytest-style selection by case id (substring) or tag, with and / or / not / parentheses."""
from __future__ import annotations

import re

from .case import Case
from .errors import COMMAND_LINE, CaseError

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def compile_expr(expr: str):
    """-> predicate(case). Raises CaseError on a malformed expression."""
    parts = []
    for tok in _TOKEN.findall(expr):
        if tok in ("and", "or", "not", "(", ")"):
            parts.append(f" {tok} ")
        else:
            parts.append(f"_m({tok!r})")
    code = "".join(parts)
    try:
        compiled = compile(code or "True", "<-k>", "eval")
    except SyntaxError:
        raise CaseError(f"cannot parse -k expression {expr!r}", ("-k",), COMMAND_LINE) from None

    def predicate(case: Case) -> bool:
        words = {case.id, *case.tags, *(f for f in [case.family] if f)}
        def _m(word: str) -> bool:
            return word in case.id or word in words
        return bool(eval(compiled, {"__builtins__": {}}, {"_m": _m, "True": True}))
    return predicate
