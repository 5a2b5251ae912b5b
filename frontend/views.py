"""Web pages: sign-in landing, project list, the annotator queue and the researcher dashboard.

Views parse, authorise and call selectors/services; rendering helpers live in `rendering.py`
and `live.py`. Votes go to the REST API (`/api/assignments/<id>/vote/`) from the page's module.
"""

from __future__ import annotations

import json
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from annotate.models import Membership
from annotate.selectors import annotator_progress, assignment_payload, project_for_user
from annotate.services.assignment import next_comparison
from annotate.services.corrections import edit_window_open, last_voted_assignment, vote_answers
from frontend.live import dashboard_context
from frontend.rendering import comparison_context, render_markdown
from frontend.selectors import annotator_project, project_entries
from prefloop.core.errors import NotFound

# What the queue says when there is no comparison for this annotator.
EMPTY_QUEUE = {
    "complete": "Nothing left for you in this project. Thank you!",
    "cap_reached": "You have reached your limit for this project. Thank you!",
    "paused": "Your work on this project is paused. Please contact the project's researchers.",
    "lease_limit": "You already hold the most comparisons one person may hold. Reload the page to resume them.",
}


def not_found_as_404(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(str(exc)) from exc

    return wrapped


def home(request):
    if request.user.is_authenticated:
        return redirect("projects")
    return render(request, "frontend/home.html")


@login_required
@require_GET
def project_list(request):
    rows = [
        {"entry": entry, "progress": annotator_progress(request.user, entry.project) if entry.can_annotate else None}
        for entry in project_entries(request.user)
    ]
    return render(request, "frontend/projects.html", {"rows": rows})


def _queue_context(request, project, *, exclude=()) -> dict:
    result = next_comparison(annotator=request.user, project=project, exclude_assignments=exclude)
    if result.assignment is None:
        return {"comparison": None, "empty_reason": result.reason, "empty_message": EMPTY_QUEUE.get(result.reason, "")}
    return {"comparison": comparison_context(assignment_payload(result.assignment))}


@login_required
@require_GET
@not_found_as_404
def annotate(request, project_id: int):
    project = annotator_project(request.user, project_id)
    config = {
        "projectId": project.pk,
        "username": request.user.username,
        "nextUrl": reverse("annotate-next", args=[project.pk]),
        "voteUrl": reverse("assignment-vote", args=[0]).replace("/0/", "/{id}/"),
        "aspects": project.aspect_names,
        "choices": project.allowed_choices,
        "strengthScale": project.strength_scale,
        "rationale": project.rationale,
        "progress": annotator_progress(request.user, project).as_dict(),
        "skipUrl": reverse("assignment-skip", args=[0]).replace("/0/", "/{id}/"),
        "editUrl": reverse("assignment-edit", args=[0]).replace("/0/", "/{id}/"),
        "lastUrl": reverse("annotate-last", args=[project.pk]),
        "editSeconds": settings.PREFLOOP_VOTE_EDIT_SECONDS,
        "allowTies": project.allow_tie,  # ties within a K-way ranking too
    }
    return render(
        request,
        "frontend/annotate.html",
        {
            "project": project,
            "instructions_html": render_markdown(project.instructions),
            "config": config,
            "progress": config["progress"],
            "choice_buttons": _choice_buttons(project),
            "strength_labels": strength_labels(project.strength_scale),
            **_queue_context(request, project),
        },
    )


@login_required
@require_POST
@not_found_as_404
def annotate_next(request, project_id: int):
    """The next comparison as an HTML fragment, skipping the ones the page already holds (prefetch)."""
    project = annotator_project(request.user, project_id)
    try:
        exclude = [int(x) for x in request.POST.getlist("exclude")][:10]
    except ValueError:
        exclude = []
    return render(request, "frontend/_queue_item.html", _queue_context(request, project, exclude=exclude))


@login_required
@require_GET
@not_found_as_404
def annotate_last(request, project_id: int):
    """The annotator's last voted comparison with their answers, to change it (while the edit window is open)."""
    project = annotator_project(request.user, project_id)
    assignment = last_voted_assignment(annotator=request.user, project=project)
    if assignment is None or not edit_window_open(assignment):
        message = (
            f"Only your last vote can be changed, for {settings.PREFLOOP_VOTE_EDIT_SECONDS} s after voting."
            if assignment
            else "You have not voted in this project yet."
        )
        return render(
            request,
            "frontend/_queue_item.html",
            {"comparison": None, "empty_reason": "no_edit", "empty_message": message},
        )
    context = {
        "comparison": comparison_context(assignment_payload(assignment)),
        "editing": True,
        "answers_json": json.dumps(vote_answers(assignment)),
    }
    return render(request, "frontend/_queue_item.html", context)


@login_required
@require_GET
@not_found_as_404
def dashboard(request, project_id: int):
    project = project_for_user(request.user, project_id, role=Membership.Role.RESEARCHER)
    return render(request, "frontend/dashboard.html", {**dashboard_context(project), "tab": "progress"})


@login_required
@require_GET
@not_found_as_404
def leaderboard(request, project_id: int):
    from annotate.leaderboard.compute import LeaderboardOptions
    from annotate.leaderboard.data import VoteFilter, project_leaderboard
    from annotate.leaderboard.plots import battle_count_svg, ratings_ci_svg, win_rate_svg

    project = project_for_user(request.user, project_id, role=Membership.Role.RESEARCHER)
    style = request.GET.get("style") == "1"
    labels = request.GET.get("labels") if request.GET.get("labels") in ("human", "judge", "both") else "human"
    result = project_leaderboard(
        project,
        filters=VoteFilter(labels=labels),
        options=LeaderboardOptions(bootstrap=100, style_control=style, online_elo=True),
    )
    plots = {}
    if result.ratings:
        # The SVGs are built with every label escaped (annotate/leaderboard/plots.py).
        plots = {
            "ratings": mark_safe(ratings_ci_svg(result)),
            "win_rate": mark_safe(win_rate_svg(result)),
            "battles": mark_safe(battle_count_svg(result)),
        }
    return render(
        request,
        "frontend/leaderboard.html",
        {
            "project": project,
            "tab": "leaderboard",
            "result": result,
            "plots": plots,
            "style": style,
            "labels": labels,
            "label_choices": [("human", "human only"), ("judge", "judge only"), ("both", "both")],
        },
    )


@login_required
@require_GET
@not_found_as_404
def quality(request, project_id: int):
    from annotate.quality.report import project_quality
    from judging.views import quality_context

    project = project_for_user(request.user, project_id, role=Membership.Role.RESEARCHER)
    return render(
        request,
        "frontend/quality.html",
        {"project": project, "tab": "quality", "report": project_quality(project), **quality_context(project)},
    )


CHOICE_LABELS = {
    "a": ("A is better", "1"),
    "b": ("B is better", "2"),
    "tie": ("Tie", "3"),
    "both_bad": ("Both bad", "4"),
}
STRENGTH_KEYS = "qwert"


def _choice_buttons(project) -> list[dict]:
    return [{"value": c, "label": CHOICE_LABELS[c][0], "key": CHOICE_LABELS[c][1]} for c in project.allowed_choices]


def strength_labels(scale: int) -> list[dict]:
    """Names for a strength scale of 0..5 steps (keys q, w, e, r, t)."""
    names = {
        2: ["slightly", "clearly"],
        3: ["slightly", "clearly", "much"],
        4: ["slightly", "somewhat", "clearly", "much"],
        5: ["barely", "slightly", "somewhat", "clearly", "much"],
    }.get(scale, [str(i) for i in range(1, scale + 1)])
    return [
        {"value": i + 1, "label": name, "key": STRENGTH_KEYS[i] if i < len(STRENGTH_KEYS) else ""}
        for i, name in enumerate(names)
    ]
