"""Researcher pages for imports: upload, validate-first preview (nothing written), confirm; the
list of imports with undo (no human vote yet) or archive. Services: annotate/services/data_imports.py."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate.models import DataImport, Membership
from annotate.pairing import PAIRING_STRATEGIES
from annotate.selectors import project_for_user
from annotate.services.data_imports import (
    ImportOptions,
    UndoRefused,
    archive_import,
    confirm_import,
    discard_upload,
    human_votes_on,
    preview_import,
    stage_upload,
    undo_import,
)
from annotate.services.importing import FORMATS
from frontend.rendering import render_markdown
from frontend.views import not_found_as_404
from prefloop.core.errors import ImportDataError, InvalidSetting, InvalidUpload, NotFound

RESEARCHER = Membership.Role.RESEARCHER
MAX_PROBLEMS_SHOWN = 1000


def _options(post) -> ImportOptions:
    def number(name: str, default: int, low: int) -> int:
        value = (post.get(name) or "").strip() or str(default)
        if not value.lstrip("-").isdigit() or int(value) < low or abs(int(value)) > 2**31 - 1:
            raise InvalidSetting(name, f"a whole number of at least {low}")
        return int(value)

    fmt = post.get("format", "")
    if fmt and fmt not in FORMATS:
        raise InvalidSetting("format", f"one of {', '.join(sorted(FORMATS))}, or blank to detect it")
    pairing = post.get("pairing", "all")
    if pairing not in PAIRING_STRATEGIES:
        raise InvalidSetting("pairing", f"one of {', '.join(sorted(PAIRING_STRATEGIES))}")
    return ImportOptions(
        format=fmt or None,
        pairing=pairing,
        pairs_per_prompt=number("pairs_per_prompt", 2, 1),
        round=number("round", 0, 0),
        priority=number("priority", 0, -(2**31)),
    )


def _page(request, project, *, status: int = 200, **context):
    imports = list(DataImport.objects.filter(project=project))
    rows = [
        {"record": r, "human_votes": human_votes_on(r) if r.state == DataImport.State.ACTIVE else None} for r in imports
    ]
    return render(
        request,
        "frontend/project_imports.html",
        {
            "project": project,
            "tab": "imports",
            "rows": rows,
            "formats": sorted(FORMATS),
            "pairings": sorted(PAIRING_STRATEGIES),
            "max_bytes": settings.PREFLOOP_MAX_UPLOAD_BYTES,
            **context,
        },
        status=status,
    )


@login_required
@require_GET
@not_found_as_404
def project_imports(request, project_id: int):
    return _page(request, project_for_user(request.user, project_id, role=RESEARCHER))


@login_required
@require_POST
@not_found_as_404
def import_preview(request, project_id: int):
    """Stage the upload, validate it and show what confirming would write. Nothing is written."""
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    upload = request.FILES.get("file")
    try:
        options = _options(request.POST)
        if upload is None:
            raise InvalidUpload("file", "choose a file to upload")
        if upload.size > settings.PREFLOOP_MAX_UPLOAD_BYTES:
            raise InvalidUpload("file", f"larger than {settings.PREFLOOP_MAX_UPLOAD_BYTES} bytes")
    except (InvalidSetting, InvalidUpload) as exc:
        return _page(request, project, form_error=str(exc), status=400)
    token, _ = stage_upload(chunks=upload.chunks(), name=upload.name)
    try:
        preview = preview_import(project=project, token=token, options=options)
    except ImportDataError as exc:
        discard_upload(token)
        problems = [ImportDataError.format(p) for p in exc.problems[:MAX_PROBLEMS_SHOWN]]
        return _page(
            request, project, problems=problems, problems_total=len(exc.problems), upload_name=upload.name, status=400
        )
    except ValueError as exc:  # e.g. pairing options a strategy refuses
        discard_upload(token)
        return _page(request, project, form_error=str(exc), status=400)
    for row in preview.first_rows:
        row["prompt_html"] = render_markdown(row["prompt"])
        for completion in row["completions"]:
            completion["html"] = render_markdown(completion["text"])
    return _page(request, project, preview=preview, options=options.as_dict())


@login_required
@require_POST
@not_found_as_404
def import_confirm(request, project_id: int):
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    token = request.POST.get("token", "")
    if request.POST.get("cancel"):
        discard_upload(token)
        messages.success(request, "Upload discarded; nothing was written.")
        return redirect("project-imports-page", project.pk)
    try:
        record = confirm_import(project=project, token=token, options=_options(request.POST), user=request.user)
    except (
        ImportDataError,
        InvalidSetting,
        NotFound,
    ) as exc:  # NotFound: the upload is gone (confirmed, discarded, old)
        return _page(request, project, form_error=str(exc), status=400)
    created = record.created
    messages.success(
        request,
        f"Imported {record.source}: {created.get('prompts', 0)} prompts, "
        f"{created.get('comparisons', 0)} comparisons, {created.get('votes', 0)} votes.",
    )
    return redirect("project-imports-page", project.pk)


@login_required
@require_POST
@not_found_as_404
def import_change(request, project_id: int, import_id: int):
    """Undo (no human vote yet) or archive one import."""
    project = project_for_user(request.user, project_id, role=RESEARCHER)
    record = get_object_or_404(DataImport, pk=import_id, project=project)
    action = request.POST.get("action")
    try:
        if action == "undo":
            undo_import(data_import=record)
            messages.success(request, f"Import of {record.source} undone: its rows were removed.")
        elif action == "archive":
            archive_import(data_import=record)
            messages.success(request, f"Import of {record.source} archived: its comparisons are no longer handed out.")
    except UndoRefused as exc:
        return _page(request, project, form_error=str(exc), status=409)
    return redirect("project-imports-page", project.pk)
