"""Markdown to safe HTML for prompts and responses: markdown-it-py, Pygments, then an nh3 allow-list.

Model and user text is untrusted. Three layers keep it inert: markdown-it never passes raw HTML
through (`html=False`) and refuses `javascript:`/`data:` link targets; Pygments escapes code; and
nh3 (ammonia) keeps only the tags and attributes listed here, with http/https/mailto links only.
The stored text is never changed; this is only how it is shown.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "span",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "span": {"class"}, "ol": {"start"}}
# Table cell alignment travels as a class, never as style="": the CSP (prefloop/security.py) has no
# 'unsafe-inline', so a style attribute would be blocked (and reported) in the browser.
ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
ALLOWED_CLASSES = {"th": ALIGN_CLASSES, "td": ALIGN_CLASSES}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

# Longest code block we colour; beyond it plain escaped text is as readable and much cheaper.
MAX_HIGHLIGHT_CHARS = 20_000

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs) -> str:
    """Pygments spans for a fenced block with a known language; "" lets markdown-it escape it."""
    if not lang or len(code) > MAX_HIGHLIGHT_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(lang, stripnl=False)
    except ClassNotFound:
        return ""
    return pygments_highlight(code, lexer, _formatter)


def _table_cell_open(self, tokens, idx, options, env) -> str:
    """markdown-it writes style="text-align:right" on aligned cells; write class="align-right"."""
    token = tokens[idx]
    style = token.attrs.pop("style", None)
    if isinstance(style, str) and style.startswith("text-align:"):
        token.attrs["class"] = f"align-{style.split(':', 1)[1].strip()}"
    return self.renderToken(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])
    md.add_render_rule("th_open", _table_cell_open)
    md.add_render_rule("td_open", _table_cell_open)
    # Remote images would load on the annotator's machine (tracking, layout jumps): show them as links.
    md.disable("image")
    return md


def sanitize_html(html: str) -> str:
    """The allow-list pass on its own; every rendered fragment goes through it last."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def render_markdown(text: str) -> SafeString:
    """Untrusted Markdown (CommonMark + tables + strikethrough) as HTML that is safe to insert."""
    return mark_safe(sanitize_html(_markdown().render(text or "")))  # sanitised just above


def pygments_css(selector: str = ".md pre code") -> str:
    """Colours of highlighted code (pasted at the end of static/frontend/app.css; regenerate with this)."""
    return HtmlFormatter(style="friendly").get_style_defs(selector)


def comparison_context(payload: dict) -> dict:
    """Template context for one comparison from `annotate.selectors.assignment_payload`."""
    context = payload.get("prompt_context") or {}
    return {
        "assignment_id": payload["assignment_id"],
        "prompt_html": render_markdown(payload["prompt"]),
        "prefix": context.get("prefix", ""),
        "suffix": context.get("suffix", ""),
        "responses": [
            {"side": r["side"], "label": r["side"].upper(), "html": render_markdown(r["text"])}
            for r in payload["responses"]
        ],
        "pairwise": len(payload["responses"]) == 2,
    }
