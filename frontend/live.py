"""Live dashboard progress: the per-project Channels group, its HTML fragment and the vote broadcast."""
from __future__ import annotations

import logging

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
    try:
        async_to_sync(layer.group_send)(progress_group(assignment.project_id), {"type": "progress.changed"})
    except Exception:  # the vote is stored; a dashboard refresh is best effort
        logger.warning("could not broadcast progress of project %s", assignment.project_id, exc_info=True)
