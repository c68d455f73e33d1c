"""A time limit for work done in this process (the pytest plugin's tests), where no child can be killed.

`gradconf run` enforces its limit by killing the isolated child (harness.isolate). Inside a pytest
process the work runs in the test itself, so: SIGALRM raises TimeLimit in the main thread when the
limit passes, which stops a loop or a wait in Python code; code that never returns to the interpreter
(a deadlock in native code) is stopped by faulthandler, which prints every thread's traceback and
ends the process at twice the limit plus GRACE_S. Under xdist that is a crashed worker, which xdist
replaces and the report shows as an error on the test that was running (harness.plugin).
"""
from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import threading
from collections.abc import Iterator

DEFAULT_TIME_LIMIT = 300.0  # per (case, framework): a first run imports its framework (seconds)
GRACE_S = 10.0


class TimeLimit(BaseException):
    """The limit passed. A BaseException: an adapter's `except Exception` must not swallow it."""

    def __init__(self, seconds: float):
        super().__init__(f"more than {seconds:g} s")
        self.seconds = seconds


@contextlib.contextmanager
def deadline(seconds: float | None, backstop: bool = True) -> Iterator[None]:
    """Raise TimeLimit in the body after `seconds` (None or 0: no limit; off the main thread, or
    without SIGALRM: no limit either). `backstop`: end the process at 2·seconds + GRACE_S should the
    body never return to Python code."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeLimit(seconds)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if backstop:
        faulthandler.dump_traceback_later(2 * seconds + GRACE_S, exit=True, file=sys.__stderr__ or sys.stderr)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if backstop:
            faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
