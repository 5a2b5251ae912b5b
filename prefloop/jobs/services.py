"""Job life cycle: enqueue, claim and run, cancel, reap. The only code that changes a job's status.

States: queued → running → succeeded | failed | cancelled; queued → cancelled. A running job whose
heartbeat stops (worker killed) is turned into failed by `reap_stale_jobs`. See docs/jobs.md.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from prefloop.jobs.broadcast import broadcast_job
from prefloop.jobs.context import JobCancelled, JobContext
from prefloop.jobs.models import Job
from prefloop.jobs.priority import apply_training_priority
from prefloop.jobs.registry import (
    DEFAULT_QUEUE,
    JOB_QUEUES,
    TRAINING_QUEUE,
    UnknownJobKind,
    get_handler,
    is_registered,
)
from prefloop.jobs.signals import job_finished

logger = logging.getLogger(__name__)

REAPED_ERROR = "worker stopped responding (killed?)"
ERROR_MESSAGE_CHARS = 2000


def heartbeat_timeout() -> float:
    return float(getattr(settings, "PREFLOOP_JOB_HEARTBEAT_TIMEOUT", 120))


def default_worker_name(prefix: str = "") -> str:
    name = f"{socket.gethostname()}:{os.getpid()}"
    return f"{prefix}:{name}" if prefix else name


# --- enqueue and dispatch ----------------------------------------------------------------
def enqueue_job(*, kind: str, params: dict, project=None, user=None) -> Job:
    """Create a queued job and hand it to the configured backend once the transaction commits.

    `params["queue"]` picks a queue ("gpu" for Celery GPU workers); without it the DB backend uses
    the kind's queue (registry.JOB_QUEUES: training runs apart from short jobs) when TASKS QUEUES
    serves it, else "default". Celery gets params["queue"] or "default", as its workers expect.
    """
    if not is_registered(kind):
        raise UnknownJobKind(f"Unknown job kind {kind!r}.")
    params = json.loads(json.dumps(params or {}, cls=DjangoJSONEncoder))  # stored exactly as a worker reads it
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    job = Job.objects.create(kind=kind, params=params, project=project, created_by=creator)
    transaction.on_commit(partial(dispatch_job, job.pk, queue=str(params.get("queue") or DEFAULT_QUEUE), kind=kind))
    return job


def dispatch_job(job_id: int, *, queue: str = DEFAULT_QUEUE, kind: str = "") -> None:
    """Send a queued job to the backend. A failure to send fails the job (never silently queued)."""
    from prefloop.jobs.backends import backend_path, get_backend

    backend = backend_path()
    try:
        get_backend().dispatch(job_id, queue=queue, kind=kind)
    except Exception as exc:
        logger.exception("job %s: dispatch to %s failed", job_id, backend)
        if Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.FAILED,
            error=f"could not dispatch to the {backend} backend: {job_error_message(exc)}",
            finished_at=timezone.now(),
        ):
            _send_finished(Job.objects.get(pk=job_id))


def job_queue(job: Job) -> str:
    """The queue `job` runs on under the configured backend (what "n ahead" counts within)."""
    from prefloop.jobs.backends import get_backend

    return get_backend().queue_for(job)


# --- run ---------------------------------------------------------------------------------
def run_job(job_id: int, *, worker: str = "", ctx: JobContext | None = None, background: bool = False) -> Job:
    """Claim a queued job (exactly one caller wins), run its handler and record the outcome.

    background: this process exists to run jobs (a worker, a command), so a job of a training
    kind may lower its CPU priority for good (PREFLOOP_TRAINING_PRIORITY, prefloop/jobs/priority.py);
    a web process running a job in place (the immediate backend) never does.

    Never leaves the job "running": success stores the handler's dict as `result`; an exception
    stores its message in `error` (the traceback goes to the server log only); a handler that
    stops on a cancel request ends "cancelled". A job that is not queued any more is returned untouched.
    """
    worker = (worker or default_worker_name())[:200]
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        attempts=F("attempts") + 1,
        message="starting",
    )
    job = Job.objects.get(pk=job_id)
    if not claimed:
        return job
    ctx = (ctx or JobContext()).bind(job)
    broadcast_job(job)
    # Inside a transaction (a test, or a caller's atomic block) another connection could not see
    # the row and, on SQLite, would wait for the write lock; the handler's own writes beat then.
    heartbeat = None if connection.in_atomic_block else _Heartbeat(job.pk, job.attempts)
    try:
        if background and JOB_QUEUES.get(job.kind) == TRAINING_QUEUE:
            apply_training_priority(settings.PREFLOOP_TRAINING_PRIORITY)
        if heartbeat:
            heartbeat.start()
        result = get_handler(job.kind)(job, ctx)
        result = json.loads(json.dumps({} if result is None else result, cls=DjangoJSONEncoder))
        if ctx.stop_seen:
            _finish(job, ctx, Job.Status.CANCELLED, result=result)
        else:
            job.progress = 1.0
            _finish(job, ctx, Job.Status.SUCCEEDED, result=result)
    except JobCancelled as exc:
        _finish(job, ctx, Job.Status.CANCELLED, error=str(exc))
    except BaseException as exc:
        logger.error("job %s (%s) failed", job.pk, job.kind, exc_info=exc)
        _finish(job, ctx, Job.Status.FAILED, error=job_error_message(exc))
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: recorded, then honoured
            raise
    finally:
        if heartbeat:
            heartbeat.stop()
        ctx.close()
    return job


def _finish(job: Job, ctx: JobContext, status: str, *, result=None, error: str = "") -> None:
    job.status, job.result, job.error = status, result, error
    job.finished_at = timezone.now()
    job.log_tail = ctx.log_tail
    if status == Job.Status.SUCCEEDED:
        job.message = "done"
    fields = dict(
        status=status,
        result=result,
        error=error,
        finished_at=job.finished_at,
        heartbeat_at=job.finished_at,
        progress=job.progress,
        message=job.message,
        log_tail=job.log_tail,
    )
    # Keyed on this attempt: the outcome of the run that really finished wins, even over a reaper
    # that gave up on it too early.
    mine = Job.objects.filter(pk=job.pk, attempts=job.attempts)
    for attempt in (1, 2):
        try:
            mine.update(**fields)
            break
        except Exception:
            if attempt == 2 or connection.in_atomic_block:
                raise
            close_old_connections()  # a dropped connection: reconnect once, else the reaper cleans up
    broadcast_job(job)
    _send_finished(job)


def _send_finished(job: Job) -> None:
    for receiver, response in job_finished.send_robust(sender=Job, job=job):
        if isinstance(response, Exception):
            logger.error("job %s: job_finished receiver %r failed: %r", job.pk, receiver, response)


def job_error_message(exc: BaseException) -> str:
    """What researchers see of a failure (API, pages, the versions it fails): the exception's type
    and message with this server's folders replaced by `<server>`. Never the traceback."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for root in _server_roots():
        text = text.replace(root, "<server>")
    return text[:ERROR_MESSAGE_CHARS]


def _server_roots() -> list[str]:
    """Folders of this installation, longest first (a root inside another is replaced first)."""
    roots = [
        settings.BASE_DIR,
        getattr(settings, "VAR_DIR", None),
        getattr(settings, "PREFLOOP_DATA_DIR", None),
        *(getattr(settings, "PREFLOOP_MODEL_ROOTS", None) or []),
        sys.prefix,
        sys.base_prefix,
        os.path.expanduser("~"),
    ]
    found = {str(r).rstrip("/") for r in roots if r} | {os.path.realpath(r) for r in roots if r}
    return sorted((r for r in found if len(r) > 1), key=len, reverse=True)


class _Heartbeat(threading.Thread):
    """Touches heartbeat_at while the handler runs, so a long silent step is not mistaken for a
    dead worker. A SIGKILL takes this thread down too, which is what the reaper notices."""

    def __init__(self, job_id: int, attempt: int):
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.job_id, self.attempt = job_id, attempt
        self.interval = float(getattr(settings, "PREFLOOP_JOB_HEARTBEAT_INTERVAL", min(15.0, heartbeat_timeout() / 4)))
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    Job.objects.filter(pk=self.job_id, attempts=self.attempt, status=Job.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # try again next beat
                    logger.warning("job %s: heartbeat failed", self.job_id, exc_info=True)
                    close_old_connections()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


def run_job_inline(kind: str, params: dict, *, project=None, user=None, ctx: JobContext | None = None) -> Job:
    """Create a job and run it here, in the foreground (management commands): same handler, same
    row, a tqdm bar instead of a worker."""
    if not is_registered(kind):
        raise UnknownJobKind(f"Unknown job kind {kind!r}.")
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    job = Job.objects.create(
        kind=kind,
        params=json.loads(json.dumps(params or {}, cls=DjangoJSONEncoder)),
        project=project,
        created_by=creator,
    )
    return run_job(job.pk, worker=default_worker_name("inline"), ctx=ctx or JobContext.for_cli(), background=True)


# --- cancel and reap ---------------------------------------------------------------------
def cancel_job(job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its handler checks should_stop()).
    A finished job is left as it is."""
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, message="cancelled before it started"
    ):
        job.refresh_from_db()
        _send_finished(job)
    else:
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
        job.refresh_from_db()
    broadcast_job(job)
    return job


def reap_stale_jobs(now: datetime | None = None) -> int:
    """Fail running jobs whose heartbeat is older than PREFLOOP_JOB_HEARTBEAT_TIMEOUT seconds.

    Progress and message stay as the dead worker left them. Returns how many jobs were reaped.
    Cheap when there is nothing to do (one indexed read, no write).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=heartbeat_timeout())
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    ids = list(stale.values_list("pk", flat=True)[:1000])
    if not ids:
        return 0
    count = stale.filter(pk__in=ids).update(status=Job.Status.FAILED, error=REAPED_ERROR, finished_at=now)
    for job in Job.objects.filter(pk__in=ids, status=Job.Status.FAILED, error=REAPED_ERROR):
        logger.warning("reaped %s (worker %s, last heartbeat %s)", job, job.worker, job.heartbeat_at)
        broadcast_job(job)
        _send_finished(job)
    return count
