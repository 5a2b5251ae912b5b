"""Invite-only accounts: an admin creates the user; the user picks a password through a one-time link.

There is no sign-up page and no default account. `invite_user` creates an active user with an
unusable password (nobody can sign in as it yet) and returns a set-password link made by Django's
password-reset token generator. The token is an HMAC over the user's password hash and last login,
so it stops working the moment it is used (the hash changes) and after PASSWORD_RESET_TIMEOUT
seconds; no table is needed. `set_password_link` re-issues a link for an existing user (a lost or
expired invitation, a forgotten password).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotate.models import Membership, Project, User
from annotate.services.projects import membership_set


class InviteError(ValueError):
    """An invitation that cannot be made; `field` names the argument at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Invitation:
    user: User
    path: str  # /accounts/set-password/<uidb64>/<token>/
    valid_for_seconds: int

    def url(self, base_url: str = "") -> str:
        return f"{base_url.rstrip('/')}{self.path}" if base_url else self.path


def set_password_link(*, user: User) -> Invitation:
    """A one-time set-password link for this user (works until used or PASSWORD_RESET_TIMEOUT)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("set-password", kwargs={"uidb64": uidb64, "token": token})
    return Invitation(user=user, path=path, valid_for_seconds=settings.PASSWORD_RESET_TIMEOUT)


@transaction.atomic
def invite_user(
    *,
    username: str,
    role: str = User.Role.ANNOTATOR,
    email: str = "",
    project: Project | None = None,
    project_role: str | None = None,
) -> Invitation:
    """Create `username` (no usable password) and, optionally, its membership of `project`."""
    if role not in User.Role.values:
        raise InviteError("role", f"must be one of {', '.join(User.Role.values)}, not {role!r}")
    if User.objects.filter(username=username).exists():
        raise InviteError("username", f"a user named {username!r} already exists (use --reissue for a new link)")
    user = User(username=username, email=email, role=role)
    user.is_staff = user.is_superuser = role == User.Role.ADMIN
    user.set_unusable_password()
    try:
        user.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InviteError(field, " ".join(messages)) from None
    user.save()
    if project is not None:
        project_role = project_role or (
            Membership.Role.RESEARCHER if role == User.Role.RESEARCHER else Membership.Role.ANNOTATOR
        )
        if project_role not in Membership.Role.values:
            raise InviteError(
                "project_role", f"must be one of {', '.join(Membership.Role.values)}, not {project_role!r}"
            )
        membership_set(project=project, user=user, role=project_role)
    return set_password_link(user=user)
