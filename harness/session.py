"""One `gradconf run`: every case through the runner (in an isolated child, or in this process), each
finished case's records streamed to its run folder, stopped cleanly by SIGINT or SIGTERM.

On a signal the run starts nothing more, kills its child (harness.isolate), and returns what it has:
the records of every finished case, and how many cases it did not run. The caller writes the report
set of that, marked interrupted, and exits 128 + the signal's number. A full disk under the stream
stops the run the same way: what is not kept is not worth computing.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from . import isolate
from .reportset import RunFolder
from .runner import CaseResult, Record, Runner

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, as KeyboardInterrupt is: an adapter's `except
    Exception` must not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interrupts(raising: bool = True) -> Iterator[list[int]]:
    """Within: SIGINT and SIGTERM raise Interrupted (`raising`) or are only noted, in the list yielded,
    to be acted on afterwards (while a report set is written). Main thread only; elsewhere a no-op."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        caught.append(signum)
        if raising and len(caught) == 1:
            raise Interrupted(signum)
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    cases_run: int = 0
    info: dict | None = None          # the run block from the child (framework versions), if it got that far
    signum: int | None = None         # the signal that stopped the run
    stream_error: OSError | None = None  # the stream could not be written (a full disk): the run stopped
    partial: dict | None = None       # the case in flight at the signal, and its frameworks that finished

    def run_block(self, fingerprint: Callable[..., dict], planned: int, seconds: float) -> tuple[dict, str | None]:
        """The run block of the reports, and for a run that stopped early, the line saying so."""
        info = self.info
        if info is None:  # the child died after its last case (in a version lookup), or the run stopped
            info = fingerprint(())  # early: no versions rather than load every framework here
        info["seconds"] = round(seconds, 3)
        if self.signum is None and self.stream_error is None:
            return info, None
        why = (f"interrupted by {signal.Signals(self.signum).name}" if self.signum
               else f"stopped: the stream could not be written ({self.stream_error})")
        info["interrupted"] = {"why": why, "cases_run": self.cases_run, "cases_not_run": planned - self.cases_run}
        line = f"{why}: {planned - self.cases_run} of {planned} case(s) not run"
        if self.partial:
            info["interrupted"]["partial"] = self.partial
            line += (f" ({self.partial['case']} in part: {', '.join(self.partial['finished'])} finished, "
                     f"and are in the reports)")
        return info, line


def execute(runner: Runner, cases: Sequence, folder: RunFolder | None, isolated: bool,
            time_limit: float | None, finish: Callable[[], dict],
            on_case: Callable[[object, list], None] = lambda case, records: None, workers: int = 1,
            pool=None) -> Outcome:
    """Run `cases`, streaming each one's records to `folder`, until done, a signal, or a full disk;
    isolated with `workers` > 1: on that many children (harness.pool), the records still in case order;
    on `pool`, something with harness.pool.Pool's interface (a Dask cluster: harness.dask_backend), if given."""
    if pool is not None or (isolated and workers > 1):
        from .pool import Pool
        ran = pool or Pool(runner, workers, finish, time_limit)
        return _execute_pool(ran, cases, folder, on_case)
    out = Outcome()
    child = isolate.IsolatedRunner(runner, finish, time_limit) if isolated else None
    here: list[Record] = []  # in this process: the finished frameworks' records of the case in flight
    if child is None:
        runner.on_framework_done = lambda case, name, records: here.extend(records)
    case = None
    try:
        with interrupts():
            for case in cases:
                here.clear()
                records = (child or runner).run_case(case).records
                out.records += records
                out.cases_run += 1
                on_case(case, records)  # progress counts the failing cases so far
                if folder is not None:
                    try:
                        folder.add(case.id, records)
                    except OSError as e:
                        out.stream_error = e
                        break
            if out.stream_error is None:
                out.info = child.finish() if child else finish()
    except Interrupted as e:
        out.signum = e.signum
        if case is not None and out.cases_run < len(cases):
            _keep_partial(out, case, child.partial(case) if child else
                          Runner.apply_xfail(case, CaseResult(case, list(here))).records, folder)
    finally:
        if child is not None:
            child.close()
    return out


def _execute_pool(ran, cases: Sequence, folder: RunFolder | None,
                  on_case: Callable[[object, list], None]) -> Outcome:
    """execute() on a harness.pool.Pool (or a pool like it). On a signal: every finished case is kept (those
    that waited for an earlier one too, in case order), and of the first case in flight, the frameworks that
    finished it."""
    out = Outcome()
    results = ran.run(cases)
    try:
        with interrupts():
            for case, records in results:
                if not _keep(out, case, records, folder, on_case):
                    break
            if out.stream_error is None:
                out.info = ran.finish()
    except Interrupted as e:
        out.signum = e.signum
        results.close()  # kills the busy children, keeping what they had sent
        # The first case in flight that has finished frameworks (Outcome.partial names one); a case in
        # flight with none finished has nothing to keep, and must not hide a later one that has.
        flying = [(case, records) for case, records in ran.in_flight(cases) if records][:1]
        first = cases.index(flying[0][0]) if flying else len(cases)
        for index in sorted(i for i in ran.finished if i < first):
            _keep(out, cases[index], ran.finished[index], folder, on_case)
        for case, records in flying:
            _keep_partial(out, case, records, folder)
        for index in sorted(i for i in ran.finished if i > first):
            _keep(out, cases[index], ran.finished[index], folder, on_case)
    finally:
        results.close()
        ran.close()
    return out


def _keep(out: Outcome, case, records: list[Record], folder: RunFolder | None, on_case) -> bool:
    """One finished case into the outcome and the stream; False if the stream could not take it."""
    out.records += records
    out.cases_run += 1
    on_case(case, records)
    if folder is not None:
        try:
            folder.add(case.id, records)
        except OSError as e:
            out.stream_error = e
            return False
    return True


def _keep_partial(out: Outcome, case, records: list[Record], folder: RunFolder | None) -> None:
    """The interrupted case's finished (case, framework) pairs: reported, streamed, counted as not run."""
    if not records:
        return
    out.records += records
    out.partial = {"case": case.id, "finished": list(dict.fromkeys(r.framework for r in records))}
    if folder is not None:
        try:
            folder.add(case.id, records, partial=True)
        except OSError:
            pass