"""Websocket routes of the job system; prefloop/asgi.py concatenates them with the frontend's."""

from django.urls import path

from prefloop.jobs.consumers import JobProgressConsumer, ProjectJobsConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobProgressConsumer.as_asgi()),
    path("ws/jobs/project/<int:project_id>/", ProjectJobsConsumer.as_asgi()),
]
