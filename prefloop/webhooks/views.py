"""The Webhooks page: a project's webhooks (create, edit, delete, rotate the secret, send a test) and
the delivery log. Researchers of the project only (404 for everyone else), forms with CSRF."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate.models import Project
from frontend.views import not_found_as_404
from prefloop.webhooks import selectors, services
from prefloop.webhooks.events import EVENTS
from prefloop.webhooks.models import Delivery, Webhook


def _form(post: Any) -> dict:
    raw = (post.get("milestone_every") or "100").strip()
    if not raw.isdigit() or len(raw) > 7:
        raise services.InvalidWebhook("milestone_every", "a whole number between 1 and 1000000")
    return {
        "url": post.get("url", ""),
        "events": post.getlist("events"),
        "name": post.get("name", ""),
        "active": post.get("active") == "on",
        "milestone_every": int(raw),
    }


def _page(
    request: HttpRequest,
    project: Project,
    *,
    status: int = 200,
    errors: dict | None = None,
    values: dict | None = None,
    secret: dict | None = None,
    edit_errors: dict | None = None,
) -> HttpResponse:
    webhook_filter = request.GET.get("webhook", "")
    webhook_id = int(webhook_filter) if webhook_filter.isdigit() else None
    deliveries = selectors.deliveries_of(project, webhook_id=webhook_id)
    return render(
        request,
        "webhooks/webhooks.html",
        {
            "project": project,
            "tab": "webhooks",
            "webhooks": selectors.webhooks_of(project),
            "events": EVENTS,
            "deliveries": deliveries,
            "webhook_filter": webhook_id,
            "errors": errors or {},
            "edit_errors": edit_errors or {},
            "values": values or {"events": [], "active": True, "milestone_every": 100},
            "secret": secret,
            "live": any(d.status in Delivery.OPEN for d in deliveries),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
@not_found_as_404
def webhooks_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = selectors.project_for_researcher(request.user, project_id)
    if request.method == "GET":
        return _page(request, project)
    try:
        values = _form(request.POST)
        webhook = services.webhook_create(project=project, user=request.user, **values)
    except services.InvalidWebhook as exc:
        values = {
            **request.POST.dict(),
            "events": request.POST.getlist("events"),
            "active": request.POST.get("active") == "on",
        }
        return _page(request, project, status=400, errors={exc.field: exc.message}, values=values)
    return _page(request, project, secret={"webhook": webhook, "value": webhook.secret, "why": "created"})


@login_required
@require_POST
@not_found_as_404
def webhook_change(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    """The buttons of one webhook: save (edit), test, rotate (the new secret is shown once), delete."""
    project = selectors.project_for_researcher(request.user, project_id)
    webhook = selectors.webhook_for_user(request.user, webhook_id, project=project)
    action = request.POST.get("action", "")
    if action == "delete":
        services.webhook_delete(webhook=webhook)
        messages.success(request, f"Webhook “{webhook.label}” deleted, with its delivery log.")
    elif action == "test":
        delivery = services.send_test(webhook=webhook)
        messages.success(request, f"Test event queued (delivery {delivery.pk}); its result appears in the log below.")
    elif action == "rotate":
        secret = services.webhook_rotate_secret(webhook=webhook)
        return _page(request, project, secret={"webhook": webhook, "value": secret, "why": "rotated"})
    elif action == "save":
        return _save(request, project, webhook)
    else:
        return _page(request, project, status=400, edit_errors={webhook.pk: "unknown action"})
    return redirect("webhooks-page", project.pk)


def _save(request: HttpRequest, project: Project, webhook: Webhook) -> HttpResponse:
    try:
        services.webhook_update(webhook=webhook, **_form(request.POST))
    except services.InvalidWebhook as exc:
        return _page(request, project, status=400, edit_errors={webhook.pk: f"{exc.field}: {exc.message}"})
    messages.success(request, f"Webhook “{webhook.label}” saved.")
    return redirect("webhooks-page", project.pk)
