"""Websocket routes (live dashboard progress arrives with the web UI issue)."""
websocket_urlpatterns: list = []
