"""Websocket consumer of the researcher dashboard: pushes the live progress fragment as votes land."""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from annotate.models import Membership
from annotate.selectors import project_for_user
from frontend.live import progress_group, render_live_progress
from prefloop.core.errors import NotFound


def _researcher_project(user, project_id: int):
    try:
        return project_for_user(user, project_id, role=Membership.Role.RESEARCHER)
    except NotFound:
        return None


class ProjectProgressConsumer(AsyncWebsocketConsumer):
    """One dashboard tab. Only researchers of the project (and admins) may connect.

    Messages sent are htmx 4 `hx-ws` swaps: {"content": html, "target": "#live-progress"}.
    A burst of votes collapses into as few re-renders as the database allows: while one render
    runs, further notifications only mark the fragment stale.
    """

    async def connect(self):
        user = self.scope.get("user")
        self.group = None
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.project = await database_sync_to_async(_researcher_project)(
            user, self.scope["url_route"]["kwargs"]["project_id"]
        )
        if self.project is None:
            await self.close(code=4404)
            return
        self.group = progress_group(self.project.pk)
        self.stale = False
        self.rendering: asyncio.Task | None = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_progress()  # whatever changed while the page loaded or the socket reconnected

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        rendering = getattr(self, "rendering", None)
        if rendering is not None:
            rendering.cancel()

    async def receive(self, text_data=None, bytes_data=None):
        pass  # the dashboard only listens

    async def progress_changed(self, event):
        self.stale = True
        if self.rendering is None or self.rendering.done():
            self.rendering = asyncio.ensure_future(self._render_while_stale())

    async def _render_while_stale(self):
        while self.stale:
            self.stale = False
            await self.send_progress()

    async def send_progress(self):
        html = await database_sync_to_async(render_live_progress)(self.project)
        await self.send(text_data=json.dumps({"content": html, "target": "#live-progress", "swap": "outerHTML"}))
