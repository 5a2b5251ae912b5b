"""Progress broadcasts over Channels: one group per job and one per project's jobs.

The DB row is the source of truth; a broadcast is a hint that it changed. Across processes
(worker → daphne) it needs REDIS_URL (channels-redis); with the in-memory layer it reaches only
consumers in the same process. A broadcast never fails the job that sends it.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "job.progress"


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def project_jobs_group(project_id: int) -> str:
    return f"project-{project_id}-jobs"


def broadcast_job(job) -> None:
    """Tell listeners about `job`'s current state, once the surrounding transaction commits."""
    summary = job.summary()
    project_id = job.project_id
    transaction.on_commit(lambda: _send(summary, project_id))


def _send(summary: dict, project_id: int | None) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": MESSAGE_TYPE, "job": summary}
    groups = [job_group(summary["id"])] + ([project_jobs_group(project_id)] if project_id else [])
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # a dead Redis must not fail a training run
        logger.warning("job %s: progress broadcast failed", summary["id"], exc_info=True)
