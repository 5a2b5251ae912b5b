"""The assignment engine: overlap, no repeats, leases, caps, random sides, blind payloads."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Assignment, Comparison, Vote
from annotate.selectors import assignment_payload
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from prefloop.core.errors import AssignmentExpired, NotFound
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def vote(annotator, assignment, choice="a", key=None):
    return record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        votes=[VoteInput(aspect="overall", choice=choice)],
        idempotency_key=key or f"k-{assignment.pk}-{annotator.pk}",
    )


def test_each_comparison_gets_exactly_its_overlap_target():
    annotators = [make_user() for _ in range(5)]
    project = make_project(annotators=annotators, overlap_target=3)
    comparisons = make_comparisons(project, 4)
    for _ in range(10):
        for annotator in annotators:
            result = next_comparison(annotator=annotator, project=project)
            if result.assignment:
                vote(annotator, result.assignment)
    counts = Counter(Vote.objects.values_list("comparison_id", flat=True))
    assert counts == {c.pk: 3 for c in comparisons}
    assert all(c.is_complete for c in Comparison.objects.all())
    assert next_comparison(annotator=annotators[0], project=project).reason == "complete"


def test_an_annotator_never_sees_the_same_comparison_twice():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=5)
    make_comparisons(project, 3)
    seen = []
    while (result := next_comparison(annotator=annotator, project=project)).assignment:
        seen.append(result.assignment.comparison_id)
        vote(annotator, result.assignment)
    assert len(seen) == len(set(seen)) == 3
    assert result.reason == "complete"


def test_an_open_lease_is_returned_again_until_it_is_voted():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    first = next_comparison(annotator=annotator, project=project)
    again = next_comparison(annotator=annotator, project=project)
    assert (first.reason, again.reason) == ("assigned", "resumed")
    assert again.assignment.pk == first.assignment.pk


def test_excluding_the_lease_on_screen_prefetches_the_next():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    first = next_comparison(annotator=annotator, project=project).assignment
    second = next_comparison(annotator=annotator, project=project, exclude_assignments=[first.pk]).assignment
    assert second.comparison_id != first.comparison_id


def test_open_leases_per_annotator_are_limited(settings):
    settings.PREFLOOP_MAX_OPEN_LEASES = 2
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 5)
    held = []
    for _ in range(2):
        held.append(next_comparison(annotator=annotator, project=project, exclude_assignments=held).assignment.pk)
    assert next_comparison(annotator=annotator, project=project, exclude_assignments=held).reason == "lease_limit"


def test_an_abandoned_lease_expires_and_the_work_goes_to_someone_else():
    slow, fast = make_user(), make_user()
    project = make_project(annotators=[slow, fast], overlap_target=1, lease_seconds=60)
    make_comparisons(project, 1)
    abandoned = next_comparison(annotator=slow, project=project).assignment
    assert next_comparison(annotator=fast, project=project).reason == "complete"

    later = timezone.now() + timedelta(seconds=61)
    taken = next_comparison(annotator=fast, project=project, now=later).assignment
    assert taken.comparison_id == abandoned.comparison_id
    abandoned.refresh_from_db()
    assert abandoned.state == Assignment.State.EXPIRED
    vote(fast, taken)
    with pytest.raises(AssignmentExpired):
        vote(slow, abandoned)
    assert Vote.objects.count() == 1


def test_a_late_vote_still_counts_when_nobody_took_the_slot():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1, lease_seconds=60)
    make_comparisons(project, 1)
    assignment = next_comparison(annotator=annotator, project=project).assignment
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(seconds=5))
    vote(annotator, assignment)
    comparison = Comparison.objects.get()
    assert (comparison.votes_done, comparison.leases_open, comparison.is_complete) == (1, 0, True)


def test_per_annotator_caps_are_honoured():
    capped, other = make_user(), make_user()
    project = make_project(annotators=[capped, other], annotator_cap=2, overlap_target=1)
    make_comparisons(project, 5)
    for _ in range(2):
        vote(capped, next_comparison(annotator=capped, project=project).assignment)
    assert next_comparison(annotator=capped, project=project).reason == "cap_reached"
    membership = project.memberships.get(user=capped)
    membership.cap = 3
    membership.save()
    assert next_comparison(annotator=capped, project=project).assignment is not None


def test_sides_are_randomised_per_assignment_and_recorded():
    annotators = [make_user() for _ in range(40)]
    project = make_project(annotators=annotators, overlap_target=40)
    comparison = make_comparisons(project, 1)[0]
    canonical = list(comparison.items.values_list("completion_id", flat=True))
    orders = []
    for annotator in annotators:
        assignment = next_comparison(annotator=annotator, project=project).assignment
        orders.append(tuple(assignment.shown_order))
        result = vote(annotator, assignment, choice="a")
        assert result.votes[0].shown_order == assignment.shown_order
        assert result.votes[0].winner_id == assignment.shown_order[0]
    flipped = sum(1 for order in orders if list(order) != canonical)
    assert 5 < flipped < 35  # P(outside) < 1e-5 for a fair coin


def test_the_payload_names_no_model_and_no_other_vote():
    first, second = make_user(), make_user()
    project = make_project(annotators=[first, second], overlap_target=2)
    make_comparisons(project, 1, models=("secret-model-alpha", "secret-model-beta"))
    vote(first, next_comparison(annotator=first, project=project).assignment, choice="a")
    payload = assignment_payload(next_comparison(annotator=second, project=project).assignment)
    text = repr(payload)
    assert "secret-model" not in text
    assert "choice" not in {k for k in payload} and "votes" not in payload
    assert [r["side"] for r in payload["responses"]] == ["a", "b"]


def test_non_members_get_nothing():
    outsider = make_user()
    project = make_project()
    make_comparisons(project, 1)
    with pytest.raises(NotFound):
        next_comparison(annotator=outsider, project=project)


def test_closed_comparisons_are_never_handed_out():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1)
    Comparison.objects.update(is_open=False)
    assert next_comparison(annotator=annotator, project=project).reason == "complete"


def test_higher_priority_comparisons_go_first():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    low, high = make_comparisons(project, 2)
    Comparison.objects.filter(pk=high.pk).update(priority=5)
    assert next_comparison(annotator=annotator, project=project).assignment.comparison_id == high.pk


def test_imported_votes_count_toward_the_overlap_target():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=2)
    comparison = make_comparisons(project, 1)[0]
    Comparison.objects.filter(pk=comparison.pk).update(imported_votes=2, is_complete=True)
    assert next_comparison(annotator=annotator, project=project).reason == "complete"
