"""Recording votes: validated against the project, idempotent per client key, one transaction."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache

from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from annotate.models import Assignment, Comparison, Membership, Project, User, Vote
from annotate.services.prepared import prepared_cursor
from annotate.signals import VOTE_FACTS
from prefloop.core.errors import (
    AlreadyVoted,
    AnnotatorPaused,
    AssignmentExpired,
    IdempotencyKeyReused,
    InvalidVote,
    NotFound,
)

SIDES = string.ascii_lowercase
UNSTORABLE_KEY = re.compile("[\x00\ud800-\udfff]")
SKIPPED_MESSAGE = "You skipped this comparison; it went back to the pool."


@dataclass(frozen=True)
class VoteInput:
    aspect: str | None = None  # None: the project's only aspect
    choice: str | None = None  # a | b | tie | both_bad, for a pair
    # Sides best first ("b", "a", "c"), for K > 2; a list inside is a tied group (["b", "c"], "a")
    # where the project allows ties.
    ranking: Sequence[str | Sequence[str]] | None = None
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

    Whole on purpose: the portable path is one transaction whose lock order (assignment, then
    comparison) is the assignment engine's (annotate/services/assignment.md); split, its steps
    would each need the locks restated.
    """
    if not idempotency_key or len(idempotency_key) > 64:
        raise InvalidVote("idempotency_key", "required, at most 64 characters")
    if UNSTORABLE_KEY.search(idempotency_key):  # PostgreSQL refuses these, SQLite cannot encode a surrogate
        raise InvalidVote("idempotency_key", "must be text without NUL characters or lone surrogates")
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        return _record_vote_pg(
            annotator=annotator,
            assignment_id=assignment_id,
            votes=votes,
            key=idempotency_key,
            time_spent_ms=time_spent_ms,
            now=now,
        )
    try:
        with transaction.atomic():
            replay = _replay(annotator=annotator, assignment_id=assignment_id, key=idempotency_key)
            if replay:
                return replay
            assignment = (
                Assignment.objects.select_related("project")
                .filter(pk=assignment_id, annotator=annotator)
                .annotate(member_paused=_annotator_paused(annotator))
                .first()
            )
            if assignment is None:
                raise NotFound("No such assignment.")
            check_still_annotating(assignment.member_paused)
            rows = _validated_rows(project=assignment.project, shown_order=assignment.shown_order, votes=votes)

            # Lock order everywhere: comparison row first, then its assignments.
            comparison = Comparison.objects.select_for_update().get(pk=assignment.comparison_id)
            assignment.refresh_from_db(fields=["state", "leased_until"])
            replay = _replay(annotator=annotator, assignment_id=assignment_id, key=idempotency_key)
            if replay:  # a concurrent retry of this very submission committed while we waited
                return replay
            if assignment.state == Assignment.State.DONE:
                raise AlreadyVoted("This assignment already has a vote.")
            if assignment.state == Assignment.State.SKIPPED:
                raise AssignmentExpired(SKIPPED_MESSAGE)
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
                not comparison.gold_label and comparison.imported_votes + done >= assignment.project.overlap_target  # type: ignore[assignment]  # a value beside F() expressions
            )
            Comparison.objects.filter(pk=comparison.pk).update(**counter_update)
            if comparison.gold_label:
                pause_if_failing_gold(annotator=annotator, project=assignment.project)
            transaction.on_commit(lambda: _announce_vote(assignment))
            return VoteResult(assignment=assignment, votes=created, replayed=False)
    except IntegrityError as exc:
        # Only a key used by another submission at the same instant gets here.
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.") from exc


def _annotator_paused(annotator: User) -> Subquery:
    """Whether `annotator` is paused in the assignment's project; NULL: no longer an annotator there."""
    member = Membership.objects.filter(project=OuterRef("project_id"), user=annotator, role=Membership.Role.ANNOTATOR)
    return Subquery(member.values("paused")[:1])


def check_still_annotating(paused: bool | None) -> None:
    """A lease outlives its holder's membership: removed (None) is NotFound, paused is refused."""
    if paused is None:
        raise NotFound("No such assignment.")
    if paused:
        raise AnnotatorPaused("Your work on this project is paused; the vote was not recorded.")


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
    previous = list(Vote.objects.filter(annotator=annotator, idempotency_key=key).select_related("assignment"))
    if not previous:
        return None
    if previous[0].assignment_id != assignment_id:
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.")
    assert previous[0].assignment is not None  # a human vote always has its assignment
    return VoteResult(assignment=previous[0].assignment, votes=previous, replayed=True)


def _validated_rows(*, project: Project, shown_order: list[int], votes: Sequence[VoteInput]) -> list[dict]:
    aspects = project.aspect_names
    if any(v.aspect is None for v in votes):
        if len(aspects) != 1 or len(votes) != 1:
            raise InvalidVote("votes", f"this project needs one vote per aspect {aspects}")
        votes = [replace(votes[0], aspect=aspects[0])]
    given = [v.aspect or "" for v in votes]  # each has an aspect by now
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
                row["winner_id"], row["loser_id"] = (winner, next(c for c in shown_order if c != winner))
        else:
            groups = [[g] if isinstance(g, str) else list(g) for g in vote.ranking or ()]
            flat = [side for group in groups for side in group]
            if vote.ranking is None or sorted(flat) != sorted(sides) or not all(groups):
                raise InvalidVote(f"{field}.ranking", f"must order all sides {list(sides)}, best first")
            if any(len(g) > 1 for g in groups) and not project.allow_tie:
                raise InvalidVote(f"{field}.ranking", "this project does not allow ties")
            ids = [[shown_order[sides.index(side)] for side in group] for group in groups]
            row["choice"] = Vote.Choice.RANKED
            row["ranking"] = [c for group in ids for c in group]
            row["ranking_ties"] = [group for group in ids if len(group) > 1] or None
            # A clear best and worst only when they are not tied with another.
            row["winner_id"] = ids[0][0] if len(ids[0]) == 1 else None
            row["loser_id"] = ids[-1][0] if len(ids[-1]) == 1 and len(ids) > 1 else None
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


def _announce_vote(assignment: Assignment, facts: dict | None = None) -> None:
    """Tell live dashboards about the vote (after commit, so a rolled-back vote is never shown);
    `facts`: the VOTE_FACTS the vote's statement evaluated (annotate.signals)."""
    from annotate.signals import vote_recorded

    vote_recorded.send(sender=Assignment, assignment=assignment, facts=facts or {})


# --- PostgreSQL: one locking read and one writing statement -----------------------------------
# Same rules as the ORM path above, in two statements; assignment.md gives the locking argument.

_PROJECT_FIELDS = [f for f in Project._meta.concrete_fields]
# Locks the comparison row (the lock every counter change takes). A row we had to wait for is
# re-read at its newest version; the assignment's columns may be older than the lock, so the
# write below re-checks the state it acts on.
_READ_SQL = (
    "SELECT a.comparison_id, a.state, a.shown_order::text, c.imported_votes, c.votes_done, c.leases_open,"
    " c.gold_label, c.round, EXISTS (SELECT 1 FROM annotate_vote v WHERE v.annotator_id = %s AND v.idempotency_key = %s),"
    " (SELECT m.paused FROM annotate_membership m"
    "  WHERE m.project_id = a.project_id AND m.user_id = a.annotator_id AND m.role = 'annotator'), "
    + ", ".join(f'p."{f.column}"' for f in _PROJECT_FIELDS)
    + """{facts}
    FROM annotate_assignment a
    JOIN annotate_comparison c ON c.id = a.comparison_id
    JOIN annotate_project p ON p.id = a.project_id
    WHERE a.id = %s AND a.annotator_id = %s
    FOR UPDATE OF c"""
)


@cache
def _read_sql(facts: tuple[tuple[str, str], ...]) -> str:
    """The locking read with the receivers' VOTE_FACTS as extra columns (annotate.signals)."""
    return _READ_SQL.format(facts="".join(f", ({sql})" for _, sql in facts))


# Close the assignment only from the state we validated against; the counters and the votes
# follow only if it closed. {values} is one typed VALUES row per aspect.
_WRITE_SQL = """
    WITH done AS (
        UPDATE annotate_assignment SET state = 'done', completed_at = %s
        WHERE id = %s AND state = %s
        RETURNING id
    ), counters AS (
        UPDATE annotate_comparison SET votes_done = votes_done + 1, leases_open = leases_open - %s, is_complete = %s
        WHERE id = %s AND EXISTS (SELECT 1 FROM done)
    )
    INSERT INTO annotate_vote (comparison_id, assignment_id, annotator_id, external_annotator, source, aspect, choice,
                               ranking, ranking_ties, strength, rationale, shown_order, winner_id, loser_id, time_spent_ms,
                               idempotency_key, created_at)
    SELECT %s, done.id, %s, '', 'human', v.aspect, v.choice, v.ranking, v.ranking_ties, v.strength, v.rationale,
           %s::jsonb, v.winner_id, v.loser_id, %s, %s, %s
    FROM done CROSS JOIN (VALUES {values}) AS v (aspect, choice, ranking, ranking_ties, strength, rationale, winner_id, loser_id)
    RETURNING id, aspect, choice, strength, rationale, winner_id, loser_id, ranking::text, ranking_ties::text"""
_VALUES_ROW = "(%s::varchar, %s::varchar, %s::jsonb, %s::jsonb, %s::smallint, %s::text, %s::bigint, %s::bigint)"


def _record_vote_pg(
    *,
    annotator: User,
    assignment_id: int,
    votes: Sequence[VoteInput],
    key: str,
    time_spent_ms: int | None,
    now: datetime,
) -> VoteResult:
    """PostgreSQL's path: one locking read and one write statement on a prepared cursor, in one
    transaction. Whole on purpose: the two statements and the checks between them share the lock."""
    try:
        with transaction.atomic(), prepared_cursor() as cursor:
            # Twice at most: a second read happens only when the assignment changed while we
            # waited for the lock, and then we hold the lock, so nothing can change it again.
            facts = tuple(VOTE_FACTS.items())
            for _ in range(2):
                cursor.execute(_read_sql(facts), [annotator.pk, key, assignment_id, annotator.pk])
                row = cursor.fetchone()
                if row is None:
                    raise NotFound("No such assignment.")
                (
                    comparison_id,
                    state,
                    shown_order,
                    imported,
                    done,
                    leases,
                    gold_label,
                    round_number,
                    key_seen,
                    paused,
                    *columns,
                ) = row
                values, fact_values = columns[: len(_PROJECT_FIELDS)], columns[len(_PROJECT_FIELDS) :]
                if key_seen:
                    replay = _replay(annotator=annotator, assignment_id=assignment_id, key=key)
                    if replay:
                        return replay
                check_still_annotating(paused)
                project = Project.from_db(connection.alias, [f.attname for f in _PROJECT_FIELDS], values)
                if isinstance(project.aspects, str):
                    project.aspects = json.loads(project.aspects)
                shown = json.loads(shown_order)
                rows = _validated_rows(project=project, shown_order=shown, votes=votes)
                if state == Assignment.State.DONE:
                    raise AlreadyVoted("This assignment already has a vote.")
                if state == Assignment.State.SKIPPED:
                    raise AssignmentExpired(SKIPPED_MESSAGE)
                if state != Assignment.State.LEASED and not gold_label:
                    # The lease lapsed and was reclaimed. The vote still counts if no one took the slot.
                    if imported + done + leases >= project.overlap_target:
                        raise AssignmentExpired("The lease expired and this comparison went to someone else.")
                complete = not gold_label and imported + done + 1 >= project.overlap_target
                release = 1 if state == Assignment.State.LEASED else 0
                params = [
                    now,
                    assignment_id,
                    state,
                    release,
                    complete,
                    comparison_id,
                    comparison_id,
                    annotator.pk,
                    shown_order,
                    time_spent_ms,
                    key,
                    now,
                ]
                for r in rows:
                    ranking = json.dumps(r["ranking"]) if r.get("ranking") is not None else None
                    ties = json.dumps(r["ranking_ties"]) if r.get("ranking_ties") else None
                    params += [
                        r["aspect"],
                        r["choice"],
                        ranking,
                        ties,
                        r["strength"],
                        r["rationale"],
                        r.get("winner_id"),
                        r.get("loser_id"),
                    ]
                cursor.execute(_WRITE_SQL.format(values=", ".join([_VALUES_ROW] * len(rows))), params)
                written = cursor.fetchall()
                if written:
                    break
            else:  # pragma: no cover - the second pass runs under the lock
                raise RuntimeError(f"assignment {assignment_id} kept changing under its comparison's lock")
            assignment = Assignment(
                pk=assignment_id,
                comparison_id=comparison_id,
                annotator_id=annotator.pk,
                project_id=project.pk,
                state=Assignment.State.DONE,
                shown_order=shown,
                completed_at=now,
            )
            assignment.project = project
            assignment.annotator = annotator
            assignment.comparison = Comparison(
                pk=comparison_id,
                project_id=project.pk,
                round=round_number,
                gold_label=gold_label,
                is_complete=complete,
                imported_votes=imported,
                votes_done=done + 1,
            )
            created = [
                Vote(
                    pk=vote_id,
                    comparison_id=comparison_id,
                    assignment=assignment,
                    annotator=annotator,
                    source=Vote.Source.HUMAN,
                    aspect=aspect,
                    choice=choice,
                    strength=strength,
                    rationale=rationale,
                    shown_order=shown,
                    winner_id=winner_id,
                    loser_id=loser_id,
                    ranking=json.loads(ranking) if ranking else None,
                    ranking_ties=json.loads(ties) if ties else None,
                    time_spent_ms=time_spent_ms,
                    idempotency_key=key,
                    created_at=now,
                )
                for vote_id, aspect, choice, strength, rationale, winner_id, loser_id, ranking, ties in written
            ]
            if gold_label:
                pause_if_failing_gold(annotator=annotator, project=project)
            known = {name: value for (name, _), value in zip(facts, fact_values, strict=True)}
            transaction.on_commit(lambda: _announce_vote(assignment, known))
            return VoteResult(assignment=assignment, votes=created, replayed=False)
    except IntegrityError as exc:
        # Only a key used by another submission at the same instant gets here.
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.") from exc
