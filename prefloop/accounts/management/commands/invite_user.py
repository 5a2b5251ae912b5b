"""python manage.py invite_user NAME --role annotator [--project ID] : create a user, print a one-time set-password link.

Sign-up is closed: this (or Django's admin) is how accounts are made. `--reissue` prints a new link
for an existing user (a lost invitation or a forgotten password); the old link stops working once
either is used.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Membership, User
from prefloop.accounts.services import InviteError, invite_user, set_password_link
from prefloop.core.commands import PROJECT_HELP, project_option


class Command(BaseCommand):
    help = "Create a user (no password yet) and print a one-time link where they set their password."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=User.Role.values, default=User.Role.ANNOTATOR)
        parser.add_argument("--email", default="")
        parser.add_argument("--project", help=f"{PROJECT_HELP} to add the user to")
        parser.add_argument(
            "--project-role", choices=Membership.Role.values, help="default: researcher for researchers, else annotator"
        )
        parser.add_argument(
            "--base-url",
            default=getattr(settings, "PREFLOOP_BASE_URL", ""),
            help="e.g. https://prefloop.example.org (default: PREFLOOP_BASE_URL)",
        )
        parser.add_argument("--reissue", action="store_true", help="a new link for an existing user instead")

    def handle(self, *args, **opts):
        if opts["reissue"]:
            user = User.objects.filter(username=opts["username"]).first()
            if user is None:
                raise CommandError(f"username: no user named {opts['username']!r}")
            invitation = set_password_link(user=user)
        else:
            project = project_option(opts["project"]) if opts["project"] else None
            try:
                invitation = invite_user(
                    username=opts["username"],
                    role=opts["role"],
                    email=opts["email"],
                    project=project,
                    project_role=opts["project_role"],
                )
            except InviteError as exc:
                raise CommandError(str(exc)) from None
        hours = invitation.valid_for_seconds // 3600
        self.stderr.write(f"{invitation.user.role} {invitation.user.username}: set-password link (one use, {hours} h):")
        self.stdout.write(invitation.url(opts["base_url"]))
