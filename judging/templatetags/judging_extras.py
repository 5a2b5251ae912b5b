"""Template filters of the judging section: a share with its interval, a dict lookup."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def share(value: dict | None) -> str:
    """0.625 [0.31, 0.86] (5/8), or — without data."""
    if not value or not value.get("n"):
        return "—"
    lo, hi = value["ci"]
    return format_html(
        '{}<br><span class="muted ci">[{}, {}]<br>({}/{})</span>',
        f"{value['value']:.3f}",
        f"{lo:.2f}",
        f"{hi:.2f}",
        value["k"],
        value["n"],
    )


@register.filter
def get_item(mapping: dict | None, key: str) -> str:
    return (mapping or {}).get(key, "")
