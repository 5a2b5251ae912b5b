"""Web pages of the rewards app: the versions list with curves, a metrics diff, retrain and make-current."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from prefloop.core.web import flash_outcome, researcher_project_or_404
from rewards import selectors, services
from rewards.charts import version_charts


def _jobs(job_ids: list[int]) -> dict:
    from prefloop.jobs.models import Job

    return {job.pk: job for job in Job.objects.filter(pk__in=[i for i in job_ids if i])}


def _rows(versions: list) -> list[dict]:
    """One row per version with its job and what to say about it ("queued (2 ahead)", "training 81 %")."""
    from prefloop.jobs.selectors import job_state_text, queue_positions

    jobs = _jobs([v.job_id for v in versions])
    positions = queue_positions(list(jobs.values()))
    rows = []
    for v in versions:
        job = jobs.get(v.job_id)
        state = job_state_text(job, positions.get(job.pk)) if job and not job.is_finished else ""
        rows.append(
            {
                "version": v,
                "charts": version_charts(v.curves),
                "job": job,
                "job_state": state,
                "held_out": selectors.held_out_summary(v),
            }
        )
    return rows


def _live(versions: list) -> bool:
    return any(v.status in (v.Status.QUEUED, v.Status.TRAINING) for v in versions)


@login_required
@require_GET
def reward_models_page(request, project_id: int):
    """The versions, their curves and a diff; while a version is queued or training the versions
    table re-reads itself from here every 2 s (hx-select)."""
    project = researcher_project_or_404(request, project_id)
    versions = list(selectors.reward_models(project))
    rows = _rows(versions)
    by_number = {v.version: v for v in versions}
    diff = None
    a, b = request.GET.get("a"), request.GET.get("b")
    if a and b and a.isdigit() and b.isdigit() and int(a) in by_number and int(b) in by_number:
        diff = {
            "a": by_number[int(a)],
            "b": by_number[int(b)],
            "rows": selectors.metrics_diff(by_number[int(a)], by_number[int(b)]),
        }
    ready = [v for v in versions if v.status == v.Status.READY]
    return render(
        request,
        "rewards/reward_models.html",
        {
            "project": project,
            "rows": rows,
            "diff": diff,
            "settings": services.reward_settings(project),
            "ready": ready,
            "default_a": ready[1].version if len(ready) > 1 else None,
            "default_b": ready[0].version if ready else None,
            "live": _live(versions),
        },
    )


@login_required
@require_POST
def retrain(request, project_id: int):
    project = researcher_project_or_404(request, project_id)

    def retrain_now() -> str:
        reward_model, job = services.request_training(project=project, user=request.user)
        return f"Version {reward_model.version} queued (job {job.pk})."

    flash_outcome(request, retrain_now)
    return redirect("reward-models-page", project_id=project.pk)


@login_required
@require_POST
def make_current(request, project_id: int, reward_model_id: int):
    project = researcher_project_or_404(request, project_id)
    reward_model = selectors.reward_models(project).filter(pk=reward_model_id).first()
    if reward_model is None:
        raise Http404("No such reward model.")

    def make_it_current() -> str:
        services.mark_current(reward_model=reward_model)
        return f"Version {reward_model.version} is now current."

    flash_outcome(request, make_it_current)
    return redirect("reward-models-page", project_id=project.pk)


@login_required
@require_POST
def update_settings(request, project_id: int):
    project = researcher_project_or_404(request, project_id)
    services.update_reward_settings(project=project, auto_retrain=request.POST.get("auto_retrain") == "on")
    return redirect("reward-models-page", project_id=project.pk)


@login_required
@require_POST
def import_reward_model(request, project_id: int):
    """The RM page's form: an existing reward-model folder becomes the next version (scored in a job)."""
    from rewards.imports import register_reward_model

    project = researcher_project_or_404(request, project_id)

    def register() -> str:
        reward_model, job = register_reward_model(
            project=project,
            user=request.user,
            model_path=request.POST.get("model_path", ""),
            name=request.POST.get("name", ""),
        )
        found = reward_model.data_snapshot["imported"]
        return (
            f"Version {reward_model.version} registered from {found['architecture']} "
            f"({found['parameters'] / 1e6:,.1f}M parameters); scoring the held-out votes (job {job.pk})."
        )

    flash_outcome(request, register)
    return redirect("reward-models-page", project_id=project.pk)
