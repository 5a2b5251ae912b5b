"""Researcher pages that manage a project: create and edit its settings, and its members (add,
invite by one-time link, pause/resume, per-annotator cap, remove).

Settings are validated by the API's own `ProjectSerializer`, so the page and REST refuse the
same input with the same messages; writes go through the services in annotate/services/projects.py
and prefloop/accounts/services.py.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate.models import Membership, Project, User
from annotate.selectors import project_for_user
from annotate.serializers import ProjectSerializer
from annotate.services.projects import membership_remove, membership_set, project_create, project_update
from frontend.views import not_found_as_404
from prefloop.accounts.services import InviteError, invite_user
from prefloop.core.errors import NotFound

RESEARCHER = Membership.Role.RESEARCHER
# Form fields of the settings page, in the order shown; all go through ProjectSerializer.
SETTING_FIELDS = [
    "name",
    "instructions",
    "aspects",
    "overlap_target",
    "lease_seconds",
    "annotator_cap",
    "allow_tie",
    "allow_both_bad",
    "strength_scale",
    "rationale",
    "gold_rate",
    "gold_min_accuracy",
    "gold_min_answers",
]
CHECKBOXES = {"allow_tie", "allow_both_bad"}
OPTIONAL_NUMBERS = {"annotator_cap", "gold_min_accuracy"}  # blank: no cap / never pause


def settings_data(post) -> dict:
    """The form's strings as the serializer's JSON-ish input (aspects comma-separated, blank numbers null)."""
    data: dict = {}
    for name in SETTING_FIELDS:
        if name in CHECKBOXES:
            data[name] = post.get(name) == "on"
        elif name == "aspects":
            data[name] = [a.strip() for a in post.get("aspects", "").split(",") if a.strip()]
        elif name in OPTIONAL_NUMBERS and not post.get(name, "").strip():
            data[name] = None
        elif name in post:
            data[name] = post.get(name).strip() if name != "instructions" else post.get(name)
    return data


def _form_errors(errors: dict) -> dict[str, str]:
    return {field: " ".join(str(m) for m in messages_) for field, messages_ in errors.items()}


def _settings_page(request, *, project: Project | None, values: dict, errors: dict, status: int = 200):
    return render(
        request,
        "frontend/project_settings.html",
        {
            "project": project,
            "values": values,
            "errors": errors,
            "tab": "settings",
            "rationale_choices": Project.Rationale.values,
        },
        status=status,
    )


def _values(project: Project) -> dict:
    values = ProjectSerializer(project).data
    values["aspects"] = ", ".join(project.aspects or [])
    return values


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request):
    if request.user.role not in (User.Role.RESEARCHER, User.Role.ADMIN):
        raise PermissionDenied("Only researchers create projects.")
    if request.method == "GET":
        return _settings_page(request, project=None, values=_values(Project()), errors={})
    data = ProjectSerializer(data=settings_data(request.POST))
    if not data.is_valid():
        return _settings_page(request, project=None, values=request.POST, errors=_form_errors(data.errors), status=400)
    project = project_create(created_by=request.user, **data.validated_data)
    messages.success(request, f"Project “{project.name}” created. Add members, then import data.")
    return redirect("project-members-page", project.pk)


@login_required
@require_http_methods(["GET", "POST"])
@not_found_as_404
def project_settings(request, project_id: int):
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    if request.method == "GET":
        return _settings_page(request, project=project, values=_values(project), errors={})
    data = ProjectSerializer(project, data=settings_data(request.POST))
    if not data.is_valid():
        return _settings_page(
            request, project=project, values=request.POST, errors=_form_errors(data.errors), status=400
        )
    try:
        project_update(project=project, **data.validated_data)
    except ValidationError as exc:  # the model's own checks (e.g. a name taken meanwhile)
        return _settings_page(
            request, project=project, values=request.POST, errors=_form_errors(exc.message_dict), status=400
        )
    messages.success(request, "Settings saved.")
    return redirect("project-settings", project.pk)


# --- members ------------------------------------------------------------------------------------
def _members_page(request, project: Project, *, errors: dict | None = None, status: int = 200, invitation=None):
    memberships = Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
    return render(
        request,
        "frontend/project_members.html",
        {
            "project": project,
            "memberships": memberships,
            "errors": errors or {},
            "tab": "members",
            "invitation": invitation,
            "values": request.POST if request.method == "POST" else {},
        },
        status=status,
    )


def _cap(value: str, field: str = "cap") -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise InviteError(field, "a whole number of assignments, or blank for the project's cap")
    return int(value)


@login_required
@require_http_methods(["GET"])
@not_found_as_404
def project_members(request, project_id: int):
    return _members_page(request, project_for_user(request.user, project_id, role=RESEARCHER))


@login_required
@require_POST
@not_found_as_404
def member_add(request, project_id: int):
    """Add an existing user, or (`invite`) create one and show their one-time set-password link."""
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    username = request.POST.get("username", "").strip()
    role = request.POST.get("role", Membership.Role.ANNOTATOR)
    try:
        if role not in Membership.Role.values:
            raise InviteError("role", f"must be one of {', '.join(Membership.Role.values)}")
        cap = _cap(request.POST.get("cap", ""))
        if request.POST.get("invite"):
            return _invite(request, project, username=username, role=role, cap=cap)
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise InviteError("username", "no active user with this name (invite them instead)")
    except InviteError as exc:
        return _members_page(request, project, errors={exc.field: str(exc).split(": ", 1)[1]}, status=400)
    membership_set(project=project, user=user, role=role, cap=cap)
    messages.success(request, f"{user.username} added as {role}.")
    return redirect("project-members-page", project.pk)


def _invite(request, project: Project, *, username: str, role: str, cap: int | None):
    # A researcher invites into their own project only; a new researcher account needs an admin.
    account_role = User.Role.RESEARCHER if role == RESEARCHER else User.Role.ANNOTATOR
    if account_role == User.Role.RESEARCHER and not request.user.is_admin:
        raise InviteError("role", "only an admin invites new researchers; invite an annotator or add an existing user")
    with transaction.atomic():
        invitation = invite_user(username=username, role=account_role, project=project, project_role=role)
        if cap is not None:
            membership_set(project=project, user=invitation.user, role=role, cap=cap)
    link = request.build_absolute_uri(invitation.path)
    return _members_page(
        request, project, invitation={"username": username, "link": link, "hours": invitation.valid_for_seconds // 3600}
    )


@login_required
@require_POST
@not_found_as_404
def member_update(request, project_id: int, user_id: int):
    """Pause, resume or change the cap of one member (the buttons of their row)."""
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    membership = Membership.objects.filter(project=project, user_id=user_id).select_related("user").first()
    if membership is None:
        raise NotFound("No such member.")
    action = request.POST.get("action")
    if action == "remove":
        membership_remove(project=project, user=membership.user)
        messages.success(request, f"{membership.user.username} removed from the project (their votes stay).")
        return redirect("project-members-page", project.pk)
    try:
        cap = _cap(request.POST.get("cap", ""), f"cap-{user_id}") if action == "cap" else membership.cap
    except InviteError as exc:
        return _members_page(request, project, errors={exc.field: str(exc).split(": ", 1)[1]}, status=400)
    paused = {"pause": True, "resume": False}.get(action)
    membership_set(project=project, user=membership.user, role=membership.role, cap=cap, paused=paused)
    messages.success(
        request, f"{membership.user.username}: " + {"pause": "paused", "resume": "resumed"}.get(action, "cap saved")
    )
    return redirect("project-members-page", project.pk)
