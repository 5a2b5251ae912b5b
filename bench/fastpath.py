"""Experiment, not product code: the vote loop's suggested query cuts, applied as monkeypatches to measure them.

Each change is a named step so its gain can be measured alone or together:

- `health`: settings-level, no patch here; see bench/settings_nohealth.py (CONN_HEALTH_CHECKS off).
- `reclaim`: run `reclaim_expired_leases` at most once per RECLAIM_EVERY_S per process and project.
- `next`: `next_comparison` without the counters' `refresh_from_db` (the row `SELECT ... FOR UPDATE`
  returns is already the newest version and PostgreSQL re-checks the WHERE on it), the
  comparison's prompt fetched with the candidate (`select_related("prompt")`), the completion
  ids and texts in one query (reused by the payload), project and membership in one locked query.
- `vote`: `record_vote` given the assignment the view already loaded, and the idempotency
  replay looked up only when the assignment is already done (a reused key on an open
  assignment is caught by the unique constraint, as before).

`apply(steps)` patches this process; `application` is a WSGI app with every step applied
(gunicorn `--pythonpath bench fastpath:application`, or `--app fastpath` in vote_loop.py).
"""
from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

RECLAIM_EVERY_S = 5.0
STEPS = ("reclaim", "next", "vote")
_last_reclaim: dict[int, float] = {}


def throttled_reclaim(original):
    def reclaim(*, project, now: datetime | None = None) -> int:
        last = _last_reclaim.get(project.pk, float("-inf"))
        if time.monotonic() - last < RECLAIM_EVERY_S:
            return 0
        _last_reclaim[project.pk] = time.monotonic()
        return original(project=project, now=now)

    return reclaim


def fast_next_comparison(*, annotator, project_id: int, exclude_assignments: Collection[int] = (), now=None):
    """next_comparison with the lookups folded; same guarantees (see module docstring)."""
    from django.conf import settings
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from annotate.errors import NotFound
    from annotate.models import Assignment, Comparison, ComparisonItem, Membership
    from annotate.services import assignment as engine

    now = now or timezone.now()
    with transaction.atomic():
        # Authorises (annotator of this project), loads the project and locks the membership: one query.
        membership = (
            Membership.objects.select_related("project").select_for_update(of=("self",))
            .filter(project_id=project_id, user=annotator, role=Membership.Role.ANNOTATOR).first()
        )
        if membership is None:
            raise NotFound("No such project.")
        project = membership.project
        lease = timedelta(seconds=project.lease_seconds)
        # Outside the atomic block in the original; here the throttle makes it rare.
        engine.reclaim_expired_leases(project=project, now=now)
        if membership.paused:
            return engine.AssignmentResult(None, "paused")
        open_leases = list(
            Assignment.objects.filter(annotator=annotator, project=project, state=Assignment.State.LEASED, leased_until__gt=now)
            .order_by("created_at", "id")
        )
        for open_lease in open_leases:
            if open_lease.pk in exclude_assignments:
                continue
            renewed = Assignment.objects.filter(pk=open_lease.pk, state=Assignment.State.LEASED, leased_until__gt=now).update(
                leased_until=now + lease
            )
            if renewed:
                open_lease.refresh_from_db()
                return engine.AssignmentResult(open_lease, "resumed")
        if len(open_leases) >= settings.PREFLOOP_MAX_OPEN_LEASES:
            return engine.AssignmentResult(None, "lease_limit")
        cap = membership.cap if membership.cap is not None else project.annotator_cap
        if cap is not None:
            taken = Assignment.objects.filter(
                annotator=annotator, project=project, state__in=[Assignment.State.LEASED, Assignment.State.DONE]
            ).count()
            if taken >= cap:
                return engine.AssignmentResult(None, "cap_reached")
        if project.gold_rate and engine._shuffler.random() < project.gold_rate:
            gold = engine._lease_gold(annotator=annotator, project=project, now=now, lease=lease)
            if gold is not None:
                return engine.AssignmentResult(gold, "assigned")
        target = project.overlap_target
        candidates = (
            Comparison.objects.filter(project=project, is_open=True, is_complete=False, gold_label="")
            .alias(taken=F("imported_votes") + F("votes_done") + F("leases_open"))
            .filter(taken__lt=target)
            .exclude(assignments__annotator=annotator)
            .order_by("-priority", "id")
            .select_related("prompt")
        )
        # FOR UPDATE hands back the newest committed version of the row and re-checks `taken < target`
        # on it (PostgreSQL's EvalPlanQual), so no re-read is needed; SQLite runs writers one at a time.
        comparison = candidates.select_for_update(skip_locked=True, of=("self",)).first()
        if comparison is None:
            comparison = candidates.select_for_update(of=("self",)).first()
        if comparison is None:
            return engine.AssignmentResult(None, "complete")
        items = list(ComparisonItem.objects.filter(comparison=comparison).values_list("completion_id", "completion__text"))
        order = [completion_id for completion_id, _ in items]
        engine._shuffler.shuffle(order)
        assignment = Assignment.objects.create(
            comparison=comparison, annotator=annotator, project=project, leased_until=now + lease, shown_order=order
        )
        Comparison.objects.filter(pk=comparison.pk).update(leases_open=F("leases_open") + 1)
        assignment._texts = dict(items)  # read by the patched assignment_payload
        return engine.AssignmentResult(assignment, "assigned")


def fast_assignment_payload(original):
    def payload(assignment) -> dict:
        texts = getattr(assignment, "_texts", None)
        if texts is None:
            return original(assignment)
        project, prompt = assignment.project, assignment.comparison.prompt
        return {
            "assignment_id": assignment.pk,
            "project_id": project.pk,
            "leased_until": assignment.leased_until,
            "prompt": prompt.text,
            "prompt_context": {k: v for k, v in prompt.metadata.items() if k in ("prefix", "suffix")},
            "responses": [{"side": "abcdefghijklmnopqrstuvwxyz"[i], "text": texts[c]} for i, c in enumerate(assignment.shown_order)],
            "aspects": project.aspect_names,
            "choices": project.allowed_choices if len(assignment.shown_order) == 2 else ["ranked"],
            "strength_scale": project.strength_scale,
            "rationale": project.rationale,
        }

    return payload


def fast_record_vote(*, annotator, assignment, votes, idempotency_key: str, time_spent_ms=None, now=None):
    """record_vote for an assignment the caller loaded (with its project); replay looked up only when done."""
    from django.db import IntegrityError, transaction
    from django.db.models import F
    from django.utils import timezone

    from annotate.errors import AlreadyVoted, AssignmentExpired, IdempotencyKeyReused, InvalidVote
    from annotate.models import Assignment, Comparison, Vote
    from annotate.services import voting

    if not idempotency_key or len(idempotency_key) > 64:
        raise InvalidVote("idempotency_key", "required, at most 64 characters")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            comparison = Comparison.objects.select_for_update().get(pk=assignment.comparison_id)
            assignment.refresh_from_db(fields=["state", "leased_until"])
            if assignment.state == Assignment.State.DONE:
                replay = voting._replay(annotator=annotator, assignment_id=assignment.pk, key=idempotency_key)
                if replay:
                    return replay
                raise AlreadyVoted("This assignment already has a vote.")
            rows = voting._validated_rows(project=assignment.project, shown_order=assignment.shown_order, votes=votes)
            counter_update = {"votes_done": F("votes_done") + 1}
            if assignment.state == Assignment.State.LEASED:
                counter_update["leases_open"] = F("leases_open") - 1
            elif not comparison.gold_label:
                taken = comparison.imported_votes + comparison.votes_done + comparison.leases_open
                if taken >= assignment.project.overlap_target:
                    raise AssignmentExpired("The lease expired and this comparison went to someone else.")
            created = Vote.objects.bulk_create([
                Vote(comparison_id=comparison.pk, assignment=assignment, annotator=annotator, source=Vote.Source.HUMAN,
                     shown_order=assignment.shown_order, time_spent_ms=time_spent_ms, idempotency_key=idempotency_key, **row)
                for row in rows
            ])
            Assignment.objects.filter(pk=assignment.pk).update(state=Assignment.State.DONE, completed_at=now)
            assignment.state, assignment.completed_at = Assignment.State.DONE, now
            done = comparison.votes_done + 1
            counter_update["is_complete"] = (
                not comparison.gold_label and comparison.imported_votes + done >= assignment.project.overlap_target
            )
            Comparison.objects.filter(pk=comparison.pk).update(**counter_update)
            if comparison.gold_label:
                voting.pause_if_failing_gold(annotator=annotator, project=assignment.project)
            transaction.on_commit(lambda: voting._announce_vote(assignment))
            return voting.VoteResult(assignment=assignment, votes=created, replayed=False)
    except IntegrityError as exc:
        # The key is on another submission's vote (or a concurrent twin committed first).
        replay = voting._replay(annotator=annotator, assignment_id=assignment.pk, key=idempotency_key)
        if replay:
            return replay
        raise IdempotencyKeyReused("This idempotency key belongs to another submission.") from exc


def patch_next_view() -> None:
    from rest_framework.response import Response

    from annotate import api, selectors, serializers as s

    def post(self, request, project_id: int):
        data = s.NextInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = fast_next_comparison(annotator=request.user, project_id=project_id,
                                      exclude_assignments=data.validated_data["exclude"])
        if result.assignment is None:
            return Response({"assignment": None, "reason": result.reason})
        return Response({"assignment": selectors.assignment_payload(result.assignment), "reason": result.reason})

    api.NextAssignmentApi.post = post


def patch_vote_view() -> None:
    from django.shortcuts import get_object_or_404
    from rest_framework import status
    from rest_framework.response import Response

    from annotate import api, serializers as s
    from annotate.errors import InvalidVote
    from annotate.models import Assignment
    from annotate.services.voting import VoteInput

    def post(self, request, assignment_id: int):
        data = s.VoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = request.headers.get("Idempotency-Key") or v.get("idempotency_key") or ""
        assignment = get_object_or_404(Assignment.objects.select_related("project"), pk=assignment_id, annotator=request.user)
        if v.get("votes"):
            votes = [VoteInput(**vote) for vote in v["votes"]]
        else:
            aspects = assignment.project.aspect_names
            if len(aspects) != 1:
                raise InvalidVote("votes", f"this project needs one vote per aspect {aspects}")
            votes = [VoteInput(aspect=aspects[0], choice=v["choice"], ranking=v["ranking"], strength=v["strength"], rationale=v["rationale"])]
        result = fast_record_vote(annotator=request.user, assignment=assignment, votes=votes, idempotency_key=key,
                                  time_spent_ms=v["time_spent_ms"])
        body = {"assignment_id": result.assignment.pk, "replayed": result.replayed,
                "votes": s.VoteOutputSerializer(result.votes, many=True).data}
        return Response(body, status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)

    api.AssignmentVoteApi.post = post


def apply(steps: Iterable[str]) -> list[str]:
    """Patch this (Django-ready) process with the named steps; returns those applied."""
    from annotate import selectors
    from annotate.services import assignment as engine

    applied = []
    for step in steps:
        if step == "reclaim":
            engine.reclaim_expired_leases = throttled_reclaim(engine.reclaim_expired_leases)
        elif step == "next":
            selectors.assignment_payload = fast_assignment_payload(selectors.assignment_payload)
            patch_next_view()
        elif step == "vote":
            patch_vote_view()
        else:
            raise ValueError(f"unknown step {step!r}; choose from {STEPS}")
        applied.append(step)
    return applied


def __getattr__(name: str):
    """`application` is built on first use, so importing this module for `apply` stays cheap."""
    if name != "application":
        raise AttributeError(name)
    from prefloop.wsgi import application as app

    apply([s for s in os.environ.get("BENCH_FASTPATH_STEPS", ",".join(STEPS)).split(",") if s])
    globals()["application"] = app
    return app
