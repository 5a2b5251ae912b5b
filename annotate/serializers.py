"""DRF serializers: input validation and output shapes of the annotate API."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from annotate.models import Comparison, Project, Vote
from annotate.services.projects import check_aspects
from prefloop.core.errors import InvalidSetting


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "instructions",
            "overlap_target",
            "allow_tie",
            "allow_both_bad",
            "strength_scale",
            "rationale",
            "aspects",
            "lease_seconds",
            "annotator_cap",
            "gold_rate",
            "gold_min_accuracy",
            "gold_min_answers",
            "system_prompt",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        # Bounds the database (and the model's check constraints) would otherwise refuse with a 500.
        extra_kwargs = {
            "overlap_target": {"min_value": 1, "max_value": 1000},
            "strength_scale": {"min_value": 0, "max_value": 10},
            "lease_seconds": {"min_value": 10, "max_value": 7 * 24 * 3600},
            "annotator_cap": {"min_value": 0, "max_value": 2**31 - 1},
            "gold_rate": {"min_value": 0.0, "max_value": 1.0},
            "gold_min_accuracy": {"min_value": 0.0, "max_value": 1.0},
            "gold_min_answers": {"min_value": 0, "max_value": 1000},
        }

    def validate_aspects(self, value):
        try:
            return check_aspects(value)
        except InvalidSetting as exc:  # count and name length bounded by PREFLOOP_LIMITS
            raise serializers.ValidationError(str(exc).removeprefix("aspects: ")) from None


class AnnotatorProjectSerializer(serializers.ModelSerializer):
    """What an annotator may know about a project."""

    class Meta:
        model = Project
        fields = ["id", "name", "instructions", "aspects", "allow_tie", "allow_both_bad", "strength_scale", "rationale"]


class AnnotatorProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    today = serializers.IntegerField()
    cap = serializers.IntegerField(allow_null=True)


class AnnotatorProjectWithProgressSerializer(AnnotatorProjectSerializer):
    progress = AnnotatorProgressSerializer(read_only=True)

    class Meta(AnnotatorProjectSerializer.Meta):
        fields = AnnotatorProjectSerializer.Meta.fields + ["progress"]


# GET /api/projects/{id}/: researchers and admins get the settings, annotators the rules and their progress.
PROJECT_FOR_MEMBER = PolymorphicProxySerializer(
    component_name="ProjectForMember",
    serializers=[ProjectSerializer, AnnotatorProjectWithProgressSerializer],
    resource_type_field_name=None,
)
# GET /api/projects/: each project as the detail endpoint shows it to this user.
PROJECTS_FOR_MEMBER = PolymorphicProxySerializer(
    component_name="ProjectForMember",
    serializers=[ProjectSerializer, AnnotatorProjectWithProgressSerializer],
    resource_type_field_name=None,
    many=True,
)


class MembershipInputSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=["annotator", "researcher"], default="annotator")
    cap = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    paused = serializers.BooleanField(required=False, allow_null=True, default=None)


class GoldInputSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=["", "winner", "tie", "both_bad"])  # type: ignore[assignment]  # a field named like Field.label
    winner_completion_id = serializers.IntegerField(required=False, allow_null=True, default=None)


class NextInputSerializer(serializers.Serializer):
    exclude = serializers.ListField(child=serializers.IntegerField(), required=False, default=list, max_length=10)


SIDE_SCHEMA = {
    "type": "string",
    "pattern": "^[a-z]$",
    "description": "a side: the letter of a response as shown (a = first)",
}
RANKING_SCHEMA = {
    "type": "array",
    "nullable": True,
    "maxItems": 26,
    "items": {
        "oneOf": [
            SIDE_SCHEMA,
            {
                "type": "array",
                "items": SIDE_SCHEMA,
                "minItems": 1,
                "maxItems": 26,
                "description": "a tie group: these sides share one place (only where the project allows ties)",
            },
        ]
    },
    "description": (
        "K-way comparisons only (more than two responses; null or absent for a pair): every side shown, once, "
        "best first. An entry is a side's letter, or a list of letters that are tied for that place (allowed "
        "only where the project allows ties; a list of one letter is the letter). Stored as the completion ids "
        "best first (`ranking`) and the tied groups of two or more (`ranking_ties`); the winner is the first "
        "place and the loser the last, each only when it is not a tie."
    ),
    "example": ["c", ["a", "b"], "d"],
}


@extend_schema_field(RANKING_SCHEMA)
class RankingField(serializers.JSONField):
    """Documents the `ranking` the API reads (the view checks the shape, the voting service the rules)."""


class AspectVoteSerializer(serializers.Serializer):
    aspect = serializers.CharField(max_length=64)
    choice = serializers.CharField(required=False, allow_null=True, default=None)
    ranking = RankingField(required=False, allow_null=True, default=None)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class VoteInputSerializer(serializers.Serializer):
    """Either `votes` (one per aspect) or, for a one-aspect project, `choice`/`ranking` at the top."""

    idempotency_key = serializers.CharField(max_length=64, required=False)
    votes = AspectVoteSerializer(many=True, required=False)
    choice = serializers.CharField(required=False, allow_null=True, default=None)
    ranking = RankingField(required=False, allow_null=True, default=None)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    time_spent_ms = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=86_400_000
    )


class VoteWithNextInputSerializer(VoteInputSerializer):
    """The vote's body; with ?next= (or `next` here) the answer carries the next assignment (docs/vote-loop.md)."""

    exclude = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=10,
        help_text="with next: the assignment ids the client holds, as for /next/",
    )
    next = serializers.CharField(required=False, help_text='"1" or "html"')


class VoteOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Vote
        fields = ["id", "aspect", "choice", "strength", "rationale", "created_at"]


class ComparisonProgressSerializer(serializers.ModelSerializer):
    prompt_id = serializers.IntegerField()
    models = serializers.SerializerMethodField()
    completions = serializers.SerializerMethodField()

    class Meta:
        model = Comparison
        fields = [
            "id",
            "prompt_id",
            "round",
            "priority",
            "is_open",
            "is_complete",
            "imported_votes",
            "votes_done",
            "leases_open",
            "models",
            "completions",
            "gold_label",
            "gold_winner_id",
        ]

    def get_models(self, obj) -> list[str]:
        return [c["model"] for c in self.context["completions"].get(obj.pk, [])]

    def get_completions(self, obj) -> list[dict]:
        return self.context["completions"].get(obj.pk, [])


class ResearcherVoteSerializer(serializers.ModelSerializer):
    annotator = serializers.SerializerMethodField()
    winner_model = serializers.CharField(source="winner.model_name", default=None)
    loser_model = serializers.CharField(source="loser.model_name", default=None)

    class Meta:
        model = Vote
        fields = [
            "id",
            "comparison_id",
            "annotator",
            "source",
            "aspect",
            "choice",
            "ranking",
            "ranking_ties",
            "strength",
            "rationale",
            "shown_order",
            "winner_id",
            "loser_id",
            "winner_model",
            "loser_model",
            "time_spent_ms",
            "created_at",
        ]

    def get_annotator(self, obj) -> str:
        return obj.annotator.username if obj.annotator_id else obj.external_annotator


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.CharField(required=False, allow_blank=True, default="")
    pairing = serializers.CharField(required=False, default="all")
    pairs_per_prompt = serializers.IntegerField(required=False, min_value=1, default=2)
    round = serializers.IntegerField(required=False, min_value=0, default=0)
    priority = serializers.IntegerField(required=False, default=0)


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["jsonl", "parquet", "csv", "hf"], default="jsonl")
    # pairs: the export itself; ties: its tie/both-bad rows (ties=split); manifest: its manifest.
    part = serializers.ChoiceField(choices=["pairs", "ties", "manifest"], default="pairs")
    raw = serializers.BooleanField(default=False)
    rule = serializers.ChoiceField(choices=["majority", "bt", "unanimous"], default="majority")
    ties = serializers.ChoiceField(choices=["split", "label", "drop", "both-orders"], default="split")
    conversational = serializers.BooleanField(default=False)
    round = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=2**31 - 1), required=False, max_length=100
    )
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    min_agreement = serializers.FloatField(required=False, min_value=0, max_value=1)
    annotator = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named like Field.source
        choices=["human", "imported", "humans", "ai", "all"],
        default="humans",
        help_text="humans: human + imported votes; ai: LLM-judge rows; all: both",
    )
    max_vote_id = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    aspect = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def validate(self, data):
        if data["part"] == "ties" and (data["raw"] or data["ties"] != "split" or data["format"] == "hf"):
            raise serializers.ValidationError(
                {
                    "part": "ties is the tie/both-bad file of a ties=split export (jsonl, parquet or csv; hf has a ties split)"
                }
            )
        return data
