"""The report's two pictures, drawn with matplotlib (imported here only, when a report with charts is written).

- `ratio_figure`: per framework, every case's worst error as a multiple of its allowance, on a log
  scale, with the allowance (1×) drawn: who diverges, and by how much, at a glance.
- `heatmap_figure`: group (family, or folder of single cases) × framework, coloured by the worst
  error/allowance, each cell labelled with its failures.
- `layer_figure`: a failing case's per-layer error profile (harness.localise): each layer's forward output
  and output gradient as a multiple of its allowance, in graph order — where the departure starts.

Figures are built with `matplotlib.figure.Figure` (no pyplot: no global state, no GUI backend).
"""
from __future__ import annotations

import io
import math

from .summary import FAILING, Summary
from .records import Status

FLOOR = 1e-6     # an exact match (ratio 0) is drawn here, on the log axis
MAX_GROUPS = 24  # heat-map rows; the groups with the worst ratios are kept
STATUS_COLOURS = {Status.PASS: "#2d9a4b", Status.XFAIL: "#d99a00", Status.FAIL: "#d7263d", Status.XPASS: "#e8702a",
                  Status.ERROR: "#7b1e3b"}
WIDTH_IN, HEIGHT_IN, DPI = 6.6, 3.3, 100
ROOMY = 4  # up to this many framework columns, a label fits on one line at 8 pt; more get short lines (_wrapped)


def ratio_points(summary: Summary) -> dict[str, list[tuple[float, str]]]:
    """framework -> (worst error/allowance, status) for every case it compared; the chart's data."""
    points: dict[str, list[tuple[float, str]]] = {fw: [] for fw in summary.frameworks}
    for c in summary.cases:
        for fw, r in c.ratio.items():
            if r is not None:
                points[fw].append((r, c.status[fw]))
    return {fw: p for fw, p in points.items() if p}


def heat_cells(summary: Summary) -> tuple[list[str], list[str], dict]:
    """(groups, frameworks, {(group, framework): FamilyRow}) for the heat map, worst groups first."""
    rows = {(f.group, f.framework): f for f in summary.families()}
    worst = {}
    for (g, _), f in rows.items():
        worst[g] = max(worst.get(g, -1.0), f.worst_judged if f.worst_judged is not None else -1.0,
                       math.inf if f.failed else -1.0)
    groups = sorted(worst, key=lambda g: (-worst[g], g))[:MAX_GROUPS]
    frameworks = [fw for fw in summary.frameworks if any((g, fw) in rows for g in groups)]
    return groups, frameworks, rows


def _figure(height_in: float = HEIGHT_IN):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def ratio_figure(summary: Summary):
    points = ratio_points(summary)
    fig = _figure()
    ax = fig.add_subplot()
    top = FLOOR
    for i, (fw, pts) in enumerate(points.items()):
        for status in (Status.PASS, Status.XFAIL, Status.XPASS, Status.FAIL, Status.ERROR):
            ys = [max(r, FLOOR) for r, s in pts if s == status]
            if not ys:
                continue
            # Deterministic spread across the column (golden-ratio sequence): the same report every run.
            xs = [i + 0.6 * (((k + 1) * 0.6180339887) % 1.0 - 0.5) for k in range(len(ys))]
            ax.scatter(xs, ys, s=9, color=STATUS_COLOURS[status], alpha=0.7, linewidths=0,
                       label=status, gid=f"points-{fw}-{status}", rasterized=len(ys) > 2000)
            top = max(top, *ys)
    ax.set_yscale("log")
    ax.set_ylim(FLOOR / 2, max(10.0, top * 3))
    ax.axhline(1.0, color="#d7263d", linestyle="--", linewidth=1.2, gid="allowance")
    ax.text(-0.45, 1.15, "allowance (1×)", color="#d7263d", ha="left", va="bottom", fontsize=8)
    labels = []
    for fw, pts in points.items():
        failing = sum(s in FAILING for _, s in pts)
        labels.append(f"{fw}\n{len(pts)} cases, {failing} failing" if len(points) <= ROOMY else
                      f"{_wrapped(fw)}\n{len(pts)} cases\n{failing} failing")
    ax.set_xticks(range(len(points)), labels, fontsize=8 if len(points) <= ROOMY else 7)
    ax.set_xlim(-0.5, max(len(points), 1) - 0.5)
    ax.set_ylabel("worst error / allowance (log)", fontsize=8)
    ticks = [t for t in ax.get_yticks() if FLOOR <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks, [f"≤1e{round(math.log10(t))}" if t == FLOOR else f"1e{round(math.log10(t))}" for t in ticks])
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", which="major", color="#eeeeee")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", ncols=len(unique), frameon=False)
    return fig


def heatmap_figure(summary: Summary):
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle
    groups, frameworks, rows = heat_cells(summary)
    fig = _figure(min(HEIGHT_IN * 1.2, max(HEIGHT_IN, 0.9 + 0.16 * len(groups))))  # stays above the fold
    ax = fig.add_subplot()
    values = np.full((len(groups), len(frameworks)), np.nan)
    for (i, g) in enumerate(groups):
        for j, fw in enumerate(frameworks):
            f = rows.get((g, fw))
            if f is not None and f.worst_judged is not None:
                values[i, j] = math.log10(max(f.worst_judged, FLOOR))
    cmap = _cmap()
    image = ax.imshow(values, cmap=cmap, norm=TwoSlopeNorm(vmin=math.log10(FLOOR), vcenter=0.0, vmax=3.0),
                      aspect="auto", gid="heatmap")
    for (i, g) in enumerate(groups):
        for j, fw in enumerate(frameworks):
            f = rows.get((g, fw))
            text = "" if f is None else (f"{f.failed}/{f.variants} fail" if f.failed else
                                         f"{f.xfail} xfail" if f.xfail else f"{f.passed}/{f.variants}")
            if f is not None and f.xfail and not f.failed:  # nothing wrong but known divergences: amber, not red
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color=STATUS_COLOURS[Status.XFAIL], alpha=0.35,
                                       linewidth=0))
            ax.text(j, i, text, ha="center", va="center", fontsize=7 if len(groups) <= 16 else 6, color="black")
    roomy = len(frameworks) <= ROOMY
    ax.set_xticks(range(len(frameworks)), frameworks if roomy else map(_wrapped, frameworks), fontsize=8 if roomy else 7)
    ax.set_yticks(range(len(groups)), groups, fontsize=7 if len(groups) <= 16 else 6)
    ax.xaxis.tick_top()
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("log10 worst error/allowance", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def _wrapped(framework: str) -> str:
    """keras-tensorflow as two lines: seven columns of a 6.6-inch chart leave about 45 pixels each."""
    return framework.replace("keras-", "keras-\n")


def _cmap():
    from matplotlib.colors import LinearSegmentedColormap
    colours = ["#e6f4ea", "#b7e1c1", "#fff3b0", "#f4a259", "#d7263d"]
    return LinearSegmentedColormap.from_list("gradconf", colours).with_extremes(bad="#f2f2f2")  # grey: nothing compared


def render(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def _empty(what: str):
    fig = _figure()
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, what, ha="center", va="center", fontsize=10, color="#777777")
    return fig


def charts(summary: Summary) -> dict[str, dict[str, bytes]]:
    """name -> {"svg": ..., "png": ...}: both charts, always (a report set has a fixed list of files)."""
    out = {"ratios": ratio_figure(summary) if ratio_points(summary) else _empty("no comparisons in this run"),
           "heatmap": heatmap_figure(summary) if summary.families() else _empty("no records in this run")}
    return {name: both_formats(fig) for name, fig in out.items()}


def both_formats(fig) -> dict[str, bytes]:
    """SVG, then PNG from the positions the SVG's constrained layout found: that layout is most of a
    savefig's time (it measures every label), and running it again for the PNG moved nothing visible."""
    svg = render(fig, "svg")
    fig.set_layout_engine("none")
    return {"svg": svg, "png": render(fig, "png")}


MAX_PROFILES = 20  # failing (case, framework) pairs whose layer profile the HTML report draws


def layer_figure(layers: list, framework: str):
    """A record's `layers` profile: [name, type, forward ratio, output-gradient ratio] per layer."""
    fig = _figure(1.9)
    fig.set_size_inches(min(WIDTH_IN, 1.6 + 0.45 * len(layers)), 1.9)  # narrow for a short net
    ax = fig.add_subplot()
    xs = range(len(layers))
    for offset, column, label, colour in ((-0.17, 2, "forward output", "#3b6fb6"),
                                          (0.17, 3, "output gradient", "#d7263d")):
        values = [FLOOR if row[column] is None else max(min(row[column], 1e12), FLOOR) for row in layers]
        ax.bar([x + offset for x in xs], values, width=0.34, color=colour, label=label, log=True)
    ax.axhline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    ax.set_xticks(list(xs), [row[0] for row in layers], fontsize=7, rotation=30, ha="right")
    ax.set_ylim(FLOOR, None)
    ax.set_ylabel(f"{framework}: error /\nallowance", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, loc="upper left", frameon=False, ncols=2)
    return fig


def layer_profiles(summary: Summary) -> dict[tuple[str, str], bytes]:
    """(case, framework) -> SVG of its layer profile, for the first failing cases that have one."""
    out = {}
    for c in summary.failing:
        for fw, r in c.origins.items():
            if len(out) < MAX_PROFILES and r.layers:
                out[(c.case, fw)] = render(layer_figure(r.layers, fw), "svg")
    return out
