"""manage.py judge --project P [--round N | --import ID | --before ISO] [--rejudge]: judge comparisons in the foreground."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option
from prefloop.core.errors import PrefloopError


class Command(BaseCommand):
    help = "Judge a project's pairwise comparisons with its judge model (AI feedback, stored apart from human votes)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help=PROJECT_HELP)
        parser.add_argument("--round", type=int)
        parser.add_argument("--import", dest="data_import", type=int, help="Every comparison of this import.")
        parser.add_argument("--before", help="Comparisons created before this ISO date-time.")
        parser.add_argument("--rejudge", action="store_true", help="Also judge comparisons this judge already judged.")

    def handle(self, *args, **options) -> None:
        from judging import services
        from prefloop.jobs.services import run_job_inline

        project = project_option(options["project"])
        scope = {
            "round": options["round"],
            "import": options["data_import"],
            "created_before": options["before"],
            "rejudge": options["rejudge"],
        }
        try:
            ids = services.scope_ids(project, scope)
            services.ready_judge(project)
        except PrefloopError as exc:
            raise CommandError(str(exc)) from None
        if not ids:
            raise CommandError("nothing to judge in this scope")
        job = run_job_inline(services.JUDGE_JOB, {"project_id": project.pk, "comparison_ids": ids}, project=project)
        if job.status != "succeeded":
            raise CommandError(f"judging job {job.pk} {job.status}: {job.error or job.message}")
        self.stdout.write(f"job {job.pk}: {job.result}")
