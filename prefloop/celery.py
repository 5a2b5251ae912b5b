"""The Celery app for production job workers: `celery -A prefloop worker -Q default,gpu`.

Broker = settings.CELERY_BROKER_URL (REDIS_URL, else redis://127.0.0.1:6379/0). Results live in
the `Job` row, so Celery's own results are ignored. The task body only calls `run_job`, exactly
like the embedded backend's task in prefloop/jobs/tasks.py.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"

app = Celery("prefloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_ignore_result=True,
    task_default_queue="default",
    task_acks_late=False,  # a job killed mid-way is failed by the reaper, not silently re-run
    worker_prefetch_multiplier=1,  # long jobs: don't let one worker hoard the queue
    broker_connection_retry_on_startup=True,
)


def broker_url() -> str:
    from django.conf import settings

    return getattr(settings, "CELERY_BROKER_URL", "") or getattr(settings, "REDIS_URL", "") or DEFAULT_BROKER


@app.on_after_configure.connect
def _default_broker(sender, **kwargs):
    if not sender.conf.broker_url:
        sender.conf.broker_url = broker_url()


@app.task(name="prefloop.jobs.run_job")
def run_job(job_id: int) -> str:
    from prefloop.jobs.services import default_worker_name
    from prefloop.jobs.services import run_job as run

    return run(job_id, worker=default_worker_name("celery"), background=True).status


@worker_ready.connect
def _reap_on_start(**kwargs):
    from prefloop.jobs.services import reap_stale_jobs

    reap_stale_jobs()
