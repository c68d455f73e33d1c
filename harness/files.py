"""Writing files where the user said, and nowhere else.

Every file gradconf writes goes through here: `freeze -o`, `shrink`, the report set. A name taken
from a case (whose `name:` may hold `/`, `..` or anything else) is made a plain file name first; a
file is written under a temporary name in its folder and renamed over the destination, so a reader
never sees half a file and a symlink planted at the destination is replaced, not followed; and
files are created with mode 0666 less the user's umask (0644 by default), as any tool's output is.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets

MAX_NAME = 120  # bytes of a file name we make; every file system takes 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def safe_name(text: str, suffix: str = "") -> str:
    """`text` as one plain file name ending in `suffix`: runs of characters other than letters, digits
    and `._+=-` become `_`, no leading dot, at most MAX_NAME bytes. A name that had to change gets a
    short hash of the original, so that two different ids never share a file."""
    name = _UNSAFE.sub("_", text).lstrip(".") or "case"
    if name != text or len(name) + len(suffix) > MAX_NAME:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name[:MAX_NAME - len(suffix) - 9]}-{digest}"
    return name + suffix


def create_new(path: str):
    """A new file opened for writing (binary), created with the user's umask; never follows a symlink,
    never opens a file that already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    return os.fdopen(fd, "wb")


def write_atomic(path: str, text: str | bytes) -> str:
    """Write `text` to `path` whole or not at all: a temporary file beside it, then one rename (which
    replaces a symlink at `path` rather than following it). Returns `path`."""
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(path)[:60]}")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with create_new(tmp) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def inside(folder: str, name: str) -> str:
    """`folder/name` for a plain name made by safe_name; refuses anything that would leave `folder`."""
    if name in ("", ".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"not a plain file name: {name!r}")
    return os.path.join(folder, name)
