"""Case files -> validated `Case` objects: find the files, read each (size and encoding limits, YAML with
its line map), and hand its data to the family expansion or the case parser. Nothing runs before this."""
from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Sequence

from . import family, yamlio
from .case import Case
from .errors import CaseError, every_error
from .fields import kind_of, same_padding, tensor  # noqa: F401 (re-exported: the loader's long-standing names)
from .parse import TOP_KEYS, case_name, parse_case  # noqa: F401 (re-exported)

CASE_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 2 << 20  # a case file is text written by hand: the bundled ones are below 2 KB


# ---------------------------------------------------------------- files

def discover(paths: Iterable[str]) -> list[str]:
    """Every case file under the given files and folders, sorted, each once."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, f) for f in sorted(files) if f.endswith(CASE_SUFFIXES)]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise CaseError("no such file or folder", (), path)
    return list(dict.fromkeys(os.path.normpath(f) for f in found))


def read_file(path: str) -> tuple[dict, dict]:
    try:  # O_NONBLOCK: opening a FIFO named x.yaml must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CaseError("not a regular file (a device, a FIFO or a socket?)", (), path)
            raw = fh.read(MAX_FILE_BYTES + 1)  # never more: a hostile file's size is not ours to read
    except OSError as e:
        raise CaseError(f"cannot read: {e.strerror or e}", (), path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CaseError(f"larger than {MAX_FILE_BYTES >> 20} MiB, the limit for a case file; draw large tensors "
                        "with {shape: [...], init: ...} instead of writing them out", (), path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaseError(f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8", (), path,
                        raw[:e.start].count(b"\n") + 1) from None
    data, lines = yamlio.load(text, path)
    if not isinstance(data, dict):
        raise CaseError(f"a case file holds a mapping (name:, input:, model:, ...), got {kind_of(data)}", (), path, 1)
    return data, lines


def load_file(path: str, count: int | None = None, frameworks: Collection[str] | None = None) -> list[Case]:
    """One file -> its case, or its family's variants. Raises CaseError naming file, line and field.
    `frameworks`: the names an `xfail:` key may take (the front ends pass registry.known_names())."""
    data, lines = read_file(path)
    try:
        if family.is_family(data):
            return family.expand(data, path, lines, count, frameworks)
        return [parse_case(data, path, lines, frameworks=frameworks)]
    except CaseError as e:
        raise e.located(path, lines) from None


def load_paths(paths: Sequence[str], count: int | None = None,
               frameworks: Collection[str] | None = None) -> tuple[list[Case], list[CaseError]]:
    """Every case under `paths`; every invalid file is reported, not only the first."""
    cases, errors = [], []
    try:
        files = discover(paths)
    except CaseError as e:
        return [], [e]
    for f in files:
        try:
            cases += load_file(f, count, frameworks)
        except CaseError as e:
            errors += every_error(e)
    seen: dict[str, str] = {}
    for c in cases:
        if c.id in seen:
            errors.append(CaseError(f"case id `{c.id}` is also used by {seen[c.id]}", ("name",), c.file,
                                    c.line_of("name")))
        seen.setdefault(c.id, c.file)
    return cases, errors
