"""Security headers on every response, and templates that need no 'unsafe-inline' to work under the CSP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import make_project, make_user

ROOT = Path(settings.BASE_DIR)
APPS_WITH_TEMPLATES = ["annotate", "frontend", "rewards", "training", "prefloop"]


def directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/projects/",
        "/projects/{project}/dashboard/",
        "/projects/{project}/reward-models/",
        "/api/projects/",
        "/api/schema/",
    ],
)
def test_every_response_has_an_enforcing_csp_without_unsafe_inline(path):
    user = make_user(role="researcher")
    project = make_project(researchers=[user])
    client = Client()
    client.force_login(user)
    response = client.get(path.format(project=project.pk))
    assert response.status_code == 200
    assert "Content-Security-Policy-Report-Only" not in response, "enforcing, not report-only"
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "camera=()" in response["Permissions-Policy"]


def test_websockets_are_allowed_only_to_the_page_own_host_and_wss_when_secure(db):
    response = Client().get("/login/", secure=True, HTTP_HOST="localhost")
    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'", "wss://localhost"]


def test_a_disallowed_host_still_gets_a_policy_and_no_websocket_source(db):
    response = Client().get("/login/", HTTP_HOST="evil.example.org")
    assert response.status_code == 400
    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'"]


def _templates():
    for app in APPS_WITH_TEMPLATES:
        yield from sorted((ROOT / app).glob("templates/**/*.html"))


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.I)


@pytest.mark.parametrize("template", list(_templates()), ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_have_no_inline_script_style_or_event_handler(template):
    """The CSP blocks these; a page that used one would silently lose its script or its styling."""
    text = template.read_text()
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to a static .js file (data: json_script)"
    assert "<style" not in text.lower(), "inline <style>: move it to a static .css file"
    assert not STYLE_ATTRIBUTE.search(text), 'style="": use a class (or an SVG presentation attribute)'
    assert not HANDLER.search(text), "on*= handler: attach listeners from a static script"
