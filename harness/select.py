"""`-k EXPR`: pytest's `-k` grammar — names matched case-insensitively as substrings of the case id, its
tags or its family, combined with `and`, `or`, `not` and parentheses:

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | NAME
    NAME     := one or more of letters, digits, _ : + - . [ ] \\ /   (pytest's identifier characters)
"""
from __future__ import annotations

import re

from .case import Case
from .errors import COMMAND_LINE, CaseError

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([\w:+\-.\[\]\\/]+)|(\S))")


def _tokens(expr: str) -> list[str]:
    out = []
    for m in _TOKEN.finditer(expr):
        if m.group(4) is not None:
            raise _Bad(f"unexpected character {m.group(4)!r} at column {m.start(4) + 1}")
        out.append(m.group(1) or m.group(2) or m.group(3))
    return out


class _Bad(Exception):
    pass


class _Parser:
    """Recursive descent over the tokens; builds a predicate over a set of lower-cased words."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise _Bad("unexpected end of expression")
        self.i += 1
        return tok

    def expr(self):
        terms = [self.and_expr()]
        while self.peek() == "or":
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else (lambda m, ts=terms: any(t(m) for t in ts))

    def and_expr(self):
        terms = [self.not_expr()]
        while self.peek() == "and":
            self.take()
            terms.append(self.not_expr())
        return terms[0] if len(terms) == 1 else (lambda m, ts=terms: all(t(m) for t in ts))

    def not_expr(self):
        tok = self.take()
        if tok == "not":
            inner = self.not_expr()
            return lambda m: not inner(m)
        if tok == "(":
            inner = self.expr()
            if self.take() != ")":
                raise _Bad("expected `)`")
            return inner
        if tok in (")", "and", "or"):
            raise _Bad(f"unexpected `{tok}`")
        word = tok.lower()
        return lambda m: m(word)


def compile_expr(expr: str):
    """-> predicate(case). Raises CaseError on a malformed expression (an empty one selects everything)."""
    try:
        tokens = _tokens(expr)
        parser = _Parser(tokens)
        test = parser.expr() if tokens else (lambda m: True)
        if parser.peek() is not None:
            raise _Bad(f"unexpected `{parser.peek()}`")
    except _Bad as e:
        raise CaseError(f"cannot parse -k expression {expr!r}: {e}", ("-k",), COMMAND_LINE) from None

    def predicate(case: Case) -> bool:
        words = [w.lower() for w in (case.id, *case.tags, *(f for f in [case.family] if f))]
        return test(lambda word: any(word in w for w in words))
    return predicate
