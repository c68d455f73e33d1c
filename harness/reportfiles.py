"""The report set's contents (SPEC §3): file name -> text or bytes of results.json, results.csv, report.md,
report.html and its charts. What they say is harness.summary, how it reads harness.render and
harness.charts; harness.reportset writes them."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from .records import Record

CHART_FILES = {"ratios": "report-ratios", "heatmap": "report-heatmap"}  # beside report.html, as .svg and .png


def _json_safe(v):
    """JSON has no inf or NaN: None (also inside a record's `layers` profile)."""
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def record_json(r: Record) -> str:
    """One record as a JSON object. Tried as it is first (json's C encoder); only a record holding an inf or
    NaN, which JSON cannot say, goes through _json_safe (a Python walk over every field, 3x the time)."""
    fields = r.to_dict()
    try:
        return json.dumps(fields, allow_nan=False)
    except ValueError:
        return json.dumps({k: _json_safe(v) for k, v in fields.items()})


def results_csv(records: Sequence[Record]) -> str:
    """results.csv: every record, one row each, the record's fields as columns (None is empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(Record.__dataclass_fields__)
    writer.writerows([("" if v is None else v) for v in r.to_dict().values()] for r in records)
    return buf.getvalue()


def results_json(records: Sequence[Record], run: dict) -> str:
    """results.json: {"run": ..., "records": [...]}, one record per line. Not json.dumps(indent=...): an
    indent sends the whole document through json's pure-Python encoder, 5-10x slower on a large run."""
    lines = map(record_json, records)
    return '{"run": ' + json.dumps(run, indent=1) + ',\n "records": [\n' + ",\n".join(lines) + "\n]}\n"


def report_files(records: Sequence[Record], run: dict, charts: bool = True) -> dict[str, str | bytes]:
    """file name -> content of the whole report set (harness.summary builds it once; harness.render writes it
    out; charts come from gradconf.charts, which alone imports matplotlib)."""
    from .render import html_page, markdown
    from .summary import summarize_records
    summary = summarize_records(records, run)
    pictures, profiles = {}, {}
    if charts:
        from .charts import charts as draw
        from .charts import layer_profiles
        pictures, profiles = draw(summary), layer_profiles(summary)
    files: dict[str, str | bytes] = {
        "results.json": results_json(records, run),
        "results.csv": results_csv(records),
        "report.md": markdown(summary, {name: CHART_FILES[name] + ".svg" for name in pictures}),
        "report.html": html_page(summary, pictures, profiles),
    }
    for name, formats in pictures.items():
        files.update({f"{CHART_FILES[name]}.{fmt}": data for fmt, data in formats.items()})
    return files
