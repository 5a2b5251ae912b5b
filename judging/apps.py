from django.apps import AppConfig


class JudgingConfig(AppConfig):
    """AI feedback from an LLM judge, kept apart from human votes (docs/judge.md)."""

    name = "judging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from prefloop.jobs.registry import register_job_kind

        register_job_kind("judging.judge", "judging.tasks.judge")  # torch is imported only when a job runs
