from django.apps import AppConfig


class JudgingConfig(AppConfig):
    """AI feedback from an LLM judge, kept apart from human votes (docs/judge.md)."""

    name = "judging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from judging.job_kinds import JUDGE
        from prefloop.jobs.registry import register_job_kind

        # torch is imported only when a job runs; a causal LM forward per pair: the training queue
        register_job_kind(JUDGE, "judging.tasks.judge", queue="training")
