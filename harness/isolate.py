"""Run cases in a child process, so that a framework that kills its process — a segfault or an abort
in native code, which no `except` can catch — or hangs in it costs the case it was running, not the
whole run.

`Child` is one such process: forked from a process that has not imported any framework yet (that
happens in the child, once), it serves requests one after another and, before each adapter run,
says which (case, framework) starts. Each (case, framework) gets `time_limit` seconds from that
announcement; past it the child is killed. A child never outlives its parent, even one killed with
SIGKILL: it asks the kernel for SIGKILL when its parent goes (Linux), and polls its parent's pid
wherever that is not available. A pool (`-j N`) owns several Children and waits on their
`connection`s together; `IsolatedRunner` owns one and turns a death or a timeout into that
framework's `error` record, then runs the same case's other frameworks in a fresh child.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .deadline import DEFAULT_TIME_LIMIT, TimeLimit, deadline  # per (case, framework); 0 or None: none
from .records import Record, Status, note
from .runner import CaseResult, Runner

_THREADED = ("torch", "tensorflow", "jax")  # their thread pools do not survive a fork once started
_PR_SET_PDEATHSIG = 1                      # linux/prctl.h
_PARENT_POLL_S = 0.5
_EXIT_WAIT_S = 2.0  # how long a child whose pipe closed gets to exit before it is killed
_USE_PRCTL = True  # the tests turn it off to check the poll on its own


def available() -> bool:
    """fork (Linux), from a process that has not loaded a framework yet (the CLI never has; a notebook
    or test calling it may): the child shares the parsed cases and adapters and starts at once."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and not any(name in sys.modules for name in _THREADED))


def death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _die_with_parent(parent: int) -> None:
    """In the child: end when `parent` ends, however it ends."""
    if _USE_PRCTL and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the poll below still catches it
            pass

    def watch():
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl was in place
        os._exit(1)
    threading.Thread(target=watch, name="gradconf-parent-watch", daemon=True).start()


def _child_main(parent: int, serve: Callable, conn, args) -> None:
    _die_with_parent(parent)
    os.setpgid(0, 0)  # a group of its own: killing it takes whatever an adapter started (compile workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group: the parent
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # decides, and stops this child itself
    serve(conn, *args)


@dataclass
class Answer:
    """How a request ended: "done" (`value` is the child's answer), "died" (`value`: its exit code),
    "timeout" (`value`: the limit in seconds) or "broken" (`value`: why its answer could not be read).
    `running`: the (case id, framework) it last announced."""
    kind: str
    value: object
    running: tuple[str, str] | None


class Child:
    """One forked process running `serve(conn, *args)`, asked one request at a time; see the module."""

    def __init__(self, serve: Callable, args: tuple = (), time_limit: float | None = DEFAULT_TIME_LIMIT):
        self.serve, self.args, self.time_limit = serve, args, time_limit or None
        self.process = self.connection = None
        self.running: tuple[str, str] | None = None
        self.deadline: float | None = None
        self.parts: list[tuple] = []  # the ("part", ...) messages of the request in flight, as sent

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, theirs = context.Pipe()
        sys.stdout.flush()  # or the child, which flushes its copy of the buffers on exit, prints them again
        sys.stderr.flush()
        self.process = context.Process(target=_child_main, args=(os.getpid(), self.serve, theirs, self.args),
                                       daemon=True)
        self.process.start()
        theirs.close()
        try:
            os.setpgid(self.process.pid, self.process.pid)  # as the child does: whichever runs first
        except OSError:  # it has already done so, or is gone
            pass

    def send(self, request) -> None:
        """Start a request (starting the process first if there is none)."""
        if self.process is None:
            self.start()
        self.running, self.deadline, self.parts = None, self._clock(), []
        try:
            self.connection.send(request)
        except OSError:  # it died between requests: poll() reads the closed pipe and says so
            pass

    def _clock(self) -> float | None:
        return None if self.time_limit is None else time.monotonic() + self.time_limit

    def poll(self, timeout: float | None = 0.0) -> Answer | None:
        """The answer to the request sent, waiting at most `timeout` seconds (None: until the time limit);
        None if it is still running. A child that dies or runs past its limit is gone afterwards."""
        wait_until = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                now = time.monotonic()
                # past the deadline, unless it answered in time and this process was late reading it
                if self.deadline is not None and now >= self.deadline and not self.connection.poll(0):
                    self.kill()
                    return Answer("timeout", self.time_limit, self.running)
                ends = [t for t in (self.deadline, wait_until) if t is not None]
                if not self.connection.poll(max(0.0, min(ends) - now) if ends else None):
                    if wait_until is not None and time.monotonic() >= wait_until:
                        return None
                    continue
                try:  # a message that starts but never ends must not hang the parent in recv()
                    with deadline(self.time_limit, backstop=False):  # a socket read: SIGALRM stops it
                        kind, *body = self.connection.recv()
                    if kind not in ("start", "part", "done") or (kind == "done" and len(body) != 1):
                        raise ValueError(f"an unexpected message {kind!r:.40}")
                except (EOFError, OSError):
                    raise
                except (Exception, TimeLimit) as e:  # garbage on the pipe (an adapter wrote to its descriptor)
                    self.kill()
                    return Answer("broken", f"{type(e).__name__}: {e}"[:200], self.running)
                if kind == "start":
                    self.running, self.deadline = tuple(body), self._clock()
                    continue
                if kind == "part":  # progress within the request, kept for a caller that is interrupted
                    self.parts.append(tuple(body))
                    continue
                return Answer("done", body[0], self.running)
        except (EOFError, OSError):  # the child died (a closed pipe), or closed its end and lives on
            if not self._exited_within(_EXIT_WAIT_S):
                self.kill()
                return Answer("broken", "it closed its pipe to gradconf", self.running)
            exitcode = self.process.exitcode
            self._forget()
            return Answer("died", exitcode, self.running)
        except BaseException:  # an interrupt (Ctrl-C, SIGTERM): keep what it already sent, stop it too
            self._drain()
            self.kill()
            raise

    def _drain(self, limit: int = 10_000) -> None:
        """Read the "part" messages already waiting on the pipe (a busy parent may lag behind)."""
        try:
            for _ in range(limit):
                if self.connection is None or not self.connection.poll(0):
                    return
                kind, *body = self.connection.recv()
                if kind == "part":
                    self.parts.append(tuple(body))
        except BaseException:  # garbage, a closed pipe, a second signal: what was read is kept
            return

    def ask(self, request) -> Answer:
        self.send(request)
        return self.poll(None)

    def kill(self) -> None:
        """SIGKILL to the child's process group: a child stuck in native code ignores anything gentler,
        and what an adapter started goes with it."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:  # no such group (it never got that far)
                pass
            self.process.kill()  # the child itself, wherever an adapter moved it
            self.process.join()
            self._forget()

    def close(self) -> None:
        """Ask the child to exit; kill it if it does not within a second."""
        if self.process is not None:
            try:
                self.connection.send(None)
            except OSError:
                pass
            self._exited_within(1.0)
            self.kill()

    def _exited_within(self, seconds: float) -> bool:
        """Whether the child exits within `seconds`. Not Process.join(timeout): that trusts a pipe the
        child holds, and a child that closed its descriptors would make it wait for ever."""
        end = time.monotonic() + seconds
        while self.process.exitcode is None:  # waitpid(WNOHANG)
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    def _forget(self) -> None:
        self.connection.close()
        self.process = self.connection = None


def serve_cases(conn, runner: Runner, finish: Callable[[], dict] | None) -> None:
    """A child's loop: ("case", case, framework names) -> that case's records; ("finish",) -> finish();
    None: exit. Announces ("start", case id, framework) before each adapter run, and sends ("part", case
    id, framework, records) as each framework's records are complete."""
    runner.on_adapter_start = lambda case, adapter: conn.send(("start", case.id, adapter.name))
    runner.on_framework_done = lambda case, name, records: conn.send(("part", case.id, name, records))
    for kind, *args in iter(conn.recv, None):
        if kind == "finish":
            conn.send(("done", finish()))
        else:
            case, names = args
            conn.send(("done", runner.run_case(case, [fw for fw in runner.frameworks if fw.name in names]).records))


def lost_to(answer: Answer, framework: str | None) -> str:
    """Why a (case, framework) has no result: its child died or ran past its time limit."""
    who = framework or "gradconf"
    if answer.kind == "timeout":
        return (f"{who} ran this case for more than {answer.value:g} s, the time limit (--timeout); gradconf "
                f"stopped it and went on in a fresh process")
    if answer.kind == "broken":
        return (f"the process broke its pipe to gradconf ({answer.value}) while {who} ran this case; gradconf "
                f"stopped it and went on in a fresh process")
    return f"the process died ({death(answer.value)}) while {who} ran this case; gradconf went on in a fresh process"


class IsolatedRunner:
    """`runner.run_case`, one case at a time, in a long-lived Child: a child that dies or runs past the
    time limit costs the case it was running an `error` on the framework that was running, the case's
    other frameworks run in a fresh child, and the next case goes on there. `finish`: see finish()."""

    def __init__(self, runner: Runner, finish: Callable[[], dict] | None = None,
                 time_limit: float | None = DEFAULT_TIME_LIMIT):
        self.runner, self.reference, self.frameworks = runner, runner.reference, runner.frameworks
        self.child = Child(serve_cases, (runner, finish), time_limit)
        self._lost: list[Record] = []

    def run_case(self, case, frameworks: list | None = None) -> CaseResult:
        """As Runner.run_case: `frameworks`, a subset of the runner's, or all of them."""
        names = [fw.name for fw in (self.frameworks if frameworks is None else frameworks)]
        records = self._lost = []  # error records of the frameworks that died on this case so far
        while True:
            answer = self.child.ask(("case", case, names))
            if answer.kind == "done":
                return CaseResult(case, records + answer.value)
            running = answer.running
            framework = running[1] if running and running[0] == case.id else None
            why = lost_to(answer, framework)
            if framework is None or framework == self.reference.name:  # nothing to compare against: the case is lost
                lost = dict.fromkeys([self.reference.name, *names])
                notes = [note(case, n, Status.ERROR, why, self.reference.name) for n in lost]
                return Runner.apply_xfail(case, CaseResult(case, records + notes), self.runner.platform)
            records += Runner.apply_xfail(case, CaseResult(case, [note(case, framework, Status.ERROR, why,
                                                                        self.reference.name)]),
                                          self.runner.platform).records
            names.remove(framework)  # the same case again, without the framework that died on it

    def partial(self, case) -> list[Record]:
        """After an interrupt: the records of the frameworks that finished `case`, the case in flight."""
        done = [r for case_id, _, records in self.child.parts if case_id == case.id for r in records]
        return Runner.apply_xfail(case, CaseResult(case, self._lost + done)).records

    def finish(self) -> dict | None:
        """`finish()` run in the child, where the frameworks are loaded (their versions, say); None if that
        kills it or takes too long."""
        answer = self.child.ask(("finish",))
        return answer.value if answer.kind == "done" else None

    def close(self) -> None:
        self.child.close()
