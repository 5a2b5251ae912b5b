"""One request per vote loop: `POST /api/assignments/{id}/vote/?next=1` answers with the next assignment too.

The vote is recorded and committed first, exactly as without `next` (its 201/200 means it is
stored); then the next comparison is leased in its own transaction by the same engine as
`POST /api/projects/{id}/next/` (overlap, leases, "resume your open lease", caps and pauses
unchanged). The body's optional `exclude` (assignment ids, at most 10) plays the role it plays
for /next/: the page passes the one it already prefetched. Used by both the DRF view
(annotate.api) and the fast path (annotate.fast_api).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from annotate import selectors
from annotate.models import User
from annotate.services.assignment import next_comparison
from prefloop.core.errors import InvalidVote, NotFound

MAX_EXCLUDE = 10
_TRUE, _FALSE = ("1", "true"), ("", "0", "false")
# `next=html`: the answer also carries `next_html`, the next assignment rendered by a renderer
# another app registers (the annotator page's fragment, frontend.apps); annotate imports no UI.
NEXT_RENDERERS: dict[str, Callable[[dict], str]] = {}


def is_int(value: Any) -> bool:
    """A 64-bit integer, or its decimal digits as a string (ASCII only: int("²") raises)."""
    if isinstance(value, str):
        return value.isascii() and value.isdigit() and len(value) <= 18
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def wants_next(query: Mapping[str, str], body: object = None) -> str | None:
    """ "json" for `?next=1` (or `true`), "html" for `next=html`; None when absent, empty, 0 or
    false. The flag may also come as the body's `next` (true or a string), for clients that post
    to the plain URL. Anything else is a 400 naming `next`."""
    value: object = query.get("next") or (body.get("next") if isinstance(body, dict) else None) or ""
    if value is True:
        value = "1"
    if isinstance(value, str) and value.lower() in _TRUE:
        return "json"
    if isinstance(value, str) and value.lower() in NEXT_RENDERERS:
        return value.lower()
    if value is False or isinstance(value, str) and value.lower() in _FALSE:
        return None
    raise InvalidVote("next", "1 to get the next assignment with the vote, or leave it out")


def parse_exclude(body: object) -> set[int]:
    """The `exclude` list of a /next/ body (or a vote body with ?next=1), as /next/ validates it."""
    exclude = (body.get("exclude") or []) if isinstance(body, dict) else []
    if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE or not all(is_int(i) for i in exclude):
        raise InvalidVote("exclude", f"a list of at most {MAX_EXCLUDE} assignment ids")
    return {int(i) for i in exclude}


def next_body(*, annotator: User, project_id: int, exclude: set[int]) -> dict:
    """What /next/ answers: {"assignment": payload or None, "reason": ...}."""
    result = next_comparison(annotator=annotator, project=project_id, exclude_assignments=exclude)
    if result.assignment is None:
        return {"assignment": None, "reason": result.reason}
    return {"assignment": selectors.assignment_payload(result.assignment, texts=result.texts), "reason": result.reason}


def next_after_vote(*, annotator: User, project_id: int, exclude: set[int], mode: str = "json") -> dict:
    """The answer's additions after a stored vote: {"next": ...} (and "next_html" for a renderer's
    mode). The vote stays acknowledged whatever happens here: an annotator removed from the project
    in between gets {"assignment": None, "reason": "not_found"}."""
    try:
        following = next_body(annotator=annotator, project_id=project_id, exclude=exclude)
    except NotFound:
        following = {"assignment": None, "reason": "not_found"}
    extra: dict[str, Any] = {"next": following}
    if mode in NEXT_RENDERERS:
        extra["next_html"] = NEXT_RENDERERS[mode](following)
    return extra
