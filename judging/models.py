"""A project's judge settings and the judge's verdicts (AI feedback): never Vote rows, never counted as human votes."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from training.ml.judge import DEFAULT_SYSTEM, DEFAULT_USER


class JudgeSettings(models.Model):
    """Which registered causal chat model judges a project's pairs, with what prompt and principles."""

    project = models.OneToOneField("annotate.Project", on_delete=models.CASCADE, related_name="judge_settings")
    judge = models.ForeignKey(
        "training.Policy",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="A ready policy checkpoint (a registered base model or a trained one).",
    )
    system_prompt = models.TextField(default=DEFAULT_SYSTEM, help_text="Instructions; {principles} is replaced.")
    user_template = models.TextField(default=DEFAULT_USER, help_text="Must hold {question}, {answer_a}, {answer_b}.")
    principles = models.JSONField(default=dict, blank=True, help_text='{"aspect": "principles text"}')
    max_tokens = models.PositiveIntegerField(
        default=2048, help_text="Judge input bound; longer inputs lose their start."
    )
    batch_size = models.PositiveSmallIntegerField(default=8)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"judge settings of project {self.project_id}"


class JudgeVerdict(models.Model):
    """One judge verdict on a pairwise comparison and aspect, from both orders of the answers."""

    class Verdict(models.TextChoices):
        FIRST = "first"  # the completion at position 0 of the comparison
        SECOND = "second"
        TIE = "tie"

    comparison = models.ForeignKey("annotate.Comparison", on_delete=models.CASCADE, related_name="judge_verdicts")
    aspect = models.CharField(max_length=64, default="overall")
    judge = models.ForeignKey("training.Policy", null=True, on_delete=models.SET_NULL, related_name="+")
    judge_label = models.CharField(max_length=300, help_text="The judge as it was named when it judged.")
    prompt_version = models.CharField(max_length=16, help_text="Hash of the judge prompt and principles used.")
    principles = models.TextField(blank=True)
    first = models.ForeignKey("annotate.Completion", on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey("annotate.Completion", on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    consistent = models.BooleanField(help_text="Both orders agreed; an inconsistent pair is a tie.")
    order1 = models.JSONField(help_text="[P(A), P(B), P(C)] with (first, second) shown")
    order2 = models.JSONField(help_text="[P(A), P(B), P(C)] with (second, first) shown")
    probabilities = models.JSONField(help_text="{first, second, tie}: the two orders averaged")
    truncated = models.BooleanField(default=False)
    job_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "aspect", "judge", "prompt_version"], name="judge_verdict_once"
            ),
            models.CheckConstraint(condition=Q(verdict__in=["first", "second", "tie"]), name="judge_verdict_valid"),
        ]
        indexes = [models.Index(fields=["comparison", "aspect"])]

    def __str__(self) -> str:
        return f"judge verdict {self.verdict} on {self.comparison_id}"

    @property
    def winner_id(self) -> int | None:
        return {"first": self.first_id, "second": self.second_id}.get(self.verdict)

    @property
    def loser_id(self) -> int | None:
        return {"first": self.second_id, "second": self.first_id}.get(self.verdict)
