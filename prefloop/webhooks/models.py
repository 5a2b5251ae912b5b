"""A project's outgoing webhooks and the log of every delivery (one row per event × webhook)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Webhook(models.Model):
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100, blank=True)
    url = models.CharField(max_length=2000, help_text="http(s) URL the events are POSTed to.")
    # The HMAC key. Stored as is (it has to sign); shown once when created or rotated, masked after.
    secret = models.CharField(max_length=128)
    events = models.JSONField(default=list, help_text="Event names (prefloop.webhooks.events.EVENTS).")
    active = models.BooleanField(default=True)
    milestone_every = models.PositiveIntegerField(
        default=100, help_text="labeling.votes_milestone: sent every this many completed judgements."
    )
    last_milestone = models.PositiveIntegerField(default=0, help_text="The last judgement count announced.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "id"]
        constraints = [models.CheckConstraint(condition=Q(milestone_every__gte=1), name="webhook_milestone_positive")]

    def __str__(self) -> str:
        return f"webhook {self.pk} of project {self.project_id} → {self.url}"

    @property
    def masked_secret(self) -> str:
        return f"{self.secret[:4]}…{self.secret[-2:]}" if len(self.secret) > 8 else "…"

    @property
    def label(self) -> str:
        return self.name or self.url


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # queued, not tried yet
        RETRYING = "retrying"  # tried, failed, another attempt is scheduled (next_attempt_at)
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # gave up: a refusal, a 4xx, or every attempt used

    OPEN = (Status.PENDING, Status.RETRYING)

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    event_id = models.CharField(max_length=64, help_text="Sent as X-Prefloop-Event-Id: the receiver's idempotency key.")
    body = models.TextField(help_text="The exact JSON bytes sent (and signed), the same on every attempt.")
    body_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=6)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The job of the latest (or next) attempt.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One delivery per event and webhook: an event emitted twice (two processes saw the same
            # milestone) is sent once.
            models.UniqueConstraint(fields=["webhook", "event_id"], name="delivery_event_once"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrying", "succeeded", "failed"]), name="delivery_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_recent")]

    def __str__(self) -> str:
        return f"delivery {self.pk} {self.event} ({self.status})"
