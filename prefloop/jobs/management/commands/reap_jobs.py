"""python manage.py reap_jobs: fail running jobs whose worker stopped sending heartbeats."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from prefloop.jobs.services import heartbeat_timeout, reap_stale_jobs


class Command(BaseCommand):
    help = "Mark running jobs without a recent heartbeat (PREFLOOP_JOB_HEARTBEAT_TIMEOUT) as failed."

    def handle(self, *args, **opts):
        count = reap_stale_jobs()
        self.stdout.write(f"Reaped {count} job(s) silent for more than {heartbeat_timeout():g} s.")
