"""Small helpers shared by the apps' server-rendered views (rewards, training)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404

from annotate.models import Membership, Project
from annotate.selectors import project_for_user
from prefloop.core.errors import NotFound, PrefloopError


def researcher_project_or_404(request, project_id: int) -> Project:
    """The project if the signed-in user is one of its researchers; 404 otherwise (never 403)."""
    try:
        return project_for_user(request.user, project_id, role=Membership.Role.RESEARCHER)
    except NotFound:
        raise Http404("No such project.") from None


def flash_outcome(request, action: Callable[[], str]) -> None:
    """Run a POST form's service call: its message as a success, a domain error's as an error."""
    try:
        messages.success(request, action())
    except PrefloopError as exc:
        messages.error(request, str(exc))
