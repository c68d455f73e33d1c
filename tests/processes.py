"""Running gradconf as a real process and watching its processes, for the reliability tests."""
import json
import os
import shutil
import subprocess
import sys
import time

from tests.conftest import ROOT

EXAMPLES = os.path.join(ROOT, "cases", "examples")
ORDER = ["net_5x5", "net_5x5_delta", "net_5x5_f32", "sum_3x3", "sum_3x3_f32"]  # `hangs` hangs on sum_3x3


def start(*args, env=None, **kw):
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "gradconf", *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(path, proc, seconds=60.0):
    """The pid the hanging adapter wrote to `path`, once it hangs."""
    end = time.monotonic() + seconds
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the adapter never started hanging"
        time.sleep(0.05)
    return int(open(path).read())


PS = shutil.which("ps")  # where a machine has none, /proc says the same


def alive(pid: int) -> bool:
    """Whether `pid` runs, per `ps` (a zombie, dead but not yet reaped by an init that does not reap,
    does not)."""
    if PS is None:
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    p = subprocess.run([PS, "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return p.returncode == 0 and not p.stdout.strip().startswith("Z")


def stray(marker: str) -> list[str]:
    """Every live process whose command line holds `marker` (the run's unique --out folder), per `ps`."""
    if PS is None:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                args = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in args and alive(int(pid)):
                found.append(f"{pid} {args}")
        return found
    p = subprocess.run([PS, "-eo", "pid=,stat=,args="], capture_output=True, text=True)
    return [line for line in p.stdout.splitlines() if marker in line and " Z" not in line[:12]]


def gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def hanging_run(tmp_path, *extra, **popen):
    out, pidfile = tmp_path / "out", tmp_path / "pid"
    proc = start("run", "cases/examples", "--frameworks", "numpy", "--adapter", "tests.planted:Copy",
                 "--adapter", "tests.planted:Hangs", "--out", str(out), "-q", *extra,
                 env={"GRADCONF_TEST_PIDFILE": str(pidfile)}, **popen)
    return proc, out, pidfile


def results(out):
    return json.loads((out / "results.json").read_text())


def reportset_rebuilt(out):
    """The records `gradconf report` would rebuild from the stream of the run DIR shows."""
    from gradconf import reportfiles, reportset
    records, _ = reportset.read_stream(os.path.realpath(out / "latest"))
    return [json.loads(reportfiles.record_json(r)) for r in records]
