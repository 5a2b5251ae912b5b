"""Server-rendered inline SVG line charts (no JavaScript); every label is HTML-escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed")
CHAR_W = 7  # px per character of a title or legend label, estimated
LEGEND_GAP = 12  # swatch and space before each legend label
TITLE_GAP = 16  # least room between the title's end and the legend


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]  # (x, y); None y values are skipped
    color: str = ""
    x_errors: Sequence[float | None] = ()  # optional ± error of each point's x, drawn as a horizontal bar


def _clean(series: Series, color: str) -> Series:
    errors = list(series.x_errors) + [None] * (len(series.points) - len(series.x_errors))
    kept = [(float(x), float(y), e) for (x, y), e in zip(series.points, errors) if y is not None and math.isfinite(y)]
    return Series(
        series.label,
        [(x, y) for x, y, _ in kept],
        color,
        [float(e) if e is not None and math.isfinite(e) else 0.0 for _, _, e in kept] if series.x_errors else (),
    )


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class _Frame:
    """The plot area in px and the data ranges it maps; ``px``/``py`` turn data into px."""

    left: int
    top: int
    plot_w: int
    plot_h: int
    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.plot_h


def _ranges(clean: Sequence[Series], y_range: tuple[float, float] | None) -> tuple[float, float, float, float]:
    """x0, x1, y0, y1 over every point (and x error bar), widened where a range is empty."""
    xs = [x for s in clean for x, _ in s.points]
    xs += [x + sign * (e or 0.0) for s in clean for (x, _), e in zip(s.points, s.x_errors) for sign in (-1, 1)]
    ys = [y for s in clean for _, y in s.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    return x0, x1, y0, y1


def _axes(frame: _Frame, x_label: str) -> list[str]:
    """Three horizontal grid lines with y ticks, and the x min/max ticks and label."""
    left, plot_w = frame.left, frame.plot_w
    parts = []
    for frac in (0.0, 0.5, 1.0):
        value = frame.y0 + frac * (frame.y1 - frame.y0)
        y = frame.py(value)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart-tick">{escape(_fmt(value))}</text>'
        )
    base = frame.top + frame.plot_h
    parts.append(f'<text x="{left}" y="{base + 16}" class="chart-tick">{escape(_fmt(frame.x0))}</text>')
    parts.append(
        f'<text x="{left + plot_w}" y="{base + 16}" text-anchor="end" class="chart-tick">{escape(_fmt(frame.x1))}</text>'
    )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{base + 16}" text-anchor="middle" class="chart-tick">{escape(x_label)}</text>'
    )
    return parts


def _legend(clean: Sequence[Series], right_x: int, legend_y: int) -> list[str]:
    """A swatch and label per series, laid out right to left from ``right_x``."""
    parts = []
    legend_x: float = right_x
    for s in reversed(clean):
        label = escape(s.label)
        legend_x -= LEGEND_GAP + CHAR_W * len(s.label)
        parts.append(
            f'<rect x="{legend_x:.0f}" y="{legend_y - 8}" width="9" height="9" fill="{escape(s.color)}"/>'
            f'<text x="{legend_x + 12:.0f}" y="{legend_y}" class="chart-tick chart-legend">{label}</text>'
        )
    return parts


def _series_marks(s: Series, frame: _Frame) -> list[str]:
    """One series: its polyline, its x error bars and the dot (with a tooltip) at its end."""
    px, py = frame.px, frame.py
    parts = []
    points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
    color = escape(s.color)
    if len(s.points) > 1:
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{points}"/>')
    for (x, y), error in zip(s.points, s.x_errors):
        e = error or 0.0  # _clean made every error a number
        if e > 0:
            parts.append(
                f'<line class="chart-error" x1="{px(x - e):.1f}" x2="{px(x + e):.1f}" y1="{py(y):.1f}" '
                f'y2="{py(y):.1f}" stroke="{color}" stroke-width="1"><title>± {escape(_fmt(e))}</title></line>'
            )
    x, y = s.points[-1]
    parts.append(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{color}"><title>{escape(s.label)} {escape(_fmt(y))} at {escape(_fmt(x))}</title></circle>'
    )
    return parts


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    width: int = 420,
    height: int = 180,
    x_label: str = "step",
    y_range: tuple[float, float] | None = None,
) -> SafeString:
    """One small chart: axes with min/max ticks, one polyline (and end dot) per series, a legend."""
    clean = [_clean(s, s.color or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]
    clean = [s for s in clean if s.points]
    left, right, top, bottom = 46, 12, 26, 30
    # Text widths estimated at ~7 px a character (the 11-12 px labels): a legend that would run
    # into the title goes on a line of its own below it, and the plot starts lower.
    legend_w = sum(LEGEND_GAP + CHAR_W * len(s.label) for s in clean)
    legend_y = 16
    if left + CHAR_W * len(title) + TITLE_GAP > width - right - legend_w:
        legend_y, top = 34, top + 18
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not clean:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2:.0f}" class="chart-empty">no data yet</text></svg>')
        return mark_safe("".join(parts))
    frame = _Frame(left, top, plot_w, plot_h, *_ranges(clean, y_range))
    parts += _axes(frame, x_label)
    parts += _legend(clean, left + plot_w, legend_y)
    for s in clean:
        parts += _series_marks(s, frame)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def smooth(points: Sequence[tuple[float, float]], window: int = 10) -> list[tuple[float, float]]:
    """Trailing moving average: per-step training loss is noisy."""
    out, acc = [], []
    for x, y in points:
        if y is None:
            continue
        acc.append(y)
        if len(acc) > window:
            acc.pop(0)
        out.append((x, sum(acc) / len(acc)))
    return out


def version_charts(curves: dict) -> dict[str, SafeString]:
    train = curves.get("train", [])
    held_out = curves.get("eval", [])
    loss = [Series("train (smoothed)", smooth([(p["step"], p.get("loss")) for p in train]))]
    loss.append(Series("held-out", [(p["step"], p.get("loss")) for p in held_out]))
    accuracy = [
        Series("train (smoothed)", smooth([(p["step"], p.get("accuracy")) for p in train])),
        Series("held-out", [(p["step"], p.get("accuracy")) for p in held_out]),
    ]
    return {
        "loss": line_chart(loss, title="Bradley-Terry loss"),
        "accuracy": line_chart(accuracy, title="pairwise accuracy", y_range=(0.0, 1.0)),
    }
