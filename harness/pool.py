"""`gradconf run -j N`: the cases spread over N isolated worker processes, records in case order.

Each worker is an isolate.Child: a long-lived process forked from this one before any framework is
loaded, which imports the frameworks once, on its first case, and runs whole cases on request. Crash
isolation and time limits are those of a one-worker run: a child that dies or runs past its time
limit costs the case it was running an `error` on the framework that was running (the whole case if
that was the reference), the case's other frameworks run again in a fresh child, and that worker goes
on.

This process stays single-threaded — it forks, so no other thread may hold a lock at that moment —
and waits on every worker's pipe at once. Results are yielded in case order, each as soon as every
case before it is done, whichever worker finished first: the records of a run do not depend on N or
on timing, and a caller can stream them. The children get the worker's share of the cores, cores ÷ N,
in `GRADCONF_THREADS` and the native libraries' pool-size variables (the thread policy,
adapters.threads_for), unless the user set them.
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from . import isolate
from .records import Record, Status
from .records import note as note_of
from .runner import CaseResult, Runner
from .threads import usable_cores

# Read by the native libraries when they load (in the children): their pools' sizes.
POOL_SIZE_VARIABLES = ("GRADCONF_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_workers() -> int:
    """The cores this process may run on."""
    return usable_cores()


@contextlib.contextmanager
def worker_share(workers: int):
    """While it lasts, processes forked from here see cores ÷ workers threads (a user's own setting wins)."""
    share = str(max(1, default_workers() // max(1, workers)))
    added = [v for v in POOL_SIZE_VARIABLES if v not in os.environ]
    os.environ.update(dict.fromkeys(added, share))
    try:
        yield
    finally:
        for variable in added:
            os.environ.pop(variable, None)


def _serve_alone(conn, children: list, runner: Runner, finish: Callable[[], dict] | None) -> None:
    """A worker's loop (isolate.serve_cases), once it has closed its copies of this process's ends of the
    other workers' pipes: an adapter that writes to every descriptor it holds, or closes them, must not
    reach another worker."""
    for child in children:
        if child.connection is not None:
            child.connection.close()
    isolate.serve_cases(conn, runner, finish)


@dataclass
class _Job:
    """One case on one worker: the frameworks still to run, and the records of those that died."""
    index: int
    names: list[str]
    records: list[Record] = field(default_factory=list)


class Pool:
    """`workers` isolate.Child processes running `runner`'s cases, each (case, framework) under
    `time_limit`; `finish()` runs in one of them (see isolate)."""

    def __init__(self, runner: Runner, workers: int, finish: Callable[[], dict] | None = None,
                 time_limit: float | None = isolate.DEFAULT_TIME_LIMIT):
        self.runner = runner
        self.children: list[isolate.Child] = []
        self.children += [isolate.Child(_serve_alone, (self.children, runner, finish), time_limit)
                          for _ in range(max(1, workers))]
        self.finished: dict[int, list[Record]] = {}  # done, and waiting for an earlier case
        self._jobs: dict[int, _Job] = {}              # id(child) -> its case in flight

    def run(self, cases: Sequence) -> Iterator[tuple[object, list[Record]]]:
        """(case, its records) for every case, in case order. Stopped early (an exception or a signal in
        the caller, the generator closed), it keeps what the busy children already sent (in_flight())
        and kills them."""
        todo, names = deque(range(len(cases))), [fw.name for fw in self.runner.frameworks]
        self.finished.clear()
        try:
            with worker_share(len(self.children)):
                for child in self.children[:len(cases)]:
                    self._start(child, cases, _Job(todo.popleft(), list(names)))
                for index, case in enumerate(cases):
                    while index not in self.finished:
                        self._wait(cases, todo, names)
                    yield case, self.finished.pop(index)
        finally:
            for child in self.children:
                if id(child) in self._jobs:
                    child._drain()  # the "part"s already on its pipe: a busy parent may lag behind
                    child.kill()

    def _wait(self, cases, todo: deque, names: list[str]) -> None:
        """Wait for any busy child; settle each answer; give a worker that finished its case the next."""
        busy = [c for c in self.children if id(c) in self._jobs]
        wait([c.connection for c in busy if c.connection is not None], timeout=0.25)  # then deadlines
        for child in busy:
            answer = child.poll(0.0)
            if answer is None:
                continue
            job = self._jobs.pop(id(child))
            records = self._settle(cases[job.index], job, answer)
            if records is None:  # a framework died: the same case again without it
                self._start(child, cases, job)
                continue
            self.finished[job.index] = records
            if todo:
                self._start(child, cases, _Job(todo.popleft(), list(names)))

    def _start(self, child, cases, job: _Job) -> None:
        child.send(("case", cases[job.index], job.names))
        self._jobs[id(child)] = job

    def _settle(self, case, job: _Job, answer: isolate.Answer) -> list[Record] | None:
        """The case's records, or None when it must run again without the framework that died (as
        isolate.IsolatedRunner.run_case does)."""
        if answer.kind == "done":
            return job.records + answer.value
        running, reference = answer.running, self.runner.reference.name
        framework = running[1] if running and running[0] == case.id else None
        why = isolate.lost_to(answer, framework)
        if framework is None or framework == reference:  # nothing to compare against: the case is lost
            notes = [note_of(case, n, Status.ERROR, why, reference) for n in dict.fromkeys([reference, *job.names])]
            return Runner.apply_xfail(case, CaseResult(case, job.records + notes)).records
        note = note_of(case, framework, Status.ERROR, why, reference)
        job.records += Runner.apply_xfail(case, CaseResult(case, [note])).records
        job.names.remove(framework)
        return None

    def in_flight(self, cases) -> list[tuple[object, list[Record]]]:
        """After a stopped run: (case, records of its frameworks that finished) for each case in flight."""
        out = []
        for child in self.children:
            job = self._jobs.get(id(child))
            if job is not None:
                case = cases[job.index]
                done = [r for case_id, _, records in child.parts if case_id == case.id for r in records]
                out.append((case, Runner.apply_xfail(case, CaseResult(case, job.records + done)).records))
        return sorted(out, key=lambda pair: cases.index(pair[0]))

    def finish(self) -> dict | None:
        """`finish()` in the first worker (where the frameworks are loaded); None if that kills it."""
        with worker_share(len(self.children)):
            answer = self.children[0].ask(("finish",))
        return answer.value if answer.kind == "done" else None

    def close(self) -> None:
        for child in self.children:
            child.close()
