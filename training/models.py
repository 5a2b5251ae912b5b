"""Policies and rounds of the on-policy loop (see training/rounds.md for the state machine)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Policy(models.Model):
    """One checkpoint of a project's policy, with its lineage: parent, update method, data, metrics."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"

    class Method(models.TextChoices):
        BASE = "base"  # an existing causal LM folder (the user's SFT model)
        DEMO = "demo"  # the small GPT-2 built in code and SFT'd on the project's answers
        DPO = "dpo"
        PPO = "ppo"
        BEST_OF_N = "best_of_n"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="policies")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    method = models.CharField(max_length=16, choices=Method.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    base_model = models.CharField(max_length=500, blank=True, help_text="Model folder of a base policy.")
    round = models.ForeignKey(
        "Round",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The round whose update produced this checkpoint.",
    )
    config = models.JSONField(default=dict, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="What the update was trained on.")
    metrics = models.JSONField(default=dict, blank=True)
    curve = models.JSONField(default=list, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    job_id = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="policy_version_once"),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(artifact_path=""), name="policy_ready_has_artifact"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"policy v{self.version}" + (f" ({self.name})" if self.name else "")


class Loop(models.Model):
    """A project's loop: the fixed reference policy, the current policy and held-out evaluation prompts."""

    project = models.OneToOneField("annotate.Project", on_delete=models.CASCADE, related_name="loop")
    reference = models.ForeignKey(
        Policy,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The SFT policy every KL is measured against; fixed once set.",
    )
    current = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="+")
    eval_prompt_ids = models.JSONField(default=list, blank=True, help_text="Held out from sampling rounds.")
    defaults = models.JSONField(default=dict, blank=True, help_text="Round parameters used when a request omits them.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"loop of project {self.project_id}"


class Round(models.Model):
    """sampling → labeling → reward_model → [guarded →] policy_update → done; failed / cancelled with a reason."""

    class State(models.TextChoices):
        SAMPLING = "sampling"
        LABELING = "labeling"
        REWARD_MODEL = "reward_model"
        GUARDED = "guarded"  # PPO / best-of-N wait: the reward model is not above chance (or too few held-out pairs)
        POLICY_UPDATE = "policy_update"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (State.SAMPLING, State.LABELING, State.REWARD_MODEL, State.GUARDED, State.POLICY_UPDATE)

    class Method(models.TextChoices):
        DPO = "dpo"
        PPO = "ppo"
        BEST_OF_N = "best_of_n"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField(help_text="Comparisons of this round carry this round number.")
    method = models.CharField(max_length=16, choices=Method.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.SAMPLING)
    policy = models.ForeignKey(
        Policy, on_delete=models.PROTECT, related_name="sampled_rounds", help_text="The policy this round samples from."
    )
    new_policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reward_model = models.ForeignKey(
        "rewards.RewardModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, help_text="Why the round failed, was cancelled or waits at the guard.")
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The job of the current step.")
    history = models.JSONField(default=list, blank=True, help_text="[{state, at, job_id}] in order.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_once"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(state__in=["sampling", "labeling", "reward_model", "guarded", "policy_update"]),
                name="one_active_round_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"round {self.number} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE


class AIFeedback(models.Model):
    """The reward model's preference on a comparison: kept apart from human votes, never counted as one."""

    comparison = models.ForeignKey("annotate.Comparison", on_delete=models.CASCADE, related_name="ai_feedback")
    reward_model = models.ForeignKey("rewards.RewardModel", on_delete=models.CASCADE, related_name="+")
    winner = models.ForeignKey("annotate.Completion", on_delete=models.CASCADE, related_name="+")
    loser = models.ForeignKey("annotate.Completion", on_delete=models.CASCADE, related_name="+")
    margin = models.FloatField(help_text="r(winner) - r(loser)")
    probability = models.FloatField(help_text="sigmoid(margin): the model's P(winner preferred)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "reward_model"], name="ai_feedback_once")]

    def __str__(self) -> str:
        return f"AI feedback on comparison {self.comparison_id} by reward model {self.reward_model_id}"
