"""Queue a delivery attempt as a job of prefloop/jobs, now or after a delay (the retry backoff).

At once: `enqueue_job`, as every other job. Later: the same Job row, handed to the backend with
a start time once the transaction commits: django-tasks' `run_after` for the DB queue, Celery's
`countdown`. The `immediate` backend (tests, debugging) runs it at commit, without waiting.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from prefloop.jobs.models import Job
from prefloop.jobs.registry import DEFAULT_QUEUE
from prefloop.jobs.services import dispatch_job, enqueue_job, job_error_message

logger = logging.getLogger(__name__)


def enqueue_delivery_job(delivery_id: int, *, delay: float, kind: str) -> Job:
    params = {"delivery_id": delivery_id}
    if delay <= 0:
        return enqueue_job(kind=kind, params=params)
    job = Job.objects.create(kind=kind, params=params, message=f"retry in {delay:g} s")
    transaction.on_commit(partial(_dispatch_later, job.pk, delay))
    return job


def _dispatch_later(job_id: int, delay: float) -> None:
    backend = getattr(settings, "PREFLOOP_JOB_BACKEND", "db")
    try:
        if backend == "db":
            from prefloop.jobs.tasks import run_job_task

            run_job_task.using(queue_name=DEFAULT_QUEUE, run_after=timezone.now() + timedelta(seconds=delay)).enqueue(
                job_id
            )
        elif backend == "celery":
            from prefloop.celery import app, broker_url

            with app.connection_for_write(broker_url()) as conn:
                app.send_task(
                    "prefloop.jobs.run_job", args=[job_id], queue=DEFAULT_QUEUE, countdown=delay, connection=conn
                )
        else:
            dispatch_job(job_id, kind="webhooks.deliver")
    except Exception as exc:
        logger.exception("webhook retry job %s could not be scheduled", job_id)
        from prefloop.webhooks.services import fail_open_deliveries_of

        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.FAILED, error=f"could not schedule: {job_error_message(exc)}", finished_at=timezone.now()
        )
        fail_open_deliveries_of(job_id, f"the retry could not be scheduled: {job_error_message(exc)}")
