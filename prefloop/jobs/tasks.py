"""The embedded backend's task (Django Tasks API, run by `manage.py db_worker`).

Backend-neutral on purpose: like the Celery task in prefloop/celery.py it only calls `run_job`.
"""

from __future__ import annotations

from django_tasks import task

from prefloop.jobs.services import default_worker_name, reap_stale_jobs, run_job


@task(queue_name="default")
def run_job_task(job_id: int) -> str:
    # A db_worker has no start-up hook; reaping before each job it takes is as good and cheap.
    reap_stale_jobs()
    return run_job(job_id, worker=default_worker_name("db"), background=True).status
