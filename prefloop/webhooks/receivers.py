"""Signal receivers: other apps' events → `emit`. Each one is cheap when a project has no webhook,
and none raises into the request, job or transaction that sent the signal."""

from __future__ import annotations

import json
import logging
from typing import Any

from prefloop.webhooks import events as ev
from prefloop.webhooks.services import DELIVER_JOB, emit

logger = logging.getLogger(__name__)

JOB_EVENTS = {"succeeded": ev.JOB_SUCCEEDED, "failed": ev.JOB_FAILED, "cancelled": ev.JOB_CANCELLED}
REWARD_JOBS = ("train_reward_model", "rewards.import_reward_model")


def webhook_events_fact() -> str:
    """annotate.signals.VOTE_FACTS["webhook_events"]: the events lists of the voted project's active
    webhooks (JSON text, NULL for none), evaluated by the vote's own statement."""
    from prefloop.webhooks.models import Webhook

    table = Webhook._meta.db_table
    return f"SELECT json_agg(w.events)::text FROM {table} w WHERE w.project_id = a.project_id AND w.active"


def _subscribed(project_id: int | None, names: tuple[str, ...], facts: dict | None = None) -> bool:
    """Does the project have an active webhook for any of `names`? From the vote's `facts` when it
    carries them (PostgreSQL's vote statement), else one indexed query."""
    if not project_id:
        return False
    if facts and "webhook_events" in facts:
        wanted = set(names)
        return any(wanted & set(_json_list(events)) for events in _json_list(facts["webhook_events"]))
    from django.db import connection

    from prefloop.webhooks.models import Webhook

    # Raw SQL on purpose: this runs after every vote, and building the ORM query cost more CPU
    # than the indexed lookup itself (docs/vote-loop.md). Same rows as
    # Webhook.objects.filter(project_id=..., active=True).values_list("events").
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT events FROM {Webhook._meta.db_table} WHERE project_id = %s AND active", [project_id])
        rows = cursor.fetchall()
    wanted = set(names)
    return any(wanted & set(_json_list(events)) for (events,) in rows)


def _json_list(value: Any) -> list:
    """A JSON column as the driver returns it: text (Django's loaders) or already parsed."""
    parsed = json.loads(value) if isinstance(value, (str, bytes)) else value
    return parsed if isinstance(parsed, list) else []


def on_job_finished(sender: Any, job: Any, **kwargs: Any) -> None:
    """prefloop.jobs job_finished → job.succeeded / failed / cancelled, and reward_model.ready."""
    try:
        if job.kind == DELIVER_JOB:
            if job.status != "succeeded":  # a crashed or reaped attempt: its delivery is failed, not left open
                from prefloop.webhooks.services import fail_open_deliveries_of

                fail_open_deliveries_of(job.pk, f"delivery job {job.pk} {job.status}: {job.error[-500:]}")
            return  # never an event about our own jobs (that would loop)
        event = JOB_EVENTS.get(job.status)
        if event and _subscribed(job.project_id, (event,)):
            emit(job.project_id, event, {"job": _job_data(job)}, key=f"job:{job.pk}:{job.status}")
        if (
            job.kind in REWARD_JOBS
            and job.status == "succeeded"
            and _subscribed(job.project_id, (ev.REWARD_MODEL_READY,))
        ):
            _reward_model_ready(job)
    except Exception:
        logger.exception("webhook receiver failed for job %s", getattr(job, "pk", None))


def _job_data(job: Any) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "error": (job.error or "")[:2000],
        "progress": job.progress,
        "message": job.message,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _reward_model_ready(job: Any) -> None:
    from rewards.models import RewardModel

    for model in RewardModel.objects.filter(job_id=job.pk, status=RewardModel.Status.READY):
        metrics = {
            k: v for k, v in (model.metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        emit(
            model.project_id,
            ev.REWARD_MODEL_READY,
            {
                "reward_model": {
                    "id": model.pk,
                    "version": model.version,
                    "base_model": model.base_model,
                    "is_current": model.is_current,
                    "trigger": model.trigger,
                    "job_id": model.job_id,
                    "metrics": metrics,
                    "finished_at": model.finished_at,
                }
            },
            key=f"reward_model:{model.pk}",
        )


def _round_data(round_: Any, previous: str | None) -> dict:
    return {
        "round": {
            "id": round_.pk,
            "number": round_.number,
            "method": round_.method,
            "state": round_.state,
            "previous_state": previous,
            "reason": (round_.reason or "")[:2000],
            "job_id": round_.job_id,
            "policy_id": round_.policy_id,
            "new_policy_id": round_.new_policy_id,
            "reward_model_id": round_.reward_model_id,
        }
    }


def on_round_state_changed(sender: Any, round: Any, previous: str, **kwargs: Any) -> None:
    """training.signals.round_state_changed (inside the transition's transaction) → round.state_changed."""
    try:
        if _subscribed(round.project_id, (ev.ROUND_STATE_CHANGED,)):
            emit(
                round.project_id,
                ev.ROUND_STATE_CHANGED,
                _round_data(round, previous),
                key=f"round:{round.pk}:{len(round.history or [])}:{round.state}",
            )
    except Exception:
        logger.exception("webhook receiver failed for round %s", getattr(round, "pk", None))


def on_round_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A new round (post_save, created) → round.state_changed from nothing to its first state."""
    if not created:
        return
    on_round_state_changed(sender, round=instance, previous=None)  # type: ignore[arg-type]


def on_vote_recorded(sender: Any, assignment: Any, facts: dict | None = None, **kwargs: Any) -> None:
    """annotate vote_recorded (after commit) → labeling.votes_milestone, labeling.round_labelled."""
    try:
        if not _subscribed(assignment.project_id, ev.LABELING_EVENTS, facts):
            return
        from prefloop.webhooks.services import check_vote_milestones

        check_vote_milestones(assignment.project_id)
        _check_round_labelled(assignment)
    except Exception:
        logger.exception("webhook receiver failed for assignment %s", getattr(assignment, "pk", None))


def _check_round_labelled(assignment: Any) -> None:
    """The vote completed its comparison, and no comparison of its (loop) round is still short of votes."""
    from annotate.models import Comparison

    comparison = Comparison.objects.filter(pk=assignment.comparison_id).values("round", "is_complete").first()
    if not comparison or not comparison["round"] or not comparison["is_complete"]:
        return
    in_round = Comparison.objects.filter(project_id=assignment.project_id, round=comparison["round"], is_open=True)
    if in_round.filter(is_complete=False).exists():
        return
    number = comparison["round"]
    emit(
        assignment.project_id,
        ev.ROUND_LABELLED,
        {"round": {"number": number, "comparisons": in_round.count()}},
        key=f"round_labelled:{number}",
    )
