"""Read-side helpers of the web UI: who may open which page, and the dashboard's per-annotator figures."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from annotate.models import Assignment, Membership, Project, User, Vote
from annotate.selectors import projects_for_user
from prefloop.core.errors import NotFound


def annotator_project(user: User, project_id: int) -> Project:
    """A project `user` annotates (an annotator membership; admins are no exception: no queue without one)."""
    project = Project.objects.filter(
        pk=project_id, memberships__user=user, memberships__role=Membership.Role.ANNOTATOR
    ).first()
    if project is None:
        raise NotFound("No such project.")
    return project


@dataclass(frozen=True)
class ProjectEntry:
    """One row of a user's project list: what they may do there."""

    project: Project
    can_annotate: bool
    can_view_dashboard: bool


def project_entries(user: User) -> list[ProjectEntry]:
    roles: dict[int, set[str]] = {}
    for project_id, role in Membership.objects.filter(user=user).values_list("project_id", "role"):
        roles.setdefault(project_id, set()).add(role)
    return [
        ProjectEntry(
            project=project,
            can_annotate=Membership.Role.ANNOTATOR in roles.get(project.pk, ()),
            can_view_dashboard=user.is_admin or Membership.Role.RESEARCHER in roles.get(project.pk, ()),
        )
        for project in projects_for_user(user)
    ]


@dataclass(frozen=True)
class AnnotatorVoteStats:
    username: str
    votes: int  # submissions (one per comparison, however many aspects it has)
    today: int
    median_seconds: float | None  # median time spent per submission, as the client measured it
    last_vote_at: datetime | None


def annotator_vote_stats(project: Project, *, now: datetime | None = None) -> list[AnnotatorVoteStats]:
    """Per annotator of `project`: submissions, today's, median time per vote; busiest first.

    Counts come from the database; the median needs every time once, so it reads one integer per
    submission (one aspect's rows only). Annotators who never voted are listed with zeros.
    """
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done = Assignment.objects.filter(project=project, state=Assignment.State.DONE)
    counts: dict[int, Any] = {
        row["annotator_id"]: row
        for row in done.values("annotator_id").annotate(  # type: ignore[no-redef]  # `votes` is a count here, not the relation
            votes=Count("id"), today=Count("id", filter=Q(completed_at__gte=start_of_day)), last=Max("completed_at")
        )
    }
    times: dict[int, list[int]] = {}
    rows = Vote.objects.filter(
        comparison__project=project,
        source=Vote.Source.HUMAN,
        aspect=project.aspect_names[0],
        time_spent_ms__isnull=False,
    ).values_list("annotator_id", "time_spent_ms")
    for annotator_id, ms in rows.iterator(chunk_size=5000):
        if ms is not None:  # filtered out above; the column is nullable
            times.setdefault(annotator_id, []).append(ms)

    members = dict(
        Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR).values_list(
            "user_id", "user__username"
        )
    )
    missing = set(counts) - set(members)  # voted here, membership since removed
    members.update(User.objects.filter(pk__in=missing).values_list("id", "username"))
    stats = [
        AnnotatorVoteStats(
            username=username,
            votes=counts.get(user_id, {}).get("votes", 0),
            today=counts.get(user_id, {}).get("today", 0),
            median_seconds=statistics.median(times[user_id]) / 1000 if times.get(user_id) else None,
            last_vote_at=counts.get(user_id, {}).get("last"),
        )
        for user_id, username in members.items()
    ]
    return sorted(stats, key=lambda s: (-s.votes, s.username))
