"""The vote loop's SQL budget: next and vote each run a fixed, small number of statements.

Counted with Django's CaptureQueriesContext through the real API (token auth included), so a
change that adds a query to the hot path fails here instead of showing up as lost throughput in
bench/vote_loop.py. Receivers that run after commit are not part of the request's budget.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.models import Vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db

# (next, vote) statements per request. PostgreSQL: membership lock, open leases, savepoint, the
# pick-and-lease statement | locking read, writing statement. SQLite keeps the portable ORM
# engine. The token lookup is cached per process after the first request (annotate/fast_api.py).
BUDGET = {"postgresql": (4, 2), "sqlite": (9, 8)}
# The test itself runs in a transaction, so the services' own transactions show up as Django's
# savepoints; outside a test they are BEGIN and COMMIT, which are not counted either.
DJANGO_SAVEPOINT = re.compile(r'(RELEASE )?SAVEPOINT "s\d+_x\d+"')


def loop(client, project_id: int) -> tuple[list[str], list[str], dict]:
    with CaptureQueriesContext(connection) as next_queries:
        response = client.post(f"/api/projects/{project_id}/next/", {}, format="json")
    assert response.status_code == 200, response.content
    assignment = response.json()["assignment"]
    with CaptureQueriesContext(connection) as vote_queries:
        voted = client.post(
            f"/api/assignments/{assignment['assignment_id']}/vote/",
            {"choice": "b", "idempotency_key": str(uuid.uuid4())},
            format="json",
        )
    assert voted.status_code == 201, voted.content
    statements = [
        [" ".join(q["sql"].split())[:90] for q in c.captured_queries if not DJANGO_SAVEPOINT.match(q["sql"])]
        for c in (next_queries, vote_queries)
    ]
    return statements[0], statements[1], assignment


def test_next_and_vote_stay_within_their_query_budget(api):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    client = api(annotator)
    loop(client, project.pk)  # the first call in a process also sweeps lapsed leases
    next_sql, vote_sql, assignment = loop(client, project.pk)
    assert (len(next_sql), len(vote_sql)) == BUDGET[connection.vendor], "\n".join(next_sql + ["--"] + vote_sql)
    # The fast path answers with the full payload and stores the vote with its sides.
    assert [r["side"] for r in assignment["responses"]] == ["a", "b"]
    assert all(r["text"].startswith("Answer ") for r in assignment["responses"])
    vote = Vote.objects.get(assignment_id=assignment["assignment_id"])
    assert vote.choice == "b" and vote.winner_id == vote.shown_order[1] and vote.loser_id == vote.shown_order[0]
