"""Run cases in a child process, so that a framework that kills its process — a segfault or an abort
in native code, which no `except` can catch — costs the case it was running, not the whole run.

The child is forked from the CLI process (which has not imported any framework yet: that happens in
the child, once) and runs one case after another on request, sending each case's records back.
Before each adapter run it says which (case, framework) starts. When the child dies, that framework
gets an `error` on that case, and a freshly forked child runs the same case without it and goes on.
`gradconf run` sends it every case; `gradconf shrink` one candidate after another.
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


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _serve(runner: Runner, finish: Callable[[], dict] | None, conn) -> None:
    """The child: ("case", case, framework names) -> that case's records; ("finish",) -> finish(); None: exit."""
    runner.on_adapter_start = lambda case, adapter: conn.send(("start", case.id, adapter.name))
    for kind, *args in iter(conn.recv, None):
        if kind == "finish":
            conn.send(("done", finish()))
        else:
            case, names = args
            conn.send(("done", runner.run_case(case, [fw for fw in runner.frameworks if fw.name in names]).records))


class IsolatedRunner:
    """`runner.run_case`, one case at a time, in a long-lived forked child: a child that dies costs the
    case it was running an `error` on the framework that was running, the case's other frameworks run
    in a fresh child, and the next case goes on there. `finish`: see finish()."""

    def __init__(self, runner: Runner, finish: Callable[[], dict] | None = None):
        self.runner, self.reference, self.frameworks, self._finish = runner, runner.reference, runner.frameworks, finish
        self._child = self._conn = None

    def _ask(self, request):
        """The child's answer, and the (case id, framework) it last announced; ("died", exit code) if it died."""
        if self._child is None:
            context = multiprocessing.get_context("fork")
            self._conn, theirs = context.Pipe()
            sys.stdout.flush()  # or the child, which flushes its copy of the buffers on exit, prints them again
            sys.stderr.flush()
            self._child = context.Process(target=_serve, args=(self.runner, self._finish, theirs), daemon=True)
            self._child.start()
            theirs.close()
        running = None
        try:
            self._conn.send(request)
            while (message := self._conn.recv())[0] == "start":
                running = message[1:]
            return message, running
        except (EOFError, BrokenPipeError):  # the child died
            self._child.join()
            exitcode = self._child.exitcode
            self._conn.close()
            self._child = self._conn = None
            return ("died", exitcode), running
        except BaseException:  # Ctrl-C: stop the child too
            self.close(terminate=True)
            raise

    def run_case(self, case, frameworks: list | None = None) -> CaseResult:
        """As Runner.run_case: `frameworks`, a subset of the runner's, or all of them."""
        names = [fw.name for fw in (self.frameworks if frameworks is None else frameworks)]
        records: list[Record] = []
        while True:
            (kind, answer), running = self._ask(("case", case, names))
            if kind == "done":
                return CaseResult(case, records + answer)
            framework = running[1] if running and running[0] == case.id else None
            why = (f"the process died ({_death(answer)}) while {framework or 'gradconf'} ran this case; "
                   f"gradconf went on in a fresh process")
            if framework is None or framework == self.reference.name:  # nothing to compare against: the case is lost
                lost = dict.fromkeys([self.reference.name, *names])
                notes = [_note(case, n, "error", why, self.reference.name) for n in lost]
                return Runner.apply_xfail(case, CaseResult(case, records + notes))
            records += Runner.apply_xfail(case, CaseResult(case, [_note(case, framework, "error", why,
                                                                        self.reference.name)])).records
            names.remove(framework)  # the same case again, without the framework that died on it

    def finish(self) -> dict | None:
        """`finish()` run in the child, where the frameworks are loaded (their versions, say); None if that
        kills it."""
        (kind, answer), _ = self._ask(("finish",))
        return answer if kind == "done" else None

    def close(self, terminate: bool = False) -> None:
        if self._child is not None:
            if terminate:
                self._child.terminate()
            else:
                self._conn.send(None)
            self._child.join()
            self._conn.close()
            self._child = self._conn = None


def run_isolated(runner: Runner, cases: list, finish: Callable[[], dict],
                 on_case: Callable[[object], None] = lambda case: None) -> tuple[list[Record], dict]:
    """Every case's records, in case order, and what `finish()` returned in the child after the last case
    ({} if that killed it)."""
    child = IsolatedRunner(runner, finish)
    try:
        records: list[Record] = []
        for case in cases:
            records += child.run_case(case).records
            on_case(case)
        return records, child.finish() or {}
    finally:
        child.close()
