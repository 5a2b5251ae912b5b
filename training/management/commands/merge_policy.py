"""manage.py merge_policy --project P --policy-version N: merge a LoRA policy checkpoint into a full safetensors folder.

The folder is written beside the checkpoint as v<N>-merged (once; a second call prints the same path).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option
from training.errors import InvalidModelPath, RoundStateError
from training.models import Policy


class Command(BaseCommand):
    help = "Merge a LoRA adapter policy checkpoint into its base and write a full safetensors folder."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help=PROJECT_HELP)
        parser.add_argument("--policy-version", type=int, required=True, help="policy version (an adapter checkpoint)")

    def handle(self, *args, project: str, policy_version: int, **options):
        project_id = project_option(project).pk
        version = policy_version
        from training.policies import export_merged_policy

        policy = Policy.objects.filter(project_id=project_id, version=version).first()
        if policy is None:
            raise CommandError(f"project {project} has no policy v{version}")
        try:
            folder = export_merged_policy(policy=policy)
        except (InvalidModelPath, RoundStateError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(folder))
