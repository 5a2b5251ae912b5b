"""Errors never leak tracebacks or SQL; ordering and filter parameters are allow-listed (unknown ones ignored)."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.security.conftest import build_world, db_fingerprint

pytestmark = pytest.mark.django_db

LEAKS = ("Traceback", 'File "', "SELECT", "annotate_user", "password", "syntax error", "DatabaseError", "ValueError")


def _token_client(user) -> Client:
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token.key}")


@override_settings(ROOT_URLCONF="tests.security.crash_urls", DEBUG=False, DEBUG_PROPAGATE_EXCEPTIONS=False)
def test_an_api_500_is_generic_json_without_traceback_or_sql():
    w = build_world()
    response = _token_client(w.researcher_a).get("/api/test-crash/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "server_error", "detail": "Internal server error."}
    body = response.content.decode()
    assert not [leak for leak in LEAKS if leak in body]


@override_settings(ROOT_URLCONF="tests.security.crash_urls", DEBUG=False, DEBUG_PROPAGATE_EXCEPTIONS=False)
def test_a_page_500_is_a_generic_page_without_traceback_or_sql():
    w = build_world()
    client = Client(raise_request_exception=False)
    client.force_login(w.researcher_a)
    response = client.get("/test-crash/")
    assert response.status_code == 500
    body = response.content.decode()
    assert not [leak for leak in LEAKS if leak in body], body[:500]


@override_settings(DEBUG=False)
def test_validation_and_not_found_errors_are_json_with_detail():
    w = build_world()
    client = _token_client(w.researcher_b)
    missing = client.get(f"/api/projects/{w.project_a.pk}/")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found" and "detail" in missing.json()
    bad = client.get(f"/api/projects/{w.project_b.pk}/export/?format=exe")
    assert bad.status_code == 400 and "format" in bad.json()
    unauthenticated = Client().get(f"/api/projects/{w.project_a.pk}/")
    assert unauthenticated.status_code == 401 and "detail" in unauthenticated.json()
    html_404 = Client(raise_request_exception=False)
    html_404.force_login(w.researcher_b)
    page = html_404.get(f"/projects/{w.project_a.pk}/dashboard/")
    assert (
        page.status_code == 404
        and "Traceback" not in page.content.decode()
        and w.project_a.name not in page.content.decode()
    )


HOSTILE_PARAMS = [
    {"ordering": "password"},
    {"ordering": "-annotator__password"},
    {"ordering": "annotator__password"},
    {"o": "created_by__password"},
    {"sort": "password"},
    {"order_by": "annotator__password"},
    {"annotator__password__startswith": "md5"},
    {"created_by__password__startswith": "pbkdf2"},
    {"project__memberships__user__password__startswith": "m"},
    {"search": "password"},
    {"fields": "password"},
    {"expand": "annotator"},
    {"annotator__username": "ann-a"},
    {"limit": "-1"},
    {"offset": "-5"},
    {"limit": "99999999999999999999"},
    {"offset": "99999999999999999999"},
]


def list_endpoints(w) -> dict[str, object]:
    """Every list endpoint and the visitor who may read it (B's people read their own project)."""
    endpoints = {
        "/api/projects/": w.researcher_b,
        f"/api/projects/{w.project_b.pk}/comparisons/": w.researcher_b,
        f"/api/projects/{w.project_b.pk}/votes/": w.researcher_b,
        f"/api/projects/{w.project_b.pk}/my-votes/": w.annotator_b,
        f"/api/projects/{w.project_b.pk}/reward-models/": w.researcher_b,
        "/api/jobs/": w.researcher_b,
    }
    from django.urls import NoReverseMatch, reverse

    for name in ("policy-list", "round-list"):
        try:
            endpoints[reverse(name, args=[w.project_b.pk])] = w.researcher_b
        except NoReverseMatch:
            pass
    return endpoints


def test_ordering_and_filter_parameters_cannot_sort_or_filter_by_secrets_or_other_projects():
    w = build_world()
    failures = []
    for url, user in list_endpoints(w).items():
        client = _token_client(user)
        plain = client.get(url)
        assert plain.status_code == 200, (url, plain.status_code)
        for params in HOSTILE_PARAMS:
            params = {k: v.format(a=w.project_a.pk) for k, v in params.items()}
            before = db_fingerprint()
            response = client.get(url, params)
            body = response.content.decode()
            where = f"GET {url} {params}: {response.status_code}"
            if response.status_code >= 500:
                failures.append(where)
            elif (
                response.status_code == 200
                and "limit" not in params
                and "offset" not in params
                and response.json() != plain.json()
            ):
                failures.append(f"{where}: the parameter changed the answer (not allow-listed)")
            if response.status_code not in (200, 400):
                failures.append(where)
            for leak in ("md5$", "pbkdf2", "password", w.project_a.name, "Traceback"):
                if leak in body and leak not in plain.content.decode():
                    failures.append(f"{where}: leaks {leak!r}")
            if db_fingerprint() != before:
                failures.append(f"{where}: changed the database")
    assert not failures, "\n".join(failures)


def test_the_job_list_project_filter_cannot_reach_another_projects_jobs():
    w = build_world()
    client = _token_client(w.researcher_b)
    response = client.get("/api/jobs/", {"project": w.project_a.pk})
    assert response.status_code == 200 and response.json()["results"] == []
    for params in ({"project": "x"}, {"status": "'; DROP TABLE prefloop_job; --"}, {"kind": "%"}):
        response = client.get("/api/jobs/", params)
        assert response.status_code in (200, 400)
        assert w.project_a.name not in response.content.decode()
    assert client.get("/api/jobs/", {"project": w.project_b.pk}).json()["results"][0]["id"] == w.job_b.pk


def test_the_export_annotator_filter_only_reads_this_projects_votes():
    """?annotator= names a user; it filters this project's votes and never pulls in another project's."""
    w = build_world()
    client = _token_client(w.researcher_b)
    response = client.get(
        f"/api/projects/{w.project_b.pk}/export/",
        {"format": "jsonl", "raw": "true", "annotator": w.annotator_a.username},
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b""
