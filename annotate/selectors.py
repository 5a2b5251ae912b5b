"""Read-side functions of the annotate app: querysets and plain data, never writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from annotate.models import Assignment, Comparison, ComparisonItem, Completion, Membership, Project, User, Vote
from prefloop.core.errors import NotFound

ACTIVE_WINDOW = timedelta(minutes=15)


def projects_for_user(user: User, *, role: str | None = None) -> QuerySet[Project]:
    """Projects `user` may see: all for an admin, else those they are a member of (in `role`)."""
    if user.is_admin:
        return Project.objects.all().order_by("id")
    memberships = Membership.objects.filter(user=user)
    if role:
        memberships = memberships.filter(role=role)
    return Project.objects.filter(pk__in=memberships.values("project_id")).order_by("id")


def project_for_user(user: User, project_id: int, *, role: str | None = None) -> Project:
    """The project if `user` may act on it in `role`; NotFound otherwise (never 403: no leak)."""
    project = projects_for_user(user, role=role).filter(pk=project_id).first()
    if project is None:
        raise NotFound("No such project.")
    return project


def assignment_payload(assignment: Assignment, *, texts: dict[int, str] | None = None) -> dict:
    """What an annotator sees: texts by side, the project's rules. No model names, no ids of
    completions, nothing about other annotators' votes. `texts` (completion id → text) when the
    caller already has them."""
    project = assignment.project
    if texts is None:
        texts = dict(Completion.objects.filter(pk__in=assignment.shown_order).values_list("id", "text"))
    prompt = assignment.comparison.prompt
    return {
        "assignment_id": assignment.pk,
        "project_id": project.pk,
        "leased_until": assignment.leased_until,
        "prompt": prompt.text,
        "prompt_context": {k: v for k, v in prompt.metadata.items() if k in ("prefix", "suffix")},
        "responses": [
            {"side": "abcdefghijklmnopqrstuvwxyz"[i], "text": texts[completion_id]}
            for i, completion_id in enumerate(assignment.shown_order)
        ],
        "aspects": project.aspect_names,
        "choices": project.allowed_choices if len(assignment.shown_order) == 2 else ["ranked"],
        "strength_scale": project.strength_scale,
        "rationale": project.rationale,
    }


@dataclass(frozen=True)
class ProjectProgress:
    project_id: int
    comparisons: int
    comparisons_open: int
    comparisons_complete: int
    overlap_target: int
    votes_done: int  # assignments voted in prefloop
    imported_votes: int
    votes_needed: int  # still to collect on open comparisons
    leases_open: int
    active_annotators: int  # voted or leased in the last 15 minutes

    def as_dict(self) -> dict:
        return asdict(self)


def project_progress(project: Project, *, now: datetime | None = None) -> ProjectProgress:
    now = now or timezone.now()
    target = project.overlap_target
    # Aliases differ from field names: Django refuses an aggregate named like the field it sums.
    totals = Comparison.objects.filter(project=project, gold_label="").aggregate(
        n=Count("id"),
        n_open=Count("id", filter=Q(is_open=True)),
        n_complete=Count("id", filter=Q(is_complete=True)),
        done=Sum("votes_done", default=0),
        imported=Sum("imported_votes", default=0),
        leases=Sum("leases_open", default=0),
        needed=Sum(Greatest(target - F("imported_votes") - F("votes_done"), 0), filter=Q(is_open=True), default=0),
    )
    active = (
        Assignment.objects.filter(project=project)
        .filter(Q(completed_at__gte=now - ACTIVE_WINDOW) | Q(state=Assignment.State.LEASED, leased_until__gt=now))
        .values("annotator_id")
        .distinct()
        .count()
    )
    return ProjectProgress(
        project_id=project.pk,
        comparisons=totals["n"],
        comparisons_open=totals["n_open"],
        comparisons_complete=totals["n_complete"],
        overlap_target=target,
        votes_done=totals["done"],
        imported_votes=totals["imported"],
        votes_needed=totals["needed"],
        leases_open=totals["leases"],
        active_annotators=active,
    )


def comparison_progress(project: Project) -> QuerySet[Comparison]:
    """Per comparison: votes collected against the target; for researchers."""
    return Comparison.objects.filter(project=project).select_related("prompt").order_by("-priority", "id")


def comparison_completions(comparison_ids: list[int]) -> dict[int, list[dict]]:
    """Per comparison, its completions' ids and model names, in canonical order (researchers only)."""
    found: dict[int, list[dict]] = {}
    rows = (
        ComparisonItem.objects.filter(comparison_id__in=comparison_ids)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "completion_id", "completion__model_name")
    )
    for comparison_id, completion_id, name in rows:
        found.setdefault(comparison_id, []).append({"id": completion_id, "model": name})
    return found


def project_votes(project: Project) -> QuerySet[Vote]:
    """Every vote of a project with what a researcher needs to interpret it."""
    return (
        Vote.objects.filter(comparison__project=project)
        .select_related("annotator", "winner", "loser", "comparison")
        .order_by("id")
    )


def annotator_votes(annotator: User, project: Project) -> QuerySet[Vote]:
    return Vote.objects.filter(annotator=annotator, comparison__project=project).order_by("-id")


@dataclass(frozen=True)
class AnnotatorProgress:
    done: int
    today: int
    cap: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def annotator_progress(annotator: User, project: Project, *, now: datetime | None = None) -> AnnotatorProgress:
    return annotator_progress_by_project(annotator, [project], now=now)[project.pk]


def annotator_progress_by_project(
    annotator: User, projects: list[Project], *, now: datetime | None = None
) -> dict[int, AnnotatorProgress]:
    """`annotator`'s progress in each of `projects` (project id -> progress), in two queries."""
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ids = [p.pk for p in projects]
    done: dict[int, Any] = {
        row["project_id"]: row
        for row in Assignment.objects.filter(annotator=annotator, project_id__in=ids, state=Assignment.State.DONE)
        .values("project_id")
        .annotate(done=Count("id"), today=Count("id", filter=Q(completed_at__gte=start_of_day)))
    }
    caps = dict(Membership.objects.filter(user=annotator, project_id__in=ids).values_list("project_id", "cap"))
    return {
        p.pk: AnnotatorProgress(
            done=done.get(p.pk, {}).get("done", 0),
            today=done.get(p.pk, {}).get("today", 0),
            cap=caps[p.pk] if caps.get(p.pk) is not None else p.annotator_cap,
        )
        for p in projects
    }


def preference_pairs(project: Project, *, filters=None, options=None, stats=None):
    """Aggregated preference rows for other apps (reward models, training): the export's rows.

    Yields dicts with prompt, chosen, rejected, label, strength, margin, agreement, category,
    pair_id, provenance_a/b (see docs/export-format.md). Pass ExportOptions(ties="drop") for
    plain chosen/rejected pairs or ties="both-orders" to train ties toward equal scores.
    """
    from annotate.export.rows import ExportFilters, ExportOptions, iter_preference_rows

    return iter_preference_rows(project, filters or ExportFilters(), options or ExportOptions(), stats)


def prompt_conversations(project, prompts) -> list[list[dict]]:
    """What a model is given for each prompt: its turns, after the project's system prompt if it has one."""
    system = (project.system_prompt or "").strip()
    head = [{"role": "system", "content": system}] if system else []
    return [
        head + prompt.conversation if not (head and prompt.conversation[0]["role"] == "system") else prompt.conversation
        for prompt in prompts
    ]


def conversations_by_id(project, prompt_ids) -> dict[int, list[dict]]:
    """prompt id → prompt_conversations' turns, for prompts of `project`."""
    from annotate.models import Prompt

    prompts = list(Prompt.objects.filter(project=project, pk__in=set(prompt_ids)).order_by("pk"))
    return dict(zip([p.pk for p in prompts], prompt_conversations(project, prompts)))


def project_by_ref(ref: str | int) -> Project:
    """The project a management command's `--project` names: the project with exactly that name,
    else (when `ref` is a number) the one with that id. Raises NotFound naming the reference."""
    text = str(ref).strip()
    found = Project.objects.filter(name=text).first()
    if found is None and text.isdigit():
        found = Project.objects.filter(pk=int(text)).first()
    if found is None:
        raise NotFound(f"no project named or numbered {text!r}")
    return found
