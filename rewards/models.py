"""Reward models (Bradley-Terry): every trained version with its data snapshot, options, metrics and lineage."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class RewardModel(models.Model):
    """One version of a project's reward model r(x, y). Status `ready` only once its artifact is complete."""

    class Status(models.TextChoices):
        QUEUED = "queued"  # requested; the training job has not started
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="reward_models")
    version = models.PositiveIntegerField()
    base_model = models.CharField(max_length=300)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    is_current = models.BooleanField(default=False)
    # filters, export options, pair ids (or their sha256) and counts: what exactly was trained on
    data_snapshot = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="RewardTrainConfig as a dict.")
    metrics = models.JSONField(default=dict, blank=True)
    curves = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    job_id = models.BigIntegerField(null=True, blank=True)
    trigger = models.CharField(max_length=64, blank=True, help_text='"manual", "command" or "auto:round-N".')
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="reward_model_version_once"),
            models.UniqueConstraint(fields=["project"], condition=Q(is_current=True), name="reward_model_one_current"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "training", "ready", "failed"]), name="reward_model_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(is_current=False) | Q(status="ready"), name="reward_model_current_is_ready"
            ),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(artifact_path=""), name="reward_model_ready_has_artifact"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:v{self.version} ({self.status})"


class RewardSettings(models.Model):
    """Per project: automatic retraining at the end of a round, and default training options."""

    project = models.OneToOneField("annotate.Project", on_delete=models.CASCADE, related_name="reward_settings")
    auto_retrain = models.BooleanField(
        default=False, help_text="Train a new version when every comparison of a round reaches its overlap target."
    )
    default_options = models.JSONField(default=dict, blank=True, help_text="RewardTrainConfig fields and data filters.")
    held_out_split = models.JSONField(
        default=dict,
        blank=True,
        help_text="The project's fixed held-out split ({method, salt, fraction, fixed_by_version}); set by the first "
        "training run and never changed, so every version is measured on the same prompts.",
    )

    def __str__(self) -> str:
        return f"reward settings of project {self.project_id}"


class RetrainTrigger(models.Model):
    """A round that has triggered its automatic retrain: the unique row makes the trigger fire once."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="+")
    round = models.PositiveIntegerField()
    reward_model = models.ForeignKey(RewardModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "round"], name="retrain_once_per_round")]

    def __str__(self) -> str:
        return f"Retrain of project {self.project_id} at round {self.round}"
