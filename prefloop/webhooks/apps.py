"""Outgoing webhooks: per-project HTTP callbacks on loop, job, reward-model and labeling events."""

from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "prefloop.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from annotate.signals import register_vote_fact, vote_recorded
        from prefloop.jobs.registry import register_job_kind
        from prefloop.jobs.signals import job_finished
        from prefloop.webhooks import checks, receivers  # noqa: F401 (checks registers itself)
        from training.signals import round_state_changed

        register_job_kind(receivers.DELIVER_JOB, "prefloop.webhooks.tasks.deliver")
        job_finished.connect(receivers.on_job_finished, dispatch_uid="webhooks.job_finished")
        vote_recorded.connect(receivers.on_vote_recorded, dispatch_uid="webhooks.vote_recorded")
        register_vote_fact("webhook_events", receivers.webhook_events_fact())
        round_state_changed.connect(receivers.on_round_state_changed, dispatch_uid="webhooks.round_state")
        post_save.connect(receivers.on_round_saved, sender="training.Round", dispatch_uid="webhooks.round_created")
