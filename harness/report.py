"""Reports from records (SPEC §3): results.json, results.csv, report.md, report.html and its charts; what they
say is harness.summary, how it reads harness.render and harness.charts, and harness.reportset writes them."""
from __future__ import annotations

from collections.abc import Sequence

from . import reportset
from .records import Record
from .reportfiles import CHART_FILES, report_files, results_csv  # noqa: F401 (re-exported)


def now() -> str:
    """UTC, to the second: when a run started."""
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_fingerprint(command: str, reference: str, adapters, started: str | None = None) -> dict:
    """The `run` block of results.json: start time, command, platform, Python, every framework's version,
    and the detected hardware facts."""
    import platform

    from . import __version__
    from .hardware import detect
    versions = {}
    for a in adapters:
        try:
            versions[a.name] = a.version() if not a.missing() else f"not available ({a.missing()})"
        except Exception as e:  # a version lookup must not stop the run
            versions[a.name] = f"unknown ({type(e).__name__})"
    return {"started": started or now(), "command": command,
            "gradconf": __version__, "platform": platform.platform(), "python": platform.python_version(),
            "reference": reference, "frameworks": versions,
            # the facts hardware-dependent xfail marks were decided on (harness/divergences.py)
            "hardware": {**detect().to_dict(), "described": detect().describe()}}


def check_out_dir(out_dir: str, need: int = 0) -> str | None:
    """Why reports cannot be written to `out_dir`, or None (harness.reportset, which writes them)."""
    return reportset.check_out_dir(out_dir, need)


def write_reports(records: Sequence[Record], run: dict, out_dir: str) -> list[str]:
    """The report set of `records` in `out_dir`, replacing the one there whole or not at all (harness.reportset)."""
    return reportset.write_set(records, run, out_dir)
