"""Progress of a long run: a live bar (tqdm's meter) on a terminal, and a plain line every so often otherwise
(CI logs, pipes), each with elapsed time, ETA and the failing cases so far."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from .runner import FAILING

EVERY_S = 30.0  # between two lines when not on a terminal; GRADCONF_PROGRESS_SECONDS overrides


def _clock(seconds: float) -> str:
    from tqdm import tqdm
    return tqdm.format_interval(seconds)


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    def __init__(self, total: int, mode: str, stream=sys.stderr, every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        """mode: "bar" (a terminal), "lines" (anything else), or "off" (--quiet)."""
        self.total, self.mode, self.stream, self.every, self.clock = total, mode, stream, every, clock
        self.done = self.failing = 0
        self.t0 = self.last = clock()
        self._width = (_columns(stream) or 100) - 1  # a pty with no size set reports 0 columns
        if mode == "bar":  # at once: the first case can take a while (framework imports)
            stream.write("\r" + self.bar(self.t0, "starting"))
            stream.flush()

    @classmethod
    def for_stream(cls, total: int, stream, quiet: bool = False) -> "Progress":
        if quiet:
            return cls(total, "off", stream)
        every = float(os.environ.get("GRADCONF_PROGRESS_SECONDS", EVERY_S))
        return cls(total, "bar" if stream.isatty() else "lines", stream, every)

    def step(self, case, records) -> None:
        """One case done, with its records."""
        self.done += 1
        self.failing += any(r.status in FAILING for r in records)
        if self.mode == "bar":
            self.stream.write("\r" + self.bar(self.clock(), case.id))
            self.stream.flush()
        elif self.mode == "lines":
            now = self.clock()
            if now - self.last >= self.every or self.done == self.total:
                self.last = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return (f"gradconf: {self.done}/{self.total} cases ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}, {self.failing} failing so far")

    def bar(self, now: float, label: str) -> str:
        """One terminal line, drawn by tqdm's meter: percentage, bar, count, elapsed, ETA, failures, case."""
        from tqdm import tqdm
        return tqdm.format_meter(self.done, self.total, now - self.t0, ncols=self._width, unit="case",
                                 bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cases [{elapsed} elapsed, "
                                            "ETA {remaining}] " + f"{self.failing} failing · {label}"[:50]
                                            .replace("{", "{{").replace("}", "}}"))

    def close(self) -> None:
        if self.mode == "bar" and self.done:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
