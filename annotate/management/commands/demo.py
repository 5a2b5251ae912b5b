"""python manage.py demo: a ready-to-vote project on real data, with accounts and printed passwords.

Idempotent: re-running keeps the data and prints fresh passwords and tokens.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from annotate.models import Membership, Project, User
from annotate.services.importing import import_file
from annotate.services.importing.adapters import prd_root
from annotate.services.projects import membership_set, project_create

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "demo_prompts.jsonl"
PROJECT = "Vicuna80 demo"
ACCOUNTS = [
    ("admin", User.Role.ADMIN),
    ("researcher", User.Role.RESEARCHER),
    ("annotator1", User.Role.ANNOTATOR),
    ("annotator2", User.Role.ANNOTATOR),
    ("annotator3", User.Role.ANNOTATOR),
]


class Command(BaseCommand):
    help = "Create the demo project (PRD Vicuna80 questions, 5 models' answers, human votes) and accounts."

    def handle(self, *args, **opts):
        if not settings.PREFLOOP_DEMO_ACCOUNTS:
            raise CommandError(
                "demo creates accounts with printed passwords and is disabled under the production settings "
                "(PREFLOOP_DEMO_ACCOUNTS is off); invite people with `manage.py invite_user` instead"
            )
        project = Project.objects.filter(name=PROJECT).first() or project_create(
            name=PROJECT,
            instructions=(
                "Read the question, then both answers. Pick the answer a careful expert would rather send: "
                "correct first, then helpful, then clear. Use tie when they are equally good and both bad "
                "when neither is acceptable. Press ? for the keys."
            ),
            overlap_target=3,
            strength_scale=3,
        )
        source = settings.PREFLOOP_DATA_DIR / "PRD" / "vicuna80"
        if prd_root(source):
            report = import_file(project=project, path=source)
            what = f"PRD Vicuna80 from {source}"
        else:
            report = import_file(project=project, path=SAMPLE)
            what = f"the built-in sample ({SAMPLE.name}); PRD data not found at {source}"
        self.stdout.write(f"Imported {what}: created {report.created}, already there {report.existing}")

        self.stdout.write("\nAccounts (passwords are new on every run):")
        for username, role in ACCOUNTS:
            user, _ = User.objects.get_or_create(username=username, defaults={"role": role})
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.role = role
            user.is_staff = user.is_superuser = role == User.Role.ADMIN
            user.save()
            if role != User.Role.ADMIN:
                membership_set(
                    project=project,
                    user=user,
                    role=Membership.Role.RESEARCHER if role == User.Role.RESEARCHER else Membership.Role.ANNOTATOR,
                )
            token, _ = Token.objects.get_or_create(user=user)
            self.stdout.write(f"  {role:<10} {username:<11} password {password}   API token {token.key}")
        self.stdout.write(f"\nProject {project.name!r} has id {project.pk}.")
