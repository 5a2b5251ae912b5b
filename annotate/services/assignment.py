"""Assignment engine: hands each annotator the next comparison, never beyond its overlap target.

See assignment.md beside this package for the flow and the locking argument.
"""
from __future__ import annotations

import random
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate.errors import NotFound
from annotate.models import Assignment, Comparison, Membership, Project, User

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


def annotator_membership(*, annotator: User, project: Project, lock: bool = False) -> Membership:
    qs = Membership.objects.filter(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    if lock:
        qs = qs.select_for_update()
    membership = qs.first()
    if membership is None:
        raise NotFound("No such project.")
    return membership


def next_comparison(
    *,
    annotator: User,
    project: Project,
    exclude_assignments: Collection[int] = (),
    now: datetime | None = None,
) -> AssignmentResult:
    """Lease the next comparison to `annotator`, or return one of their open leases.

    An open lease is returned again (renewed) unless its id is in `exclude_assignments`; the
    web UI passes the one on screen to prefetch the next. Guarantees, under any concurrency:
    a comparison never has more live leases plus votes than its overlap target, and an
    annotator never gets the same comparison twice.
    """
    now = now or timezone.now()
    swept = _reclaim_now_and_then(project=project, now=now)
    result = _assign(annotator=annotator, project=project, exclude_assignments=exclude_assignments, now=now)
    if result.reason == "complete" and not swept:
        # Lapsed leases may be holding the last free slots: sweep now rather than say "no work".
        reclaim_expired_leases(project=project, now=now)
        result = _assign(annotator=annotator, project=project, exclude_assignments=exclude_assignments, now=now)
    return result


def _assign(*, annotator: User, project: Project, exclude_assignments: Collection[int], now: datetime) -> AssignmentResult:
    lease = timedelta(seconds=project.lease_seconds)
    with transaction.atomic():
        # Serialises this annotator's own requests (two tabs, a double click): caps and
        # "resume your open lease" are then exact.
        membership = annotator_membership(annotator=annotator, project=project, lock=True)
        if membership.paused:
            return AssignmentResult(None, "paused")

        open_leases = list(
            Assignment.objects.filter(
                annotator=annotator, project=project, state=Assignment.State.LEASED, leased_until__gt=now
            ).order_by("created_at", "id")
        )
        for open_lease in open_leases:
            if open_lease.pk in exclude_assignments:
                continue
            # Conditional: a lease that lapsed a moment ago may already have lost its slot.
            renewed = Assignment.objects.filter(
                pk=open_lease.pk, state=Assignment.State.LEASED, leased_until__gt=now
            ).update(leased_until=now + lease)
            if renewed:
                open_lease.refresh_from_db()
                return AssignmentResult(open_lease, "resumed")
        if len(open_leases) >= settings.PREFLOOP_MAX_OPEN_LEASES:
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
            comparison = candidates.select_related("prompt").select_for_update(skip_locked=True, of=("self",)).first()
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
            return AssignmentResult(_lease(comparison, annotator=annotator, project=project, until=now + lease), "assigned")
        return AssignmentResult(None, "complete")


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
    if now > timezone.now() + timedelta(seconds=1) or clock - _last_reclaim.get(project.pk, -1e9) >= RECLAIM_EVERY_SECONDS:
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
