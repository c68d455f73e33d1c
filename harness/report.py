"""Reports from records (SPEC §3): results.json, results.csv, report.md, report.html and its charts; what they
say is harness.summary, how it reads harness.render and harness.charts, and harness.reportset writes them."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from .runner import Record

CHART_FILES = {"ratios": "report-ratios", "heatmap": "report-heatmap"}  # beside report.html, as .svg and .png


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


def _json_safe(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def results_csv(records: Sequence[Record]) -> str:
    """results.csv: every record, one row each, the record's fields as columns (None is empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(Record.__dataclass_fields__)
    writer.writerows([("" if v is None else v) for v in r.to_dict().values()] for r in records)
    return buf.getvalue()


def report_files(records: Sequence[Record], run: dict, charts: bool = True) -> dict[str, str | bytes]:
    """file name -> content of the whole report set (harness.summary builds it once; harness.render writes it
    out; charts come from gradconf.charts, which alone imports matplotlib)."""
    from .render import html_page, markdown
    from .summary import summarize_records
    summary = summarize_records(records, run)
    pictures = {}
    if charts:
        from .charts import charts as draw
        pictures = draw(summary)
    payload = {"run": run, "records": [{k: _json_safe(v) for k, v in r.to_dict().items()} for r in records]}
    files: dict[str, str | bytes] = {
        "results.json": json.dumps(payload, indent=1),
        "results.csv": results_csv(records),
        "report.md": markdown(summary, {name: CHART_FILES[name] + ".svg" for name in pictures}),
        "report.html": html_page(summary, pictures),
    }
    for name, formats in pictures.items():
        files.update({f"{CHART_FILES[name]}.{fmt}": data for fmt, data in formats.items()})
    return files


def check_out_dir(out_dir: str, need: int = 0) -> str | None:
    """Why reports cannot be written to `out_dir`, or None (harness.reportset, which writes them)."""
    from .reportset import check_out_dir as check
    return check(out_dir, need)


def write_reports(records: Sequence[Record], run: dict, out_dir: str) -> list[str]:
    """The report set of `records` in `out_dir`, replacing the one there whole or not at all (harness.reportset)."""
    from .reportset import write_set
    return write_set(records, run, out_dir)
