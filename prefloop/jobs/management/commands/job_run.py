"""python manage.py job_run KIND --params JSON: run a job in the foreground (tqdm bar) or enqueue it."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option
from prefloop.jobs.models import Job
from prefloop.jobs.registry import JOB_KINDS


class Command(BaseCommand):
    help = "Run a registered job kind here with a progress bar, or --enqueue it for a worker."

    def add_arguments(self, parser):
        parser.add_argument("kind", help=f"one of: {', '.join(sorted(JOB_KINDS))}")
        parser.add_argument("--params", default="{}", help='JSON object, e.g. \'{"seconds": 3, "steps": 10}\'')
        parser.add_argument("--project", help=PROJECT_HELP)
        parser.add_argument("--enqueue", action="store_true", help="Queue it for a worker instead (prints the id).")

    def handle(self, *args, kind, params, project=None, enqueue=False, **opts):
        from django.db import transaction

        from prefloop.jobs.services import enqueue_job, run_job_inline

        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from None
        project_obj = project_option(project) if project is not None else None
        if enqueue:
            with transaction.atomic():
                job = enqueue_job(kind=kind, params=params, project=project_obj)
            self.stdout.write(f"queued job {job.pk}; follow it with: manage.py job_watch {job.pk}")
            return
        job = run_job_inline(kind, params, project=project_obj)
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"job {job.pk} {job.status}: {job.error.splitlines()[0] if job.error else ''}")
        self.stdout.write(f"job {job.pk} succeeded: {json.dumps(job.result)}")
