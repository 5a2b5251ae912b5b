"""Authorisation matrix generated from the URL conf and the Channels routes.

Every route × visitor (anonymous, annotator of the project, annotator of another project,
researcher of another project, admin; plus the project's researcher as the positive control)
× method (GET, POST, PUT, PATCH, DELETE). Each route's ids point at real rows of project A.
A visitor who may not act gets 401/redirect (anonymous), 405 (no such method) or 404 (not
yours: never 403, so existence does not leak), and the database fingerprint — every model
table's rows — is unchanged afterwards.

A route this file does not know fails `test_every_route_is_in_the_matrix`: add it to ROUTES
(its ids and who may use it) when you add an endpoint.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.security.conftest import World, build_world, changed_tables, db_fingerprint

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
VISITORS = ("anonymous", "annotator_a", "annotator_b", "researcher_b", "admin", "researcher_a")
EVERYONE = frozenset(VISITORS)
SIGNED_IN = EVERYONE - {"anonymous"}
RESEARCHERS_A = frozenset({"researcher_a", "admin"})
MEMBERS_A = frozenset({"annotator_a", "researcher_a", "admin"})
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Route:
    """kwargs: the path's ids (of project A's rows); allowed: method → visitors who may use it.

    kind: "object" (about project A: everyone else gets 404), "collection" (everyone signed in
    gets their own slice; A's rows must not appear in others' answers), "public" (no login),
    "page-public" (HTML pages anyone may open, like the sign-in form).
    body: what an allowed visitor would send, so a refusal is about who asks, not about a bad body.
    """

    kwargs: Callable[[World], dict]
    allowed: dict[str, frozenset[str]]
    kind: str = "object"
    html: bool = False
    body: Callable[[World], dict] | None = None
    multipart: bool = False
    # Visitors refused with 403 rather than 404 (a role rule, not an object the visitor cannot see).
    forbidden: frozenset[str] = NOBODY
    # Even the visitors it serves change nothing (a forged invitation token, the schema, ...).
    read_only: bool = False


def _project(w: World) -> dict:
    return {"project_id": w.project_a.pk}


def _uidb64(user) -> str:
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    return urlsafe_base64_encode(force_bytes(user.pk)) if hasattr(user, "_meta") else "MQ"


def _import_body(w: World) -> dict:
    data = io.BytesIO(
        b'{"prompt": "injected?", "completions": [{"text": "x", "model": "m1"}, {"text": "y", "model": "m2"}]}\n'
    )
    data.name = "attack.jsonl"
    return {"file": data}


CREATORS = frozenset({"researcher_a", "researcher_b", "admin"})


def _webhook(w) -> int:
    """A webhook of project A (the World has none of its own); 1 for the kwargs probe."""
    if not isinstance(w, World):
        return 1
    from prefloop.webhooks.models import Webhook

    return Webhook.objects.get_or_create(
        project=w.project_a,
        url="https://hooks.example.org/a",
        defaults={"events": ["job.failed"], "secret": "whsec_matrix"},
    )[0].pk


WEBHOOK_FORM = {
    "url": "https://hooks.example.org/matrix",
    "events": "job.failed",
    "milestone_every": "100",
    "active": "on",
}


def _settings_form(name: str) -> dict:
    return {
        "name": name,
        "overlap_target": "2",
        "lease_seconds": "600",
        "strength_scale": "0",
        "rationale": "optional",
        "gold_rate": "0",
        "gold_min_answers": "5",
        "allow_tie": "on",
    }


def _data_import(w) -> int:
    """A DataImport of project A (the World has none of its own); 1 for the kwargs probe."""
    if not isinstance(w, World):
        return 1
    from annotate.models import DataImport

    return DataImport.objects.get_or_create(project=w.project_a, source="a.jsonl", format="pairs-jsonl")[0].pk


ROUTES: dict[str, Route] = {
    # --- machine API ------------------------------------------------------------------------
    "api-token": Route(
        lambda w: {},
        {"POST": EVERYONE},
        kind="public",
        body=lambda w: {"username": w.researcher_a.username, "password": "wrong"},
    ),
    "schema": Route(lambda w: {}, {"GET": EVERYONE}, kind="public", read_only=True),
    "project-list": Route(
        lambda w: {},
        {"GET": SIGNED_IN, "POST": frozenset({"researcher_a", "researcher_b", "admin"})},
        kind="collection",
        forbidden=frozenset({"annotator_a", "annotator_b"}),
        body=lambda w: {"name": "created by the matrix"},
    ),
    "project-detail": Route(_project, {"GET": MEMBERS_A}),
    "project-progress": Route(_project, {"GET": RESEARCHERS_A}),
    "project-comparisons": Route(_project, {"GET": RESEARCHERS_A}),
    "project-votes": Route(_project, {"GET": RESEARCHERS_A}),
    "project-members": Route(
        _project, {"POST": RESEARCHERS_A}, body=lambda w: {"username": w.researcher_b.username, "role": "researcher"}
    ),
    "project-imports": Route(_project, {"POST": RESEARCHERS_A}, body=_import_body, multipart=True),
    "project-export": Route(_project, {"GET": RESEARCHERS_A}),
    # Admins see every project but hold no queue: only annotators lease work.
    "assignment-next": Route(_project, {"POST": frozenset({"annotator_a"})}, body=lambda w: {}),
    "my-votes": Route(_project, {"GET": MEMBERS_A}),
    "project-quality": Route(_project, {"GET": RESEARCHERS_A}),
    "project-leaderboard": Route(_project, {"GET": RESEARCHERS_A}),
    "comparison-gold": Route(
        lambda w: {"comparison_id": w.comparison_a.pk}, {"POST": RESEARCHERS_A}, body=lambda w: {"label": "tie"}
    ),
    "assignment-vote": Route(
        lambda w: {"assignment_id": w.assignment_a.pk},
        {"POST": frozenset({"annotator_a"})},
        body=lambda w: {"choice": "b", "rationale": "forged", "idempotency_key": "matrix-forged"},
    ),
    "reward-model-list": Route(
        _project, {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A}, body=lambda w: {"options": {"max_steps": 1}}
    ),
    "reward-settings": Route(
        _project, {"GET": RESEARCHERS_A, "PATCH": RESEARCHERS_A}, body=lambda w: {"auto_retrain": True}
    ),
    "reward-model-import": Route(_project, {"POST": RESEARCHERS_A}, body=lambda w: {"model_path": "../../etc"}),
    "reward-model-detail": Route(lambda w: {"reward_model_id": w.reward_model_a.pk}, {"GET": RESEARCHERS_A}),
    "reward-model-make-current": Route(lambda w: {"reward_model_id": w.reward_model_a.pk}, {"POST": RESEARCHERS_A}),
    "reward-model-score": Route(
        lambda w: {"reward_model_id": w.reward_model_a.pk},
        {"POST": RESEARCHERS_A},
        body=lambda w: {"completion_ids": []},
    ),
    "job-list": Route(lambda w: {}, {"GET": SIGNED_IN}, kind="collection"),
    "job-detail": Route(lambda w: {"job_id": w.job_a.pk}, {"GET": RESEARCHERS_A}),
    "job-cancel": Route(lambda w: {"job_id": w.job_a.pk}, {"POST": RESEARCHERS_A}),
    # training app (the on-policy loop)
    "policy-list": Route(
        _project,
        {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A},
        body=lambda w: {"kind": "base", "model_path": "../../etc", "name": "traversal"},
    ),
    "loop": Route(_project, {"GET": RESEARCHERS_A}),
    "round-list": Route(_project, {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A}, body=lambda w: {"method": "dpo"}),
    "policy-detail": Route(lambda w: {"policy_id": w.extra["policy_a"].pk}, {"GET": RESEARCHERS_A}),
    "round-detail": Route(lambda w: {"round_id": w.extra["round_a"].pk}, {"GET": RESEARCHERS_A}),
    "round-advance": Route(
        lambda w: {"round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}, body=lambda w: {"force": True}
    ),
    "round-cancel": Route(lambda w: {"round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}),
    "round-override-guard": Route(lambda w: {"round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}),
    # --- web pages --------------------------------------------------------------------------
    "home": Route(lambda w: {}, {"GET": EVERYONE}, kind="page-public", html=True),
    "login": Route(
        lambda w: {},
        {"GET": EVERYONE, "POST": EVERYONE},
        kind="page-public",
        html=True,
        body=lambda w: {"username": w.researcher_a.username, "password": "wrong"},
    ),
    # Invitation links (h2's accounts app): the token is the secret; a forged one sets nothing.
    "set-password": Route(
        lambda w: {"uidb64": _uidb64(w.researcher_a), "token": "forged-token"},
        {"GET": EVERYONE, "POST": EVERYONE},
        kind="page-public",
        html=True,
        body=lambda w: {"new_password1": "Attacker-pw-1234", "new_password2": "Attacker-pw-1234"},
        read_only=True,
    ),
    "logout": Route(lambda w: {}, {"POST": EVERYONE}, kind="page-public", html=True),
    "projects": Route(lambda w: {}, {"GET": SIGNED_IN}, kind="collection", html=True),
    "annotate": Route(_project, {"GET": frozenset({"annotator_a"})}, html=True),
    "annotate-next": Route(_project, {"POST": frozenset({"annotator_a"})}, html=True),
    "dashboard": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "leaderboard": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "quality": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "reward-models-page": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "reward-models-retrain": Route(_project, {"POST": RESEARCHERS_A}, html=True),
    "reward-models-import": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"model_path": "/etc"}),
    "reward-models-settings": Route(
        _project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"auto_retrain": "on"}
    ),
    "reward-models-make-current": Route(
        lambda w: {"project_id": w.project_a.pk, "reward_model_id": w.reward_model_a.pk},
        {"POST": RESEARCHERS_A},
        html=True,
    ),
    # downloads (files, never pages: tests/rewards/test_downloads.py); A's model folders are not on
    # disk here, so the researcher gets 410, not a zip
    "reward-models-artifact": Route(
        lambda w: {"project_id": w.project_a.pk, "reward_model_id": w.reward_model_a.pk},
        {"GET": RESEARCHERS_A},
        html=True,
        read_only=True,
    ),
    "reward-models-chart": Route(
        lambda w: {"project_id": w.project_a.pk, "reward_model_id": w.reward_model_a.pk, "chart": "loss"},
        {"GET": RESEARCHERS_A},
        html=True,
        read_only=True,
    ),
    "loop-chart": Route(
        lambda w: {**_project(w), "chart": "reward_kl"}, {"GET": RESEARCHERS_A}, html=True, read_only=True
    ),
    "policy-artifact": Route(
        lambda w: {"project_id": w.project_a.pk, "policy_id": w.extra["policy_a"].pk},
        {"GET": RESEARCHERS_A},
        html=True,
        read_only=True,
    ),
    "loop-page": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "loop-status": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "loop-start-round": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"method": "dpo"}),
    "loop-advance-round": Route(
        lambda w: {"project_id": w.project_a.pk, "round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}, html=True
    ),
    "loop-cancel-round": Route(
        lambda w: {"project_id": w.project_a.pk, "round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}, html=True
    ),
    "loop-override-guard": Route(
        lambda w: {"project_id": w.project_a.pk, "round_id": w.extra["round_a"].pk}, {"POST": RESEARCHERS_A}, html=True
    ),
    "loop-demo-policy": Route(_project, {"POST": RESEARCHERS_A}, html=True),
    "loop-register-model": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"model_path": "/etc"}),
    # judging app (LLM-judge AI feedback)
    "judge-settings": Route(_project, {"GET": RESEARCHERS_A, "PATCH": RESEARCHERS_A}, body=lambda w: {"batch_size": 4}),
    "judge-run": Route(_project, {"POST": RESEARCHERS_A}, body=lambda w: {"round": 0}),
    "judge-agreement": Route(_project, {"GET": RESEARCHERS_A}),
    "judge-settings-page": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"batch_size": "4"}),
    "judge-run-page": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {}),
    # An annotator's corrections, project settings, members and imports (h8)
    "assignment-skip": Route(lambda w: {"assignment_id": w.assignment_a.pk}, {"POST": frozenset({"annotator_a"})}),
    "assignment-edit": Route(
        lambda w: {"assignment_id": w.voted_assignment_a.pk},
        {"POST": frozenset({"annotator_a"})},
        body=lambda w: {"choice": "b", "rationale": "forged edit"},
    ),
    "my-last-vote": Route(_project, {"GET": MEMBERS_A}),
    "annotate-last": Route(_project, {"GET": frozenset({"annotator_a"})}, html=True),
    "project-new": Route(
        lambda w: {},
        {"GET": CREATORS, "POST": CREATORS},
        kind="collection",
        html=True,
        forbidden=frozenset({"annotator_a", "annotator_b"}),
        body=lambda w: _settings_form("made by the matrix"),
    ),
    "project-settings": Route(
        _project,
        {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A},
        html=True,
        body=lambda w: _settings_form("renamed by the matrix"),
    ),
    "project-members-page": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "project-member-add": Route(
        _project,
        {"POST": RESEARCHERS_A},
        html=True,
        body=lambda w: {"username": w.researcher_b.username, "role": "annotator"},
    ),
    "project-member-update": Route(
        lambda w: {"project_id": w.project_a.pk, "user_id": w.annotator_a.pk},
        {"POST": RESEARCHERS_A},
        html=True,
        body=lambda w: {"action": "pause"},
    ),
    "project-imports-page": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "project-records": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "project-records-export": Route(_project, {"GET": RESEARCHERS_A}, html=True),
    "project-import-preview": Route(_project, {"POST": RESEARCHERS_A}, html=True, body=_import_body, multipart=True),
    "project-import-confirm": Route(
        _project, {"POST": RESEARCHERS_A}, html=True, body=lambda w: {"token": "0" * 32, "pairing": "all"}
    ),
    "project-import-change": Route(
        lambda w: {"project_id": w.project_a.pk, "import_id": _data_import(w)},
        {"POST": RESEARCHERS_A},
        html=True,
        body=lambda w: {"action": "archive"},
    ),
    # Webhooks (prefloop/webhooks): page and REST
    "webhooks-page": Route(
        _project, {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A}, html=True, body=lambda w: WEBHOOK_FORM
    ),
    "webhook-change": Route(
        lambda w: {"project_id": w.project_a.pk, "webhook_id": _webhook(w)},
        {"POST": RESEARCHERS_A},
        html=True,
        body=lambda w: {"action": "test"},
    ),
    "webhook-list": Route(
        _project,
        {"GET": RESEARCHERS_A, "POST": RESEARCHERS_A},
        body=lambda w: {"url": "https://hooks.example.org/api", "events": ["job.failed"]},
    ),
    "webhook-detail": Route(
        lambda w: {"webhook_id": _webhook(w)},
        {"GET": RESEARCHERS_A, "PATCH": RESEARCHERS_A},
        body=lambda w: {"active": False},
    ),
    "webhook-test": Route(lambda w: {"webhook_id": _webhook(w)}, {"POST": RESEARCHERS_A}),
    "webhook-rotate-secret": Route(lambda w: {"webhook_id": _webhook(w)}, {"POST": RESEARCHERS_A}),
    "webhook-deliveries": Route(lambda w: {"webhook_id": _webhook(w)}, {"GET": RESEARCHERS_A}),
}

# Websocket routes (prefloop/asgi.py): route text → (ids of A's rows, visitors who may connect).
WEBSOCKET_ROUTES: dict[str, tuple[Callable[[World], dict], frozenset[str]]] = {
    "ws/projects/<int:project_id>/progress/": (_project, RESEARCHERS_A),
    "ws/jobs/<int:job_id>/": (lambda w: {"job_id": w.job_a.pk}, RESEARCHERS_A),
    "ws/jobs/project/<int:project_id>/": (_project, RESEARCHERS_A),
}


# --- walking the URL conf --------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    route: str  # full route text, e.g. "api/projects/<int:project_id>/"
    name: str | None
    namespace: str


def walk(patterns, prefix: str = "", namespace: str = "") -> list[Found]:
    found = []
    for pattern in patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += walk(pattern.url_patterns, text, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            found.append(Found(text, pattern.name, namespace))
    return found


def all_routes() -> list[Found]:
    return walk(get_resolver().url_patterns)


def app_routes() -> list[Found]:
    return [r for r in all_routes() if r.namespace != "admin"]


def admin_routes() -> list[Found]:
    return [r for r in all_routes() if r.namespace == "admin"]


PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def route_kwargs(route: str) -> set[str]:
    return {m["name"] for m in PARAM.finditer(route)}


def fill(route: str, kwargs: dict) -> str:
    return "/" + PARAM.sub(lambda m: str(kwargs[m["name"]]), route)


def fill_admin(route: str, w: World) -> str:
    """Admin patterns: regex app lists and the catch-all get a plain value, ids point at A's rows."""
    from django.contrib.contenttypes.models import ContentType

    values = {
        "object_id": w.project_a.pk,
        "id": w.annotator_a.pk,
        "app_label": "annotate",
        "content_type_id": ContentType.objects.get_for_model(type(w.project_a)).pk,
        "url": "nothing-here/",
    }
    route = re.sub(r"\(\?P<app_label>[^)]*\)", "annotate", route)
    route = re.sub(r"\(\?P<url>[^)]*\)", "nothing-here/", route)
    route = route.replace("^", "").replace("$", "")
    return fill(route, values)


def test_every_route_is_in_the_matrix():
    """A new endpoint must be added to ROUTES (ids + who may use it): this fails until it is."""
    missing, unfilled = [], []
    for found in app_routes():
        if found.name not in ROUTES:
            missing.append(f"{found.route} (name={found.name!r})")
            continue
        needed = route_kwargs(found.route)
        # The ids come from a World; a route whose id has no filler cannot be tested.
        given = set(ROUTES[found.name].kwargs(_KwargsProbe()))
        if needed - given:
            unfilled.append(f"{found.route}: no value for {sorted(needed - given)}")
    assert not missing, "routes missing from tests/security/test_authorization_matrix.py ROUTES:\n" + "\n".join(missing)
    assert not unfilled, "\n".join(unfilled)


def test_every_websocket_route_is_in_the_matrix():
    from prefloop.asgi import websocket_urlpatterns

    routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert routes == set(WEBSOCKET_ROUTES), f"add to WEBSOCKET_ROUTES: {sorted(routes - set(WEBSOCKET_ROUTES))}"


class _KwargsProbe:
    """Stands in for a World when only the kwarg names matter."""

    def __getattr__(self, name):
        return _KwargsProbe()

    def __getitem__(self, key):
        return _KwargsProbe()

    @property
    def pk(self):
        return 1


# --- requests -------------------------------------------------------------------------------------
def clients(w: World) -> dict[str, Client]:
    """One client per visitor: signed in (session for pages) and with an API token (for /api/)."""
    from rest_framework.authtoken.models import Token

    out = {}
    for label, user in w.visitors().items():
        client = Client()
        if user is not None:
            client.force_login(user)
            token, _ = Token.objects.get_or_create(user=user)
            client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
        out[label] = client
    return out


def send(client: Client, method: str, url: str, route: Route, w: World):
    body = route.body(w) if route.body else {}
    if method == "GET":
        return client.get(url)
    if route.multipart:
        return client.post(url, body) if method == "POST" else client.generic(method, url)
    if route.html:
        return client.generic(method, url, data=_form(body), content_type="application/x-www-form-urlencoded")
    import json

    return client.generic(method, url, data=json.dumps(body), content_type="application/json")


def _form(body: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(body)


def is_refusal_for_anonymous(response, route: Route) -> bool:
    if route.html:
        return response.status_code == 302 and "/login/" in response["Location"]
    return response.status_code in (401, 403)


def a_marks(w: World) -> list[str]:
    """Strings that only appear in answers that leak project A."""
    return [w.project_a.name, w.reward_model_a.artifact_path, f'"id": {w.job_a.pk},', f'"id":{w.job_a.pk},']


def check_route(name: str, found: Found) -> list[str]:
    """Every visitor and method against one route on a fresh world; returns the failures."""
    route = ROUTES[name]
    w = build_world()
    by_visitor = clients(w)
    url = fill(found.route, route.kwargs(w))
    failures: list[str] = []
    # Refusals first (they must change nothing), then the visitors who may act (they may write).
    plan = [(m, v) for m in METHODS for v in VISITORS if v not in route.allowed.get(m, NOBODY)]
    plan += [(m, v) for m in METHODS for v in VISITORS if v in route.allowed.get(m, NOBODY)]
    for method, visitor in plan:
        allowed = visitor in route.allowed.get(method, NOBODY)
        before = None if allowed and not route.read_only else db_fingerprint()
        response = send(by_visitor[visitor], method, url, route, w)
        code = response.status_code
        where = f"{method} {url} as {visitor}: {code}"
        if code >= 500:
            failures.append(f"{where} (server error)")
            continue
        if allowed:
            if before is not None and db_fingerprint() != before:
                failures.append(f"{where} changed {changed_tables(before, db_fingerprint())}")
            if code in (401, 403, 404, 405):
                failures.append(f"{where}, but this visitor may use it (ids must point at real rows)")
            if route.kind == "collection" and visitor not in MEMBERS_A:
                body = response.content.decode(errors="replace")
                leaked = [m for m in a_marks(w) if m in body]
                if leaked:
                    failures.append(f"{where} leaks project A: {leaked}")
            continue
        if method not in route.allowed and route.kind in ("public", "page-public"):
            # Public pages may answer other methods like GET (Django's LoginView treats PUT as POST).
            ok = code in (200, 302, 405)
        elif method not in route.allowed:
            ok = code == 405 or (visitor == "anonymous" and is_refusal_for_anonymous(response, route))
        elif visitor == "anonymous":
            ok = is_refusal_for_anonymous(response, route)
        elif visitor in route.forbidden:
            ok = code == 403
        else:
            ok = code == 404
        if not ok:
            failures.append(f"{where}, expected a refusal")
        body = response.content.decode(errors="replace") if not getattr(response, "streaming", False) else ""
        if code == 404 and any(m in body for m in a_marks(w)):
            failures.append(f"{where}: the refusal names project A's data")
        after = db_fingerprint()
        if after != before:
            failures.append(f"{where} changed {changed_tables(before, after)}")
    return failures


@pytest.mark.django_db
@pytest.mark.parametrize("found", app_routes(), ids=lambda f: f.name or f.route)
def test_route_refuses_everyone_but_the_people_it_serves(found):
    if found.name not in ROUTES:
        pytest.fail(f"{found.route} is not in ROUTES (see test_every_route_is_in_the_matrix)")
    failures = check_route(found.name, found)
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_ids_of_another_project_behind_your_own_project_id_are_refused():
    """IDOR through a second id: /projects/<mine>/<thing of A>/ is 404 for B's people, nothing changes."""
    w = build_world()
    by_visitor = clients(w)
    own = {"project_id": w.project_b.pk}
    tried = 0
    failures = []
    for found in app_routes():
        route = ROUTES.get(found.name)
        ids = [name for name in route_kwargs(found.route) if name.endswith("_id")]  # a chart name is not A's
        if route is None or "project_id" not in ids or len(ids) < 2:
            continue
        url = fill(found.route, {**route.kwargs(w), **own})
        for method in route.allowed:
            for visitor in ("researcher_b", "annotator_b"):
                before = db_fingerprint()
                response = send(by_visitor[visitor], method, url, route, w)
                tried += 1
                if response.status_code != 404:
                    failures.append(f"{method} {url} as {visitor}: {response.status_code}")
                if db_fingerprint() != before:
                    failures.append(f"{method} {url} as {visitor} changed the database")
    assert tried > 0, "no route with a project id and another id: keep this test meaningful"
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_admin_site_is_for_staff_only():
    """Every admin route (generated from the admin site's URL conf): non-staff are sent to the admin login."""
    w = build_world()
    by_visitor = clients(w)
    routes = admin_routes()
    assert len(routes) > 20
    failures = []
    for found in routes:
        if found.name in ("login", "logout"):  # the admin's own sign-in form, and sign-out
            continue
        url = fill_admin(found.route, w)
        for visitor in ("anonymous", "annotator_a", "annotator_b", "researcher_b", "researcher_a"):
            for method in ("GET", "POST"):
                before = db_fingerprint()
                response = getattr(by_visitor[visitor], method.lower())(url, {"name": "renamed by an attacker"})
                if not (response.status_code == 302 and "/admin/login/" in response["Location"]):
                    failures.append(f"{method} {url} as {visitor}: {response.status_code}")
                if db_fingerprint() != before:
                    failures.append(f"{method} {url} as {visitor} changed the database")
        response = by_visitor["admin"].get(url)
        if response.status_code >= 500:
            failures.append(f"GET {url} as admin: {response.status_code}")
    assert not failures, "\n".join(failures)


# --- websockets -----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_websocket_groups_are_authorised_per_project_and_job():
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from prefloop.asgi import websocket_urlpatterns
    from tests.async_helpers import run_async

    w = build_world(prefix="ws-")
    application = URLRouter(websocket_urlpatterns)
    plan = []
    for route, (kwargs, allowed) in WEBSOCKET_ROUTES.items():
        path = fill(route, kwargs(w))
        for visitor, user in w.visitors().items():
            plan.append((path, visitor, user or AnonymousUser(), visitor in allowed))
        # Another project's dashboard / another user's job, asked for by B's researcher.
    before = db_fingerprint()

    async def attempts():
        results = []
        for path, _visitor, user, _ in plan:
            comm = WebsocketCommunicator(application, path)
            comm.scope["user"] = user
            connected, _ = await comm.connect()
            results.append(connected)
            await comm.disconnect()
        return results

    results = run_async(attempts)
    wrong = [
        f"{path} as {visitor}: connected={got}, expected {want}"
        for (path, visitor, _, want), got in zip(plan, results)
        if got != want
    ]
    assert not wrong, "\n".join(wrong)
    assert db_fingerprint() == before
