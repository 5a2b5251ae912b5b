"""Downloads of the rewards app: a reward-model version's folder (zip) and its training curves (SVG).

Files, never pages: prefloop/downloads.py sets the media type, the attachment name, nosniff and the CSP.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.views.decorators.http import require_GET

from prefloop.core.web import researcher_project_or_404
from prefloop.downloads import download_filename, folder_download, safe_name_part, svg_download
from rewards import selectors
from rewards.charts import version_charts


def _version(request, project_id: int, reward_model_id: int):
    project = researcher_project_or_404(request, project_id)
    reward_model = selectors.reward_models(project).filter(pk=reward_model_id).first()
    if reward_model is None:
        raise Http404("No such reward model.")
    return project, reward_model


@login_required
@require_GET
def reward_model_artifact(request, project_id: int, reward_model_id: int):
    project, reward_model = _version(request, project_id, reward_model_id)
    if reward_model.status != reward_model.Status.READY:
        raise Http404("This version has no finished artifact.")
    name = download_filename(
        safe_name_part(project.name, f"project-{project.pk}"),
        "reward-model",
        f"v{reward_model.version}",
        extension="zip",
    )
    return folder_download(Path(reward_model.artifact_path), filename=name, request=request)


@login_required
@require_GET
def reward_model_chart(request, project_id: int, reward_model_id: int, chart: str):
    project, reward_model = _version(request, project_id, reward_model_id)
    charts = version_charts(reward_model.curves or {})
    if chart not in charts:
        raise Http404("No such chart.")
    name = download_filename(
        safe_name_part(project.name, f"project-{project.pk}"),
        "reward-model",
        f"v{reward_model.version}",
        chart,
        extension="svg",
    )
    return svg_download(str(charts[chart]), filename=name)
