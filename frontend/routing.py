"""Websocket routes of the web UI."""

from django.urls import path

from frontend.consumers import ProjectProgressConsumer

websocket_urlpatterns = [path("ws/projects/<int:project_id>/progress/", ProjectProgressConsumer.as_asgi())]
