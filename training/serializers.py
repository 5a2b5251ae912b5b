"""DRF serializers of the training API: policies and rounds out, round and policy requests in."""

from __future__ import annotations

from rest_framework import serializers

from training.models import Loop, Policy, Round
from training.params import METHODS


class PolicySerializer(serializers.ModelSerializer):
    parent_version = serializers.IntegerField(source="parent.version", allow_null=True, default=None)
    round_number = serializers.IntegerField(source="round.number", allow_null=True, default=None)

    class Meta:
        model = Policy
        fields = [
            "id",
            "project",
            "version",
            "name",
            "status",
            "method",
            "parent",
            "parent_version",
            "round",
            "round_number",
            "base_model",
            "config",
            "data",
            "metrics",
            "job_id",
            "error",
            "created_at",
            "finished_at",
        ]


class PolicyDetailSerializer(PolicySerializer):
    class Meta(PolicySerializer.Meta):
        fields = PolicySerializer.Meta.fields + ["curve", "artifact_path"]


class PolicyRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["demo", "base"],
        help_text="demo: build and SFT the small demo policy; "
        "base: register a causal-LM folder under PREFLOOP_MODEL_ROOTS.",
    )
    model_path = serializers.CharField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    config = serializers.DictField(required=False, default=dict, help_text="DemoPolicyConfig fields (demo only).")


class LoopSerializer(serializers.ModelSerializer):
    reference_version = serializers.IntegerField(source="reference.version")
    current_version = serializers.IntegerField(source="current.version")

    class Meta:
        model = Loop
        fields = [
            "project",
            "reference",
            "reference_version",
            "current",
            "current_version",
            "eval_prompt_ids",
            "defaults",
            "updated_at",
        ]


class RoundSerializer(serializers.ModelSerializer):
    policy_version = serializers.IntegerField(source="policy.version")
    new_policy_version = serializers.IntegerField(source="new_policy.version", allow_null=True, default=None)
    reward_model_version = serializers.IntegerField(source="reward_model.version", allow_null=True, default=None)
    guard = serializers.SerializerMethodField(
        help_text="The reward-model guard's verdict: passed, reason, held-out "
        "accuracy with its 95 % Wilson interval and size; warning for DPO."
    )

    class Meta:
        model = Round
        fields = [
            "id",
            "project",
            "number",
            "method",
            "state",
            "policy",
            "policy_version",
            "new_policy",
            "new_policy_version",
            "reward_model",
            "reward_model_version",
            "params",
            "metrics",
            "reason",
            "guard",
            "job_id",
            "history",
            "created_at",
            "updated_at",
            "finished_at",
        ]

    def get_guard(self, obj: Round) -> dict | None:
        guard = (obj.metrics.get("reward_model") or {}).get("guard")
        if guard is None:
            return None
        return {**guard, "overridden": obj.metrics.get("guard_override")}


class RoundRequestSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=list(METHODS))
    params = serializers.DictField(required=False, default=dict, help_text="RoundParams fields; see docs/training.md.")


class AdvanceRequestSerializer(serializers.Serializer):
    force = serializers.BooleanField(
        required=False, default=False, help_text="Go on before every comparison reached its overlap target."
    )
