"""REST API of webhooks: researchers of the project only (404 for everyone else)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from prefloop.webhooks import selectors, services
from prefloop.webhooks import serializers as s


class WebhookListApi(APIView):
    @extend_schema(responses=s.WebhookSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_for_researcher(request.user, project_id)
        return Response(s.WebhookSerializer(selectors.webhooks_of(project), many=True).data)

    @extend_schema(request=s.WebhookWriteSerializer, responses={201: s.WebhookWithSecretSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        """Add a webhook; the answer carries its signing secret, the only time it is shown in full."""
        project = selectors.project_for_researcher(request.user, project_id)
        data = s.WebhookWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook = services.webhook_create(project=project, user=request.user, **data.validated_data)
        return Response(s.WebhookWithSecretSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(APIView):
    @extend_schema(responses=s.WebhookSerializer)
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(s.WebhookSerializer(selectors.webhook_for_user(request.user, webhook_id)).data)

    @extend_schema(request=s.WebhookWriteSerializer, responses=s.WebhookSerializer)
    def patch(self, request: Request, webhook_id: int) -> Response:
        webhook = selectors.webhook_for_user(request.user, webhook_id)
        current: dict[str, Any] = {
            "url": webhook.url,
            "events": webhook.events,
            "name": webhook.name,
            "active": webhook.active,
            "milestone_every": webhook.milestone_every,
        }
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["expected a JSON object"]})
        data = s.WebhookWriteSerializer(data={**current, **request.data})
        data.is_valid(raise_exception=True)
        return Response(s.WebhookSerializer(services.webhook_update(webhook=webhook, **data.validated_data)).data)


class WebhookTestApi(APIView):
    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    def post(self, request: Request, webhook_id: int) -> Response:
        """Queue a `ping` delivery to this webhook."""
        delivery = services.send_test(webhook=selectors.webhook_for_user(request.user, webhook_id))
        return Response(s.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookRotateApi(APIView):
    @extend_schema(request=None, responses=s.WebhookWithSecretSerializer)
    def post(self, request: Request, webhook_id: int) -> Response:
        """A new signing secret (returned once); the old one stops working at once."""
        webhook = selectors.webhook_for_user(request.user, webhook_id)
        services.webhook_rotate_secret(webhook=webhook)
        return Response(s.WebhookWithSecretSerializer(webhook).data)


class WebhookDeliveriesApi(APIView):
    @extend_schema(responses=s.DeliverySerializer(many=True))
    def get(self, request: Request, webhook_id: int) -> Response:
        """The webhook's latest 50 deliveries, newest first."""
        webhook = selectors.webhook_for_user(request.user, webhook_id)
        return Response(
            s.DeliverySerializer(selectors.deliveries_of(webhook.project, webhook_id=webhook.pk), many=True).data
        )
