"""python manage.py job_watch ID: a progress bar that follows a job until it ends."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from prefloop.jobs.models import Job
from prefloop.jobs.services import reap_stale_jobs


class Command(BaseCommand):
    help = "Follow a job with a progress bar until it succeeds, fails or is cancelled."

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int)
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between polls.")
        parser.add_argument("--timeout", type=float, default=None, help="Give up after this many seconds.")

    def handle(self, *args, job_id, interval=0.5, timeout=None, **opts):
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"No job {job_id}.")
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = tqdm(
            total=100,
            desc=f"job {job.pk} {job.kind}",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]{postfix}",
        )
        try:
            while True:
                bar.n = round(job.progress * 100, 2)
                bar.set_postfix_str(f"{job.status} {job.message}"[:60], refresh=False)
                bar.refresh()
                if job.is_finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandError(f"job {job.pk} still {job.status} after {timeout} s")
                time.sleep(interval)
                reap_stale_jobs()
                job.refresh_from_db()
        finally:
            bar.close()
        if job.status == Job.Status.SUCCEEDED:
            self.stdout.write(f"job {job.pk} succeeded: {job.result}")
        elif job.status == Job.Status.CANCELLED:
            self.stdout.write(f"job {job.pk} was cancelled")
        else:
            raise CommandError(f"job {job.pk} failed: {job.error.splitlines()[0] if job.error else ''}")
