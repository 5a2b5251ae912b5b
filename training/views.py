"""Web pages of the training app: the loop (policies, rounds, per-round charts) and its actions."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from prefloop.core.web import flash_outcome, researcher_project_or_404
from training import policies, selectors, services
from training.charts import loop_charts
from training.params import METHODS, PAIR_STRATEGIES, REWARD_RETRAIN, RoundParams


def _round(request, project, round_id: int):
    found = selectors.rounds(project).filter(pk=round_id).first()
    if found is None:
        raise Http404("No such round.")
    return found


def _context(project) -> dict:
    from prefloop.jobs.models import Job
    from prefloop.jobs.selectors import job_state_text, queue_positions

    rounds = list(selectors.rounds(project))
    policies = list(selectors.policies(project))
    job_ids = [r.job_id for r in rounds if r.job_id] + [p.job_id for p in policies if p.job_id]
    jobs = {j.pk: j for j in Job.objects.filter(pk__in=job_ids)}
    active = next((r for r in rounds if r.is_active), None)
    loop = selectors.loop_of(project)
    building = next((p for p in policies if p.status in ("queued", "training")), None)
    active_job = jobs.get(active.job_id) if active and active.job_id else None
    building_job = jobs.get(building.job_id) if building else None
    positions = queue_positions([j for j in (active_job, building_job) if j])
    return {
        "project": project,
        "tab": "loop",
        "loop": loop,
        "rounds": rounds,
        "policies": policies,
        "jobs": jobs,
        "active": active,
        "active_job": active_job,
        "active_job_state": job_state_text(active_job, positions.get(active_job.pk)) if active_job else "",
        "active_progress": services.round_progress(active) if active else None,
        "building": building,
        "building_job": building_job,
        "building_job_state": job_state_text(building_job, positions.get(building_job.pk)) if building_job else "",
        "charts": loop_charts(list(reversed(rounds))),
        "methods": METHODS,
        "strategies": PAIR_STRATEGIES,
        "retrain_modes": REWARD_RETRAIN,
        "defaults": RoundParams.from_dict(loop.defaults if loop else {}),
        "live": bool(active or building),
    }


@login_required
@require_GET
def loop_page(request, project_id: int):
    project = researcher_project_or_404(request, project_id)
    return render(request, "training/loop.html", _context(project))


@login_required
@require_GET
def loop_status(request, project_id: int):
    """The live part of the page (htmx polls it every 2 s while a round or build is running)."""
    project = researcher_project_or_404(request, project_id)
    part = request.GET.get("part")
    template = {"history": "training/_history.html", "start": "training/_start.html"}.get(part, "training/_status.html")
    return render(request, template, _context(project))


def _params_from_form(post) -> dict:
    params = {}
    for name in ("prompts", "k", "pairs_per_prompt", "max_new_tokens", "seed"):
        if post.get(name):
            params[name] = post[name]
    for name in ("temperature", "top_p"):
        if post.get(name):
            params[name] = post[name]
    if post.get("pair_strategy"):
        params["pair_strategy"] = post["pair_strategy"]
    if post.get("reward_retrain"):
        params["reward_retrain"] = post["reward_retrain"]
    params["ai_feedback"] = post.get("ai_feedback") == "on"
    params["auto_advance"] = post.get("auto_advance") == "on"
    return params


@login_required
@require_POST
def start_round(request, project_id: int):
    project = researcher_project_or_404(request, project_id)

    def start() -> str:
        round_, job = services.start_round(
            project=project,
            method=request.POST.get("method", ""),
            params=_params_from_form(request.POST),
            user=request.user,
        )
        return f"Round {round_.number} started: sampling (job {job.pk})."

    flash_outcome(request, start)
    return redirect("loop-page", project_id=project.pk)


@login_required
@require_POST
def advance_round(request, project_id: int, round_id: int):
    project = researcher_project_or_404(request, project_id)
    round_ = _round(request, project, round_id)

    def advance() -> str:
        job = services.advance_round(round_=round_, user=request.user, force=request.POST.get("force") == "1")
        return f"Round {round_.number}: reward model retraining (job {job.pk})."

    flash_outcome(request, advance)
    return redirect("loop-page", project_id=project.pk)


@login_required
@require_POST
def override_guard(request, project_id: int, round_id: int):
    project = researcher_project_or_404(request, project_id)
    round_ = _round(request, project, round_id)

    def override() -> str:
        job = services.override_guard(round_=round_, user=request.user)
        return f"Round {round_.number}: guard overridden, {round_.method} update running (job {job.pk})."

    flash_outcome(request, override)
    return redirect("loop-page", project_id=project.pk)


@login_required
@require_POST
def cancel_round(request, project_id: int, round_id: int):
    project = researcher_project_or_404(request, project_id)
    round_ = _round(request, project, round_id)

    def cancel() -> str:
        services.cancel_round(round_=round_, user=request.user)
        return f"Round {round_.number} cancelled."

    flash_outcome(request, cancel)
    return redirect("loop-page", project_id=project.pk)


@login_required
@require_POST
def build_demo_policy(request, project_id: int):
    project = researcher_project_or_404(request, project_id)

    def build() -> str:
        policy, job = policies.request_demo_policy(project=project, user=request.user)
        return f"Building policy v{policy.version} (job {job.pk})."

    flash_outcome(request, build)
    return redirect("loop-page", project_id=project.pk)


@login_required
@require_POST
def register_model(request, project_id: int):
    """The Loop tab's form for a model folder: registered as a ready policy, with what was found in it."""
    project = researcher_project_or_404(request, project_id)

    def register() -> str:
        policy = policies.register_base_policy(
            project=project,
            model_path=request.POST.get("model_path", ""),
            name=request.POST.get("name", ""),
            user=request.user,
        )
        return f"Registered policy v{policy.version}: {policy.data['found']}."

    flash_outcome(request, register)
    return redirect("loop-page", project_id=project.pk)
