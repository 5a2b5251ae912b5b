"""One request per loop (`POST /api/assignments/{id}/vote/?next=1`) and the fast path that serves it.

Every test here runs twice: through annotate.fast_api's middleware (token requests with a JSON
body) and through the DRF views alone (the middleware taken out), and both must answer alike.
"""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Assignment, Comparison, Vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db
FAST = "annotate.fast_api.HotPathMiddleware"


@pytest.fixture(params=["fast", "drf"])
def path(request, settings) -> str:
    if request.param == "drf":
        settings.MIDDLEWARE = [m for m in django_settings.MIDDLEWARE if m != FAST]
    return request.param


def vote(client, assignment_id: int, *, key: str | None = None, query: str = "?next=1", **body):
    body.setdefault("choice", "a")
    body["idempotency_key"] = key or str(uuid.uuid4())
    return client.post(f"/api/assignments/{assignment_id}/vote/{query}", body, format="json")


def lease(client, project) -> dict:
    response = client.post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["assignment"]


def test_the_vote_answer_carries_the_next_assignment_as_next_gives_it(path, api):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    client = api(annotator)
    first = lease(client, project)
    response = vote(client, first["assignment_id"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["replayed"] is False and len(body["votes"]) == 1
    following = body["next"]["assignment"]
    assert body["next"]["reason"] == "assigned"
    assert following["assignment_id"] != first["assignment_id"]
    assert set(following) == set(first)  # the same payload as /next/
    assert [r["side"] for r in following["responses"]] == ["a", "b"]
    # Acknowledged = stored, and the next one is a real lease that took its slot.
    stored = Vote.objects.get(assignment_id=first["assignment_id"])
    assert stored.pk == body["votes"][0]["id"] and stored.choice == "a"
    leased = Assignment.objects.get(pk=following["assignment_id"])
    assert leased.state == Assignment.State.LEASED and leased.annotator == annotator
    assert Comparison.objects.get(pk=leased.comparison_id).leases_open == 1


def test_without_next_the_answer_is_as_before(path, api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    client = api(annotator)
    response = vote(client, lease(client, project)["assignment_id"], query="")
    assert response.status_code == 201 and "next" not in response.json()
    assert not Assignment.objects.filter(state=Assignment.State.LEASED).exists()


def test_exclude_and_overlap_hold_and_the_queue_runs_dry(path, api):
    annotator, other = make_user(), make_user()
    project = make_project(annotators=[annotator, other], overlap_target=1)
    make_comparisons(project, 3)
    client = api(annotator)
    taken_by_other = lease(api(other), project)  # one comparison's only slot is leased away
    first = lease(client, project)
    held = client.post(f"/api/projects/{project.pk}/next/", {"exclude": [first["assignment_id"]]}, format="json").json()
    held_id = held["assignment"]["assignment_id"]  # the prefetched one, on the page
    answer = vote(client, first["assignment_id"], exclude=[held_id]).json()
    # Nothing is left but the held lease (excluded) and the other annotator's slot (full).
    assert answer["next"] == {"assignment": None, "reason": "complete"}
    again = vote(client, held_id).json()
    assert again["next"] == {"assignment": None, "reason": "complete"}
    slots = {c.pk: c.votes_done + c.leases_open for c in Comparison.objects.all()}
    assert set(slots.values()) == {1}
    assert Assignment.objects.get(pk=taken_by_other["assignment_id"]).state == Assignment.State.LEASED


def test_a_replayed_vote_returns_the_stored_vote_and_resumes_the_same_next_lease(path, api):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    client = api(annotator)
    first = lease(client, project)
    original = vote(client, first["assignment_id"], key="k-1", choice="b").json()
    retry = vote(client, first["assignment_id"], key="k-1", choice="b")
    assert retry.status_code == 200
    replay = retry.json()
    assert replay["replayed"] is True and replay["votes"] == original["votes"]
    # The retry's next is the lease the first answer handed out (resumed), not a second one.
    assert replay["next"]["reason"] == "resumed"
    assert replay["next"]["assignment"]["assignment_id"] == original["next"]["assignment"]["assignment_id"]
    assert Vote.objects.count() == 1
    assert Assignment.objects.filter(state=Assignment.State.LEASED).count() == 1


@pytest.mark.parametrize(
    "query, body, field",
    [
        ("?next=maybe", {}, "next"),
        ("?next=1", {"exclude": "3"}, "exclude"),
        ("?next=1", {"exclude": list(range(11))}, "exclude"),
        ("?next=1", {"choice": "sideways"}, "votes[overall].choice"),
        ("?next=1", {"time_spent_ms": -1}, "time_spent_ms"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(path, api, query, body, field):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    client = api(annotator)
    assignment = lease(client, project)
    response = vote(client, assignment["assignment_id"], query=query, **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_vote" and response.json()["field"] == field
    assert not Vote.objects.exists()
    assert Assignment.objects.filter(state=Assignment.State.LEASED).count() == 1


def error_answers(client, project, assignment_id: int) -> list[tuple[int, dict]]:
    """Status and body of each error the two endpoints give, in a fixed order."""
    assert vote(client, assignment_id).status_code == 201
    url = f"/api/assignments/{assignment_id}/vote/"
    answers = [
        vote(client, assignment_id),  # already voted
        vote(client, 10**9),  # not found
        client.post(url, b'{"choice": ', content_type="application/json"),  # broken JSON
        client.post(url, b'{"choice": "a", "rationale": "\\u0000"}', content_type="application/json"),
        client.post(f"/api/projects/{10**9}/next/", {}, format="json"),  # not a member
    ]
    stranger = APIClient()  # (an APIClient's own credentials would override the header)
    answers += [
        stranger.post(url, {"choice": "a"}, format="json", HTTP_AUTHORIZATION=header)
        for header in ("Token not-a-token", "Token", "")
    ]
    return [(r.status_code, r.json()) for r in answers]


def test_error_shapes_are_the_same_on_both_paths(settings, api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    fast = error_answers(api(annotator), project, lease(api(annotator), project)["assignment_id"])
    settings.MIDDLEWARE = [m for m in django_settings.MIDDLEWARE if m != FAST]
    drf = error_answers(api(annotator), project, lease(api(annotator), project)["assignment_id"])
    assert [status for status, _ in fast] == [409, 404, 400, 400, 404, 401, 401, 401]
    assert fast == drf
    assert fast[0][1]["error"] == "already_voted" and fast[2][1]["error"] == "invalid_body"


def test_a_deleted_token_or_a_deactivated_user_is_refused_at_once(path, api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 3)
    client = api(annotator)
    lease(client, project)  # the token is now cached
    Token.objects.filter(user=annotator).delete()
    assert client.post(f"/api/projects/{project.pk}/next/", {}, format="json").status_code == 401
    client = api(annotator)  # a new token
    lease(client, project)
    annotator.is_active = False
    annotator.save()
    response = client.post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assert response.status_code == 401 and response.json() == {"detail": "User inactive or deleted."}


def test_the_page_session_still_needs_csrf_and_gets_next_too(path):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    page = client.get(f"/projects/{project.pk}/annotate/")
    assert page.status_code == 200
    assignment_id = page.context["comparison"]["assignment_id"]
    url = f"/api/assignments/{assignment_id}/vote/?next=1"
    body = {"choice": "a", "idempotency_key": "page-1"}
    refused = client.post(url, body, content_type="application/json")
    assert refused.status_code == 403 and not Vote.objects.exists()
    token = client.cookies[django_settings.CSRF_COOKIE_NAME].value
    response = client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert response.json()["next"]["assignment"]["assignment_id"] != assignment_id


def test_security_headers_stay_on_the_fast_path(path, api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1)
    response = api(annotator).post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assert response["Content-Security-Policy"] and response["X-Frame-Options"] == "DENY"
    assert response["Content-Type"] == "application/json"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"


@pytest.mark.parametrize("query, flag", [("?next=html", None), ("", "html"), ("", True)])
def test_the_flag_may_come_in_the_body_and_html_brings_the_pages_fragment(path, api, query, flag):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 2)
    client = api(annotator)
    first = lease(client, project)
    extra = {} if flag is None else {"next": flag}
    answer = vote(client, first["assignment_id"], query=query, **extra).json()
    following = answer["next"]["assignment"]
    assert following["assignment_id"] != first["assignment_id"]
    if flag is True:
        assert "next_html" not in answer
    else:  # the annotator page's own fragment (frontend/_queue_item.html), escaped texts and all
        assert f'data-assignment="{following["assignment_id"]}"' in answer["next_html"]
    last = vote(client, following["assignment_id"], query=query, **extra).json()
    assert last["next"] == {"assignment": None, "reason": "complete"}
    if flag is not True:
        assert 'data-reason="complete"' in last["next_html"]
