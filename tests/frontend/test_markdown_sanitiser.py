"""The Markdown renderer never lets model or user text carry live HTML, handlers or script URLs."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from frontend.rendering import render_markdown, sanitize_html

XSS_PAYLOADS = {
    "script tag": "<script>window.__xss = 1</script>",
    "img onerror": '<img src=x onerror="window.__xss = 1">',
    "javascript link": "[click](javascript:window.__xss=1)",
    "mixed-case javascript link": "[click](JaVaScRiPt:window.__xss=1)",
    "javascript autolink": "<javascript:window.__xss=1>",
    "entity-encoded javascript link": "[click](jav&#x09;ascript:window.__xss=1)",
    "data link": "[click](data:text/html,%3Cscript%3Ewindow.__xss=1%3C/script%3E)",
    "svg onload": '<svg onload="window.__xss = 1"><circle r=1></svg>',
    "iframe srcdoc": '<iframe srcdoc="<script>parent.__xss = 1</script>"></iframe>',
    "details ontoggle": '<details open ontoggle="window.__xss = 1">x</details>',
    "mutation payload": "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1></style></mglyph></table></mtext></math>",
    "script in fenced code": "```html\n<script>window.__xss = 1</script>\n```",
    "script in fenced code without language": "```\n<script>window.__xss = 1</script>\n```",
    "link title breakout": '[x](https://example.com "a\\" onmouseover=\\"window.__xss=1")',
    "image with javascript": "![x](javascript:window.__xss=1)",
}

DANGEROUS_TAGS = {
    "script",
    "img",
    "svg",
    "iframe",
    "math",
    "style",
    "object",
    "embed",
    "details",
    "form",
    "input",
    "mglyph",
}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parsed_tags(html: str) -> list[tuple[str, dict]]:
    collector = _Collector()
    collector.feed(html)
    return collector.tags


@pytest.mark.parametrize("payload", XSS_PAYLOADS.values(), ids=XSS_PAYLOADS.keys())
def test_xss_payload_renders_without_live_tags_handlers_or_script_urls(payload):
    html = str(render_markdown(payload))
    for tag, attrs in parsed_tags(html):
        assert tag not in DANGEROUS_TAGS, html
        assert not any(name.startswith("on") for name in attrs), html
        assert set(attrs) <= {"href", "title", "class", "target", "rel", "start"}, (
            html
        )  # no style="": the CSP blocks it
        href = (attrs.get("href") or "").strip().lower()
        assert not href.startswith(("javascript:", "data:", "vbscript:")), html


@pytest.mark.parametrize("payload", XSS_PAYLOADS.values(), ids=XSS_PAYLOADS.keys())
def test_xss_payload_text_stays_visible_as_text(payload):
    # The annotator must still see what the model wrote; it is escaped, not dropped.
    html = str(render_markdown(payload))
    assert "__xss" in html


def test_script_inside_fenced_code_is_escaped_and_highlighted():
    html = str(render_markdown("```html\n<script>alert(1)</script>\n```"))
    assert "&lt;" in html and "<script" not in html
    assert '<code class="language-html">' in html
    assert '<span class="' in html


def test_links_keep_safe_schemes_and_get_rel_and_new_tab():
    html = str(render_markdown("[docs](https://example.com/a) and [mail](mailto:a@example.com)"))
    tags = [attrs for tag, attrs in parsed_tags(html) if tag == "a"]
    assert [a["href"] for a in tags] == ["https://example.com/a", "mailto:a@example.com"]
    assert all(a["rel"] == "noopener noreferrer nofollow" and a["target"] == "_blank" for a in tags)


def test_sanitiser_alone_strips_scripts_handlers_and_foreign_schemes():
    html = sanitize_html(
        '<p onclick="x()">hi<script>x()</script><a href="javascript:x()">a</a><a href="ftp://h/f">f</a></p>'
    )
    assert "onclick" not in html and "<script" not in html and "javascript:" not in html and "ftp:" not in html
    assert html.startswith("<p>hi")


def test_commonmark_tables_strikethrough_and_code_render():
    html = str(render_markdown("| a | b |\n|---|--:|\n| 1 | 2 |\n\n~~old~~ **new** `x = 1`"))
    # Alignment is a class: a style attribute would be blocked by the Content-Security-Policy.
    assert "<table>" in html and '<td class="align-right">2</td>' in html and "style=" not in html
    assert "<s>old</s>" in html and "<strong>new</strong>" in html and "<code>x = 1</code>" in html


def test_remote_images_are_shown_as_links_not_loaded():
    html = str(render_markdown("![chart](https://example.com/c.png)"))
    assert "<img" not in html
    assert 'href="https://example.com/c.png"' in html


def test_unknown_fence_language_is_escaped_plainly():
    html = str(render_markdown("```nosuchlang\n<b>x</b>\n```"))
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<span" not in html
