"""The vote loop's fast path: `POST /api/projects/{id}/next/` and `POST /api/assignments/{id}/vote/`
answered by plain Django code before the session, CSRF, auth and messages middleware and DRF run.

What a loop costs on the server is mostly per-request framework work (DRF's request wrapper,
content negotiation, authentication classes, the middleware a token client does not use); the
engine itself is a few prepared statements (annotate/services/assignment.md). This middleware
sits after the health, security-header, HTTPS and static-file middleware and takes only the
plainest requests: POST to one of the two URLs, `Authorization: Token <key>` with a key that
authenticates, a JSON body (or none) within PREFLOOP_MAX_REQUEST_BYTES, no request for HTML.
Everything else (session auth from the page, form bodies, bad or missing tokens, ...) goes on to
the DRF views in annotate.api, which answer exactly as before. For the requests it takes, it
runs the same validation (annotate.api's helpers, prefloop.core.parsers' bounded JSON), the same
services and the same exception handler (prefloop.core.api_errors), so bodies, statuses and error
shapes are those of the DRF views; the tests run both paths.

PREFLOOP_FAST_PATH=0 (environment) takes the middleware out: the DRF views answer everything.
Token lookups are cached per process for PREFLOOP_TOKEN_CACHE_SECONDS (default 10; 0 turns the
cache off). Saving or deleting a user or a token clears this process's cache at once; another
worker process may accept a deleted token or a deactivated user for at most that many seconds.
Membership and pause checks are never cached: they are part of the engine's own statements.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.utils.encoders import JSONEncoder

from annotate.api import HotPathTokenAuthentication, cast_vote
from annotate.models import User
from annotate.vote_next import next_body, parse_exclude
from prefloop.core.api_errors import exception_handler
from prefloop.core.parsers import BoundedJSONParser

NEXT_PATH = re.compile(r"/api/projects/([0-9]{1,18})/next/")
VOTE_PATH = re.compile(r"/api/assignments/([0-9]{1,18})/vote/")
MAX_CACHED_TOKENS = 10_000


# --- cached token authentication ----------------------------------------------------------------


class TokenCache:
    """key -> (user, expiry on the monotonic clock), bounded, cleared whole on any user/token change."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[User, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> User | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, key: str, user: User, ttl: float) -> None:
        with self._lock:
            if len(self._entries) >= MAX_CACHED_TOKENS:
                self._entries.clear()
            self._entries[key] = (user, time.monotonic() + ttl)

    def clear(self, **_: Any) -> None:
        with self._lock:
            self._entries.clear()


token_cache = TokenCache()
for _model in (User, Token):
    post_save.connect(token_cache.clear, sender=_model, dispatch_uid=f"fast_api_token_cache_{_model.__name__}_save")
    post_delete.connect(token_cache.clear, sender=_model, dispatch_uid=f"fast_api_token_cache_{_model.__name__}_delete")


def token_user(request: HttpRequest) -> User | None:
    """The active user of a well-formed `Authorization: Token <key>` header; None: let DRF answer."""
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) != 2 or parts[0].lower() != "token":
        return None
    key = parts[1]
    ttl = float(getattr(settings, "PREFLOOP_TOKEN_CACHE_SECONDS", 10))
    user = token_cache.get(key) if ttl > 0 else None
    if user is not None:
        return user
    try:
        user, _ = HotPathTokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return None  # DRF's view gives the 401 with its usual body and WWW-Authenticate header
    if ttl > 0:
        token_cache.put(key, user, ttl)
    return user


# --- the two endpoints --------------------------------------------------------------------------


def next_view(request: HttpRequest, user: User, project_id: int, body: object) -> tuple[dict, int]:
    return next_body(annotator=user, project_id=project_id, exclude=parse_exclude(body)), 200


def vote_view(request: HttpRequest, user: User, assignment_id: int, body: object) -> tuple[dict, int]:
    """AssignmentVoteApi.post without DRF: the same function (annotate.api.cast_vote)."""
    answer, replayed = cast_vote(user, assignment_id, request.GET, body, request.headers)
    return answer, 200 if replayed else 201


View = Callable[[HttpRequest, User, int, object], tuple[dict, int]]
ROUTES: list[tuple[re.Pattern[str], View]] = [(NEXT_PATH, next_view), (VOTE_PATH, vote_view)]


# --- the middleware -----------------------------------------------------------------------------


def json_response(data: object, status: int) -> HttpResponse:
    """DRF's JSONRenderer output (compact, UTF-8, its datetime format) and the headers DRF adds."""
    content = json.dumps(data, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()
    response = HttpResponse(content, status=status, content_type="application/json")
    response["Vary"] = "Accept"
    response["Allow"] = "POST, OPTIONS"
    # What XFrameOptionsMiddleware, which this path skips, would add.
    response["X-Frame-Options"] = getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()
    response["Content-Length"] = str(len(content))
    return response


def _route(request: HttpRequest) -> tuple[View, int] | None:
    if request.method != "POST":
        return None
    path = request.path_info
    for pattern, view in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return view, int(match.group(1))
    return None


def _takes(request: HttpRequest) -> bool:
    """A JSON (or empty) body within the size limit, and no browser asking for HTML."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > settings.PREFLOOP_MAX_REQUEST_BYTES:
        return False
    media = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media == "" and declared == "0"):
        return False
    return "text/html" not in request.META.get("HTTP_ACCEPT", "")


def _parse(request: HttpRequest) -> object:
    raw = request.body
    if not raw:
        return {}
    return BoundedJSONParser().parse(
        io.BytesIO(raw), "application/json", {"encoding": request.encoding or settings.DEFAULT_CHARSET}
    )


class HotPathMiddleware:
    """Answers the vote loop's token requests itself; everything else goes down the usual stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not getattr(settings, "PREFLOOP_FAST_PATH", True):
            raise MiddlewareNotUsed("PREFLOOP_FAST_PATH is off: the DRF views answer every request")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = _route(request)
        if route is None or not _takes(request):
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware would check it (DisallowedHost: 400)
        user = token_user(request)
        if user is None:
            return self.get_response(request)
        request.user = user  # for logging and got_request_exception receivers
        view, object_id = route
        try:
            data, status = view(request, user, object_id, _parse(request))
        except Exception as exc:  # the API's own handler: same bodies, same logging of 500s
            answer = exception_handler(exc, {"request": request})
            if answer is None:  # pragma: no cover - the handler answers every exception
                raise
            return json_response(answer.data, answer.status_code)
        return json_response(data, status)
