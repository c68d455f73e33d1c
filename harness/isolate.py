"""Run cases in a child process, so that a framework that kills its process — a segfault or an abort
in native code, which no `except` can catch — costs the case it was running, not the whole run.

The child is forked from the CLI process (which has not imported any framework yet: that happens in
the child, once), runs the cases in order and sends each case's records back. Before each adapter
run it says which (case, framework) starts. When the child dies, the parent records an `error` for
that framework on that case, and forks a fresh child that runs the same case without it and goes on.
"""
from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable

from .runner import CaseResult, Record, Runner, _note


_THREADED = ("torch", "tensorflow", "jax")  # their thread pools do not survive a fork once started


def available() -> bool:
    """fork (Linux), from a process that has not loaded a framework yet (the CLI never has; a notebook
    or test calling it may): the child shares the parsed cases and adapters and starts at once."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and not any(name in sys.modules for name in _THREADED))


def _child(runner: Runner, cases: list, start: int, without: dict, finish: Callable[[], dict], conn) -> None:
    runner.on_adapter_start = lambda case, adapter: conn.send(("start", case.id, adapter.name))
    for i in range(start, len(cases)):
        frameworks = [fw for fw in runner.frameworks if fw.name not in without.get(i, ())]
        conn.send(("case", i, runner.run_case(cases[i], frameworks).records))
    conn.send(("end", finish()))
    conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _died(runner: Runner, case, running, exitcode: int | None) -> tuple[list[Record], str | None]:
    """The records a child's death on `case` leaves, and the framework to run the case again without
    (None: the reference or gradconf itself died, so nothing of the case can be compared)."""
    framework = running[1] if running and running[0] == case.id else None
    why = (f"the process died ({_death(exitcode)}) while {framework or 'gradconf'} ran this case; "
           f"gradconf went on in a fresh process")
    if framework is None or framework == runner.reference.name:
        names = dict.fromkeys([runner.reference.name, *(fw.name for fw in runner.frameworks)])
        notes = [_note(case, n, "error", why, runner.reference.name) for n in names]
        return Runner.apply_xfail(case, CaseResult(case, notes)).records, None
    note = _note(case, framework, "error", why, runner.reference.name)
    return Runner.apply_xfail(case, CaseResult(case, [note])).records, framework


def run_isolated(runner: Runner, cases: list, finish: Callable[[], dict],
                 on_case: Callable[[object], None] = lambda case: None) -> tuple[list[Record], dict]:
    """Every case's records, in case order, and what `finish()` returned in the last child (run after the
    last case, in the process that has the frameworks loaded: e.g. their versions)."""
    context = multiprocessing.get_context("fork")
    by_case: dict[int, list[Record]] = {}
    without: dict[int, set[str]] = {}  # case index -> frameworks that killed a child on it
    start, finished = 0, None
    while finished is None:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(runner, cases, start, without, finish, send), daemon=True)
        sys.stdout.flush()  # or the child, which flushes its copy of the buffers on exit, prints them again
        sys.stderr.flush()
        child.start()
        send.close()
        running = None  # (case id, framework) announced last
        try:
            while True:
                message = receive.recv()
                if message[0] == "start":
                    running = message[1:]
                elif message[0] == "case":
                    _, i, records = message
                    by_case[i] = by_case.get(i, []) + records
                    start, running = i + 1, None
                    on_case(cases[i])
                else:
                    finished = message[1]
                    break
        except EOFError:  # the child died
            child.join()
            if start >= len(cases):  # after the last case, in finish(): every record is in
                finished = {}
                break
            notes, framework = _died(runner, cases[start], running, child.exitcode)
            by_case[start] = by_case.get(start, []) + notes
            if framework is None:  # the case is lost
                start += 1
                on_case(cases[start - 1])
            else:  # the same case again, without the framework that died on it
                without.setdefault(start, set()).add(framework)
        except BaseException:  # Ctrl-C: stop the child too
            child.terminate()
            raise
        finally:
            receive.close()
        child.join()
    return [r for i in sorted(by_case) for r in by_case[i]], finished


def _serve(runner: Runner, conn) -> None:
    runner.on_adapter_start = lambda case, adapter: conn.send(("start", case.id, adapter.name))
    for case, names in iter(conn.recv, None):
        frameworks = [fw for fw in runner.frameworks if fw.name in names]
        conn.send(("case", runner.run_case(case, frameworks).records))


class IsolatedRunner:
    """`runner.run_case`, one case at a time, in a long-lived forked child (gradconf shrink, which asks
    for one candidate case after another): a child that dies costs the case it was running an `error` on
    the framework that was running, the case's other frameworks run in a fresh child, and so on."""

    def __init__(self, runner: Runner):
        self.runner, self.reference, self._child, self._conn = runner, runner.reference, None, None

    def run_case(self, case) -> CaseResult:
        names = [fw.name for fw in self.runner.frameworks]
        records: list[Record] = []
        while True:
            if self._child is None:
                context = multiprocessing.get_context("fork")
                self._conn, theirs = context.Pipe()
                sys.stdout.flush()
                sys.stderr.flush()
                self._child = context.Process(target=_serve, args=(self.runner, theirs), daemon=True)
                self._child.start()
                theirs.close()
            self._conn.send((case, names))
            running = None
            try:
                while (message := self._conn.recv())[0] == "start":
                    running = message[1:]
                return CaseResult(case, records + message[1])
            except EOFError:  # the child died
                self._child.join()
                notes, framework = _died(self.runner, case, running, self._child.exitcode)
                self._conn.close()
                self._child = self._conn = None
                records += notes
                if framework is None:
                    return CaseResult(case, records)
                names.remove(framework)

    def close(self) -> None:
        if self._child is not None:
            self._conn.send(None)
            self._child.join()
            self._conn.close()
            self._child = self._conn = None
