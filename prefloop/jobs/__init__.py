"""Background jobs: one `Job` row per long task, run by the DB queue or Celery (see docs/jobs.md)."""
