"""Reports from records (SPEC §3): results.json, results.csv, report.md, report.html; harness.reportset writes them."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd
from tabulate import tabulate

from .runner import Record

# Worst first: a (case, framework) cell shows its worst record's status.
SEVERITY = ["error", "fail", "xpass", "xfail", "unsupported", "skipped", "pass"]
COLOURS = {"pass": "#d8f3dc", "fail": "#ffccd5", "error": "#ff8fa3", "xfail": "#fff3b0", "xpass": "#ffd6a5",
           "unsupported": "#e2e2e2", "skipped": "#f0f0f0"}
FAILURE_COLUMNS = ["case", "framework", "reference", "step", "quantity", "tensor", "max_abs_err", "ratio",
                   "worst_index", "actual", "desired", "status", "message", "known"]


def now() -> str:
    """UTC, to the second: when a run started."""
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_fingerprint(command: str, reference: str, adapters, started: str | None = None) -> dict:
    """The `run` block of results.json: start time, command, platform, Python, every framework's version."""
    import platform

    from . import __version__
    versions = {}
    for a in adapters:
        try:
            versions[a.name] = a.version() if not a.missing() else f"not available ({a.missing()})"
        except Exception as e:  # a version lookup must not stop the run
            versions[a.name] = f"unknown ({type(e).__name__})"
    return {"started": started or now(), "command": command,
            "gradconf": __version__, "platform": platform.platform(), "python": platform.python_version(),
            "reference": reference, "frameworks": versions}


def frame(records: Sequence[Record]) -> pd.DataFrame:
    return pd.DataFrame([r.to_dict() for r in records], columns=list(Record.__dataclass_fields__))


def worst(statuses) -> str:
    return min(statuses, key=SEVERITY.index)


def matrix(df: pd.DataFrame) -> pd.DataFrame:
    """case x framework -> worst status."""
    if df.empty:
        return pd.DataFrame()
    m = df.pivot_table(index="case", columns="framework", values="status", aggfunc=worst, sort=False)
    return m.fillna("")


def failures(df: pd.DataFrame) -> pd.DataFrame:
    bad = df[df.status.isin(["fail", "error", "xpass"])]
    return bad[FAILURE_COLUMNS]


def families(df: pd.DataFrame) -> pd.DataFrame:
    """Per family and framework: variants, pass rate, worst error as a multiple of the allowance."""
    fam = df[df.family.notna()]
    if fam.empty:
        return pd.DataFrame()
    per_variant = fam.groupby(["family", "framework", "case"]).agg(status=("status", worst), ratio=("ratio", "max"))
    g = per_variant.groupby(["family", "framework"])
    out = pd.DataFrame({"variants": g.size(),
                        "passed": g.status.apply(lambda s: int((s == "pass").sum())),
                        "xfail": g.status.apply(lambda s: int((s == "xfail").sum())),
                        "failed": g.status.apply(lambda s: int(s.isin(["fail", "error", "xpass"]).sum())),
                        "worst_ratio": g.ratio.max()}).reset_index()
    # As in the exit status, a known divergence (xfail) counts as passed.
    out["pass_rate"] = ((out.passed + out.xfail) / out.variants).map(lambda x: f"{100 * x:.1f}%")
    return out


def verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Who is wrong, per failing case: the one that disagrees with everyone else.

    - every framework matches the reference, and they all miss a golden value: the `expect:` value;
    - some frameworks match the reference and others do not: those others (or their adapters);
    - no framework matches the reference: those frameworks, if the reference meets the case's golden
      values; with one framework compared and no golden values, either; else the reference, or a
      convention of the case;
    and, for a failing framework whose adapter names them, the catalogued divergences the case fits.
    """
    rows = []
    for case, g in df[df.status.isin(["fail", "error", "xpass"])].groupby("case", sort=False):
        everyone = df[df.case == case]
        vs_ref = everyone[everyone.reference.ne("expected") & everyone.quantity.notna()]
        others = sorted(set(vs_ref.framework))
        bad_vs_ref = sorted(set(vs_ref[vs_ref.status.isin(["fail", "error"])].framework))
        found = []
        errors = sorted(set(g[g.quantity.isna()].framework))
        reference_lost = set(errors) == set(everyone.framework) and g[g.quantity.isna()].message.nunique() == 1
        if reference_lost:  # no reference run: the case itself (or the reference) says why
            found.append(f"the case or the reference: {g.message.iloc[0]}")
        elif errors:
            found.append(f"{', '.join(errors)}: adapter error or xpass (see the message)")
        references = set(everyone[everyone.reference.ne("expected")].reference.dropna())
        checked = everyone[(everyone.reference == "expected") & everyone.framework.isin(references)]
        if bad_vs_ref and len(bad_vs_ref) < len(others):
            agree = [f for f in others if f not in bad_vs_ref]
            found.append(f"{', '.join(bad_vs_ref)}: differs from the reference, which {', '.join(agree)} match(es)")
        elif bad_vs_ref and len(checked) and checked.status.eq("pass").all():  # hand-derived values back it
            found.append(f"{', '.join(bad_vs_ref)}: differs from the reference, which meets the case's golden values")
        elif bad_vs_ref and len(others) == 1:
            found.append(f"{others[0]} or the reference: the one framework compared differs from the reference")
        elif bad_vs_ref:
            found.append("the reference or the case: no framework matches the reference")
        known = {fw: k for fw, k in zip(g.framework, g.known) if isinstance(k, str)}
        found += [f"{fw} fits known divergence(s) {k} (docs/divergences.md)" for fw, k in known.items()]
        # Golden values missed by the reference and by every framework that agrees with it.
        agreeing = references | (set(others) - set(bad_vs_ref))
        golden = g[(g.reference == "expected") & g.framework.isin(agreeing)]
        if not golden.empty and set(golden.framework) == agreeing:
            tensors = ", ".join(sorted({f"{q}{' ' + t if isinstance(t, str) else ''}" for q, t in
                                        zip(golden.quantity, golden.tensor)}))
            found.append(f"the golden value ({tensors}): the reference and every framework matching it miss it")
        rows.append({"case": case, "likely wrong": "; ".join(found) or "see the failures"})
    return pd.DataFrame(rows, columns=["case", "likely wrong"])


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """framework x status -> number of (case, framework) cells."""
    if df.empty:
        return pd.DataFrame()
    cells = df.groupby(["case", "framework"]).status.agg(worst).reset_index()
    t = pd.crosstab(cells.framework, cells.status)
    return t[[s for s in SEVERITY[::-1] if s in t.columns]]


def cell_text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame, index: bool = False) -> str:
    if df.empty:
        return "_none_"
    body = df.reset_index() if index else df
    return tabulate([[cell_text(v) for v in row] for row in body.itertuples(index=False)], headers=list(body.columns),
                    tablefmt="github")


def markdown(df: pd.DataFrame, run: dict) -> str:
    fails = failures(df)
    parts = ["# gradconf report", "",
             f"`{run.get('command', '')}` — started {run.get('started', '')}, "
             f"{df.case.nunique() if not df.empty else 0} case(s), {len(df)} record(s).", "",
             "Frameworks: " + ", ".join(f"{k} {v}" for k, v in run.get("frameworks", {}).items()), "",
             "## Summary (worst status per case and framework)", "", _md_table(matrix(df), index=True), "",
             "## Status counts", "", _md_table(counts(df), index=True), ""]
    fam = families(df)
    if not fam.empty:
        parts += ["## Families", "", _md_table(fam), ""]
    if len(fails):
        parts += ["## Who is wrong", "", _md_table(verdicts(df)), ""]
    parts += [f"## Failures ({len(fails)})", "", _md_table(fails), ""]
    return "\n".join(parts)


def _html_table(df: pd.DataFrame, index: bool = False) -> str:
    if df.empty:
        return "<p><em>none</em></p>"
    body = df.reset_index() if index else df
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in body.columns)
    rows = []
    for row in body.itertuples(index=False):
        cells = []
        for v in row:
            text = cell_text(v)
            style = f' style="background:{COLOURS[text]}"' if text in COLOURS else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_page(df: pd.DataFrame, run: dict) -> str:
    fails = failures(df)
    fam = families(df)
    style = ("body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
             "th{background:#f4f4f4;position:sticky;top:0}code{background:#f4f4f4;padding:1px 4px}")
    fw = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in run.get("frameworks", {}).items())
    sections = (["<h2>Who is wrong</h2>", _html_table(verdicts(df))] if len(fails) else []) + [
                f"<h2>Failures ({len(fails)})</h2>", _html_table(fails),
                "<h2>Summary: worst status per case and framework</h2>", _html_table(matrix(df), index=True),
                "<h2>Status counts</h2>", _html_table(counts(df), index=True)]
    if not fam.empty:
        sections += ["<h2>Families</h2>", _html_table(fam)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>gradconf report</title><style>{style}</style>"
            f"</head><body><h1>gradconf report</h1><p><code>{html.escape(run.get('command', ''))}</code> — started "
            f"{html.escape(run.get('started', ''))}. Frameworks: {fw}.</p>{''.join(sections)}</body></html>\n")


def check_out_dir(out_dir: str, need: int = 0) -> str | None:
    """Why reports cannot be written to `out_dir`, or None (harness.reportset, which writes them)."""
    from .reportset import check_out_dir as check
    return check(out_dir, need)


def write_reports(records: Sequence[Record], run: dict, out_dir: str) -> list[str]:
    """The report set of `records` in `out_dir`, replacing the one there whole or not at all (harness.reportset)."""
    from .reportset import write_set
    return write_set(records, run, out_dir)
