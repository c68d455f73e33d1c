"""Errors a user can act on: each names the file, the line and the field."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

Path = tuple  # a field path inside a case file, e.g. ("model", 1, "conv2d", "stride")


def format_path(path: Path) -> str:
    """("model", 1, "conv2d", "stride") -> "model[1].conv2d.stride"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top>"


COMMAND_LINE = "<command line>"  # the "file" an error in an option or argument names


class CaseError(Exception):
    """A case file (or option) is invalid. Reads `file:line: field.path: problem`."""

    def __init__(self, problem: str, path: Path = (), file: str | None = None, line: int | None = None):
        super().__init__(problem)
        self.problem, self.path, self.file, self.line = problem, tuple(path), file, line

    def located(self, file: str, lines: dict) -> "CaseError":
        """Attach the file and the line of the deepest part of the path the YAML actually has."""
        line = self.line
        if line is None:
            for n in range(len(self.path), -1, -1):
                if self.path[:n] in lines:
                    line = lines[self.path[:n]]
                    break
        return CaseError(self.problem, self.path, self.file or file, line)

    def __str__(self) -> str:
        where = self.file or "<case>"
        if self.line is not None:
            where += f":{self.line}"
        field = f" {format_path(self.path)}:" if self.path else ""
        return f"{where}:{field} {self.problem}"


class CaseErrors(CaseError):
    """Several independent errors in one case file: `gradconf validate` lists them all, one a line."""

    def __init__(self, errors: list[CaseError]):
        first = errors[0]
        super().__init__(first.problem, first.path, first.file, first.line)
        self.errors = list(errors)

    def located(self, file: str, lines: dict) -> "CaseErrors":
        return CaseErrors([e.located(file, lines) for e in self.errors])

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def every_error(e: CaseError) -> list[CaseError]:
    return list(e.errors) if isinstance(e, CaseErrors) else [e]


class Conflict(CaseError):
    """Values that are each valid but cannot go together (nesterov without momentum, low above high).
    A family redraws on this one: another draw may pair them differently."""


class ShapeError(Conflict):
    """The case is impossible for these sizes: the network, or a tensor whose shape the network fixes."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def unknown(what: str, word, choices: Iterable[str]) -> str:
    """"unknown dtype `float31`; did you mean `float32`? (one of: float64, float32, ...)"."""
    choices = list(choices)
    return f"unknown {what} `{word}`{did_you_mean(word, choices)} (one of: {', '.join(map(str, choices))})"


class Unsupported(Exception):
    """A framework cannot express this case faithfully; the message says exactly why."""
