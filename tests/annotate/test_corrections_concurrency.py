"""Races with skips: annotators who lease, skip and vote at once never push a comparison past its
overlap target, and `leases_open` always equals the live leases (real transactions; PostgreSQL
is the interesting database, SQLite serialises writers)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count, Q
from django.utils import timezone

from annotate.models import Assignment, Comparison, Vote
from annotate.services.assignment import next_comparison, reclaim_expired_leases
from annotate.services.corrections import skip_assignment
from annotate.services.voting import VoteInput, record_vote
from tests.annotate.test_concurrency import run_in_threads
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 16


def test_skips_racing_leases_and_votes_keep_the_overlap_target_and_the_lease_count():
    annotators = [make_user() for _ in range(THREADS)]
    project = make_project(annotators=annotators, overlap_target=2)
    make_comparisons(project, 8)

    def work(i):
        annotator, voted, skipped = annotators[i], 0, 0
        while (result := next_comparison(annotator=annotator, project=project)).assignment:
            if (i + voted + skipped) % 3 == 0:  # every third one passed on: the slot goes back
                skip_assignment(annotator=annotator, assignment_id=result.assignment.pk)
                skipped += 1
                continue
            record_vote(
                annotator=annotator,
                assignment_id=result.assignment.pk,
                votes=[VoteInput(choice="a")],
                idempotency_key=uuid.uuid4().hex,
            )
            voted += 1
        return voted, skipped

    results = run_in_threads(THREADS, work)
    assert sum(s for _, s in results) > 0, "the race did skip"
    assert all(c.votes_done + c.leases_open <= 2 for c in Comparison.objects.all()), "never past the target"
    # An annotator told "complete" while another's lease was about to be skipped stopped early;
    # passes one after another, until nobody gets work, fill the slots those skips gave back.
    while True:
        drained = [work(i) for i in range(THREADS)]
        if not any(v or s for v, s in drained):
            break
        results += drained
    assert sum(v for v, _ in results) == 8 * 2, "every slot a skip gave back was filled by someone else"
    assert set(Counter(Vote.objects.values_list("comparison_id", flat=True)).values()) == {2}
    for comparison in Comparison.objects.annotate(live=Count("assignments", filter=Q(assignments__state="leased"))):
        assert comparison.leases_open == comparison.live == 0
        assert comparison.votes_done == 2 and comparison.is_complete


def test_a_skip_racing_the_reclaim_of_its_own_lapsed_lease_frees_the_slot_once():
    annotators = [make_user() for _ in range(THREADS)]
    project = make_project(annotators=annotators, overlap_target=THREADS, lease_seconds=10)
    [comparison] = make_comparisons(project, 1)
    leases = [next_comparison(annotator=a, project=project).assignment for a in annotators]
    later = timezone.now() + timedelta(minutes=1)

    def work(i):
        if i % 2:
            return reclaim_expired_leases(project=project, now=later)
        return skip_assignment(annotator=annotators[i], assignment_id=leases[i].pk).released

    run_in_threads(THREADS, work)
    reclaim_expired_leases(project=project, now=later)
    comparison.refresh_from_db()
    assert comparison.leases_open == 0
    assert not Assignment.objects.filter(state="leased").exists()
    states = Counter(Assignment.objects.values_list("state", flat=True))
    assert states["skipped"] >= 1 and sum(states.values()) == THREADS
