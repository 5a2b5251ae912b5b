"""Skipping a comparison and editing the last vote: services, REST endpoints and their guarantees."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Assignment, Comparison, Vote, VoteEdit
from annotate.services.assignment import next_comparison, reclaim_expired_leases
from annotate.services.corrections import edit_last_vote, skip_assignment
from annotate.services.voting import VoteInput, record_vote
from prefloop.core.errors import AlreadyVoted, AssignmentExpired, EditRefused, InvalidVote, NotFound
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def vote(annotator, assignment, choice="a", **kwargs):
    return record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        votes=[VoteInput(choice=choice, **kwargs)],
        idempotency_key=uuid.uuid4().hex,
    )


def test_a_skipped_comparison_goes_back_to_the_pool_but_not_to_the_annotator():
    first, second = make_user(), make_user()
    project = make_project(annotators=[first, second], overlap_target=1)
    [comparison] = make_comparisons(project, 1)
    lease = next_comparison(annotator=first, project=project).assignment
    assert next_comparison(annotator=second, project=project).reason == "complete"  # the only slot is leased

    result = skip_assignment(annotator=first, assignment_id=lease.pk)

    assert result.released and result.assignment.state == Assignment.State.SKIPPED
    comparison.refresh_from_db()
    assert comparison.leases_open == 0
    assert next_comparison(annotator=first, project=project).reason == "complete", "never offered again to who skipped"
    assert next_comparison(annotator=second, project=project).assignment.comparison_id == comparison.pk


def test_skipping_twice_frees_the_slot_once():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=2)
    [comparison] = make_comparisons(project, 1)
    lease = next_comparison(annotator=annotator, project=project).assignment
    assert skip_assignment(annotator=annotator, assignment_id=lease.pk).released
    assert not skip_assignment(annotator=annotator, assignment_id=lease.pk).released
    comparison.refresh_from_db()
    assert comparison.leases_open == 0


def test_a_skipped_lease_cannot_be_voted_afterwards():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=2)
    make_comparisons(project, 1)
    lease = next_comparison(annotator=annotator, project=project).assignment
    skip_assignment(annotator=annotator, assignment_id=lease.pk)
    with pytest.raises(AssignmentExpired):
        vote(annotator, lease)
    assert Vote.objects.count() == 0
    assert Comparison.objects.get().votes_done == 0


def test_skipping_a_lapsed_and_reclaimed_lease_changes_no_counter():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=2, lease_seconds=60)
    [comparison] = make_comparisons(project, 1)
    lease = next_comparison(annotator=annotator, project=project).assignment
    assert reclaim_expired_leases(project=project, now=timezone.now() + timedelta(minutes=5)) == 1
    result = skip_assignment(annotator=annotator, assignment_id=lease.pk)
    assert not result.released and result.assignment.state == Assignment.State.SKIPPED
    comparison.refresh_from_db()
    assert comparison.leases_open == 0


def test_a_voted_comparison_cannot_be_skipped_and_others_leases_are_not_found():
    annotator, other = make_user(), make_user()
    project = make_project(annotators=[annotator, other], overlap_target=2)
    make_comparisons(project, 2)
    voted = next_comparison(annotator=annotator, project=project).assignment
    vote(annotator, voted)
    with pytest.raises(AlreadyVoted):
        skip_assignment(annotator=annotator, assignment_id=voted.pk)
    theirs = next_comparison(annotator=other, project=project).assignment
    with pytest.raises(NotFound):
        skip_assignment(annotator=annotator, assignment_id=theirs.pk)


def test_editing_the_last_vote_keeps_the_first_in_the_audit_trail_and_counts_once():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=3, strength_scale=3)
    [comparison] = make_comparisons(project, 1)
    lease = next_comparison(annotator=annotator, project=project).assignment
    first = vote(annotator, lease, "a", strength=2, rationale="A is right").votes[0]

    edit_last_vote(
        annotator=annotator, assignment_id=lease.pk, votes=[VoteInput(choice="b", rationale="B, on reflection")]
    )

    [edited] = Vote.objects.filter(annotator=annotator)
    assert edited.pk == first.pk and edited.choice == "b" and edited.strength is None
    assert (edited.winner_id, edited.loser_id) == (lease.shown_order[1], lease.shown_order[0])
    [trail] = VoteEdit.objects.filter(vote=edited)
    assert (trail.choice, trail.strength, trail.rationale) == ("a", 2, "A is right")
    assert (trail.winner_id, trail.loser_id) == (lease.shown_order[0], lease.shown_order[1])
    comparison.refresh_from_db()
    assert comparison.votes_done == 1 and comparison.leases_open == 0


def test_repeating_an_edit_writes_no_second_audit_row():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1)
    lease = next_comparison(annotator=annotator, project=project).assignment
    vote(annotator, lease, "a")
    for _ in range(2):
        edit_last_vote(annotator=annotator, assignment_id=lease.pk, votes=[VoteInput(choice="tie")])
    assert VoteEdit.objects.count() == 1


def test_only_the_last_vote_can_be_edited_and_only_within_the_window(settings):
    settings.PREFLOOP_VOTE_EDIT_SECONDS = 60
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 2)
    older = next_comparison(annotator=annotator, project=project).assignment
    vote(annotator, older, "a")
    newer = next_comparison(annotator=annotator, project=project).assignment
    vote(annotator, newer, "a")
    with pytest.raises(EditRefused, match="last vote"):
        edit_last_vote(annotator=annotator, assignment_id=older.pk, votes=[VoteInput(choice="b")])
    with pytest.raises(EditRefused, match="60 s"):
        edit_last_vote(
            annotator=annotator,
            assignment_id=newer.pk,
            votes=[VoteInput(choice="b")],
            now=timezone.now() + timedelta(seconds=61),
        )
    with pytest.raises(InvalidVote, match="choice"):
        edit_last_vote(annotator=annotator, assignment_id=newer.pk, votes=[VoteInput(choice="c")])
    assert set(Vote.objects.values_list("choice", flat=True)) == {"a"}
    assert VoteEdit.objects.count() == 0


def test_a_ranking_can_be_edited():
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1, models=("m1", "m2", "m3"))
    lease = next_comparison(annotator=annotator, project=project).assignment
    record_vote(
        annotator=annotator,
        assignment_id=lease.pk,
        votes=[VoteInput(ranking=["a", "b", "c"])],
        idempotency_key=uuid.uuid4().hex,
    )
    edit_last_vote(annotator=annotator, assignment_id=lease.pk, votes=[VoteInput(ranking=["c", "a", "b"])])
    vote_row = Vote.objects.get()
    order = lease.shown_order
    assert vote_row.ranking == [order[2], order[0], order[1]]
    assert VoteEdit.objects.get().ranking == order


def test_rest_skip_edit_and_last_vote(api):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=2)
    make_comparisons(project, 2)
    client = api(annotator)
    skipped = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]["assignment_id"]
    response = client.post(f"/api/assignments/{skipped}/skip/")
    assert response.status_code == 200 and response.json() == {
        "assignment_id": skipped,
        "state": "skipped",
        "released": True,
    }
    voted = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]["assignment_id"]
    assert voted != skipped
    assert (
        client.post(
            f"/api/assignments/{voted}/vote/", {"choice": "a", "idempotency_key": "k1"}, format="json"
        ).status_code
        == 201
    )
    assert client.post(f"/api/assignments/{voted}/skip/").json()["error"] == "already_voted"

    last = client.get(f"/api/projects/{project.pk}/my-last-vote/").json()
    assert last["assignment_id"] == voted and last["editable"] and last["answers"]["overall"]["choice"] == "a"
    edited = client.post(f"/api/assignments/{voted}/edit/", {"choice": "both_bad"}, format="json")
    assert edited.status_code == 200 and edited.json()["votes"][0]["choice"] == "both_bad"
    bad = client.post(f"/api/assignments/{voted}/edit/", {"choice": "x"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "votes[overall].choice"
    assert Vote.objects.get(assignment_id=voted).choice == "both_bad"
    assert Comparison.objects.get(assignments__pk=voted).votes_done == 1


# --- ties within a ranking ------------------------------------------------------------------------


def test_a_ranking_with_a_tie_is_stored_flat_with_its_tie_group_and_exports_a_tie(tmp_path):
    from annotate.export.rows import iter_preference_rows
    from annotate.export.vote_rows import iter_vote_rows
    from annotate.leaderboard.data import project_pair_counts
    from annotate.models import Completion

    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 1, models=("m1", "m2", "m3"))
    lease = next_comparison(annotator=annotator, project=project).assignment
    record_vote(
        annotator=annotator,
        assignment_id=lease.pk,
        votes=[VoteInput(ranking=[["b", "c"], "a"])],
        idempotency_key=uuid.uuid4().hex,
    )
    order = lease.shown_order
    v = Vote.objects.get()
    assert v.ranking == [order[1], order[2], order[0]] and v.ranking_ties == [[order[1], order[2]]]
    assert (v.winner_id, v.loser_id) == (None, order[0]), "no single best when the top is tied"

    texts = dict(Completion.objects.values_list("id", "text"))
    labels = {frozenset((r["response_a"], r["response_b"])): r["label"] for r in iter_preference_rows(project)}
    assert labels[frozenset((texts[order[1]], texts[order[2]]))] == "tie"
    assert labels[frozenset((texts[order[1]], texts[order[0]]))] in ("a", "b")
    assert list(iter_vote_rows(project))[0]["ranking_ties"] == [[order[1], order[2]]]
    counts = project_pair_counts(project)
    names = dict(Completion.objects.values_list("id", "model_name"))
    tied = tuple(sorted((names[order[1]], names[order[2]])))
    cells = {(counts.models[i], counts.models[j]): c.tolist() for (i, j), c in zip(counts.pairs, counts.counts)}
    assert cells[tied][1] == 1 and sum(cells[tied]) == 1, "counted as one tie"


def test_a_tie_in_a_ranking_is_refused_where_the_project_allows_no_ties():
    annotator = make_user()
    project = make_project(annotators=[annotator], allow_tie=False)
    make_comparisons(project, 1, models=("m1", "m2", "m3"))
    lease = next_comparison(annotator=annotator, project=project).assignment
    with pytest.raises(InvalidVote, match="does not allow ties"):
        record_vote(
            annotator=annotator,
            assignment_id=lease.pk,
            votes=[VoteInput(ranking=["a", ["b", "c"]])],
            idempotency_key=uuid.uuid4().hex,
        )
    with pytest.raises(InvalidVote, match="must order all sides"):
        record_vote(
            annotator=annotator,
            assignment_id=lease.pk,
            votes=[VoteInput(ranking=["a", ["b", "b"]])],
            idempotency_key=uuid.uuid4().hex,
        )


def test_a_tied_ranking_can_be_edited_and_read_back_in_sides(api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    make_comparisons(project, 1, models=("m1", "m2", "m3", "m4"))
    client = api(annotator)
    lease = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]["assignment_id"]
    voted = client.post(
        f"/api/assignments/{lease}/vote/", {"ranking": ["d", ["a", "c"], "b"], "idempotency_key": "t1"}, format="json"
    )
    assert voted.status_code == 201, voted.content
    assert client.get(f"/api/projects/{project.pk}/my-last-vote/").json()["answers"]["overall"]["ranking"] == [
        "d",
        ["a", "c"],
        "b",
    ]
    bad = client.post(
        f"/api/assignments/{lease}/vote/", {"ranking": ["d", [1], "b"], "idempotency_key": "t2"}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["field"] == "ranking"
    assert (
        client.post(f"/api/assignments/{lease}/edit/", {"ranking": ["a", "b", "c", "d"]}, format="json").status_code
        == 200
    )
    v = Vote.objects.get()
    assert v.ranking_ties is None and VoteEdit.objects.get().ranking_ties is not None
