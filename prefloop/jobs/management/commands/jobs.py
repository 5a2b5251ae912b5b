"""python manage.py jobs: the most recent jobs, newest first."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from prefloop.core.commands import PROJECT_HELP, project_option
from prefloop.jobs.models import Job


class Command(BaseCommand):
    help = "List recent background jobs (reap dead workers' jobs first)."

    def add_arguments(self, parser):
        parser.add_argument("--project", help=f"only this project's jobs ({PROJECT_HELP})")
        parser.add_argument("--status", choices=Job.Status.values)
        parser.add_argument("--kind")
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, project=None, status=None, kind=None, limit=20, **opts):
        from prefloop.jobs.services import reap_stale_jobs

        reap_stale_jobs()
        jobs = Job.objects.select_related("created_by").order_by("-created_at", "-id")
        if project is not None:
            jobs = jobs.filter(project=project_option(project))
        if status:
            jobs = jobs.filter(status=status)
        if kind:
            jobs = jobs.filter(kind=kind)
        rows = list(jobs[:limit])
        if not rows:
            self.stdout.write("No jobs.")
            return
        self.stdout.write(f"{'id':>6}  {'kind':<22} {'status':<10} {'progress':>8}  {'created':<19}  message")
        for job in rows:
            detail = job.error.splitlines()[0] if job.error else job.message
            self.stdout.write(
                f"{job.pk:>6}  {job.kind[:22]:<22} {job.status:<10} {job.progress:>8.0%}  "
                f"{job.created_at:%Y-%m-%d %H:%M:%S}  {detail[:80]}"
            )
