"""manage.py demo_loop: give the demo project its loop: queue the demo policy build (the worker runs it).

Idempotent: a project that already has a policy (ready, queued or training) is left alone.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project


class Command(BaseCommand):
    help = "Queue the demo policy (a small GPT-2 SFT'd on the project's answers) for the demo project."

    def add_arguments(self, parser):
        parser.add_argument("--project", default="Vicuna80 demo", help="project name or id")

    def handle(self, *args, **opts):
        from training.models import Policy
        from training.policies import request_demo_policy

        name = opts["project"]
        project = Project.objects.filter(pk=int(name)).first() if name.isdigit() else Project.objects.filter(name=name).first()
        if project is None:
            raise CommandError(f"no project {name!r}; run `manage.py demo` first")
        existing = Policy.objects.filter(project=project).exclude(status=Policy.Status.FAILED).first()
        if existing is not None:
            self.stdout.write(f"{project.name}: policy v{existing.version} is {existing.status}; the loop tab is ready")
            return
        policy, job = request_demo_policy(project=project)
        self.stdout.write(
            f"{project.name}: demo policy v{policy.version} queued (job {job.pk}); the worker builds it in a few "
            f"minutes, then start a round from the Loop tab (/projects/{project.pk}/loop/)"
        )
