"""Job kinds → handler functions, by dotted path so Django start-up never imports torch.

A handler is `handler(job: Job, ctx: JobContext) -> dict`; the dict becomes `job.result`.
Apps add their kinds in `AppConfig.ready()` with `register_job_kind(kind, "app.tasks.function")`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from prefloop.core.errors import PrefloopError

if TYPE_CHECKING:
    from prefloop.jobs.context import JobContext
    from prefloop.jobs.models import Job

    Handler = Callable[[Job, JobContext], dict]

logger = logging.getLogger(__name__)

JOB_KINDS: dict[str, str] = {  # apps add theirs in ready()
    "selftest.sleep": "prefloop.jobs.selftest.sleep",
    "selftest.train": "prefloop.jobs.selftest.train",
}
# The queue a kind runs on when the job's params name none. Long training runs get their own
# queue so that short jobs (sampling, scoring, import, export) never wait behind one; a queue the
# backend does not serve (TASKS QUEUES) falls back to "default" (backends.DatabaseBackend).
DEFAULT_QUEUE = "default"
TRAINING_QUEUE = "training"
JOB_QUEUES: dict[str, str] = {"selftest.train": TRAINING_QUEUE}


class UnknownJobKind(PrefloopError):
    code = "unknown_job_kind"
    http_status = 400


def register_job_kind(kind: str, dotted_path: str, *, queue: str | None = None) -> None:
    """Register (or re-point) a job kind, optionally on its own queue. Idempotent; nothing is
    imported until a job runs."""
    previous = JOB_KINDS.get(kind)
    if previous and previous != dotted_path:
        logger.info("job kind %r re-registered: %s -> %s", kind, previous, dotted_path)
    JOB_KINDS[kind] = dotted_path
    if queue:
        JOB_QUEUES[kind] = queue


def queue_of(kind: str, params: dict | None = None) -> str:
    """The queue a job of `kind` asks for: params["queue"], else its kind's, else "default"."""
    return str((params or {}).get("queue") or JOB_QUEUES.get(kind) or DEFAULT_QUEUE)


def is_registered(kind: str) -> bool:
    return kind in JOB_KINDS


def get_handler(kind: str) -> Handler:
    """Import and return the handler; this is where a worker first imports torch, if ever."""
    try:
        path = JOB_KINDS[kind]
    except KeyError:
        raise UnknownJobKind(f"Unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}.") from None
    return import_string(path)
