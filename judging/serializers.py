"""Shapes of the judging API for the OpenAPI schema; the services validate the values (judging/services.py)."""

from __future__ import annotations

from rest_framework import serializers

MAX_ID = 2**63 - 1  # a row id (SQLite overflows past it)


class JudgeSettingsSerializer(serializers.Serializer):
    judge = serializers.IntegerField(
        allow_null=True, help_text="A ready policy checkpoint of the project.", min_value=1, max_value=MAX_ID
    )
    judge_label = serializers.CharField(read_only=True, allow_null=True)
    system_prompt = serializers.CharField(help_text="The judge's instructions (MT-bench style by default).")
    user_template = serializers.CharField(
        help_text="The pair template: {question}, {answer_a}, {answer_b}, {principles}."
    )
    principles = serializers.DictField(child=serializers.CharField(), help_text="A short constitution per aspect.")
    max_tokens = serializers.IntegerField()
    batch_size = serializers.IntegerField()
    prompt_version = serializers.CharField(read_only=True)


class JudgeRunSerializer(serializers.Serializer):
    round = serializers.IntegerField(required=False, min_value=0)
    import_ = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    created_before = serializers.DateTimeField(required=False)
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False)
    rejudge = serializers.BooleanField(required=False)
    triage = serializers.FloatField(required=False, min_value=0.5, max_value=1, help_text="with a round")

    def get_fields(self):  # "import" is a Python keyword: the field is import_ in code only
        fields = super().get_fields()
        fields["import"] = fields.pop("import_")
        return fields


class JudgeRunResultSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    comparisons = serializers.IntegerField()


class AgreementSerializer(serializers.Serializer):
    """Judge–human agreement: overall, per aspect and per category (docs/judge.md)."""

    judge = serializers.CharField(allow_null=True)
    verdicts = serializers.IntegerField()
    overall = serializers.ListField(child=serializers.DictField())
    aspect = serializers.ListField(child=serializers.DictField())
    category = serializers.ListField(child=serializers.DictField())
