"""The user admin, with its action: a one-time set-password link for each selected user (invitation or reset)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin

from annotate.models import User
from prefloop.accounts.services import set_password_link


@admin.action(description="Make one-time set-password links")
def make_set_password_links(modeladmin, request, queryset):
    for user in queryset.order_by("username"):
        invitation = set_password_link(user=user)
        hours = invitation.valid_for_seconds // 3600
        modeladmin.message_user(
            request,
            f"Set-password link for {user.username}: {request.build_absolute_uri(invitation.path)} (one use, {hours} h)",
            messages.INFO,
        )


@admin.register(User)
class PrefloopUserAdmin(UserAdmin):
    list_display = ["username", "role", "is_active", "last_login"]
    list_filter = ["role", "is_active"]
    fieldsets = (*(UserAdmin.fieldsets or ()), ("prefloop", {"fields": ["role"]}))
    actions = [make_set_password_links]  # invitations and resets; `manage.py invite_user` does the same
