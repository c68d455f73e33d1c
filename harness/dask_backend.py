"""`gradconf run --scheduler tcp://HOST:PORT` / `--dask local`: the cases on a Dask cluster's workers.

Each case is one dask.distributed task. On a worker it runs in an isolate.IsolatedRunner — the same
long-lived forked child as `gradconf run`, kept by the worker between tasks (one per worker thread and
run), so the frameworks are imported once per worker and a framework that segfaults or hangs costs that
(case, framework) an `error`, exactly as on one machine (time limits, crash isolation: harness.isolate).
A worker process that is lost (killed, its host gone) loses the case it ran: the scheduler runs it again
elsewhere, as many times as its `distributed.scheduler.allowed-failures` says — gradconf's own local
cluster and the README's scheduler command set it to 1, so once — and then that case is one `error`
per framework saying so. Results stream back as cases finish and are yielded in case order, like
harness.pool.Pool, whose interface `ClusterPool` has (harness.session drives both): the records are
those of a local run.

dask is imported here only, and only when a run asks for a cluster (the `dask` extra).
"""
from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from . import isolate
from .records import Status, note
from .runner import CaseResult, Record, Runner

RETRIES = 1  # a lost worker's case runs once more elsewhere (gradconf's LocalCluster; README's scheduler)
# The scheduler settings gradconf's LocalCluster runs with (the README's `dask scheduler` command sets the same):
# a lost worker's case is retried RETRIES time(s), and each worker holds only the case(s) it is running (a
# saturation of 1.0: one case per thread), so that a lost worker takes no queued case down with it.
CLUSTER_CONFIG = {"distributed.scheduler.allowed-failures": RETRIES, "distributed.scheduler.worker-saturation": 1.0}
WINDOW_PER_THREAD = 4  # cases queued per worker thread: enough to keep each busy, not a million futures

# ---------------------------------------------------------------- on a worker

_CACHED: dict[tuple[str, int], object] = {}  # (run token, thread) -> that run's IsolatedRunner (or _InProcess)
_LOCK = threading.Lock()


def _runner(token: str, payload: bytes):
    """This worker thread's runner of run `token`, built on its first case from the pickled
    (runner, finish, time limit): an IsolatedRunner, whose child keeps the frameworks loaded between cases
    (a Runner in this process where no child can be forked: then without time limits)."""
    key = (token, threading.get_ident())  # a child is tied to the thread that forked it (PR_SET_PDEATHSIG)
    with _LOCK:
        found = _CACHED.get(key)
    if found is None:
        import cloudpickle
        import multiprocessing
        # A nanny's worker is a daemonic process, and multiprocessing refuses daemons children lest they be
        # orphaned; isolate's child dies with its parent (PR_SET_PDEATHSIG, or its poll), so let it fork.
        multiprocessing.current_process().daemon = False
        runner, finish, time_limit = cloudpickle.loads(payload)
        found = (isolate.IsolatedRunner(runner, finish, time_limit) if isolate.available()
                 else _InProcess(runner, finish))
        with _LOCK:
            _CACHED[key] = found
    return found


class _InProcess:
    """IsolatedRunner's interface where no child can be forked: the runner in the worker itself."""

    def __init__(self, runner: Runner, finish: Callable[[], dict] | None):
        self.runner, self._finish = runner, finish

    def run_case(self, case) -> CaseResult:
        return self.runner.run_case(case)

    def finish(self) -> dict | None:
        return self._finish() if self._finish else None

    def close(self) -> None:
        pass


def run_case_task(token: str, payload: bytes, case) -> list[Record]:
    return _runner(token, payload).run_case(case).records


def finish_task(token: str, payload: bytes) -> dict | None:
    return _runner(token, payload).finish()


def forget(token: str) -> int:
    """At the run's end, on every worker: stop that run's children. Returns how many there were."""
    with _LOCK:
        mine = [k for k in _CACHED if k[0] == token]
        found = [_CACHED.pop(k) for k in mine]
    for f in found:
        f.close()
    return len(found)


# ---------------------------------------------------------------- on the client

class ClusterUnavailable(Exception):
    """dask is not installed, or no cluster could be reached or started: says which and what to do."""


def _distributed():
    try:
        import cloudpickle  # noqa: F401  (what the run's adapters travel in)
        import distributed
    except ImportError as e:
        raise ClusterUnavailable(f"a Dask run needs dask.distributed ({e.name} is not installed): "
                                 f"pip install 'gradconf[dask]'") from None
    return distributed


def connect(scheduler: str | None, workers: int, timeout: float = 30.0):
    """(client, cluster or None): a Client of the scheduler at `scheduler`, or of a new LocalCluster of
    `workers` worker processes (one thread each) that retries a lost worker's case RETRIES time(s)."""
    distributed = _distributed()
    import dask
    try:
        if scheduler:
            return distributed.Client(scheduler, timeout=timeout, set_as_default=False), None
        with dask.config.set(CLUSTER_CONFIG):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=40)
        return distributed.Client(cluster, set_as_default=False), cluster
    except (OSError, TimeoutError) as e:
        where = f"the scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise ClusterUnavailable(f"cannot reach {where}: {e}") from None


def allowed_failures(client) -> int | None:
    """How many times the scheduler reruns a case whose worker was lost (None: it did not say)."""
    try:
        return int(client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures))
    except Exception:
        return None


class ClusterPool:
    """harness.pool.Pool's interface over a Dask client: run() yields (case, records) in case order,
    `finished` holds what is done and waits for an earlier case, finish() runs on a worker."""

    def __init__(self, runner: Runner, client, cluster=None, finish: Callable[[], dict] | None = None,
                 time_limit: float | None = isolate.DEFAULT_TIME_LIMIT):
        import cloudpickle
        self.runner, self.client, self.cluster = runner, client, cluster
        self.token = uuid.uuid4().hex[:12]
        for adapter in (runner.reference, *runner.frameworks):
            try:  # a class attribute set at import time elsewhere (tests/planted.py names its classes so) must
                vars(adapter).setdefault("name", adapter.name)  # reach a worker that imports only the class
            except TypeError:  # no __dict__ (__slots__): its class says its name
                pass
        # by value: an --adapter defined in a test or a script travels too (its module must import there)
        self.payload = cloudpickle.dumps((runner, finish, time_limit))
        self.finished: dict[int, list[Record]] = {}
        self.retries = allowed_failures(client)
        self._futures: dict = {}  # future -> case index
        self._serial = 0
        if self.retries is not None and self.retries != RETRIES:
            import sys
            print(f"gradconf: this scheduler reruns a lost worker's case {self.retries} time(s) "
                  f"(distributed.scheduler.allowed-failures); gradconf's README starts it with {RETRIES}",
                  file=sys.stderr)

    def threads(self) -> int:
        """The worker threads the cluster has now (at least 1)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:
            return 1

    def run(self, cases: Sequence) -> Iterator[tuple[object, list[Record]]]:
        from distributed import as_completed
        todo = deque(range(len(cases)))
        self.finished.clear()
        done = as_completed(loop=self.client.loop)
        try:
            for _ in range(min(len(todo), WINDOW_PER_THREAD * self.threads())):
                done.add(self._submit(cases, todo.popleft()))
            for index, case in enumerate(cases):
                while index not in self.finished:
                    future = next(done)
                    settled = self._futures.pop(future)
                    self.finished[settled] = self._settle(cases[settled], future)
                    if todo:
                        done.add(self._submit(cases, todo.popleft()))
                yield case, self.finished.pop(index)
        finally:  # stopped early (a signal, the generator closed): nothing more runs on the cluster
            pending = list(self._futures)
            self._futures.clear()
            if pending:
                self.client.cancel(pending, force=True)

    def _submit(self, cases, index: int):
        self._serial += 1  # a key of its own even when run() is called again (gradconf fuzz: batch after batch)
        future = self.client.submit(run_case_task, self.token, self.payload, cases[index], pure=False,
                                    key=f"gradconf-{self.token}-{self._serial}")
        self._futures[future] = index
        return future

    def _settle(self, case, future) -> list[Record]:
        """The case's records; a lost worker's case (after its retry) or a task that failed on the worker
        is an `error` for the reference and every framework, as harness.pool does for a lost case."""
        try:
            return future.result()
        except Exception as e:
            why = self._why(e)
        reference = self.runner.reference.name
        names = dict.fromkeys([reference, *(fw.name for fw in self.runner.frameworks)])
        notes = [note(case, n, Status.ERROR, why, reference) for n in names]
        return Runner.apply_xfail(case, CaseResult(case, notes), self.runner.platform).records

    def _why(self, e: Exception) -> str:
        from distributed.scheduler import KilledWorker
        if isinstance(e, KilledWorker):
            tries = "" if self.retries is None else f" {self.retries + 1} time(s)"
            return (f"the Dask worker running this case was lost{tries} (the scheduler's "
                    f"distributed.scheduler.allowed-failures = {self.retries}); gradconf went on with the other "
                    f"cases")
        return f"the case failed on its Dask worker: {type(e).__name__}: {str(e)[:500]}"

    def in_flight(self, cases) -> list[tuple[object, list[Record]]]:
        """A worker's finished frameworks of a case in flight do not travel back: nothing partial."""
        return []

    def finish(self, timeout: float = 600.0) -> dict | None:
        """The run block's versions, from a worker's child (where the frameworks are loaded)."""
        try:
            return self.client.submit(finish_task, self.token, self.payload, pure=False,
                                      key=f"gradconf-{self.token}-finish").result(timeout=timeout)
        except Exception:
            return None

    def close(self) -> None:
        try:
            self.client.run(forget, self.token)
        except Exception:  # a worker that is gone has no children left (they die with it)
            pass
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
