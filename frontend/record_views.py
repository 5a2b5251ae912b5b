"""The record browser (researchers): a project's comparisons and votes under a filter, and the
filter's export. Queries: annotate/selectors_records.py; the file: the normal export's code path."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from annotate.export.download import export_download
from annotate.models import Completion, Membership, Project, User, Vote
from annotate.selectors import project_for_user
from annotate.selectors_records import (
    AGREEMENTS,
    GOLD,
    RECORD_LABELS,
    RECORD_SOURCES,
    RecordFilter,
    RecordFilterError,
    parse_record_filter,
    record_export_filters,
    record_page,
)
from annotate.serializers import ExportQuerySerializer
from frontend.rendering import render_markdown
from frontend.views import not_found_as_404

RESEARCHER = Membership.Role.RESEARCHER
EXPORT_OPTIONS = ("format", "part", "raw", "rule", "ties", "conversational")  # the rest of the query is the filter
EXPORT_LINKS = [  # (label, query): every file the normal export offers
    ("pairs (JSONL)", {"format": "jsonl"}),
    ("pairs (Parquet)", {"format": "parquet"}),
    ("pairs (CSV)", {"format": "csv"}),
    ("datasets folder (zip)", {"format": "hf"}),
    ("ties and both-bad (JSONL)", {"format": "jsonl", "part": "ties"}),
    ("raw votes (JSONL)", {"format": "jsonl", "raw": "true"}),
    ("manifest", {"format": "jsonl", "part": "manifest"}),
]


def _vote_summary(vote: Vote, models: dict[int, str]) -> str:
    """The vote in model names: 'gpt4 over bard', 'tie', 'c > a = b'."""
    if vote.choice == Vote.Choice.RANKED and vote.ranking:
        tied = [set(group) for group in vote.ranking_ties or []]
        parts: list[str] = []
        for i, cid in enumerate(vote.ranking):
            joined = i and any({cid, vote.ranking[i - 1]} <= group for group in tied)
            parts += [" = " if joined else " > "] if i else []
            parts.append(models.get(cid, str(cid)))
        return "".join(parts)
    if vote.winner_id and vote.loser_id:
        return f"{models.get(vote.winner_id, vote.winner_id)} over {models.get(vote.loser_id, vote.loser_id)}"
    return {"tie": "tie", "both_bad": "both bad"}.get(vote.choice, vote.choice)


def _verdict_row(verdict, models: dict[int, str]) -> dict:
    """A judge verdict in model names with its averaged probability (AI feedback, not a vote)."""
    name = {"first": verdict.first_id, "second": verdict.second_id}.get(verdict.verdict)
    other = verdict.second_id if name == verdict.first_id else verdict.first_id
    summary = f"{models.get(name, name)} over {models.get(other, other)}" if name else "tie"
    key = verdict.verdict if verdict.verdict in ("first", "second") else "tie"
    return {"verdict": verdict, "summary": summary, "probability": (verdict.probabilities or {}).get(key)}


def _response(completion: Completion) -> dict:
    html = render_markdown(completion.text) if completion.text_available else ""
    return {"completion": completion, "html": html}


def _rows(page) -> list[dict]:
    rows = []
    for row in page.comparisons:
        models = {c.pk: c.model_name for c in row["completions"]}
        rows.append(
            {
                "comparison": row["comparison"],
                "counts": row["counts"],
                "prompt_html": render_markdown(row["comparison"].prompt.text),
                "responses": [_response(c) for c in row["completions"]],
                "votes": [
                    {
                        "vote": v,
                        "summary": _vote_summary(v, models),
                        "voter": v.annotator.username if v.annotator_id else v.external_annotator,
                    }
                    for v in row["votes"]
                ],
                "verdicts": [_verdict_row(v, models) for v in row["verdicts"]],
            }
        )
    return rows


def _page_link(f: RecordFilter, page: int) -> str:
    return urlencode({**f.given, "page": str(page)})  # a query string: the template writes href="?…"


def _context(project: Project, params) -> tuple[dict, int]:
    context: dict = {
        "project": project,
        "tab": "records",
        "params": params,
        "aspects": project.aspect_names,
        "labels": list(RECORD_LABELS),
        "agreements": AGREEMENTS,
        "gold_choices": GOLD,
        "sources": {key: choice.label for key, choice in RECORD_SOURCES.items()},
    }
    try:
        f = parse_record_filter(project, params)
    except RecordFilterError as exc:
        return {**context, "filter_error": str(exc), "error_field": exc.field}, 400
    page = record_page(project, f)
    query = urlencode(f.given)
    context.update(
        filter=f,
        page=page.page,
        total=page.total,
        rows=_rows(page),
        previous_link=_page_link(f, page.page.previous_page_number()) if page.page.has_previous() else None,
        next_link=_page_link(f, page.page.next_page_number()) if page.page.has_next() else None,
        export_links=[(label, urlencode({**extra, **f.given})) for label, extra in EXPORT_LINKS],
        filter_query=query,
    )
    return context, 200


@login_required
@require_GET
@not_found_as_404
def project_records(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_user(cast(User, request.user), project_id, role=RESEARCHER)
    context, status = _context(project, request.GET)
    return render(request, "frontend/project_records.html", context, status=status)


@login_required
@require_GET
@not_found_as_404
def project_records_export(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """The filter's rows as the normal export writes them (format/part/raw as on the export links)."""
    project = project_for_user(cast(User, request.user), project_id, role=RESEARCHER)
    try:
        f = parse_record_filter(project, request.GET)
    except RecordFilterError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    query = ExportQuerySerializer(data={k: request.GET[k] for k in EXPORT_OPTIONS if k in request.GET})
    if not query.is_valid():
        name, errors = next(iter(query.errors.items()))
        return HttpResponse(
            f"{name}: {' '.join(str(e) for e in errors)}", status=400, content_type="text/plain; charset=utf-8"
        )
    export = export_download(
        project=project, query=query.validated_data, filters=record_export_filters(project, f), name="records"
    )
    return export.response(request)
