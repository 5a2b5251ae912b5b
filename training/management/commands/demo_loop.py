"""manage.py demo_loop: give the demo project its loop: queue the demo policy build (the worker runs it)
and set the project's reward-model defaults to ones that learn PRD's votes on CPU (DEMO_REWARD_OPTIONS).

Idempotent: a project that already has a policy (ready, queued or training) is left alone, and
reward-model defaults a researcher already set are kept.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option

# Measured with bench/demo_reward_model.py (docs/reward-models.md, "The demo's reward model"): PRD's
# answers are long (median 316 tokens), and the main signal in its votes needs both answers whole
# (max_length 512 keeps 86 % of pairs whole, 256 only 8 %); a quarter of the 80 questions held out
# gives ~140 held-out pairs instead of ~35, enough for a Wilson interval that can clear 0.5.
DEMO_REWARD_OPTIONS = {"max_length": 512, "eval_fraction": 0.25, "epochs": 2, "lr": 6e-5, "warmup_ratio": 0.1}


def configure_demo_rewards(project) -> bool:
    """Store DEMO_REWARD_OPTIONS as the project's reward-model defaults unless some are set. True if stored."""
    from rewards.services import reward_settings, update_reward_settings

    if reward_settings(project).default_options:
        return False
    update_reward_settings(project=project, default_options=dict(DEMO_REWARD_OPTIONS))
    return True


class Command(BaseCommand):
    help = "Queue the demo policy (a small Llama SFT'd on the demo's answer texts) and set the demo's reward-model defaults."

    def add_arguments(self, parser):
        parser.add_argument("--project", default="Vicuna80 demo", help=PROJECT_HELP)

    def handle(self, *args, **opts):
        from training.models import Policy
        from training.policies import request_demo_policy

        name = opts["project"]
        try:
            project = project_option(name)
        except CommandError as exc:
            raise CommandError(f"{exc}; run `manage.py demo` first") from None
        if configure_demo_rewards(project):
            self.stdout.write(f"{project.name}: reward-model defaults {DEMO_REWARD_OPTIONS}")
        existing = Policy.objects.filter(project=project).exclude(status=Policy.Status.FAILED).first()
        if existing is not None:
            self.stdout.write(f"{project.name}: policy v{existing.version} is {existing.status}; the loop tab is ready")
            return
        policy, job = request_demo_policy(project=project)
        self.stdout.write(
            f"{project.name}: demo policy v{policy.version} queued (job {job.pk}); the worker builds it in a few "
            f"minutes, then start a round from the Loop tab (/projects/{project.pk}/loop/)"
        )
