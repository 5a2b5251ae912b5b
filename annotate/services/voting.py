"""Recording votes: validated against the project, idempotent per client key, one transaction."""
from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotate.errors import AlreadyVoted, AssignmentExpired, IdempotencyKeyReused, InvalidVote, NotFound
from annotate.models import Assignment, Comparison, Membership, Project, User, Vote

SIDES = string.ascii_lowercase


@dataclass(frozen=True)
class VoteInput:
    aspect: str
    choice: str | None = None  # a | b | tie | both_bad, for a pair
    ranking: Sequence[str] | None = None  # sides best first ("b", "a", "c"), for K > 2
    strength: int | None = None
    rationale: str = ""


@dataclass(frozen=True)
class VoteResult:
    assignment: Assignment
    votes: list[Vote]
    replayed: bool  # True when this key was seen before and nothing new was written


def record_vote(
    *,
    annotator: User,
    assignment_id: int,
    votes: Sequence[VoteInput],
    idempotency_key: str,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> VoteResult:
    """Record one submission (a vote per aspect) for `annotator`'s assignment.

    Retrying with the same `idempotency_key` returns the first result and writes nothing.
    Raises NotFound (not yours / no such assignment), InvalidVote, AlreadyVoted,
    AssignmentExpired (its slot went to someone else) or IdempotencyKeyReused.
    """
    if not idempotency_key or len(idempotency_key) > 64:
        raise InvalidVote("idempotency_key", "required, at most 64 characters")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            replay = _replay(annotator=annotator, assignment_id=assignment_id, key=idempotency_key)
            if replay:
                return replay
            assignment = (
                Assignment.objects.select_related("project").filter(pk=assignment_id, annotator=annotator).first()
            )
            if assignment is None:
                raise NotFound("No such assignment.")
            rows = _validated_rows(project=assignment.project, shown_order=assignment.shown_order, votes=votes)

            # Lock order everywhere: comparison row first, then its assignments.
            comparison = Comparison.objects.select_for_update().get(pk=assignment.comparison_id)
            assignment.refresh_from_db(fields=["state", "leased_until"])
            replay = _replay(annotator=annotator, assignment_id=assignment_id, key=idempotency_key)
            if replay:  # a concurrent retry of this very submission committed while we waited
                return replay
            if assignment.state == Assignment.State.DONE:
                raise AlreadyVoted("This assignment already has a vote.")
            counter_update = {"votes_done": F("votes_done") + 1}
            if assignment.state == Assignment.State.LEASED:
                counter_update["leases_open"] = F("leases_open") - 1
            elif not comparison.gold_label:
                # The lease lapsed and was reclaimed. The vote still counts if no one took the slot.
                taken = comparison.imported_votes + comparison.votes_done + comparison.leases_open
                if taken >= assignment.project.overlap_target:
                    raise AssignmentExpired("The lease expired and this comparison went to someone else.")

            created = Vote.objects.bulk_create(
                [
                    Vote(
                        comparison_id=comparison.pk,
                        assignment=assignment,
                        annotator=annotator,
                        source=Vote.Source.HUMAN,
                        shown_order=assignment.shown_order,
                        time_spent_ms=time_spent_ms,
                        idempotency_key=idempotency_key,
                        **row,
                    )
                    for row in rows
                ]
            )
            Assignment.objects.filter(pk=assignment.pk).update(state=Assignment.State.DONE, completed_at=now)
            assignment.state, assignment.completed_at = Assignment.State.DONE, now
            done = comparison.votes_done + 1
            counter_update["is_complete"] = (
                not comparison.gold_label and comparison.imported_votes + done >= assignment.project.overlap_target
            )
            Comparison.objects.filter(pk=comparison.pk).update(**counter_update)
            if comparison.gold_label:
                pause_if_failing_gold(annotator=annotator, project=assignment.project)
            transaction.on_commit(lambda: _announce_vote(assignment))
            return VoteResult(assignment=assignment, votes=created, replayed=False)
    except IntegrityError as exc:
        # Only a key used by another submission at the same instant gets here.
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.") from exc


def gold_is_correct(vote: Vote, comparison: Comparison) -> bool:
    if comparison.gold_label == "winner":
        return vote.winner_id == comparison.gold_winner_id
    return vote.choice == comparison.gold_label


def pause_if_failing_gold(*, annotator: User, project: Project) -> bool:
    """Pause the annotator in `project` when their gold accuracy is below the project's threshold."""
    if project.gold_min_accuracy is None:
        return False
    aspect = project.aspect_names[0]
    answers = list(
        Vote.objects.filter(annotator=annotator, comparison__project=project, aspect=aspect)
        .exclude(comparison__gold_label="")
        .select_related("comparison")
    )
    if len(answers) < project.gold_min_answers:
        return False
    accuracy = sum(gold_is_correct(v, v.comparison) for v in answers) / len(answers)
    if accuracy >= project.gold_min_accuracy:
        return False
    Membership.objects.filter(project=project, user=annotator).update(
        paused=True,
        paused_reason=f"gold accuracy {accuracy:.0%} on {len(answers)} checks is below {project.gold_min_accuracy:.0%}",
    )
    return True


def _replay(*, annotator: User, assignment_id: int, key: str) -> VoteResult | None:
    previous = list(Vote.objects.filter(idempotency_key=key).select_related("assignment"))
    if not previous:
        return None
    if previous[0].annotator_id != annotator.pk or previous[0].assignment_id != assignment_id:
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.")
    return VoteResult(assignment=previous[0].assignment, votes=previous, replayed=True)


def _validated_rows(*, project: Project, shown_order: list[int], votes: Sequence[VoteInput]) -> list[dict]:
    aspects = project.aspect_names
    given = [v.aspect for v in votes]
    if sorted(given) != sorted(aspects):
        raise InvalidVote("votes", f"need exactly one vote for each aspect {aspects}, got {given}")
    sides = SIDES[: len(shown_order)]
    rows = []
    for vote in votes:
        field = f"votes[{vote.aspect}]"
        row: dict = {"aspect": vote.aspect, "rationale": (vote.rationale or "").strip()}
        if len(shown_order) == 2:
            if vote.choice not in project.allowed_choices:
                raise InvalidVote(f"{field}.choice", f"must be one of {project.allowed_choices}")
            if vote.ranking is not None:
                raise InvalidVote(f"{field}.ranking", "only for comparisons of more than two responses")
            row["choice"] = vote.choice
            if vote.choice in ("a", "b"):
                winner = shown_order[sides.index(vote.choice)]
                row["winner_id"], row["loser_id"] = winner, next(c for c in shown_order if c != winner)
        else:
            if vote.ranking is None or sorted(vote.ranking) != sorted(sides):
                raise InvalidVote(f"{field}.ranking", f"must order all sides {list(sides)}, best first")
            row["choice"] = Vote.Choice.RANKED
            row["ranking"] = [shown_order[sides.index(side)] for side in vote.ranking]
            row["winner_id"], row["loser_id"] = row["ranking"][0], row["ranking"][-1]
        if vote.strength is not None:
            if project.strength_scale == 0:
                raise InvalidVote(f"{field}.strength", "this project does not collect strength")
            if row["choice"] not in ("a", "b", Vote.Choice.RANKED):
                raise InvalidVote(f"{field}.strength", "only a preference (not a tie or both bad) has a strength")
            if not 1 <= vote.strength <= project.strength_scale:
                raise InvalidVote(f"{field}.strength", f"must be between 1 and {project.strength_scale}")
        row["strength"] = vote.strength
        if project.rationale == Project.Rationale.REQUIRED and not row["rationale"]:
            raise InvalidVote(f"{field}.rationale", "this project requires a rationale")
        if project.rationale == Project.Rationale.OFF and row["rationale"]:
            raise InvalidVote(f"{field}.rationale", "this project does not collect rationales")
        rows.append(row)
    return rows


def _announce_vote(assignment: Assignment) -> None:
    """Tell live dashboards about the vote (after commit, so a rolled-back vote is never shown)."""
    from annotate.signals import vote_recorded

    vote_recorded.send(sender=Assignment, assignment=assignment)
