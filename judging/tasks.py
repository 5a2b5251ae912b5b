"""Job handler of the judging app: a thin bridge from the job to judging.services.run_judging."""

from __future__ import annotations


def judge(job, ctx) -> dict:
    """params: {"project_id": id, "comparison_ids": [ids]} — judge them on every aspect."""
    from judging import services
    from prefloop.jobs.context import JobCancelled

    try:
        return services.run_judging(
            project_id=job.params["project_id"],
            comparison_ids=list(job.params["comparison_ids"]),
            job_id=job.pk,
            progress=ctx.progress,
            should_stop=ctx.should_stop,
            triage=job.params.get("triage"),
        )
    except services.JudgingStopped as exc:
        raise JobCancelled(str(exc)) from None
