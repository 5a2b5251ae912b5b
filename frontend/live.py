"""Live dashboard progress: the per-project Channels group, its HTML fragment and the vote broadcast."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from annotate.models import Project
from annotate.selectors import project_progress
from frontend.selectors import annotator_vote_stats

logger = logging.getLogger(__name__)


def progress_group(project_id: int) -> str:
    return f"project-{project_id}-progress"


def dashboard_context(project: Project) -> dict:
    progress = project_progress(project)
    collected = progress.votes_done + progress.imported_votes
    wanted = collected + progress.votes_needed
    return {
        "project": project,
        "progress": progress,
        "collected": collected,
        "wanted": wanted,
        "percent": round(100 * collected / wanted, 1) if wanted else 100.0,
        "annotators": annotator_vote_stats(project),
    }


def render_live_progress(project: Project) -> str:
    return render_to_string("frontend/_live_progress.html", dashboard_context(project))


def broadcast_vote(sender, assignment, **kwargs) -> None:
    """`vote_recorded` receiver (sent after commit): tell the project's open dashboards to refresh.

    The message carries no data; each consumer re-reads, so a missed message is healed by the next.
    A broadcast problem must never fail the vote that was already committed.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    group, message = progress_group(assignment.project_id), {"type": "progress.changed"}
    groups = getattr(layer, "groups", None)
    if isinstance(groups, dict) and not groups.get(group):
        return  # the in-process layer has nobody listening: group_send would do nothing
    try:
        if isinstance(groups, dict):
            async_to_sync(layer.group_send)(group, message)
        else:
            # A shared layer (Redis): sent from one long-lived loop per process, without waiting;
            # async_to_sync would start a thread and an event loop for every vote.
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _broadcast_loop())
            future.add_done_callback(lambda done: _log_failure(done, assignment.project_id))
    except Exception:
        logger.warning("could not broadcast progress of project %s", assignment.project_id, exc_info=True)


_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _broadcast_loop() -> asyncio.AbstractEventLoop:
    """This process's broadcast loop, started on first use (after a server forks its workers)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=_loop.run_forever, name="prefloop-broadcast", daemon=True).start()
        return _loop


def _log_failure(done: concurrent.futures.Future, project_id: int) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.warning("could not broadcast progress of project %s", project_id, exc_info=done.exception())
