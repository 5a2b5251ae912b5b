"""Server-rendered SVG for the leaderboard dashboard: ratings with CI whiskers and matrix heat maps.

Plain strings, every label escaped, no JavaScript: embed with `{{ svg|safe }}` or as an <img>.
"""

from __future__ import annotations

from html import escape

from annotate.leaderboard.compute import LeaderboardResult

FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def ratings_ci_svg(result: LeaderboardResult, *, row_height: int = 22, width: int = 640) -> str:
    """One row per model, best first: a dot at the rating, whiskers to the 95 % bounds."""
    rows = result.ratings
    if not rows:
        return _svg(width, 40, [f'<text x="8" y="24" {FONT}>No battles yet.</text>'], "Ratings")
    label_w = 12 + 7 * max(len(r.model) for r in rows)
    values = [v for r in rows for v in (r.rating, r.lower, r.upper) if v is not None]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad
    plot_w = width - label_w - 70
    x = lambda v: label_w + (v - lo) / (hi - lo) * plot_w
    height = 30 + row_height * len(rows)
    body = (
        [
            f'<line x1="{x(1000):.1f}" y1="4" x2="{x(1000):.1f}" y2="{height - 20}" stroke="#ccc" stroke-dasharray="3,3"/>'
        ]
        if lo < 1000 < hi
        else []
    )
    for k, r in enumerate(rows):
        y = 14 + k * row_height
        tip = (
            f"{r.model}: {r.rating:.1f}"
            + (f" (95% CI {r.lower:.1f} to {r.upper:.1f})" if r.lower is not None else "")
            + f", rank {r.rank}, {r.battles} battles"
        )
        body.append(f"<g><title>{escape(tip)}</title>")
        body.append(f'<text x="{label_w - 6}" y="{y + 4}" text-anchor="end" {FONT}>{escape(r.model)}</text>')
        if r.lower is not None:
            body.append(
                f'<line x1="{x(r.lower):.1f}" y1="{y}" x2="{x(r.upper):.1f}" y2="{y}" stroke="#555" stroke-width="1.5"/>'
            )
            for end in (r.lower, r.upper):
                body.append(f'<line x1="{x(end):.1f}" y1="{y - 4}" x2="{x(end):.1f}" y2="{y + 4}" stroke="#555"/>')
        body.append(f'<circle cx="{x(r.rating):.1f}" cy="{y}" r="3.5" fill="#1f5fa8"/>')
        body.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4}" {FONT}>{r.rating:.0f}</text></g>')
    axis_y = height - 8
    for v in (lo + pad, (lo + hi) / 2, hi - pad):
        body.append(f'<text x="{x(v):.1f}" y="{axis_y}" text-anchor="middle" {FONT} fill="#666">{v:.0f}</text>')
    return _svg(width, height, body, "Ratings with 95% bootstrap intervals")


def _colour(value: float, lo: float, hi: float) -> str:
    # blue (low) → white → red (high), as Arena's RdBu heat map reversed
    t = 0.5 if hi == lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    if t < 0.5:
        s = t / 0.5
        r, g, b = 33 + s * (255 - 33), 102 + s * (255 - 102), 172 + s * (255 - 172)
    else:
        s = (t - 0.5) / 0.5
        r, g, b = 255 - s * (255 - 178), 255 - s * (255 - 24), 255 - s * (255 - 43)
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def matrix_svg(
    models: list[str],
    matrix: list[list[float | None]],
    *,
    title: str,
    fmt: str = "{:.2f}",
    lo: float | None = None,
    hi: float | None = None,
    cell: int = 34,
) -> str:
    """Heat map: row model against column model; empty cells where there is no value."""
    if not models:
        return _svg(200, 40, [f'<text x="8" y="24" {FONT}>No battles yet.</text>'], title)
    values = [v for row in matrix for v in row if v is not None]
    lo = min(values, default=0.0) if lo is None else lo
    hi = max(values, default=1.0) if hi is None else hi
    label = 10 + 7 * max(len(m) for m in models)
    n = len(models)
    size = label + n * cell + 10
    body = []
    for k, m in enumerate(models):
        body.append(
            f'<text x="{label - 6}" y="{label + k * cell + cell / 2 + 4:.0f}" text-anchor="end" {FONT}>{escape(m)}</text>'
        )
        cx, cy = label + k * cell + cell / 2, label - 6
        body.append(f'<text x="{cx:.0f}" y="{cy}" transform="rotate(-45 {cx:.0f} {cy})" {FONT}>{escape(m)}</text>')
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v is None or i == j:
                continue
            x, y = label + j * cell, label + i * cell
            tip = f"{models[i]} vs {models[j]}: {fmt.format(v)}"
            body.append(
                f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_colour(v, lo, hi)}"/>'
                f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle" {FONT} font-size="9">{escape(fmt.format(v))}</text></g>'
            )
    return _svg(size, size, body, title)


def win_rate_svg(result: LeaderboardResult) -> str:
    return matrix_svg(
        result.models, result.win_rate, title="Share of decisive battles the row model won", lo=0.0, hi=1.0
    )


def battle_count_svg(result: LeaderboardResult) -> str:
    counts = [[float(v) if v else None for v in row] for row in result.battle_counts]
    return matrix_svg(result.models, counts, title="Battles between row and column model", fmt="{:.0f}")
