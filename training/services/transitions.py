"""A round's state changes and the small helpers every step shares (the bottom of training/services/).

`transition` is the only place a round's state changes (compare-and-set on the expected state).
"""

from __future__ import annotations

import logging

from django.utils import timezone

from prefloop.core.json_safe import json_safe
from training.errors import RoundStateError
from training.models import Round
from training.policies import Progress, ShouldStop
from training.signals import round_state_changed

logger = logging.getLogger(__name__)


def round_in(round_id: int, state: str) -> Round:
    round_ = Round.objects.select_related("project", "policy", "policy__parent", "reward_model").get(pk=round_id)
    if round_.state != state:
        raise RoundStateError(f"round {round_.number} is {round_.state}, not {state}")
    return round_


def transition(
    round_: Round,
    expected: str,
    new: str,
    *,
    metrics: dict | None = None,
    reason: str = "",
    job_id: int | None | str = "keep",
    event: dict | None = None,
    **fields,
) -> None:
    """The only place a round's state changes; it must still be `expected` (compare-and-set).

    event: extra fields of the history entry (a guard's reason, who overrode it)."""
    now = timezone.now()
    entry = {**history_event(new, job_id=None if isinstance(job_id, str) else job_id), **(event or {})}
    update = {"state": new, "history": [*round_.history, entry], "updated_at": now, **fields}
    if metrics:
        update["metrics"] = {**round_.metrics, **json_safe(metrics)}
    if reason:
        update["reason"] = reason[:4000]
    if job_id != "keep":
        update["job_id"] = job_id
    if new in (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED):
        update["finished_at"] = now
    if not Round.objects.filter(pk=round_.pk, state=expected).update(**update):
        raise RoundStateError(f"round {round_.number} is no longer {expected}")
    for key, value in update.items():
        setattr(round_, key, value)
    round_state_changed.send(sender=Round, round=round_, previous=expected)  # webhooks (training/signals.py)


def history_event(state: str, *, job_id: int | None = None) -> dict:
    return {"state": state, "at": timezone.now().isoformat(), "job_id": job_id}


def report_progress(progress: Progress | None, fraction: float, message: str) -> None:
    if progress:
        progress(fraction, message)


def stop_if_asked(should_stop: ShouldStop | None) -> None:
    if should_stop and should_stop():
        from prefloop.jobs.context import JobCancelled

        raise JobCancelled("cancelled on request")


def mean_or_none(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def tail(text: str, limit: int = 500) -> str:
    text = (text or "").strip()
    first = text.splitlines()[0] if text else ""
    return first[:limit]


def enqueue_round_job(round_: Round, kind: str, user=None):
    from prefloop.jobs.services import enqueue_job

    job = enqueue_job(kind=kind, params={"round_id": round_.pk}, project=round_.project, user=user)
    history = list(round_.history)
    if history and history[-1].get("job_id") is None:  # the step just entered is this job's
        history[-1] = {**history[-1], "job_id": job.pk}
    Round.objects.filter(pk=round_.pk).update(job_id=job.pk, history=history)
    round_.job_id, round_.history = job.pk, history
    return job
