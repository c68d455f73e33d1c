"""Keras 3 on each of its backends: the `keras-tensorflow`, `keras-jax` and `keras-torch` frameworks.

The case is built from Keras' own layers (adapters/keras_layers.py), trained with Keras' own losses and
optimizers (adapters/keras_training.py), its gradients taken by the backend's autodiff
(adapters/keras_worker.py). Keras fixes its backend when it is first imported, and gradconf's other
frameworks share the process they run in (the tensorflow row imports Keras on TensorFlow for its
optimizers), so each backend runs in a process of its own: this adapter is a stand-in that sends each
run to its backend's worker (a fresh interpreter, `python -m gradconf.adapters.keras_worker`, started
with KERAS_BACKEND set on first use and kept for the runs after) and returns its Trace.

That fits the harness's child processes as any adapter does: the worker is a child of whichever process
runs the adapter (a `-j` worker's child, the pytest plugin's process, a Dask worker), in its process
group, so gradconf's time limit, which kills that group, takes it too; it dies with its parent; a worker
that dies (a crash in native code) costs the run it was doing an `error` naming how it died, and the
next run starts a fresh one. Records come in the order the runner asks for frameworks, as any adapter's.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time

from gradconf.case import Case

from . import Initial, Tables, Trace, Unsupported, module_missing
from . import keras_layers, keras_training

TABLES = Tables("keras", keras_layers.LAYERS, keras_training.LOSSES, keras_training.OPTIMIZERS)
BACKEND_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_EXIT_WAIT_S = 2.0


class KerasWorkerDied(RuntimeError):
    pass


class Worker:
    """One backend's worker process and its two pipes; owned by the process that started it."""

    def __init__(self, backend: str):
        from multiprocessing.connection import Connection
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        env = {**os.environ, "KERAS_BACKEND": backend}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = subprocess.Popen([sys.executable, "-m", "gradconf.adapters.keras_worker", backend,
                                         str(to_r), str(from_w)], pass_fds=(to_r, from_w), env=env,
                                        stdin=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.send_end, self.recv_end = Connection(to_w, readable=False), Connection(from_r, writable=False)
        self.owner = os.getpid()

    def ask(self, request):
        self.send_end.send(request)
        return self.recv_end.recv()

    def exit_code(self) -> int | None:
        end = time.monotonic() + _EXIT_WAIT_S
        while self.process.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        return self.process.poll()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for end in (self.send_end, self.recv_end):
            end.close()


class KerasAdapter:
    """The stand-in for one backend; see the module."""
    backend = "tensorflow"

    def __init__(self):
        self.name = f"keras-{self.backend}"
        self._worker: Worker | None = None
        self._version: str | None = None

    def __getstate__(self):  # a copy sent to another process starts its own worker
        return {**self.__dict__, "_worker": None}

    def missing(self):
        return module_missing("keras") or module_missing(BACKEND_MODULE[self.backend])

    def version(self):
        if self._version is None:  # asked once: the worker's Keras and backend do not change
            self._version = self._ask(("version",))
        return self._version

    def known_divergences(self, case: Case) -> dict[str, str]:
        """The catalogued divergences (docs/divergences.md) whose conditions `case` meets here: id -> gist."""
        from gradconf.divergences import known
        return known(self.name, case)

    def run(self, case: Case, initial: Initial) -> Trace:
        TABLES.check(case)  # what Keras has no function for is unsupported without starting a worker
        if self.backend == "tensorflow" and case.dtype == "bfloat16":  # as the tensorflow row (README)
            from gradconf.hardware import detect
            blocked = detect().tf_bfloat16_blocked()
            if blocked:
                raise Unsupported(blocked)
        return self._ask(("run", case, initial))

    def _ask(self, request):
        worker = self._worker
        if worker is not None and worker.process.poll() is not None:  # it ended between runs: not this run's fault
            worker.kill()
            worker = None
        if worker is None or worker.owner != os.getpid():  # none yet, or one inherited through fork
            worker = self._worker = Worker(self.backend)
            atexit.register(self.close)  # an orderly end at exit: the worker is reaped (its CPU time counted)
        try:
            kind, value = worker.ask(request)
        except (EOFError, OSError):
            self._worker = None
            code = worker.exit_code()
            worker.kill()
            from gradconf.isolate import death
            raise KerasWorkerDied(f"{self.name}'s worker process died ({death(code)}) during this run; the "
                                  "next run starts a fresh one") from None
        except BaseException:  # a time limit or an interrupt mid-run: the worker's state is unknown
            self._worker = None
            worker.kill()
            raise
        if kind == "unsupported":
            raise Unsupported(value)
        if kind == "error":
            raise RuntimeError(f"{value} (in the {self.name} worker)")
        return value

    def close(self) -> None:
        if self._worker is not None and self._worker.owner == os.getpid():
            try:
                self._worker.send_end.send(None)
            except OSError:
                pass
            if self._worker.exit_code() is None:
                self._worker.kill()
        self._worker = None


class KerasTensorflow(KerasAdapter):
    backend = "tensorflow"


class KerasJax(KerasAdapter):
    backend = "jax"


class KerasTorch(KerasAdapter):
    backend = "torch"
