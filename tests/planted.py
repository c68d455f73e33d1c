"""Adapters with planted bugs — the mutation suite (tests/mutation.py runs it; loadable with
--adapter tests.planted:NAME).

Each is the NumPy reference with one hand-backprop slip put in while it runs: a declaration of the
vocabulary (harness/vocab/, or a function it is built from) swapped for a wrong one, or the case's layers
or training loop changed. Every one
changes the mathematics for some case, so a bundled case that exercises it must fail it. `Copy` is the
control: the reference under another name, which must fail nothing.
"""
from __future__ import annotations

from gradconf.adapters.numpy_ref import NumpyReference
from tests import planted_layers, planted_training


class CrashesOnSum3x3(NumpyReference):
    """Kills its own process with SIGSEGV on the case `sum_3x3`, as a native kernel bug does: no Python
    `except` sees it. Elsewhere it is the reference itself."""
    name = "crashes"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(case, initial)


class Copy(NumpyReference):
    """The reference under another name: a second framework that conforms (the mutation suite's control)."""
    name = "copy"


class Hangs(NumpyReference):
    """Hangs for ever on the case named in GRADCONF_TEST_HANG (default `sum_3x3`), as a deadlock in
    native code does: it ignores SIGTERM and SIGINT, so only SIGKILL ends it. Before it hangs it writes
    its pid to GRADCONF_TEST_PIDFILE, if set, so that a test can check the process is gone afterwards."""
    name = "hangs"

    def run(self, case, initial):
        import os
        import signal
        import time
        if case.id == os.environ.get("GRADCONF_TEST_HANG", "sum_3x3"):
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, signal.SIG_IGN)
            pidfile = os.environ.get("GRADCONF_TEST_PIDFILE")
            if pidfile:
                with open(pidfile + ".tmp", "w") as fh:
                    fh.write(str(os.getpid()))
                os.replace(pidfile + ".tmp", pidfile)
            while True:
                time.sleep(0.05)
        return super().run(case, initial)


class MissingRaises(NumpyReference):
    """Its availability check itself fails, as a plug-in's broken import probe does."""
    name = "missing_raises"

    def missing(self):
        raise RuntimeError("probe exploded")


class VersionRaises(NumpyReference):
    """Runs, but cannot say which version it is."""
    name = "version_raises"

    def version(self):
        raise RuntimeError("no version here")


class FillsDisk(NumpyReference):
    """On its second case, fills the file system of GRADCONF_TEST_FILL (a path) to the last byte, as
    another program on a shared disk may do in the middle of a run."""
    name = "fills_disk"
    seen = 0

    def run(self, case, initial):
        import os
        FillsDisk.seen += 1
        if FillsDisk.seen == 2:
            with open(os.environ["GRADCONF_TEST_FILL"], "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 4096)
                except OSError:
                    pass
        return super().run(case, initial)


class ScribblesOnSockets(NumpyReference):
    """On `sum_3x3`, writes the start of a message that never ends to every socket it holds (the child's
    pipe to gradconf among them), then goes on as the reference: a parent that trusts the pipe hangs."""
    name = "scribbles"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import stat
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    if stat.S_ISSOCK(os.fstat(fd).st_mode):
                        os.write(fd, b"\x00\x00\x10\x00garbage")  # "a 1 MiB message follows"
                except OSError:
                    pass
        return super().run(case, initial)


class ExitsQuietly(NumpyReference):
    """Calls sys.exit(3) on `sum_3x3`, as a library that 'handles' an error by exiting does."""
    name = "exits"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import sys
            sys.exit(3)
        return super().run(case, initial)


class ClosesItsFiles(NumpyReference):
    """On `sum_3x3`, closes every file descriptor above stderr (its pipe to gradconf too) and hangs,
    as a library that 'daemonises' itself might: a parent that waits for the child's exit hangs with it."""
    name = "closes"

    def run(self, case, initial):
        if case.id == "sum_3x3":
            import os
            import time
            os.closerange(3, 65536)
            while True:
                time.sleep(0.05)
        return super().run(case, initial)


def hangs_while_loading():
    """An adapter factory that never returns (a plug-in whose import waits on a lock)."""
    import time
    while True:
        time.sleep(0.05)


def _planted() -> list[type]:
    """Every planted bug of the two modules, each named after its class unless it has its own name."""
    kinds = [c for m in (planted_layers, planted_training) for c in vars(m).values()
             if isinstance(c, type) and c.__module__ == m.__name__ and getattr(c, "bug", "")]
    for c in kinds:
        if c.name in ("planted", "numpy"):
            c.name = "".join("_" + ch.lower() if ch.isupper() else ch for ch in c.__name__).lstrip("_")
    return kinds


MUTANTS = _planted()  # every planted bug, each a class with `name` and `bug`
globals().update({c.__name__: c for c in MUTANTS})  # each loadable as --adapter tests.planted:NAME
