"""The Webhooks page of a project (researchers only)."""

from django.urls import path

from prefloop.webhooks import views

urlpatterns = [
    path("projects/<int:project_id>/webhooks/", views.webhooks_page, name="webhooks-page"),
    path("projects/<int:project_id>/webhooks/<int:webhook_id>/", views.webhook_change, name="webhook-change"),
]
