"""Judge settings, which comparisons a judging job covers, and the job's work (verdicts stored apart from votes).

`run_judging` runs inside the `judging.judge` job: it imports torch only when called, loads the
project's judge once, judges the comparisons batch by batch per aspect (progress, cancellable)
and writes JudgeVerdict rows. It never creates Vote rows or touches a comparison's vote counters.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import Count

from annotate.models import Comparison, ComparisonItem, DataImport, Project
from annotate.selectors import conversations_by_id
from judging.errors import InvalidJudgeSettings, JudgeNotReady
from judging.job_kinds import JUDGE
from judging.models import JudgeSettings, JudgeVerdict
from prefloop.limits import OutOfBounds, check_whole_number, limit
from training.ml.judge import JudgeError, JudgeTemplate
from training.models import Policy

JUDGE_JOB = JUDGE
Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]
SCOPES = ("round", "import", "filter", "ids")


def settings_for(project: Project) -> JudgeSettings:
    return JudgeSettings.objects.get_or_create(project=project)[0]


def template_of(settings: JudgeSettings) -> JudgeTemplate:
    return JudgeTemplate(system=settings.system_prompt, user=settings.user_template)


def aspects_of(project: Project) -> list[str]:
    return list(project.aspects or []) or ["overall"]


def update_judge_settings(*, project: Project, data: dict) -> JudgeSettings:
    """Set the judge (a ready policy of the project), its prompt, principles per aspect and bounds; all or nothing."""
    settings = settings_for(project)
    if "judge" in data:
        judge = data["judge"]
        if judge in (None, ""):
            settings.judge = None
        else:
            policy = Policy.objects.filter(project=project, pk=judge).first() if str(judge).isdigit() else None
            if policy is None or policy.status != Policy.Status.READY:
                raise InvalidJudgeSettings("judge: must be a ready policy checkpoint of this project")
            settings.judge = policy
    for name in ("system_prompt", "user_template"):
        if name in data:
            if not isinstance(data[name], str) or not data[name].strip():
                raise InvalidJudgeSettings(f"{name}: must be non-empty text")
            setattr(settings, name, data[name])
    if "principles" in data:
        settings.principles = _principles(project, data["principles"])
    try:
        if "max_tokens" in data:
            settings.max_tokens = check_whole_number(
                "max_tokens", data["max_tokens"], low=16, high=limit("judge.max_tokens", 32_768)
            )
        if "batch_size" in data:
            settings.batch_size = check_whole_number(
                "batch_size", data["batch_size"], low=1, high=limit("judge.batch_size", 256)
            )
    except OutOfBounds as exc:
        raise InvalidJudgeSettings(str(exc)) from None
    try:
        template_of(settings).check()
    except JudgeError as exc:
        raise InvalidJudgeSettings(str(exc)) from None
    settings.save()
    return settings


def _principles(project: Project, value) -> dict:
    if not isinstance(value, dict):
        raise InvalidJudgeSettings('principles: must be an object {"aspect": "text"}')
    known = set(aspects_of(project))
    for aspect, text in value.items():
        if aspect not in known:
            raise InvalidJudgeSettings(f"principles.{aspect}: not an aspect of this project ({sorted(known)})")
        if not isinstance(text, str) or len(text) > 10_000:
            raise InvalidJudgeSettings(f"principles.{aspect}: must be text of at most 10,000 characters")
    return {k: v for k, v in value.items() if v.strip()}


def select_comparisons(
    project: Project,
    *,
    round: int | None = None,
    data_import: int | None = None,
    created_before: datetime | None = None,
    ids: list[int] | None = None,
    only_unjudged: bool = True,
) -> list[int]:
    """Pairwise, non-gold comparisons of the project in the scope, oldest first, at most judge.comparisons of them."""
    qs = Comparison.objects.filter(project=project, gold_label="")
    if round is not None:
        qs = qs.filter(round=round)
    if data_import is not None:
        record = DataImport.objects.filter(project=project, pk=data_import).first()
        if record is None:
            raise InvalidJudgeSettings("import: no such import in this project")
        qs = qs.filter(pk__in=record.created_ids.get("comparisons") or [])
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    judge = settings_for(project).judge
    if only_unjudged and judge is not None:
        qs = qs.exclude(judge_verdicts__judge=judge)
    pairwise = ComparisonItem.objects.filter(comparison__in=qs).values("comparison").order_by()
    two = pairwise.annotate(n=Count("id")).filter(n=2).values("comparison")
    bound = limit("judge.comparisons", 100_000)
    chosen = list(qs.filter(pk__in=two).order_by("pk").values_list("pk", flat=True)[: bound + 1])
    if len(chosen) > bound:
        raise InvalidJudgeSettings(
            f"comparisons: the scope holds more than {bound} pairs (PREFLOOP_LIMITS judge.comparisons); narrow it"
        )
    return chosen


def start_judging(*, project: Project, comparison_ids: list[int], user=None, triage: dict | None = None):
    """Enqueue a judging job on these comparisons (after checking the judge is usable); `triage`
    {"round", "confidence"} reorders that round's queue once the verdicts are in (judging/uses.py)."""
    from prefloop.jobs.services import enqueue_job

    ready_judge(project)
    if not comparison_ids:
        raise InvalidJudgeSettings("comparisons: nothing to judge in this scope")
    params: dict = {"project_id": project.pk, "comparison_ids": comparison_ids}
    if triage:
        params["triage"] = triage
    return enqueue_job(kind=JUDGE_JOB, params=params, project=project, user=user)


def triage_option(value, scope: dict) -> dict | None:
    """{"round", "confidence"} from a request's "triage" (a confidence in [0.5, 1]) and its scope's round."""
    if value in (None, False):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value <= 1:
        raise InvalidJudgeSettings("triage: must be a confidence between 0.5 and 1")
    if scope.get("round") is None:
        raise InvalidJudgeSettings("triage: needs a round in the scope")
    return {"round": scope["round"], "confidence": float(value)}


def ready_judge(project: Project) -> Policy:
    settings = settings_for(project)
    judge = settings.judge
    if judge is None or judge.status != Policy.Status.READY or not judge.artifact_path:
        raise JudgeNotReady("the project names no ready judge model (Quality tab → judge settings)")
    return judge


class JudgingStopped(Exception):
    """The job was asked to stop; verdicts already written stay."""


def _pairs(project: Project, comparison_ids: list[int]) -> list[tuple[int, int, int, list[dict], str, str]]:
    """(comparison id, first id, second id, conversation, first text, second text) of pairwise comparisons with both texts."""
    items = (
        ComparisonItem.objects.filter(comparison_id__in=comparison_ids, comparison__project=project)
        .select_related("completion", "comparison")
        .order_by("comparison_id", "position")
    )
    by_comparison: dict[int, list] = {}
    for item in items:
        by_comparison.setdefault(item.comparison_id, []).append(item)
    conversations = conversations_by_id(project, [i[0].comparison.prompt_id for i in by_comparison.values()])
    rows = []
    for comparison_id, pair in sorted(by_comparison.items()):
        if len(pair) != 2 or not all(i.completion.text_available for i in pair):
            continue
        first, second = pair[0].completion, pair[1].completion
        rows.append(
            (comparison_id, first.pk, second.pk, conversations[pair[0].comparison.prompt_id], first.text, second.text)
        )
    return rows


def run_judging(
    *,
    project_id: int,
    comparison_ids: list[int],
    job_id: int | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    triage: dict | None = None,
) -> dict:
    """Judge the comparisons on every aspect of the project with its judge; returns counts for the job's result."""
    from training.ml.judge import JudgePair, judge_pairs
    from training.ml.policy import load_policy

    project = Project.objects.get(pk=project_id)
    judge = ready_judge(project)
    settings = settings_for(project)
    template = template_of(settings)
    rows = _pairs(project, comparison_ids[: limit("judge.comparisons", 100_000)])
    model, tokenizer = load_policy(judge.artifact_path)
    aspects = aspects_of(project)
    step = max(1, settings.batch_size) * 4
    total, done, counts = (len(rows) * len(aspects), 0, {"verdicts": 0, "inconsistent": 0, "truncated": 0})
    for aspect in aspects:
        principles = settings.principles.get(aspect, "")
        version = template.version(principles)
        for start in range(0, len(rows), step):
            if should_stop is not None and should_stop():
                raise JudgingStopped(f"stopped after {done} of {total} verdicts")
            chunk = rows[start : start + step]
            verdicts = judge_pairs(
                model,
                tokenizer,
                [JudgePair(r[3], r[4], r[5]) for r in chunk],
                template=template,
                principles=principles,
                max_tokens=settings.max_tokens,
                batch_size=settings.batch_size,
            )
            _store(chunk, verdicts, aspect=aspect, judge=judge, version=version, principles=principles, job_id=job_id)
            done += len(chunk)
            counts["verdicts"] += len(chunk)
            counts["inconsistent"] += sum(not v.consistent for v in verdicts)
            counts["truncated"] += sum(v.truncated for v in verdicts)
            if progress is not None:
                progress(done / total, f"{done} of {total} judged ({aspect})")
    return {
        "project_id": project.pk,
        "judge": judge.label,
        "aspects": aspects,
        "comparisons": len(rows),
        **counts,
        **_triage(project, triage),
    }


def _triage(project: Project, triage: dict | None) -> dict:
    if not triage:
        return {}
    from judging.uses import triage_round

    return {
        "triage": triage_round(
            project=project, round_number=int(triage["round"]), confidence=float(triage["confidence"])
        )
    }


def _store(chunk, verdicts, *, aspect: str, judge: Policy, version: str, principles: str, job_id: int | None) -> None:
    objects = [
        JudgeVerdict(
            comparison_id=r[0],
            aspect=aspect,
            judge=judge,
            judge_label=judge.label,
            prompt_version=version,
            principles=principles,
            first_id=r[1],
            second_id=r[2],
            verdict=v.verdict,
            consistent=v.consistent,
            order1=list(v.order1),
            order2=list(v.order2),
            probabilities=v.probabilities,
            truncated=v.truncated,
            job_id=job_id,
        )
        for r, v in zip(chunk, verdicts)
    ]
    fields = [
        "verdict",
        "consistent",
        "order1",
        "order2",
        "probabilities",
        "truncated",
        "job_id",
        "judge_label",
        "first",
        "second",
    ]
    with transaction.atomic():
        JudgeVerdict.objects.bulk_create(
            objects,
            update_conflicts=True,
            update_fields=fields,
            unique_fields=["comparison", "aspect", "judge", "prompt_version"],
        )


def scope_ids(project: Project, scope: dict) -> list[int]:
    """Comparison ids of a request's scope: {"round": n} | {"import": id} | {"created_before": iso} | {"ids": [...]},
    plus "rejudge": true to include comparisons this judge already judged."""
    from django.utils.dateparse import parse_datetime

    if not isinstance(scope, dict):
        raise InvalidJudgeSettings("scope: must be an object")
    unknown = set(scope) - {"round", "import", "created_before", "ids", "rejudge"}
    if unknown:
        raise InvalidJudgeSettings(f"scope.{min(unknown)}: unknown field (round, import, created_before, ids, rejudge)")
    kwargs: dict = {"only_unjudged": not scope.get("rejudge", False)}
    try:
        if scope.get("round") is not None:
            kwargs["round"] = check_whole_number("scope.round", scope["round"], high=10**9)
        if scope.get("import") is not None:
            kwargs["data_import"] = check_whole_number("scope.import", scope["import"], high=2**62)
    except OutOfBounds as exc:
        raise InvalidJudgeSettings(str(exc)) from None
    if scope.get("created_before") is not None:
        when = parse_datetime(str(scope["created_before"]))
        if when is None:
            raise InvalidJudgeSettings("scope.created_before: must be an ISO date-time")
        kwargs["created_before"] = when
    if scope.get("ids") is not None:
        ids = scope["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidJudgeSettings("scope.ids: must be a list of comparison ids")
        kwargs["ids"] = ids
    return select_comparisons(project, **kwargs)
