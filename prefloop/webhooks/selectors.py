"""Reads of webhooks and their delivery log, authorised by project role (researchers; 404 otherwise)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotate.models import Membership, Project
from annotate.selectors import project_for_user
from prefloop.core.errors import NotFound
from prefloop.webhooks.models import Delivery, Webhook

RESEARCHER = Membership.Role.RESEARCHER
LOG_ROWS = 50


def project_for_researcher(user: Any, project_id: int) -> Project:
    return project_for_user(user, project_id, role=RESEARCHER)


def webhooks_of(project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).order_by("id")


def webhook_for_user(user: Any, webhook_id: int, *, project: Project | None = None) -> Webhook:
    """The webhook if `user` is a researcher of its project (and it is `project`'s); NotFound otherwise."""
    webhook = Webhook.objects.select_related("project").filter(pk=webhook_id).first()
    if webhook is None or (project is not None and webhook.project_id != project.pk):
        raise NotFound("No such webhook.")
    project_for_researcher(user, webhook.project_id)
    return webhook


def deliveries_of(project: Project, *, webhook_id: int | None = None, limit: int = LOG_ROWS) -> list[Delivery]:
    rows = Delivery.objects.filter(webhook__project=project).select_related("webhook").defer("body")
    if webhook_id is not None:
        rows = rows.filter(webhook_id=webhook_id)
    return list(rows.order_by("-created_at", "-id")[:limit])
