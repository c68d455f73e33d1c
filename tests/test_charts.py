"""The report's charts show the records: every (case, framework) a point at its worst error/allowance, the
allowance line at 1, and a heat-map cell per group and framework with its failures."""
import io
import math
import re

import pytest

from gradconf.adapters.numpy_ref import NumpyReference
from gradconf import charts
from gradconf.loader import load_paths
from gradconf.runner import Runner
from gradconf.summary import summarize_records
from tests.planted import Copy, WrongTanhDerivative


@pytest.fixture(scope="module")
def records():
    cases, errors = load_paths(["cases/layers", "cases/families/nets.yaml", "cases/families/pool2d.yaml"], 3)
    assert not errors
    runner = Runner(NumpyReference(), [Copy(), WrongTanhDerivative()])
    return [r for c in cases for r in runner.run_case(c).records]


def _expected(records):
    """Independently of harness.summary: per framework, each case's worst ratio and whether it fails."""
    worst, failing = {}, {}
    for r in records:
        if r.ratio is not None:
            key = (r.framework, r.case)
            worst[key] = max(worst.get(key, 0.0), r.ratio)
        if r.status in ("fail", "error", "xpass"):
            failing.setdefault(r.framework, set()).add(r.case)
    return worst, failing


def test_ratio_chart_has_a_point_per_case_and_framework_at_its_worst_ratio(records):
    worst, failing = _expected(records)
    fig = charts.ratio_figure(summarize_records(records))
    (ax,) = fig.axes
    drawn = {}
    for col in ax.collections:
        fw = re.match(r"points-(.+)-(\w+)$", col.get_gid()).group(1)
        drawn.setdefault(fw, []).extend(y for _, y in col.get_offsets())
    for fw in ("numpy", "copy", "wrong_tanh"):
        mine = [v for (f, _), v in worst.items() if f == fw]
        assert len(drawn[fw]) == len(mine)
        assert max(drawn[fw]) == pytest.approx(max(max(mine), charts.FLOOR))
        assert sum(y > 1.0 for y in drawn[fw]) == len(failing.get(fw, ()))
    assert len(failing["wrong_tanh"]) >= 5 and not failing.get("copy")
    assert ax.get_yscale() == "log" and ax.get_ylim()[1] > max(worst.values())
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "allowance"]
    assert set(line.get_ydata()) == {1.0}
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[2] == f"wrong_tanh\n{sum(f == 'wrong_tanh' for f, _ in worst)} cases, " \
                        f"{len(failing['wrong_tanh'])} failing"


def test_seven_framework_columns_label_in_short_lines(records):
    """`make run`'s seven frameworks in a 6.6-inch chart: "keras-tensorflow" and "N cases, M failing" on one
    line each ran into the next column (seen in the report of a full run)."""
    import dataclasses
    renamed = [dataclasses.replace(r, framework=f"keras-{r.framework}{i}") for i in range(3) for r in records
               if r.framework == "copy"]
    s = summarize_records(records + renamed)
    (ax,) = charts.ratio_figure(s).axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 6 and labels[2].startswith("keras-\ncopy0\n") and labels[2].endswith(" cases\n0 failing")
    heat = charts.heatmap_figure(s).axes[0]
    assert "keras-\ncopy2" in [t.get_text() for t in heat.get_xticklabels()]


def test_heatmap_cells_count_failures_per_group_and_framework(records):
    s = summarize_records(records)
    fig = charts.heatmap_figure(s)
    ax = fig.axes[0]
    groups = [t.get_text() for t in ax.get_yticklabels()]
    frameworks = [t.get_text() for t in ax.get_xticklabels()]
    cells = {(groups[round(t.get_position()[1])], frameworks[round(t.get_position()[0])]): t.get_text()
             for t in ax.texts}
    _, failing = _expected(records)
    for (group, fw), text in cells.items():
        mine = {r.case for r in records if r.framework == fw and (r.family or "") == group.rstrip("/")
                or r.framework == fw and not r.family and group == "layers/"}
        bad = len(mine & failing.get(fw, set()))
        assert text == (f"{bad}/{len(mine)} fail" if bad else f"{len(mine)}/{len(mine)}" if mine else ""), (group, fw)
    assert cells[("layers/", "wrong_tanh")].endswith("fail") and cells[("layers/", "copy")] == "40/40"
    values = ax.images[0].get_array()
    worst_tanh = max(r.ratio for r in records if r.framework == "wrong_tanh" and r.ratio is not None)
    assert math.isclose(10 ** values.max(), worst_tanh, rel_tol=1e-9)


def test_charts_are_svg_and_png_files(records):
    out = charts.charts(summarize_records(records))
    assert set(out) == {"ratios", "heatmap"}
    for files in out.values():
        assert files["svg"].lstrip().startswith(b"<?xml") and b"<svg" in files["svg"]
        assert files["png"].startswith(b"\x89PNG")
        from matplotlib.image import imread
        assert imread(io.BytesIO(files["png"])).shape[1] == charts.WIDTH_IN * charts.DPI
