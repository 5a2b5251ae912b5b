"""Collection data model: projects, prompts, completions, comparisons, assignments and votes.

Invariants the database can hold are constraints here (one vote per comparison, annotator and
aspect; unique idempotency keys; valid choices), not Python checks in services.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q


class User(AbstractUser):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        RESEARCHER = "researcher"
        ADMIN = "admin"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser


class Project(models.Model):
    class Rationale(models.TextChoices):
        OFF = "off"
        OPTIONAL = "optional"
        REQUIRED = "required"

    name = models.CharField(max_length=200, unique=True)
    instructions = models.TextField(blank=True)
    overlap_target = models.PositiveSmallIntegerField(default=3, help_text="Votes wanted per comparison.")
    allow_tie = models.BooleanField(default=True)
    allow_both_bad = models.BooleanField(default=True)
    strength_scale = models.PositiveSmallIntegerField(
        default=0, help_text="0: no strength; n: annotators pick a strength 1..n (e.g. 3 = slight/clear/strong)."
    )
    rationale = models.CharField(max_length=8, choices=Rationale.choices, default=Rationale.OPTIONAL)
    aspects = models.JSONField(
        default=list, blank=True, help_text='Aspects voted separately, e.g. ["helpfulness", "harmlessness"].'
    )
    lease_seconds = models.PositiveIntegerField(default=600)
    annotator_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most assignments one annotator may take here (blank: no cap)."
    )
    # Gold (attention) checks: comparisons with a known answer, mixed invisibly into queues.
    gold_rate = models.FloatField(default=0.0, help_text="Share of handed-out work that is a gold check (0-1).")
    gold_min_accuracy = models.FloatField(
        null=True, blank=True, help_text="Pause an annotator whose gold accuracy falls below this (blank: never)."
    )
    gold_min_answers = models.PositiveSmallIntegerField(default=5, help_text="Gold answers needed before pausing.")
    system_prompt = models.TextField(
        blank=True,
        max_length=8000,
        help_text="Put before every prompt as a system turn when a policy or reward model renders it (blank: none).",
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(User, through="Membership", related_name="projects")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(overlap_target__gte=1), name="project_overlap_at_least_one"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="project_gold_rate_share"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def aspect_names(self) -> list[str]:
        return list(self.aspects) or ["overall"]

    @property
    def allowed_choices(self) -> list[str]:
        return ["a", "b"] + (["tie"] if self.allow_tie else []) + (["both_bad"] if self.allow_both_bad else [])


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        RESEARCHER = "researcher"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    cap = models.PositiveIntegerField(null=True, blank=True, help_text="Overrides the project's annotator cap.")
    # Set when gold checks fail (or by a researcher); a paused annotator gets no work here.
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_once")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    # Source id (e.g. a Vicuna question_id) or a hash of the text: what makes re-imports idempotent.
    key = models.CharField(max_length=128)
    text = models.TextField()  # what annotators read and search finds; the conversation below is what models see
    messages = models.JSONField(
        default=list,
        blank=True,
        help_text='The prompt as a conversation: [{"role": "user"|"assistant"|"system", "content": ...}]; empty: one user turn of text.',
    )
    category = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="prompt_key_once_per_project")]

    def __str__(self) -> str:
        return f"Prompt {self.pk}: {self.text[:60]}"

    @property
    def conversation(self) -> list[dict]:
        """The stored turns, or the text as one user turn (the project's system prompt is added by selectors)."""
        return [dict(m) for m in self.messages] if self.messages else [{"role": "user", "content": self.text}]


class Completion(models.Model):
    class Source(models.TextChoices):
        EXTERNAL = "external"  # written by a named model outside prefloop
        POLICY = "policy"  # sampled from one of our policy checkpoints

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    key = models.CharField(max_length=128)
    text = models.TextField(blank=True)
    # False for votes whose texts the source does not ship (PRD's guanaco answers): usable for
    # leaderboard fits, never shown to annotators or exported as training text.
    text_available = models.BooleanField(default=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.EXTERNAL)
    model_name = models.CharField(max_length=200, help_text="External model name, or policy name@round.")
    # Provenance of a sampled completion. A plain id, not a foreign key: training depends on
    # annotate, never the reverse.
    policy_checkpoint_id = models.BigIntegerField(null=True, blank=True)
    round = models.PositiveIntegerField(null=True, blank=True)
    sampler_params = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "key"], name="completion_key_once_per_prompt")]
        indexes = [models.Index(fields=["model_name"])]

    def __str__(self) -> str:
        return f"Completion {self.pk} by {self.model_name}"


class Comparison(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    completions = models.ManyToManyField(Completion, through="ComparisonItem", related_name="comparisons")
    # Sorted completion ids joined by "-": one comparison per set of completions and round.
    key = models.CharField(max_length=255)
    round = models.PositiveIntegerField(default=0)
    priority = models.IntegerField(default=0, help_text="Higher is handed out first.")
    # Closed comparisons are never handed out (e.g. a side's text is missing).
    is_open = models.BooleanField(default=True)
    # Votes that arrived with imported data; they count toward the overlap target.
    imported_votes = models.PositiveSmallIntegerField(default=0)
    # A gold check: its answer is known. Gold comparisons have no overlap limit, are never
    # complete, and stay out of exports and leaderboards.
    gold_label = models.CharField(
        max_length=8,
        blank=True,
        choices=[("", "not gold"), ("winner", "winner"), ("tie", "tie"), ("both_bad", "both bad")],
    )
    gold_winner = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Finished assignments; kept in step with Assignment rows by the voting service.
    votes_done = models.PositiveIntegerField(default=0)
    # Live leases holding a slot; imported_votes + votes_done + leases_open never exceeds the target.
    leases_open = models.PositiveIntegerField(default=0)
    # True once imported_votes + votes_done reached the project's overlap target.
    is_complete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "round", "key"], name="comparison_once_per_round"),
            models.CheckConstraint(
                condition=Q(gold_label="winner", gold_winner__isnull=False)
                | (~Q(gold_label="winner") & Q(gold_winner__isnull=True)),
                name="comparison_gold_winner_iff_winner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-priority", "id"],
                name="comparison_frontier",
                condition=Q(is_open=True, is_complete=False, gold_label=""),
            )
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk} ({self.key})"


class ComparisonItem(models.Model):
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="items")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "position"], name="item_position_once"),
            models.UniqueConstraint(fields=["comparison", "completion"], name="item_completion_once"),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.comparison_id} item {self.position}"


class Assignment(models.Model):
    class State(models.TextChoices):
        LEASED = "leased"
        DONE = "done"
        EXPIRED = "expired"  # the lease ran out and its slot went to someone else
        SKIPPED = "skipped"  # the annotator passed; the slot went back to the pool (never offered to them again)

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(User, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=8, choices=State.choices, default=State.LEASED)
    leased_until = models.DateTimeField()
    # Completion ids in the order shown: shown_order[0] is side A. Randomised per assignment.
    shown_order = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # An annotator never sees the same comparison twice.
            models.UniqueConstraint(fields=["comparison", "annotator"], name="assignment_once_per_annotator")
        ]
        indexes = [
            models.Index(fields=["annotator", "project", "state"]),
            models.Index(fields=["comparison", "state"]),
            models.Index(fields=["project", "state", "leased_until"]),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk} ({self.state})"


class Vote(models.Model):
    class Choice(models.TextChoices):
        A = "a"
        B = "b"
        TIE = "tie"
        BOTH_BAD = "both_bad"
        RANKED = "ranked"  # a K-way comparison (K > 2): see `ranking`

    class Source(models.TextChoices):
        HUMAN = "human"  # cast in prefloop
        IMPORTED = "imported"  # human vote that came with imported data

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="votes")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.CASCADE, related_name="votes")
    annotator = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="votes")
    # Pseudonymous voter of imported data (e.g. "prd:answer_gpt4-vs-answer_bard:2").
    external_annotator = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.HUMAN)
    aspect = models.CharField(max_length=64, default="overall")
    choice = models.CharField(max_length=8, choices=Choice.choices)
    # K-way only: completion ids best first.
    ranking = models.JSONField(null=True, blank=True)
    # K-way only, when the project allows ties: groups (2+ ids each) of `ranking` that are tied.
    ranking_ties = models.JSONField(null=True, blank=True)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    # Completion ids in the order shown: shown_order[0] was side A. Position bias is measurable.
    shown_order = models.JSONField()
    winner = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    loser = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # NULL, not "": votes without a key stay out of the unique constraint below.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator", "aspect"],
                name="vote_once_per_annotator_aspect",
                condition=Q(annotator__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["comparison", "external_annotator", "aspect"],
                name="imported_vote_once",
                condition=Q(annotator__isnull=True),
            ),
            # One submission (one key) writes one vote per aspect. Keys are per annotator: another
            # user's key is never looked up, so it cannot tell anyone it exists.
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key", "aspect"], name="vote_idempotency_key_once_per_annotator"
            ),
            models.CheckConstraint(
                condition=Q(choice__in=["a", "b", "tie", "both_bad", "ranked"]), name="vote_choice_valid"
            ),
            models.CheckConstraint(
                condition=Q(annotator__isnull=False) | ~Q(external_annotator=""), name="vote_has_a_voter"
            ),
            models.CheckConstraint(
                condition=Q(choice="ranked", ranking__isnull=False) | (~Q(choice="ranked") & Q(ranking__isnull=True)),
                name="vote_ranking_iff_ranked",
            ),
        ]
        indexes = [models.Index(fields=["comparison", "aspect"]), models.Index(fields=["annotator", "created_at"])]

    def __str__(self) -> str:
        return f"Vote {self.pk}: {self.choice} on {self.comparison_id}"


class VoteEdit(models.Model):
    """Audit trail of an edited vote: the values the vote had before one edit (the vote row itself
    holds the newest values, so the vote is counted once however often it is edited)."""

    vote = models.ForeignKey(Vote, on_delete=models.CASCADE, related_name="edits")
    choice = models.CharField(max_length=8, choices=Vote.Choice.choices)
    ranking = models.JSONField(null=True, blank=True)
    ranking_ties = models.JSONField(null=True, blank=True)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    winner = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    loser = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    voted_at = models.DateTimeField(
        help_text="When these values were recorded (the vote's or the previous edit's time)."
    )
    edited_at = models.DateTimeField()

    class Meta:
        ordering = ["vote_id", "edited_at", "id"]

    def __str__(self) -> str:
        return f"Edit of vote {self.vote_id} at {self.edited_at}"


class DataImport(models.Model):
    """One confirmed import from the web UI: its counts, and the rows it created (so it can be undone
    while none of its comparisons has a human vote; after that it can only be archived)."""

    class State(models.TextChoices):
        ACTIVE = "active"
        UNDONE = "undone"  # its rows were removed
        ARCHIVED = "archived"  # its comparisons are closed (hidden from queues), kept for provenance

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="data_imports")
    source = models.CharField(max_length=200)
    format = models.CharField(max_length=32)
    options = models.JSONField(default=dict, blank=True)  # pairing, round, priority
    created = models.JSONField(default=dict)  # counts by kind
    existing = models.JSONField(default=dict)  # rows the file held that were already there
    skipped = models.JSONField(default=list, blank=True)
    created_ids = models.JSONField(default=dict)  # ids by kind: prompts, completions, comparisons, votes
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.source} ({self.state})"
