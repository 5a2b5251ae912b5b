"""An annotator's corrections: skip a comparison (its slot goes back to the pool) and edit their last vote.

Both follow the assignment engine's lock order (comparison row first, then its assignments and
votes; see assignment.md), so the overlap guarantee holds: a skip frees exactly the slot its
lease held, under the row lock every counter change takes, and an edit changes no counter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate.models import Assignment, Comparison, Project, User, Vote, VoteEdit
from annotate.services.voting import VoteInput, VoteResult, _validated_rows, pause_if_failing_gold
from prefloop.core.errors import AlreadyVoted, EditRefused, NotFound

# The vote fields an edit may change; the rest (sides shown, time, key) describe the first submission.
EDITABLE = ("choice", "ranking", "ranking_ties", "strength", "rationale", "winner_id", "loser_id")


@dataclass(frozen=True)
class SkipResult:
    assignment: Assignment
    released: bool  # True when this call freed a live lease's slot (False: repeated, or the lease had lapsed)


def skip_assignment(*, annotator: User, assignment_id: int) -> SkipResult:
    """Pass on a leased comparison: its slot goes back to the pool, and it is never offered to
    `annotator` again. Repeating the call changes nothing. Raises NotFound (not yours) or
    AlreadyVoted (voted: edit the vote instead)."""
    with transaction.atomic():
        assignment = Assignment.objects.filter(pk=assignment_id, annotator=annotator).first()
        if assignment is None:
            raise NotFound("No such assignment.")
        # Lock order everywhere: comparison row first, then its assignments.
        Comparison.objects.select_for_update().filter(pk=assignment.comparison_id).first()
        assignment.refresh_from_db(fields=["state"])
        if assignment.state == Assignment.State.DONE:
            raise AlreadyVoted("This comparison already has your vote; edit it instead.")
        released = assignment.state == Assignment.State.LEASED
        if released:
            # A lease still counts in leases_open until reclaimed, lapsed or not: free its slot.
            Comparison.objects.filter(pk=assignment.comparison_id).update(leases_open=F("leases_open") - 1)
        if assignment.state != Assignment.State.SKIPPED:
            # An expired lease's slot was freed by the reclaim; marking it skipped stops a late vote.
            Assignment.objects.filter(pk=assignment.pk).update(state=Assignment.State.SKIPPED)
            assignment.state = Assignment.State.SKIPPED
        return SkipResult(assignment=assignment, released=released)


def last_voted_assignment(*, annotator: User, project: Project | int) -> Assignment | None:
    """The annotator's most recent voted assignment in `project` (the one they may still edit)."""
    return (
        Assignment.objects.filter(annotator=annotator, project=project, state=Assignment.State.DONE)
        .select_related("project", "comparison__prompt")
        .order_by("-completed_at", "-id")
        .first()
    )


def edit_window_open(assignment: Assignment, *, now: datetime | None = None) -> bool:
    seconds = settings.PREFLOOP_VOTE_EDIT_SECONDS
    now = now or timezone.now()
    return (
        seconds > 0
        and assignment.completed_at is not None
        and now - assignment.completed_at <= timedelta(seconds=seconds)
    )


def edit_last_vote(
    *, annotator: User, assignment_id: int, votes: Sequence[VoteInput], now: datetime | None = None
) -> VoteResult:
    """Replace the values of `annotator`'s last submission (within PREFLOOP_VOTE_EDIT_SECONDS).

    The vote rows keep their ids, sides and counts (a vote is counted once however often it is
    edited); each changed row's previous values go to VoteEdit. An edit equal to the current
    values writes nothing (a retry is harmless). Raises NotFound, InvalidVote or EditRefused.
    """
    now = now or timezone.now()
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_related("project")
            .filter(pk=assignment_id, annotator=annotator, state=Assignment.State.DONE)
            .first()
        )
        if assignment is None:
            raise NotFound("No such voted assignment.")
        last = last_voted_assignment(annotator=annotator, project=assignment.project_id)
        if last is None or last.pk != assignment.pk:
            raise EditRefused("Only your last vote in this project can be changed.")
        if not edit_window_open(assignment, now=now):
            raise EditRefused(f"Votes can be changed for {settings.PREFLOOP_VOTE_EDIT_SECONDS} s after voting.")
        rows = {
            row["aspect"]: row
            for row in _validated_rows(project=assignment.project, shown_order=assignment.shown_order, votes=votes)
        }
        Comparison.objects.select_for_update().filter(pk=assignment.comparison_id).first()
        current = list(Vote.objects.select_for_update().filter(assignment=assignment).order_by("id"))
        last_edit = dict(
            VoteEdit.objects.filter(vote__in=current)
            .order_by("vote_id", "edited_at")
            .values_list("vote_id", "edited_at")
        )
        for vote in current:
            new = {field: rows[vote.aspect].get(field) for field in EDITABLE}
            if all(getattr(vote, field) == value for field, value in new.items()):
                continue
            VoteEdit.objects.create(
                vote=vote,
                edited_at=now,
                voted_at=last_edit.get(vote.pk, vote.created_at),
                **{field: getattr(vote, field) for field in EDITABLE},
            )
            for field, value in new.items():
                setattr(vote, field, value)
            vote.save(update_fields=[f.removesuffix("_id") for f in EDITABLE])
        if Comparison.objects.filter(pk=assignment.comparison_id).exclude(gold_label="").exists():
            pause_if_failing_gold(annotator=annotator, project=assignment.project)
        return VoteResult(assignment=assignment, votes=current, replayed=False)


def vote_answers(assignment: Assignment) -> dict[str, dict]:
    """The annotator's current answers on `assignment` by aspect, in sides as shown (for the page's edit)."""
    sides = {completion_id: "abcdefghijklmnopqrstuvwxyz"[i] for i, completion_id in enumerate(assignment.shown_order)}
    return {
        v.aspect: {
            "choice": v.choice,
            "ranking": _sides_ranking(v.ranking, v.ranking_ties, sides) if v.ranking else None,
            "strength": v.strength,
            "rationale": v.rationale,
        }
        for v in Vote.objects.filter(assignment=assignment)
    }


def _sides_ranking(ranking: list[int], ties: list[list[int]] | None, sides: dict[int, str]) -> list:
    """A stored ranking in the API's shape: sides best first, a tied group as a list."""
    group_of = {c: tuple(g) for g in ties or () for c in g}
    out: list = []
    for completion in ranking:
        group = group_of.get(completion)
        if group is None:
            out.append(sides[completion])
        elif completion == group[0]:
            out.append([sides[c] for c in group])
    return out
