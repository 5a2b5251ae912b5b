"""REST shapes of webhooks and deliveries. The secret is returned only by create and rotate."""

from __future__ import annotations

from rest_framework import serializers

from prefloop.webhooks.events import EVENTS
from prefloop.webhooks.models import Delivery, Webhook


class WebhookSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(source="masked_secret", read_only=True)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "project",
            "name",
            "url",
            "events",
            "active",
            "milestone_every",
            "secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "project", "secret", "created_at", "updated_at"]


class WebhookWriteSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    events = serializers.ListField(child=serializers.ChoiceField(choices=sorted(EVENTS)), max_length=len(EVENTS))
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    active = serializers.BooleanField(required=False, default=True)
    milestone_every = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=100)


class WebhookWithSecretSerializer(WebhookSerializer):
    """Create and rotate: the only answers that carry the full secret."""

    secret = serializers.CharField(read_only=True)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook",
            "event",
            "event_id",
            "status",
            "attempts",
            "max_attempts",
            "last_status_code",
            "last_error",
            "response_excerpt",
            "duration_ms",
            "body_sha256",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields
