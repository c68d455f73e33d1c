"""Running one adapter on one case, contained: an exception, `sys.exit()`, a missing framework, a broken
`version()` or a result that is not a Trace becomes that adapter's one record, and loses nothing else."""
from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable

from .case import Case
from .errors import Unsupported
from .protocol import Adapter, Initial, Trace
from .records import Record, Status, note

_SETTLED: set[str] = set()  # adapters whose first run (and so their framework's import) is behind us


def brief(e: BaseException) -> str:
    """An adapter's exception as one line plus where it came from (no full harness traceback)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    try:
        text = str(e)
    except Exception as inner:  # an exception whose __str__ raises (a hostile plug-in's) is still named
        text = f"<its message could not be read: {type(inner).__name__}>"
    return f"{type(e).__name__}: {text[:2000]}{where}"


def is_trace(trace) -> bool:
    """Shaped like a Trace: a list of steps, each with a loss, an output, and dicts of grads and params."""
    steps = getattr(trace, "steps", None)
    return isinstance(steps, (list, tuple)) and all(
        hasattr(s, "loss") and hasattr(s, "output") and isinstance(getattr(s, "grads", None), dict)
        and isinstance(getattr(s, "params", None), dict) for s in steps)


def settle(adapter: Adapter) -> None:
    """After an adapter's first run its framework is imported, and its objects live until exit.
    gc.freeze() takes them out of the cyclic collector's view: with torch and TF loaded (~5·10^5
    objects), each full collection (several per run, one in pytest's teardown, one at exit) would
    walk them all, ~0.3 s each."""
    if adapter.name not in _SETTLED:
        _SETTLED.add(adapter.name)
        gc.freeze()


class AdapterRuns:
    """Runs adapters on cases, each run contained. `on_start(case, adapter)` is called before each run
    (harness.isolate: whatever the adapter does from there is on its clock); `seconds` is filled in."""

    def __init__(self):
        self.on_start: Callable | None = None
        self._versions: dict[str, str | None] = {}  # adapter name -> why its version() failed, or None

    def version_error(self, adapter: Adapter) -> str | None:
        """Why `adapter.version()` fails, asked once per adapter: a run whose report cannot say what
        ran is that adapter's error, not a result."""
        if adapter.name not in self._versions:
            try:
                version = adapter.version()
                self._versions[adapter.name] = None if isinstance(version, str) else \
                    f"{adapter.name}.version() returned {type(version).__name__}, not a string"
            except Exception as e:
                self._versions[adapter.name] = f"{adapter.name}.version() raised {brief(e)}"
        return self._versions[adapter.name]

    def run(self, adapter: Adapter, case: Case, initial: Initial,
            seconds: dict[str, float]) -> tuple[Trace | None, Record | None]:
        """(trace, None) or (None, a record saying why there is no trace)."""
        if self.on_start is not None:  # before missing(): whatever this adapter does is on its clock
            self.on_start(case, adapter)
        try:
            why = adapter.missing()
        except Exception as e:  # a plug-in's availability check must not stop the run either
            return None, note(case, adapter.name, Status.ERROR, f"{adapter.name}.missing() raised {brief(e)}")
        if why:
            return None, note(case, adapter.name, Status.SKIPPED, why)
        broken = self.version_error(adapter)
        if broken:
            return None, note(case, adapter.name, Status.ERROR, broken)
        t0 = time.perf_counter()
        try:
            trace = adapter.run(case, initial)
        except Unsupported as e:
            return None, note(case, adapter.name, Status.UNSUPPORTED, str(e))
        except Exception as e:  # an adapter bug must not lose the other results
            return None, note(case, adapter.name, Status.ERROR, brief(e))
        except SystemExit as e:  # sys.exit() inside an adapter ends the adapter's run, not gradconf
            return None, note(case, adapter.name, Status.ERROR,
                              f"{adapter.name} called sys.exit({e.code!r}) {brief(e)}")
        finally:
            seconds[adapter.name] = time.perf_counter() - t0
        settle(adapter)
        if not is_trace(trace):  # a third-party adapter's slip is its own error, not the run's crash
            return None, note(case, adapter.name, Status.ERROR, f"{adapter.name} returned {type(trace).__name__}, "
                              "not a Trace of Steps with loss, output and grads (the adapter protocol, README)")
        return trace, None
