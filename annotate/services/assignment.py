"""Assignment engine: hands each annotator the next comparison, never beyond its overlap target.

See assignment.md beside this package for the flow and the locking argument.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.models import Assignment, Comparison, Membership, Project, Prompt, User
from annotate.services.prepared import prepared_cursor
from prefloop.core.errors import NotFound

_shuffler = random.SystemRandom()  # sides must not be predictable from anything the client sees

# How many candidates one call tries before giving up; each miss is a comparison that filled
# up between the candidate query and its row lock.
_MAX_CANDIDATES = 20


@dataclass(frozen=True)
class AssignmentResult:
    assignment: Assignment | None
    # "assigned" (new lease), "resumed" (an open lease of this annotator), or why there is none:
    # "complete" (no comparison needs this annotator), "cap_reached", "lease_limit", "paused".
    reason: str
    # Completion texts by id when the engine already read them with the lease (PostgreSQL path);
    # `selectors.assignment_payload` then needs no query of its own.
    texts: dict[int, str] | None = None


def annotator_membership(*, annotator: User, project: Project, lock: bool = False) -> Membership:
    qs = Membership.objects.filter(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    if lock:
        qs = qs.select_for_update()
    membership = qs.first()
    if membership is None:
        raise NotFound("No such project.")
    return membership


def next_comparison(
    *, annotator: User, project: Project | int, exclude_assignments: Collection[int] = (), now: datetime | None = None
) -> AssignmentResult:
    """Lease the next comparison to `annotator`, or return one of their open leases.

    `project` may be a Project or its id; either way the annotator must be one of its
    annotators (NotFound otherwise). An open lease is returned again (renewed) unless its id
    is in `exclude_assignments`; the web UI passes the one on screen to prefetch the next.
    Guarantees, under any concurrency: a comparison never has more live leases plus votes than
    its overlap target, and an annotator never gets the same comparison twice.
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        _assign = _assign_pg
    else:
        _assign = _assign_orm
        if not isinstance(project, Project):
            project = _annotator_project(annotator=annotator, project_id=project)
    if not isinstance(project, Project):
        project = Project(pk=project)  # the PostgreSQL path reads the row with the membership lock
    swept = _reclaim_now_and_then(project=project, now=now)
    result = _assign(annotator=annotator, project=project, exclude_assignments=exclude_assignments, now=now)
    if result.reason == "complete" and not swept:
        # Lapsed leases may be holding the last free slots: sweep now rather than say "no work".
        reclaim_expired_leases(project=project, now=now)
        result = _assign(annotator=annotator, project=project, exclude_assignments=exclude_assignments, now=now)
    return result


def _annotator_project(*, annotator: User, project_id: int) -> Project:
    project = Project.objects.filter(
        pk=project_id, memberships__user=annotator, memberships__role=Membership.Role.ANNOTATOR
    ).first()
    if project is None:
        raise NotFound("No such project.")
    return project


def _resume_open_lease(
    *, open_ids: list[int], exclude_assignments: Collection[int], lease: timedelta, now: datetime
) -> Assignment | None:
    """Renew and return the oldest open lease that is not on screen (ids oldest first)."""
    for lease_id in open_ids:
        if lease_id in exclude_assignments:
            continue
        # Conditional: a lease that lapsed a moment ago may already have lost its slot.
        renewed = Assignment.objects.filter(pk=lease_id, state=Assignment.State.LEASED, leased_until__gt=now).update(
            leased_until=now + lease
        )
        if renewed:
            return Assignment.objects.select_related("project", "comparison__prompt").get(pk=lease_id)
    return None


def _assign_orm(
    *, annotator: User, project: Project, exclude_assignments: Collection[int], now: datetime
) -> AssignmentResult:
    """The portable engine (SQLite): the ORM, one step per statement. Whole on purpose: its steps
    run under one lock in the order annotate/services/assignment.md argues for."""
    lease = timedelta(seconds=project.lease_seconds)
    with transaction.atomic():
        # Serialises this annotator's own requests (two tabs, a double click): caps and
        # "resume your open lease" are then exact.
        membership = annotator_membership(annotator=annotator, project=project, lock=True)
        if membership.paused:
            return AssignmentResult(None, "paused")

        open_ids = list(
            Assignment.objects.filter(
                annotator=annotator, project=project, state=Assignment.State.LEASED, leased_until__gt=now
            )
            .order_by("created_at", "id")
            .values_list("id", flat=True)
        )
        resumed = _resume_open_lease(open_ids=open_ids, exclude_assignments=exclude_assignments, lease=lease, now=now)
        if resumed is not None:
            return AssignmentResult(resumed, "resumed")
        if len(open_ids) >= settings.PREFLOOP_MAX_OPEN_LEASES:
            return AssignmentResult(None, "lease_limit")

        cap = membership.cap if membership.cap is not None else project.annotator_cap
        if cap is not None:
            taken = Assignment.objects.filter(
                annotator=annotator, project=project, state__in=[Assignment.State.LEASED, Assignment.State.DONE]
            ).count()
            if taken >= cap:
                return AssignmentResult(None, "cap_reached")

        if project.gold_rate and _shuffler.random() < project.gold_rate:
            gold = _lease_gold(annotator=annotator, project=project, now=now, lease=lease)
            if gold is not None:
                return AssignmentResult(gold, "assigned")

        target = project.overlap_target
        tried: list[int] = []
        for _ in range(_MAX_CANDIDATES):
            candidates = (
                Comparison.objects.filter(project=project, is_open=True, is_complete=False, gold_label="")
                .exclude(pk__in=tried)
                .alias(taken=F("imported_votes") + F("votes_done") + F("leases_open"))
                .filter(taken__lt=target)
                .exclude(assignments__annotator=annotator)
                .order_by("-priority", "id")
            )
            # Queue diversity (as the PostgreSQL pick): not a third comparison of one prompt in a row
            # while another prompt has work; the fallback below takes any prompt.
            comparison = (
                _diverse(candidates, annotator=annotator, project=project)
                .select_related("prompt")
                .select_for_update(skip_locked=True, of=("self",))
                .first()
            )
            if comparison is None:
                comparison = (
                    candidates.select_related("prompt").select_for_update(skip_locked=True, of=("self",)).first()
                )
            if comparison is None:
                # Every candidate may just be locked by concurrent leases: wait for the first
                # rather than tell this annotator there is no work while slots are free.
                comparison = candidates.select_for_update(of=("self",)).first()
            if comparison is None:
                return AssignmentResult(None, "complete")
            # Re-read under the lock: the candidate query's snapshot may predate a commit.
            comparison.refresh_from_db(fields=["imported_votes", "votes_done", "leases_open", "is_complete"])
            if comparison.imported_votes + comparison.votes_done + comparison.leases_open >= target:
                tried.append(comparison.pk)
                continue
            return AssignmentResult(
                _lease(comparison, annotator=annotator, project=project, until=now + lease), "assigned"
            )
        return AssignmentResult(None, "complete")


def _diverse(candidates, *, annotator: User, project: Project):
    """`candidates` without the prompt of the annotator's last two assignments when both had it."""
    recent = (
        Assignment.objects.filter(annotator=annotator, project=project).order_by("-id").values("comparison__prompt_id")
    )
    last, before = (Coalesce(Subquery(recent[i : i + 1]), Value(-1)) for i in (0, 1))
    return candidates.alias(last_prompt=last, before_prompt=before).exclude(
        Q(prompt_id=F("last_prompt")) & Q(prompt_id=F("before_prompt"))
    )


# --- PostgreSQL: the same engine in three statements ----------------------------------------
# The ORM path above spends most of its time building SQL; on PostgreSQL a lease is three
# hand-written statements in one transaction. assignment.md gives the locking argument.

_PROJECT_FIELDS = [f for f in Project._meta.concrete_fields]
_LOCK_MEMBERSHIP_SQL = (
    "SELECT m.paused, m.cap, "
    + ", ".join(f'p."{f.column}"' for f in _PROJECT_FIELDS)
    + """
    FROM annotate_membership m JOIN annotate_project p ON p.id = m.project_id
    WHERE m.project_id = %s AND m.user_id = %s AND m.role = 'annotator'
    FOR UPDATE OF m"""
)
# A new statement after the lock: under READ COMMITTED it sees every lease committed before it.
_OPEN_LEASES_SQL = """
    SELECT ARRAY(SELECT a.id FROM annotate_assignment a
                 WHERE a.annotator_id = %(user)s AND a.project_id = %(project)s
                   AND a.state = 'leased' AND a.leased_until > %(now)s
                 ORDER BY a.created_at, a.id),
           CASE WHEN %(capped)s THEN
             (SELECT count(*) FROM annotate_assignment a
              WHERE a.annotator_id = %(user)s AND a.project_id = %(project)s AND a.state IN ('leased', 'done'))
           END,
           (SELECT CASE WHEN count(*) = 2 AND min(r.prompt_id) = max(r.prompt_id) THEN min(r.prompt_id) END
            FROM (SELECT c.prompt_id FROM annotate_assignment a JOIN annotate_comparison c ON c.id = a.comparison_id
                  WHERE a.annotator_id = %(user)s AND a.project_id = %(project)s
                  ORDER BY a.id DESC LIMIT 2) r)"""
# Pick, lock and take a slot, lease with shuffled sides, and read what the annotator will see.
# The row lock is taken by the inner SELECT … FOR UPDATE, which re-checks its WHERE against the
# newest committed version of a row it had to wait for (or skip); the UPDATE's own capacity
# condition is checked again on that locked version. `{lock}` is "SKIP LOCKED" or "".
_PICK_SQL = """
    WITH picked AS (
        UPDATE annotate_comparison c SET leases_open = c.leases_open + 1
        WHERE c.id = (
            SELECT f.id FROM annotate_comparison f
            WHERE f.project_id = %(project)s AND f.is_open AND NOT f.is_complete AND f.gold_label = ''
              AND f.imported_votes + f.votes_done + f.leases_open < %(target)s {diversity}
              AND NOT EXISTS (SELECT 1 FROM annotate_assignment a WHERE a.comparison_id = f.id AND a.annotator_id = %(user)s)
            ORDER BY f.priority DESC, f.id
            LIMIT 1
            FOR UPDATE {lock}
        )
        AND c.imported_votes + c.votes_done + c.leases_open < %(target)s
        RETURNING c.id, c.prompt_id, c.round
    ), shuffled AS (
        SELECT jsonb_agg(i.completion_id ORDER BY (%(keys)s::float8[])[i.position %% 32 + 1], i.position) AS shown_order
        FROM annotate_comparisonitem i JOIN picked ON i.comparison_id = picked.id
    ), leased AS (
        INSERT INTO annotate_assignment (comparison_id, annotator_id, project_id, state, leased_until, shown_order, created_at)
        SELECT picked.id, %(user)s, %(project)s, 'leased', %(until)s, shuffled.shown_order, %(now)s FROM picked, shuffled
        RETURNING id, comparison_id, shown_order
    )
    SELECT leased.id, leased.comparison_id, leased.shown_order::text, picked.prompt_id, picked.round,
           pr.text, pr.metadata::text,
           (SELECT json_object_agg(co.id, co.text) FROM annotate_completion co
            JOIN annotate_comparisonitem i ON i.completion_id = co.id WHERE i.comparison_id = leased.comparison_id)::text
    FROM leased JOIN picked ON picked.id = leased.comparison_id JOIN annotate_prompt pr ON pr.id = picked.prompt_id"""
# Queue diversity: the skip-locked pick passes over the prompt of the annotator's last two
# assignments when both had the same one (%(avoid)s, else NULL). It never waits, so the global
# lock order of the waiting pick (which takes any prompt: "when other work is available") holds.
_DIVERSITY = "AND (%(avoid)s::bigint IS NULL OR f.prompt_id <> %(avoid)s::bigint)"
_PICK_SKIP_LOCKED_SQL = _PICK_SQL.format(lock="SKIP LOCKED", diversity=_DIVERSITY)
_PICK_WAITING_SQL = _PICK_SQL.format(lock="", diversity="")


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _assign_pg(
    *, annotator: User, project: Project, exclude_assignments: Collection[int], now: datetime
) -> AssignmentResult:
    with transaction.atomic(), prepared_cursor() as cursor:
        # Serialises this annotator's own requests, as in the ORM path; reads the project with it.
        cursor.execute(_LOCK_MEMBERSHIP_SQL, [project.pk, annotator.pk])
        row = cursor.fetchone()
        if row is None:
            raise NotFound("No such project.")
        paused, member_cap, *values = row
        project = Project.from_db(connection.alias, [f.attname for f in _PROJECT_FIELDS], values)
        project.aspects = _json(project.aspects)
        if paused:
            return AssignmentResult(None, "paused")
        lease = timedelta(seconds=project.lease_seconds)
        cap = member_cap if member_cap is not None else project.annotator_cap

        cursor.execute(
            _OPEN_LEASES_SQL, {"user": annotator.pk, "project": project.pk, "now": now, "capped": cap is not None}
        )
        open_ids, taken, avoid_prompt = cursor.fetchone()
        if open_ids:
            resumed = _resume_open_lease(
                open_ids=open_ids, exclude_assignments=exclude_assignments, lease=lease, now=now
            )
            if resumed is not None:
                return AssignmentResult(resumed, "resumed")
        if len(open_ids) >= settings.PREFLOOP_MAX_OPEN_LEASES:
            return AssignmentResult(None, "lease_limit")
        if cap is not None and taken >= cap:
            return AssignmentResult(None, "cap_reached")

        if project.gold_rate and _shuffler.random() < project.gold_rate:
            gold = _lease_gold(annotator=annotator, project=project, now=now, lease=lease)
            if gold is not None:
                return AssignmentResult(gold, "assigned")

        params = {
            "project": project.pk,
            "user": annotator.pk,
            "target": project.overlap_target,
            "now": now,
            "until": now + lease,
            "keys": [_shuffler.random() for _ in range(32)],
            "avoid": avoid_prompt,
        }
        # A skip-locked pick may lock rows that it then rejects (filled up since its snapshot)
        # and, having skipped others, would hold them out of order while the waiting pick below
        # waits: a deadlock. The savepoint lets us drop those locks before we wait.
        cursor.execute("SAVEPOINT prefloop_pick")
        cursor.execute(_PICK_SKIP_LOCKED_SQL, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute("ROLLBACK TO SAVEPOINT prefloop_pick")
            # Every candidate may just be locked by concurrent leases: wait for the first
            # rather than tell this annotator there is no work while slots are free. Waiting
            # picks lock in one global order (priority, id) and hold nothing else: no cycle.
            cursor.execute(_PICK_WAITING_SQL, params)
            row = cursor.fetchone()
        if row is None:
            return AssignmentResult(None, "complete")
        (assignment_id, comparison_id, shown_order, prompt_id, round_number, prompt_text, prompt_metadata, texts) = row
        assignment = Assignment(
            pk=assignment_id,
            comparison_id=comparison_id,
            annotator_id=annotator.pk,
            project_id=project.pk,
            state=Assignment.State.LEASED,
            leased_until=params["until"],
            shown_order=_json(shown_order),
            created_at=now,
        )
        assignment.project = project
        assignment.annotator = annotator
        assignment.comparison = Comparison(
            pk=comparison_id, project_id=project.pk, prompt_id=prompt_id, round=round_number
        )
        assignment.comparison.prompt = Prompt(
            pk=prompt_id, project_id=project.pk, text=prompt_text, metadata=_json(prompt_metadata)
        )
        texts = {int(k): v for k, v in _json(texts).items()}
        return AssignmentResult(assignment, "assigned", texts=texts)


def _lease(comparison: Comparison, *, annotator: User, project: Project, until: datetime) -> Assignment:
    """Create the lease with freshly drawn sides; the caller holds the comparison's row lock."""
    order = list(comparison.items.values_list("completion_id", flat=True))
    _shuffler.shuffle(order)
    assignment = Assignment.objects.create(
        comparison=comparison, annotator=annotator, project=project, leased_until=until, shown_order=order
    )
    Comparison.objects.filter(pk=comparison.pk).update(leases_open=F("leases_open") + 1)
    return assignment


def _lease_gold(*, annotator: User, project: Project, now: datetime, lease: timedelta) -> Assignment | None:
    """A gold check this annotator has not seen. Looks and behaves like any other comparison;
    gold has no overlap limit, so no capacity check."""
    gold = (
        Comparison.objects.filter(project=project, is_open=True)
        .exclude(gold_label="")
        .exclude(assignments__annotator=annotator)
        .order_by("?")
        .select_for_update(of=("self",))
        .first()
    )
    return _lease(gold, annotator=annotator, project=project, until=now + lease) if gold else None


_last_reclaim: dict[int, float] = {}
RECLAIM_EVERY_SECONDS = 5.0


def _reclaim_now_and_then(*, project: Project, now: datetime) -> bool:
    """Reclaim at most every few seconds per process and project (leases last minutes; the sweep
    is a query on every request otherwise). A `now` in the future (tests) always sweeps."""
    clock = time.monotonic()
    if (
        now > timezone.now() + timedelta(seconds=1)
        or clock - _last_reclaim.get(project.pk, -1e9) >= RECLAIM_EVERY_SECONDS
    ):
        _last_reclaim[project.pk] = clock
        reclaim_expired_leases(project=project, now=now)
        return True
    return False


def reclaim_expired_leases(*, project: Project, now: datetime | None = None) -> int:
    """Mark leases past their time as expired and free their slots. Returns how many.

    Cheap when nothing expired (one indexed query). Comparisons locked by someone else are
    skipped and reclaimed on a later call, so this never waits.
    """
    now = now or timezone.now()
    stale = list(
        Assignment.objects.filter(project=project, state=Assignment.State.LEASED, leased_until__lte=now)
        .order_by("comparison_id")
        .values_list("comparison_id", flat=True)
        .distinct()[:500]
    )
    freed = 0
    for comparison_id in stale:
        with transaction.atomic():
            locked = Comparison.objects.select_for_update(skip_locked=True).filter(pk=comparison_id).first()
            if locked is None:
                continue
            expired = Assignment.objects.filter(
                comparison_id=comparison_id, state=Assignment.State.LEASED, leased_until__lte=now
            ).update(state=Assignment.State.EXPIRED)
            if expired:
                Comparison.objects.filter(pk=comparison_id).update(leases_open=F("leases_open") - expired)
                freed += expired
    return freed
