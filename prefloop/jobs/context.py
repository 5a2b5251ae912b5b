"""`JobContext`: what a handler uses to report progress, log, checkpoint and notice cancellation.

One handler body serves both the worker (DB row + Channels broadcast + heartbeat) and the command
line (`JobContext.for_cli()` adds a tqdm bar), so management commands and background jobs run the
same code.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from prefloop.jobs.broadcast import broadcast_job

if TYPE_CHECKING:
    from prefloop.jobs.models import Job

LOG_LINES = 100


class JobCancelled(Exception):
    """Raised by a handler (or `ctx.raise_if_stopped()`) to stop after a cancel request."""


def job_dir(job_id: int) -> Path:
    return Path(getattr(settings, "PREFLOOP_JOB_DIR", Path(settings.VAR_DIR) / "jobs")) / f"job-{job_id}"


class JobContext:
    """Bound to one running `Job` by `run_job`; the handler gets it as its second argument.

    DB writes are throttled (`PREFLOOP_JOB_PROGRESS_INTERVAL` seconds, default 0.5): a handler may
    call `progress()` every step without flooding the database.
    """

    def __init__(self, job: Job | None = None, *, progress_bar: bool = False, stream: IO | None = None):
        self.job: Job | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._dirty = False
        self._last_write = float("-inf")  # the first write lands even on a machine up for less than the interval
        self._last_cancel_check = 0.0
        self._cancel_requested = False
        self.stop_seen = False  # the handler was told to stop (run_job then records "cancelled")
        self._progress_bar = progress_bar
        self._stream = stream
        self._bar = None
        self._write_interval = float(getattr(settings, "PREFLOOP_JOB_PROGRESS_INTERVAL", 0.5))
        if job is not None:
            self.bind(job)

    @classmethod
    def for_cli(cls, *, stream: IO | None = None) -> JobContext:
        """A context that also draws a tqdm progress bar (on stderr) for a foreground run."""
        return cls(progress_bar=True, stream=stream or sys.stderr)

    def bind(self, job: Job) -> JobContext:
        self.job = job
        if job.log_tail:
            self._lines.extend(job.log_tail.splitlines()[-LOG_LINES:])
        self._cancel_requested = job.cancel_requested
        if self._progress_bar and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=100,
                file=self._stream,
                desc=f"job {job.pk} {job.kind}",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}",
                dynamic_ncols=True,
            )
        return self

    # --- the handler's API ---------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        """This job's own folder (settings.PREFLOOP_JOB_DIR/job-<id>), created on first use."""
        path = job_dir(self._job.pk)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0-1) and the current step; written and broadcast at most every 0.5 s."""
        job = self._job
        job.progress = min(1.0, max(0.0, float(fraction)))
        if message:
            job.message = message[:300]
        if self._bar is not None:
            self._bar.n = round(job.progress * 100, 2)
            if message:
                self._bar.set_postfix_str(message[:60], refresh=False)
            self._bar.refresh()
        if job.progress >= 1.0 or time.monotonic() - self._last_write >= self._write_interval:
            self.flush()

    def log(self, line: str) -> None:
        """Append a line to the job's log tail (kept to the last 100 lines)."""
        for part in str(line).splitlines() or [""]:
            self._lines.append(part[:1000])
        self._dirty = True
        if self._bar is not None:
            self._bar.write(str(line), file=self._stream)
        if time.monotonic() - self._last_write >= self._write_interval:
            self.flush()

    def should_stop(self) -> bool:
        """True once someone asked to cancel this job; checks the DB at most once a second."""
        if not self._cancel_requested and time.monotonic() - self._last_cancel_check >= 1.0:
            from prefloop.jobs.models import Job

            self._last_cancel_check = time.monotonic()
            self._cancel_requested = bool(
                Job.objects.filter(pk=self._job.pk).values_list("cancel_requested", flat=True).first()
            )
        if self._cancel_requested:
            self.stop_seen = True
        return self._cancel_requested

    def raise_if_stopped(self) -> None:
        if self.should_stop():
            raise JobCancelled("cancelled on request")

    # --- used by run_job -----------------------------------------------------------------
    @property
    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def flush(self) -> None:
        """Write progress, message, log tail and heartbeat now (only while the job is running)."""
        from prefloop.jobs.models import Job

        job = self._job
        self._last_write = time.monotonic()
        fields = {"progress": job.progress, "message": job.message, "heartbeat_at": timezone.now()}
        if self._dirty:
            fields["log_tail"] = job.log_tail = self.log_tail
            self._dirty = False
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(**fields)
        broadcast_job(job)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def _job(self) -> Job:
        if self.job is None:
            raise RuntimeError("JobContext is not bound to a job yet (run_job binds it).")
        return self.job
