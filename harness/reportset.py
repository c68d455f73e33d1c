"""The report folder (`--out DIR`, SPEC §3): report sets replaced whole, records streamed as they come.

    DIR/.runs/<run id>/results.jsonl   the records, streamed while the run goes (JSON Lines)
    DIR/.runs/<run id>/results.json, results.csv, report.md, report.html   written at its end
    DIR/latest -> .runs/<run id>       switched in one rename once a set is complete
    DIR/results.json -> latest/results.json, and so on for each file of the set

Each run writes into a folder of its own, so two runs into one DIR never write the same file; a set is
published by replacing one symlink, so `DIR/latest/` is always one run's complete set, and a run that is
killed, or whose disk fills up, leaves the previous set in place. The stream holds every finished
case's records (one line each, flushed per case): `gradconf report DIR` turns what a killed run
streamed into a report set. The newest KEEP run folders are kept; older ones go, unless a running
gradconf holds them (a lock on the stream).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence

from . import files
from .records import Record
from .reportfiles import record_json

try:
    import fcntl
except ImportError:  # Windows: no locks, so pruning cannot tell a running run's folder (rare: KEEP newer ones)
    fcntl = None

RUNS, LATEST, STREAM = ".runs", "latest", "results.jsonl"
NAMES = ("results.json", "results.csv", "report.md", "report.html", "report-ratios.svg", "report-ratios.png",
         "report-heatmap.svg", "report-heatmap.png")  # harness.reportfiles.report_files writes each of them
KEEP = 2  # the set shown and one more (a killed run's stream, say); a full run's set is ~50 MB
PER_CELL_BYTES = 32 << 10  # a (case, framework)'s share of a report set and its stream, with room (README)
BASE_BYTES = 1 << 20


def expected_bytes(cells: int) -> int:
    """About what a report set of `cells` (case, framework) pairs takes, with its stream."""
    return BASE_BYTES + cells * PER_CELL_BYTES


def check_out_dir(out_dir: str, need: int = 0) -> str | None:
    """Why a report set cannot be written to `out_dir` (created if missing), or None: asked before a run,
    so that a long run never ends in a lost report. `need`: the bytes it should have free."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        return f"cannot write reports to {out_dir}: it is a file, not a folder"
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".probe-{secrets.token_hex(6)}")
        with files.create_new(probe):
            pass
        os.unlink(probe)
        free = shutil.disk_usage(out_dir).free  # what an unprivileged user may still write
    except OSError as e:
        return f"cannot write reports to {out_dir}: {e.strerror or e}"
    if free < need:
        return (f"cannot write reports to {out_dir}: {free / 2**20:.1f} MB free, and a report of this run takes "
                f"about {need / 2**20:.1f} MB")
    return None


def render(records: Sequence[Record], run: dict) -> dict[str, str | bytes]:
    """The report set's files, by name."""
    from .reportfiles import report_files  # when a set is written: it imports the summary and the renderer
    return report_files(records, run)


class RunFolder:
    """One run's folder under DIR/.runs/: its stream while it runs, its report set at the end."""

    def __init__(self, out_dir: str, path: str, stream=None):
        self.out_dir, self.path, self._stream = out_dir, path, stream

    @classmethod
    def create(cls, out_dir: str) -> "RunFolder":
        """A new, empty run folder, its stream open and locked (so that no other run prunes it)."""
        runs = os.path.join(out_dir, RUNS)
        os.makedirs(runs, exist_ok=True)
        if os.path.islink(runs):  # not ours: run folders stay inside DIR
            raise OSError(f"{runs} is a symlink; gradconf writes its run folders only inside {out_dir}")
        now = time.time()  # names sort as the runs started (to the microsecond), which prune() relies on
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        path = os.path.join(runs, f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}")
        os.mkdir(path)
        stream = files.create_new(os.path.join(path, STREAM))
        try:
            if fcntl is not None:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks (some network mounts): run unlocked
            pass
        return cls(out_dir, path, stream)

    @property
    def stream_path(self) -> str:
        return os.path.join(self.path, STREAM)

    def _write(self, *entries: dict) -> None:
        self._write_lines(*(json.dumps(e, separators=(",", ":")) for e in entries))

    def _write_lines(self, *lines: str) -> None:
        """One write, flushed: a signal lands before or after a case's lines, not among them."""
        self._stream.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self._stream.flush()

    def begin(self, run: dict, planned: Sequence[str]) -> None:
        """The stream's first line: the run as known at its start, and the ids of every case it will run."""
        self._write({"run": run, "planned": list(planned)})

    def add(self, case_id: str, records: Sequence[Record], partial: bool = False) -> None:
        """One finished case: its records, then a line saying the case is complete (`partial`: the
        finished frameworks of a case that was interrupted). Raises OSError (a full disk) with the
        stream still holding every case before it."""
        lines = [f'{{"record":{record_json(r)}}}' for r in records]
        self._write_lines(*lines, json.dumps({"partial" if partial else "case": case_id}))

    def finish(self, records: Sequence[Record], run: dict) -> list[str]:
        """Write the report set here, then switch DIR to it. Returns the paths under DIR."""
        if self._stream is not None:
            self._write({"end": run})
        for name, content in render(records, run).items():
            with files.create_new(os.path.join(self.path, name)) as fh:
                fh.write(content if isinstance(content, bytes) else content.encode("utf-8"))
        return publish(self.out_dir, self.path)

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.close()  # and with it the lock
            except OSError:  # a full disk: what did not fit is lost either way
                pass


def publish(out_dir: str, run_path: str) -> list[str]:
    """Make `run_path` (a complete set under DIR/.runs) what DIR shows, in one rename; prune old runs."""
    target = os.path.relpath(run_path, out_dir)
    try:
        for name in (*NAMES, STREAM):  # once per DIR (the first run, or one left by an older gradconf)
            link = os.path.join(out_dir, name)
            if not (os.path.islink(link) and os.readlink(link) == os.path.join(LATEST, name)):
                _replace_link(link, os.path.join(LATEST, name))
        _replace_link(os.path.join(out_dir, LATEST), target)  # the switch
    except NotImplementedError:  # no symlinks on this file system: per-file atomic copies, as before
        for name in NAMES:
            with open(os.path.join(run_path, name), "rb") as fh:
                files.write_atomic(os.path.join(out_dir, name), fh.read())
    prune(out_dir, keep={os.path.basename(run_path)})
    return [os.path.join(out_dir, name) for name in NAMES]


def _replace_link(path: str, target: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".tmp-{secrets.token_hex(6)}-link")
    try:
        os.symlink(target, tmp)
    except OSError as e:
        if e.errno in (1, 38, 95):  # EPERM, ENOSYS, EOPNOTSUPP: the file system has no symlinks
            raise NotImplementedError from e
        raise
    try:
        os.replace(tmp, path)  # replaces a link or file at `path`; never follows one
    except BaseException:
        os.unlink(tmp)
        raise


def write_set(records: Sequence[Record], run: dict, out_dir: str) -> list[str]:
    """A whole report set, without a stream (the pytest plugin, benchmarks)."""
    os.makedirs(out_dir, exist_ok=True)
    folder = RunFolder.create(out_dir)
    try:
        return folder.finish(records, run)
    finally:
        folder.close()


def prune(out_dir: str, keep: set[str] = frozenset()) -> None:
    """Remove run folders beyond the newest KEEP, except those in `keep` and those a running gradconf
    holds."""
    runs = os.path.join(out_dir, RUNS)
    try:
        names = sorted(os.listdir(runs), reverse=True)
    except OSError:
        return
    try:  # what DIR shows now stays, whatever is newer
        keep = {*keep, os.path.basename(os.readlink(os.path.join(out_dir, LATEST)))}
    except OSError:
        pass
    for name in names[KEEP:]:
        path = os.path.join(runs, name)
        if name in keep or os.path.islink(path) or not os.path.isdir(path) or _held(path):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _held(run_path: str) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(os.path.join(run_path, STREAM), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------- `gradconf report DIR`

def newest_stream(path: str) -> str | None:
    """The run folder to rebuild: `path` itself if it holds a stream, else DIR's newest run folder with one."""
    if os.path.isfile(os.path.join(path, STREAM)) and not os.path.islink(os.path.join(path, STREAM)):
        return path
    runs = os.path.join(path, RUNS)
    try:
        names = sorted(os.listdir(runs), reverse=True)
    except OSError:
        return None
    return next((os.path.join(runs, n) for n in names if os.path.isfile(os.path.join(runs, n, STREAM))), None)


def read_stream(run_path: str) -> tuple[list[Record], dict]:
    """Every complete case's records and the run block. A run that did not reach its end (killed) is
    marked interrupted, with the number of cases it did not finish; a half-written last line is dropped."""
    run, planned, done, pending, records = {}, [], set(), [], []
    ended = None
    with open(os.path.join(run_path, STREAM), "rb") as fh:
        for raw in fh:
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
                if "record" in entry:
                    record = Record(**{k: entry["record"].get(k) for k in Record.__dataclass_fields__})
            except (ValueError, TypeError, AttributeError):
                break  # a line cut off where the writer was killed, or not ours: nothing after it counts
            if "run" in entry:
                run = entry["run"] if isinstance(entry["run"], dict) else {}
                planned = entry.get("planned") if isinstance(entry.get("planned"), list) else []
            elif "record" in entry:
                pending.append(record)
            elif "case" in entry or "partial" in entry:
                if "case" in entry:
                    done.add(entry["case"])
                records += pending
                pending = []
            elif "end" in entry and isinstance(entry["end"], dict):
                ended = entry["end"]
    if ended is not None:
        return records, ended
    not_run = sum(1 for c in planned if c not in done)
    run = {**run, "interrupted": {"why": "the run ended before it wrote its reports (killed?); rebuilt from its "
                                         "stream by `gradconf report`", "cases_run": len(done),
                                  "cases_not_run": not_run}}
    return records, run


def rebuild(run_path: str) -> tuple[list[Record], dict, list[str]]:
    """`gradconf report`: the report set of a run folder, rebuilt from its stream and published."""
    records, run = read_stream(run_path)
    for name, text in render(records, run).items():
        files.write_atomic(os.path.join(run_path, name), text)
    out_dir = os.path.dirname(os.path.dirname(os.path.abspath(run_path)))
    if os.path.basename(os.path.dirname(os.path.abspath(run_path))) != RUNS:  # a folder outside a DIR/.runs
        return records, run, [os.path.join(run_path, name) for name in NAMES]
    return records, run, publish(out_dir, run_path)
