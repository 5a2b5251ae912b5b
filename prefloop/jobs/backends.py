"""Job backends: where a queued job goes once its transaction commits (docs/jobs.md).

`settings.PREFLOOP_JOB_BACKEND` names the class by dotted path, like EMAIL_BACKEND
("prefloop.jobs.backends.CeleryBackend"); the short names "db", "celery" and "immediate" stay
accepted for the environment variable. The job services import a backend only through this
setting, so prefloop.jobs.services never imports prefloop/celery.py or prefloop/jobs/tasks.py:
the arrows go backends → services, tasks → services and celery → services, never back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from prefloop.jobs.registry import DEFAULT_QUEUE, queue_of

if TYPE_CHECKING:
    from prefloop.jobs.models import Job

ALIASES = {
    "db": "prefloop.jobs.backends.DatabaseBackend",
    "celery": "prefloop.jobs.backends.CeleryBackend",
    "immediate": "prefloop.jobs.backends.ImmediateBackend",
}


class JobBackend(Protocol):
    name: str

    def dispatch(self, job_id: int, *, queue: str, kind: str) -> None: ...

    def queue_for(self, job: Job) -> str: ...


def _wanted_queue(job: Job) -> str:
    return str(job.params.get("queue") or "") if isinstance(job.params, dict) else ""


class DatabaseBackend:
    """The embedded worker (`manage.py db_worker`, django-tasks' database backend)."""

    name = "db"

    def dispatch(self, job_id: int, *, queue: str, kind: str) -> None:
        from prefloop.jobs.tasks import run_job_task

        wanted = queue if queue != DEFAULT_QUEUE else queue_of(kind)
        run_job_task.using(queue_name=wanted if wanted in db_queues() else DEFAULT_QUEUE).enqueue(job_id)

    def queue_for(self, job: Job) -> str:
        queue = _wanted_queue(job) or queue_of(job.kind)
        return queue if queue in db_queues() else DEFAULT_QUEUE


class CeleryBackend:
    """Celery workers (`celery -A prefloop worker -Q default,gpu`), params["queue"] or "default"."""

    name = "celery"

    def dispatch(self, job_id: int, *, queue: str, kind: str) -> None:
        from prefloop.celery import app, broker_url

        # An explicit connection so the broker URL is read from settings now, not at import.
        with app.connection_for_write(broker_url()) as conn:
            app.send_task("prefloop.jobs.run_job", args=[job_id], queue=queue, connection=conn)

    def queue_for(self, job: Job) -> str:
        return _wanted_queue(job) or DEFAULT_QUEUE


class ImmediateBackend:
    """Runs the job in this process at commit (tests, `run_round` in the foreground)."""

    name = "immediate"

    def dispatch(self, job_id: int, *, queue: str, kind: str) -> None:
        from prefloop.jobs.context import JobContext
        from prefloop.jobs.services import default_worker_name, run_job

        # A foreground command (run_round) asks for tqdm bars on its jobs.
        bar = getattr(settings, "PREFLOOP_JOB_PROGRESS_BAR", False)
        run_job(job_id, worker=default_worker_name("immediate"), ctx=JobContext.for_cli() if bar else None)

    def queue_for(self, job: Job) -> str:
        return _wanted_queue(job) or DEFAULT_QUEUE


def db_queues() -> list[str]:
    """The queues the DB backend serves (TASKS QUEUES; PREFLOOP_JOB_QUEUES sets them)."""
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS

    return list(settings.TASKS[DEFAULT_TASK_BACKEND_ALIAS].get("QUEUES") or [DEFAULT_QUEUE])


def backend_path() -> str:
    configured = str(getattr(settings, "PREFLOOP_JOB_BACKEND", "") or "db")
    return ALIASES.get(configured, configured)


def get_backend() -> JobBackend:
    """The configured backend; ValueError naming the setting when it names no backend class."""
    path = backend_path()
    try:
        backend_class = import_string(path)
    except ImportError:
        raise ValueError(
            f"PREFLOOP_JOB_BACKEND must be a backend's dotted path or one of {sorted(ALIASES)}, not {path!r}"
        ) from None
    return backend_class()
