"""Races: many annotators at once never exceed the overlap target; a double submit is one vote.

These run against the real database with real transactions (PostgreSQL in CI's second pass,
and SQLite, whose IMMEDIATE transactions serialise writers).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from annotate.models import Assignment, Comparison, Vote
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from prefloop.core.errors import AlreadyVoted
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 24


def run_in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)

    def worker(i):
        try:
            barrier.wait()
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def test_overlap_is_never_exceeded_when_annotators_race():
    annotators = [make_user() for _ in range(THREADS)]
    project = make_project(annotators=annotators, overlap_target=3)
    comparisons = make_comparisons(project, 10)

    def annotate_until_done(i):
        annotator = annotators[i]
        voted = 0
        while (result := next_comparison(annotator=annotator, project=project)).assignment:
            record_vote(
                annotator=annotator,
                assignment_id=result.assignment.pk,
                votes=[VoteInput(aspect="overall", choice="ab"[voted % 2])],
                idempotency_key=str(uuid.uuid4()),
            )
            voted += 1
        return voted

    voted = run_in_threads(THREADS, annotate_until_done)
    assert sum(voted) == 10 * 3
    per_comparison = Counter(Vote.objects.values_list("comparison_id", flat=True))
    assert per_comparison == {c.pk: 3 for c in comparisons}
    pairs = Counter(Vote.objects.values_list("comparison_id", "annotator_id"))
    assert max(pairs.values()) == 1
    for comparison in Comparison.objects.all():
        assert (comparison.votes_done, comparison.leases_open, comparison.is_complete) == (3, 0, True)


def test_leases_alone_never_exceed_the_target_under_a_race():
    annotators = [make_user() for _ in range(THREADS)]
    project = make_project(annotators=annotators, overlap_target=2)
    make_comparisons(project, 3)

    results = run_in_threads(THREADS, lambda i: next_comparison(annotator=annotators[i], project=project))
    assigned = [r.assignment for r in results if r.assignment]
    assert len(assigned) == 3 * 2
    per_comparison = Counter(a.comparison_id for a in assigned)
    assert set(per_comparison.values()) == {2}
    assert Assignment.objects.filter(state=Assignment.State.LEASED).count() == 6


def test_a_double_submit_with_one_key_makes_one_vote():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1)
    assignment = next_comparison(annotator=annotator, project=project).assignment
    key = str(uuid.uuid4())

    def submit(_):
        return record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            votes=[VoteInput(aspect="overall", choice="b")],
            idempotency_key=key,
        )

    results = run_in_threads(8, submit)
    assert Vote.objects.count() == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert {r.votes[0].pk for r in results} == {Vote.objects.get().pk}


def test_two_different_keys_at_once_make_one_vote_and_one_conflict():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1)
    assignment = next_comparison(annotator=annotator, project=project).assignment

    def submit(i):
        try:
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                votes=[VoteInput(aspect="overall", choice="a")],
                idempotency_key=f"key-{i}",
            )
            return "ok"
        except AlreadyVoted:
            return "already"

    outcomes = Counter(run_in_threads(6, submit))
    assert outcomes == {"ok": 1, "already": 5}
    assert Vote.objects.count() == 1


@pytest.mark.postgres
def test_the_race_runs_on_postgres_with_row_locks():
    # The tests above run on both databases; this pins that CI's second pass really is PostgreSQL.
    assert connection.vendor == "postgresql"
