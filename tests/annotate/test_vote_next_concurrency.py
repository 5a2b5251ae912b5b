"""The one-request loop under races, through the whole HTTP stack (fast path included).

Annotators loop on `POST /api/assignments/{id}/vote/?next=1` from many threads at once: every
acknowledged vote is stored, nothing else is, and no comparison goes past its overlap target.
Real transactions on the real database (PostgreSQL in the second pass; SQLite serialises).
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotate.models import Assignment, Comparison, Vote
from tests.annotate.test_concurrency import run_in_threads
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 12


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def tokens_for(users) -> list[str]:
    from rest_framework.authtoken.models import Token

    return [Token.objects.get_or_create(user=u)[0].key for u in users]


def test_one_request_loops_racing_store_exactly_what_they_acknowledge():
    annotators = [make_user() for _ in range(THREADS)]
    project = make_project(annotators=annotators, overlap_target=3)
    comparisons = make_comparisons(project, 12)
    tokens = tokens_for(annotators)

    def annotate_until_done(i: int) -> list[int]:
        client = client_for(tokens[i])
        acked: list[int] = []
        answer = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()
        while answer["assignment"] is not None:
            response = client.post(
                f"/api/assignments/{answer['assignment']['assignment_id']}/vote/?next=1",
                {"choice": "ab"[len(acked) % 2], "idempotency_key": str(uuid.uuid4())},
                format="json",
            )
            assert response.status_code == 201, response.content
            acked += [v["id"] for v in response.json()["votes"]]
            answer = response.json()["next"]
        assert answer["reason"] == "complete"
        return acked

    acked = [vote_id for votes in run_in_threads(THREADS, annotate_until_done) for vote_id in votes]
    assert sorted(acked) == sorted(Vote.objects.values_list("id", flat=True))
    assert len(acked) == 12 * 3
    assert Counter(Vote.objects.values_list("comparison_id", flat=True)) == {c.pk: 3 for c in comparisons}
    assert max(Counter(Vote.objects.values_list("comparison_id", "annotator_id")).values()) == 1
    for comparison in Comparison.objects.all():
        assert (comparison.votes_done, comparison.leases_open, comparison.is_complete) == (3, 0, True)
    assert not Assignment.objects.filter(state=Assignment.State.LEASED).exists()


def test_a_double_submit_with_next_is_one_vote_and_one_next_lease():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 4)
    [token] = tokens_for([annotator])
    first = client_for(token).post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    key = str(uuid.uuid4())

    def submit(_: int) -> tuple[int, dict]:
        response = client_for(token).post(
            f"/api/assignments/{first['assignment_id']}/vote/?next=1",
            {"choice": "b", "idempotency_key": key},
            format="json",
        )
        return response.status_code, response.json()

    results = run_in_threads(8, submit)
    assert sorted(status for status, _ in results) == [200] * 7 + [201]
    stored = Vote.objects.get()
    assert {body["votes"][0]["id"] for _, body in results} == {stored.pk}
    # Every answer names the same next lease: the first handed it out, the replays resumed it.
    nexts = {body["next"]["assignment"]["assignment_id"] for _, body in results}
    assert len(nexts) == 1
    assert list(Assignment.objects.filter(state=Assignment.State.LEASED).values_list("id", flat=True)) == list(nexts)


@pytest.mark.postgres
def test_these_races_run_on_postgres():
    assert connection.vendor == "postgresql"
