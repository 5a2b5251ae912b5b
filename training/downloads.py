"""Downloads of the training app: a policy's model folder (zip) and the loop's per-round charts (SVG).

Files, never pages: prefloop/downloads.py sets the media type, the attachment name, nosniff and the CSP.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.views.decorators.http import require_GET

from prefloop.core.web import researcher_project_or_404
from prefloop.downloads import download_filename, folder_download, safe_name_part, svg_download
from training import selectors
from training.charts import loop_charts


@login_required
@require_GET
def policy_artifact(request, project_id: int, policy_id: int):
    project = researcher_project_or_404(request, project_id)
    policy = selectors.policies(project).filter(pk=policy_id).first()
    if policy is None or policy.status != policy.Status.READY:
        raise Http404("No such finished policy.")
    name = download_filename(
        safe_name_part(project.name, f"project-{project.pk}"), "policy", f"v{policy.version}", extension="zip"
    )
    return folder_download(Path(policy.artifact_path), filename=name, request=request)


@login_required
@require_GET
def loop_chart(request, project_id: int, chart: str):
    project = researcher_project_or_404(request, project_id)
    rounds = list(selectors.rounds(project))
    charts = loop_charts(list(reversed(rounds)))
    if chart not in charts:
        raise Http404("No such chart.")
    last = f"r{rounds[0].number}" if rounds else "r0"
    name = download_filename(
        safe_name_part(project.name, f"project-{project.pk}"), "loop", chart.replace("_", "-"), last, extension="svg"
    )
    return svg_download(str(charts[chart]), filename=name)
