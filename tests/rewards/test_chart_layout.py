"""The small SVG line charts: a legend never overlaps the title (training/charts.py's loop charts use them)."""

from __future__ import annotations

import re

from rewards.charts import CHAR_W, Series, line_chart
from training.charts import loop_charts  # noqa: F401  (the loop page's charts are built with line_chart)


def _texts(svg: str) -> list[tuple[float, float, str, str]]:
    return [
        (float(x), float(y), cls, text)
        for x, y, cls, text in re.findall(r'<text x="([\d.]+)" y="([\d.]+)"[^>]*class="([^"]+)">([^<]*)</text>', svg)
    ]


def _overlaps(svg: str) -> bool:
    texts = _texts(svg)
    [(tx, ty, _, title)] = [t for t in texts if t[2] == "chart-title"]
    title_end = tx + CHAR_W * len(title)
    legend = [t for t in texts if "chart-legend" in t[2]]
    return any(y == ty and x - 12 < title_end for x, y, _, _ in legend)


def test_a_long_title_puts_the_legend_on_its_own_line():
    svg = line_chart([Series("policy after each round", [(0, 1.0), (1, 2.0)])], title="mean reward vs KL(π‖π_ref)")
    assert not _overlaps(svg)
    legend_y = {y for _, y, cls, _ in _texts(svg) if "chart-legend" in cls}
    assert legend_y == {34.0}, "below the title line"


def test_a_short_title_keeps_the_legend_beside_it():
    svg = line_chart([Series("loss", [(0, 1.0), (1, 2.0)])], title="update loss")
    assert not _overlaps(svg)
    assert {y for _, y, cls, _ in _texts(svg) if "chart-legend" in cls} == {16.0}


def test_two_series_legend_with_a_long_title_does_not_overlap():
    series = [Series("policy n", [(0, 0.4), (1, 0.6)]), Series("reference policy", [(0, 0.5), (1, 0.5)])]
    assert not _overlaps(line_chart(series, title="win rate against the reference", y_range=(0.0, 1.0)))
