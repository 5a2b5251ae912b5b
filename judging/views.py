"""The Quality tab's judge forms: settings and a "judge comparisons" button (researchers only; 404 otherwise)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from judging import services
from prefloop.core.web import flash_outcome, researcher_project_or_404


def quality_context(project) -> dict:
    """What the Quality tab shows of the judge: its settings, the project's ready policies and the agreement report."""
    from judging.selectors import judge_agreement
    from training.models import Policy

    return {
        "judge_settings": services.settings_for(project),
        "judge_report": judge_agreement(project),
        "judge_choices": Policy.objects.filter(project=project, status=Policy.Status.READY).order_by("-version"),
        "judge_aspects": services.aspects_of(project),
    }


@login_required
@require_POST
def judge_settings(request, project_id: int):
    project = researcher_project_or_404(request, project_id)
    post = request.POST
    data: dict = {
        "judge": post.get("judge", ""),
        "principles": {a: post.get(f"principles-{a}", "") for a in services.aspects_of(project)},
    }
    for name in ("system_prompt", "user_template"):
        if post.get(name, "").strip():
            data[name] = post[name]
    for name in ("max_tokens", "batch_size"):
        if post.get(name, "").strip():
            data[name] = int(post[name]) if post[name].strip().isdigit() else post[name]

    def save() -> str:
        settings = services.update_judge_settings(project=project, data=data)
        return f"Judge settings saved (prompt version {services.template_of(settings).version()})."

    flash_outcome(request, save)
    return redirect("quality", project_id=project.pk)


@login_required
@require_POST
def judge_run(request, project_id: int):
    project = researcher_project_or_404(request, project_id)
    scope: dict = {"rejudge": bool(request.POST.get("rejudge"))}
    if request.POST.get("round", "").strip():
        scope["round"] = (
            int(request.POST["round"]) if request.POST["round"].strip().isdigit() else request.POST["round"]
        )

    def run() -> str:
        ids = services.scope_ids(project, scope)
        job = services.start_judging(project=project, comparison_ids=ids, user=request.user)
        return f"Judging {len(ids)} comparisons (job {job.pk})."

    flash_outcome(request, run)
    return redirect("quality", project_id=project.pk)
