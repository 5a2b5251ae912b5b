"""Live job progress over websockets: `ws/jobs/<id>/` (one job) and `ws/jobs/project/<id>/`
(all jobs of a project). Each sends the current state on connect, then every `job.progress`."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from prefloop.core.errors import NotFound
from prefloop.jobs.broadcast import job_group, project_jobs_group


@database_sync_to_async
def _visible_job_summary(user, job_id: int) -> dict | None:
    from prefloop.jobs.selectors import job_for_user

    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return job_for_user(user, job_id).summary()
    except NotFound:
        return None


@database_sync_to_async
def _may_watch_project(user, project_id: int) -> bool:
    from annotate.selectors import project_for_user

    if not getattr(user, "is_authenticated", False):
        return False
    try:
        project_for_user(user, project_id, role="researcher")
    except NotFound:
        return False
    return True


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    """Only the job's creator, researchers of its project and admins may connect (close code 4404
    otherwise, the same answer for "no such job" and "not yours")."""

    async def connect(self):
        self.group = None
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        summary = await _visible_job_summary(self.scope.get("user"), job_id)
        if summary is None:
            await self.close(code=4404)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "job.progress", "job": summary})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # read-only channel

    async def job_progress(self, event):
        await self.send_json({"type": event["type"], "job": event["job"]})


class ProjectJobsConsumer(JobProgressConsumer):
    """Every job of one project, for the researcher dashboard (researchers and admins only)."""

    async def connect(self):
        self.group = None
        project_id = int(self.scope["url_route"]["kwargs"]["project_id"])
        if not await _may_watch_project(self.scope.get("user"), project_id):
            await self.close(code=4404)
            return
        self.group = project_jobs_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
