"""A Summary as text: the console summary, report.md and report.html. Rendering only, no file writing.

All three use the columns of `summary.FAILURE_COLUMNS` / `FAMILY_COLUMNS`, in that order, and the
frameworks in `Summary.frameworks` order (README, "Reports").
"""
from __future__ import annotations

import shutil
from collections.abc import Mapping

from tabulate import tabulate

from .summary import FAILURE_COLUMNS, FAMILY_COLUMNS, NOT_RUN, PASS_RATE, SEVERITY, Summary, num_text, ratio_text
from .records import Status

COLOURS = {Status.PASS: "#d8f3dc", Status.FAIL: "#ffccd5", Status.ERROR: "#ff8fa3", Status.XFAIL: "#fff3b0",
           Status.XPASS: "#ffd6a5", Status.UNSUPPORTED: "#e2e2e2", Status.SKIPPED: "#f0f0f0", NOT_RUN: "#ffffff"}
DETAIL_COLUMNS = ("status", "framework", "vs", "step", "quantity", "tensor", "shape", "max abs err", "max rel err",
                  "error/allowance", "rtol", "atol", "worst at", "actual", "expected", "message")
MAX_CONSOLE_ROWS = 20
# Past these, a report lists what a person can read and leaves the rest to results.csv / results.json
# (which hold every record): this also keeps building a report linear in the failing cases.
MAX_MD_ROWS = 500       # report.md: failing rows, and who-is-wrong rows
MAX_HTML_CASES = 100    # report.html: failing cases with their records; the rest one line each
MAX_CASE_ROWS = 50      # report.html: failing rows shown per case
MAX_CASE_RECORDS = 200  # report.html: records shown per case


def headline(s: Summary) -> str:
    failing, n = len(s.failing), len(s.cases)
    xfail = sum(1 for c in s.cases for st in c.status.values() if st == Status.XFAIL)
    tail = f"; {xfail:,} known divergence(s) (xfail) count as passed" if xfail else ""
    if not n:
        return "no records"
    if failing:
        return f"{failing:,} of {n:,} case(s) fail: {len(s.rows):,} failing row(s) of {s.records:,} record(s){tail}"
    return f"all {n:,} case(s) pass, {s.records:,} record(s){tail}"


def counts_rows(s: Summary) -> tuple[list[str], list[list]]:
    """(headers, rows): one row per framework, a column per status seen, in SEVERITY order (best first)."""
    statuses = s.statuses_seen()
    counts = s.counts()
    return ["framework", *statuses], [[fw, *(counts[fw][st] for st in statuses)] for fw in s.frameworks]


def detail_cells(r) -> tuple:
    return (r.status, r.framework, r.reference or "", num_text(r.step), r.quantity or "", r.tensor or "",
            "" if r.shape is None else str(list(r.shape)), num_text(r.max_abs_err), num_text(r.max_rel_err),
            ratio_text(r.ratio), num_text(r.rtol), num_text(r.atol),
            "" if r.worst_index is None else str(list(r.worst_index)), num_text(r.actual), num_text(r.desired),
            r.message)


# ---------------------------------------------------------------- console

def console_text(s: Summary, width: int | None = None) -> str:
    """The summary `gradconf run` prints: status counts, families, failing rows (messages wrapped, never cut)
    and who is wrong."""
    width = width or shutil.get_terminal_size((140, 40)).columns
    headers, rows = counts_rows(s)
    out = [tabulate(rows, headers=headers, tablefmt="simple")]
    families = s.families()
    if families and any(f.group != "./" for f in families):
        out += ["", tabulate([f.cells() for f in families], headers=FAMILY_COLUMNS, tablefmt="simple"),
                f"({PASS_RATE})"]
    shown = s.rows[:MAX_CONSOLE_ROWS]
    if shown:
        message_width = max(30, width - 110)
        keep = [FAILURE_COLUMNS.index(c) for c in ("status", "case", "framework", "vs", "step", "quantity",
                                                    "tensor", "error/allowance", "line", "message")]
        table = [[row.cells[i] for i in keep] for row in shown]
        out += ["", f"{len(s.rows)} failing row(s):",
                tabulate(table, headers=[FAILURE_COLUMNS[i] for i in keep], tablefmt="simple",
                         maxcolwidths=[None, 28, None, None, None, None, 16, None, None, message_width])]
        if len(s.rows) > len(shown):
            out.append(f"... and {len(s.rows) - len(shown)} more in the reports")
        verdicts = [[c.case, c.verdict] for c in s.failing[:MAX_CONSOLE_ROWS]]
        out += ["", "Who is wrong:", tabulate(verdicts, headers=["case", "likely wrong"], tablefmt="simple",
                                              maxcolwidths=[30, max(40, width - 34)])]
    return "\n".join(out)


# ---------------------------------------------------------------- markdown

def _md(headers, rows) -> str:
    if not rows:
        return "_none_"
    clean = [[str(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in rows]
    return tabulate(clean, headers=list(headers), tablefmt="github")


def _more(n: int, what: str, where: str = "results.csv") -> list[str]:
    return ["", f"_... and {n - MAX_MD_ROWS} more {what} in {where}._"] if n > MAX_MD_ROWS else []


def markdown(s: Summary, charts: Mapping[str, str] = {}) -> str:
    run = s.run
    parts = ["# gradconf report", "",
             f"`{run.get('command', '')}` — started {run.get('started', '')}, {len(s.cases)} case(s), "
             f"{s.records} record(s).", "",
             "Frameworks: " + ", ".join(f"{k} {v}" for k, v in run.get("frameworks", {}).items()), "",
             f"**{headline(s)}**", "", "## Status counts (cases per framework, at their worst status)", "",
             _md(*counts_rows(s)), ""]
    parts += [f"![{name}]({file})" for name, file in charts.items()] + ([""] if charts else [])
    if s.failing:
        parts += ["## Who is wrong", "", _md(["case", "likely wrong"], [[c.case, c.verdict] for c in
                                                                          s.failing[:MAX_MD_ROWS]]),
                  *_more(len(s.failing), "case(s)", "the HTML report"), ""]
        starts = [[c.case, fw, r.origin] for c in s.failing[:MAX_MD_ROWS] for fw, r in c.origins.items()]
        if starts:
            parts += ["## Where it starts (the first layer that departs, step 1)", "",
                      _md(["case", "framework", "where"], starts), ""]
    rows = s.rows
    parts += [f"## Failures ({len(rows)} row(s) in {len(s.failing)} case(s))", "",
              _md(FAILURE_COLUMNS, [r.cells for r in rows[:MAX_MD_ROWS]]), *_more(len(rows), "row(s)"), ""]
    families = s.families()
    if families:
        parts += ["## Families and groups", "", f"_{PASS_RATE}._", "", _md(FAMILY_COLUMNS, [f.cells() for f in families]),
                  ""]
    parts += ["## Summary (worst status per case and framework)", "",
              _md(["case", *s.frameworks], [[c.case, *(c.status.get(fw, NOT_RUN) for fw in s.frameworks)]
                                            for c in s.cases]), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- html

def _environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("gradconf", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals.update(colours=COLOURS, not_run=NOT_RUN)
    return env


def _inline_svg(svg: bytes) -> str:
    """matplotlib's SVG without its XML prolog and DOCTYPE, so that it can sit inside the page."""
    text = svg.decode("utf-8")
    return text[text.index("<svg"):]


def html_page(s: Summary, charts: Mapping[str, Mapping[str, bytes]] = {}, profiles: Mapping = {}) -> str:
    """`profiles`: (case, framework) -> SVG of a failing case's layer profile (charts.layer_profiles)."""
    from markupsafe import Markup
    headers, rows = counts_rows(s)
    return _environment().get_template("report.html.j2").render(
        s=s, run=s.run, headline=headline(s), counts_headers=headers, counts_rows=rows,
        failure_columns=FAILURE_COLUMNS, detail_columns=DETAIL_COLUMNS, detail_cells=detail_cells,
        family_columns=FAMILY_COLUMNS, families=s.families(), pass_rate=PASS_RATE, severity=SEVERITY,
        known=[] if s.failing else s.known_divergences(), max_cases=MAX_HTML_CASES, max_rows=MAX_CASE_ROWS, max_records=MAX_CASE_RECORDS,
        charts={name: Markup(_inline_svg(files["svg"])) for name, files in charts.items()},
        profiles={key: Markup(_inline_svg(svg)) for key, svg in profiles.items()})
