"""REST routes of webhooks (mounted under /api/)."""

from django.urls import path

from prefloop.webhooks import api

urlpatterns = [
    path("projects/<int:project_id>/webhooks/", api.WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:webhook_id>/", api.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:webhook_id>/test/", api.WebhookTestApi.as_view(), name="webhook-test"),
    path("webhooks/<int:webhook_id>/rotate-secret/", api.WebhookRotateApi.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<int:webhook_id>/deliveries/", api.WebhookDeliveriesApi.as_view(), name="webhook-deliveries"),
]
