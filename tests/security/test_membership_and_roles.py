"""Membership and roles: leases outlive neither a pause nor a removal, annotators see annotator
views only, and idempotency keys are private to their owner."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.models import Membership, User, Vote
from annotate.services.projects import membership_set
from tests.factories import make_comparisons, make_project, make_user
from tests.security.conftest import db_fingerprint

pytestmark = pytest.mark.django_db


@pytest.fixture
def holding(api):
    """An annotator holding a lease, a colleague in the same project, and a researcher."""
    annotator, colleague = make_user("ann"), make_user("colleague")
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(
        annotators=[annotator, colleague],
        researchers=[researcher],
        overlap_target=2,
        gold_rate=0.5,
        gold_min_accuracy=0.8,
    )
    make_comparisons(project, 4)
    client = api(annotator)
    assignment = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    return project, annotator, client, f"/api/assignments/{assignment['assignment_id']}/vote/", api


def vote(client, url, key="k1"):
    return client.post(url, {"choice": "a", "idempotency_key": key}, format="json")


def test_a_paused_annotator_cannot_vote_on_a_lease_already_held(holding):
    project, annotator, client, url, _ = holding
    membership_set(project=project, user=annotator, paused=True)
    before = db_fingerprint()
    response = vote(client, url)
    assert response.status_code == 409 and response.json()["error"] == "paused", response.content
    assert db_fingerprint() == before
    membership_set(project=project, user=annotator, paused=False)  # resumed: the lease is good again
    assert vote(client, url).status_code == 201


def test_a_removed_annotator_cannot_vote_on_a_lease_already_held(holding):
    project, annotator, client, url, _ = holding
    Membership.objects.filter(project=project, user=annotator).delete()
    before = db_fingerprint()
    response = vote(client, url)
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert db_fingerprint() == before


def test_an_annotator_made_researcher_cannot_vote_on_an_annotator_lease(holding):
    project, annotator, client, url, _ = holding
    membership_set(project=project, user=annotator, role=Membership.Role.RESEARCHER)
    assert vote(client, url).status_code == 404
    assert not Vote.objects.exists()


def test_a_vote_recorded_before_the_pause_still_replays(holding):
    project, annotator, client, url, _ = holding
    assert vote(client, url).status_code == 201
    membership_set(project=project, user=annotator, paused=True)
    replay = vote(client, url)
    assert replay.status_code == 200 and replay.json()["replayed"] is True


def test_another_users_idempotency_key_is_not_an_oracle(holding):
    project, annotator, client, url, api = holding
    assert vote(client, url, key="secret-key").status_code == 201
    colleague = api(User.objects.get(username="colleague"))
    missing = "/api/assignments/999999/vote/"
    unknown, known = (vote(colleague, missing, key="never-used"), vote(colleague, missing, key="secret-key"))
    assert unknown.status_code == known.status_code == 404
    assert unknown.json() == known.json()
    # On the colleague's own lease the same key is simply the colleague's key.
    own = colleague.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    mine = vote(colleague, f"/api/assignments/{own['assignment_id']}/vote/", key="secret-key")
    assert mine.status_code == 201 and mine.json()["replayed"] is False
    assert Vote.objects.filter(idempotency_key="secret-key").count() == 2


def annotator_view_keys() -> set[str]:
    return {
        "id",
        "name",
        "instructions",
        "aspects",
        "allow_tie",
        "allow_both_bad",
        "strength_scale",
        "rationale",
        "progress",
    }


def test_the_project_list_shows_annotators_what_the_detail_shows_them(holding):
    project, annotator, client, url, api = holding
    vote(client, url)
    other = make_project(name="second", annotators=[annotator], gold_rate=0.3)
    listed = client.get("/api/projects/").json()
    assert [p["id"] for p in listed] == [project.pk, other.pk]
    for entry in listed:
        assert entry == client.get(f"/api/projects/{entry['id']}/").json()
        assert set(entry) == annotator_view_keys()  # no gold, overlap or cap settings
    assert listed[0]["progress"]["done"] == 1 and listed[1]["progress"]["done"] == 0


def test_the_project_list_shows_researchers_the_settings_of_their_projects_only(holding):
    project, annotator, _, _, api = holding
    researcher = User.objects.get(username="res")
    mixed = make_project(name="mixed", researchers=[annotator])  # the annotator researches this one
    listed = {p["id"]: p for p in api(annotator).get("/api/projects/").json()}
    assert "progress" in listed[project.pk] and "gold_rate" not in listed[project.pk]
    assert listed[mixed.pk] == api(annotator).get(f"/api/projects/{mixed.pk}/").json()
    assert "gold_rate" in listed[mixed.pk] and "progress" not in listed[mixed.pk]
    (entry,) = api(researcher).get("/api/projects/").json()
    assert entry == api(researcher).get(f"/api/projects/{project.pk}/").json() and "overlap_target" in entry


def test_the_project_list_reads_progress_in_a_fixed_number_of_queries(holding):
    project, annotator, client, _, _ = holding
    for i in range(5):
        make_project(name=f"extra {i}", annotators=[annotator])
    with CaptureQueriesContext(connection) as few:
        client.get("/api/projects/")
    make_project(name="one more", annotators=[annotator])
    with CaptureQueriesContext(connection) as more:
        assert len(client.get("/api/projects/").json()) == 7
    assert len(more.captured_queries) == len(few.captured_queries)
