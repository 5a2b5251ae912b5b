"""The record browser's queries: a project's comparisons and votes under a validated filter.

A filter has two levels. Vote conditions (aspect, annotator, label, source) pick the votes that are
shown, counted for agreement and exported; comparison conditions (round, gold, agreement, text, and
"has a vote matching" when a vote condition is set) pick the comparisons. The same filter becomes
the export's `ExportFilters`, so "export this filter" writes exactly the rows the page lists, in the
normal export's format (gold checks are never exported).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Coalesce, Concat

from annotate.export.rows import ExportFilters
from annotate.models import Comparison, ComparisonItem, Project, User, Vote
from prefloop.limits import limit


@dataclass(frozen=True)
class SourceChoice:
    label: str
    sources: tuple[str, ...]  # Vote.source values


# The source filter's choices. A new kind of vote (e.g. AI feedback) is one more row here.
RECORD_SOURCES: dict[str, SourceChoice] = {
    "human": SourceChoice("human (voted here)", (Vote.Source.HUMAN,)),
    "imported": SourceChoice("imported", (Vote.Source.IMPORTED,)),
    "ai": SourceChoice("AI (LLM judge)", ("ai",)),  # judge verdicts (judging app), not votes
}
AI_SOURCE = "ai"
# label -> vote choices
RECORD_LABELS: dict[str, tuple[str, ...]] = {
    "preference": (Vote.Choice.A, Vote.Choice.B),
    "tie": (Vote.Choice.TIE,),
    "both_bad": (Vote.Choice.BOTH_BAD,),
    "ranked": (Vote.Choice.RANKED,),
}
AGREEMENTS = {"unanimous": "unanimous (2+ voters)", "split": "split", "single": "one voter", "none": "no votes"}
GOLD = {"yes": "gold checks only", "no": "no gold checks"}
PAGE_SIZE = 20
MAX_TEXT_QUERY = 200
MAX_NAME = 200


class RecordFilterError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class RecordFilter:
    round: int | None = None
    aspect: str | None = None
    annotator: str | None = None  # a username, or an imported voter's id
    label: str | None = None
    agreement: str | None = None
    gold: str | None = None
    source: str | None = None
    q: str = ""
    page: int = 1
    given: dict[str, str] = field(default_factory=dict, compare=False)  # the filter's parameters as set

    @property
    def vote_conditions(self) -> bool:
        return any((self.annotator, self.label, self.source))


def _choice(params: Mapping[str, str], name: str, choices: Mapping[str, Any]) -> str | None:
    value = (params.get(name) or "").strip()
    if value and value not in choices:
        raise RecordFilterError(name, f"must be one of {', '.join(choices)} (or blank), got {value[:40]!r}")
    return value or None


def _whole(params: Mapping[str, str], name: str, *, low: int, high: int) -> int | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not low <= int(value[:12]) <= high:
        raise RecordFilterError(name, f"must be a whole number between {low} and {high}, got {value[:40]!r}")
    return int(value)


def _text(params: Mapping[str, str], name: str, most: int) -> str:
    value = (params.get(name) or "").strip()
    if len(value) > most:
        raise RecordFilterError(name, f"at most {most} characters")
    return value


def parse_record_filter(project: Project, params: Mapping[str, str]) -> RecordFilter:
    """The filter from a query string; RecordFilterError names the first bad field."""
    aspects = {name: name for name in project.aspect_names}
    parsed = RecordFilter(
        round=_whole(params, "round", low=0, high=2**31 - 1),
        aspect=_choice(params, "aspect", aspects),
        annotator=_text(params, "annotator", MAX_NAME) or None,
        label=_choice(params, "label", RECORD_LABELS),
        agreement=_choice(params, "agreement", AGREEMENTS),
        gold=_choice(params, "gold", GOLD),
        source=_choice(params, "source", RECORD_SOURCES),
        q=_text(params, "q", MAX_TEXT_QUERY),
        page=_whole(params, "page", low=1, high=limit("records.pages", 10_000)) or 1,
    )
    given = {k: str(v) for k, v in asdict(parsed).items() if k not in ("page", "given") and v not in (None, "")}
    return RecordFilter(**{**asdict(parsed), "given": given})


def vote_q(project: Project, f: RecordFilter, prefix: str = "") -> Q:
    """The filter's vote conditions, on Vote (prefix "") or through a relation (prefix "votes__")."""

    def q(**lookups: Any) -> Q:
        return Q(**{prefix + k: v for k, v in lookups.items()})

    condition = q(aspect=f.aspect) if f.aspect else Q()
    if f.source:
        condition &= q(source__in=RECORD_SOURCES[f.source].sources)
    if f.label:
        condition &= q(choice__in=RECORD_LABELS[f.label])
    if f.annotator:
        user_ids = list(User.objects.filter(username=f.annotator).values_list("id", flat=True))
        condition &= q(annotator_id__in=user_ids) | q(annotator__isnull=True, external_annotator=f.annotator)
    return condition


def _agreement_counts(project: Project, f: RecordFilter) -> dict[str, Any]:
    """Per comparison, over the votes the filter keeps: votes, voters, aspects and distinct answers."""
    kept = vote_q(project, f, "votes__") & Q(votes__isnull=False)
    text: TextField = TextField()
    ranked = Concat(
        Cast("votes__ranking", text),
        Value("/", output_field=text),
        Coalesce(Cast("votes__ranking_ties", text), Value("", output_field=text)),
        output_field=text,
    )
    answer = Concat(
        "votes__aspect",
        Value(":", output_field=text),
        Case(
            When(votes__choice__in=["a", "b"], then=Cast("votes__winner_id", text)),
            When(votes__choice="ranked", then=ranked),
            default=Cast("votes__choice", text),
            output_field=text,
        ),
        output_field=text,
    )
    voter = Coalesce(Cast("votes__annotator_id", text), Cast("votes__external_annotator", text), output_field=text)
    return {
        "n_votes": Count("votes", filter=kept, distinct=True),
        "n_voters": Count(voter, filter=kept, distinct=True),
        "n_aspects": Count("votes__aspect", filter=kept, distinct=True),
        "n_answers": Count(answer, filter=kept, distinct=True),
    }


AGREEMENT_Q = {
    "unanimous": Q(n_voters__gte=2, n_answers=F("n_aspects")),
    "split": Q(n_answers__gt=F("n_aspects")),
    "single": Q(n_voters=1),
    "none": Q(n_votes=0),
}


def record_comparisons(project: Project, f: RecordFilter) -> QuerySet[Comparison]:
    """The comparisons the filter keeps, oldest first, with their agreement counts."""
    comparisons = Comparison.objects.filter(project=project)
    if f.round is not None:
        comparisons = comparisons.filter(round=f.round)
    if f.gold:
        comparisons = comparisons.exclude(gold_label="") if f.gold == "yes" else comparisons.filter(gold_label="")
    if f.source == AI_SOURCE:
        comparisons = comparisons.filter(Exists(_verdicts(f).filter(comparison=OuterRef("pk"))))
    if f.vote_conditions and (f.source != AI_SOURCE or f.label or f.annotator):
        comparisons = comparisons.filter(Exists(Vote.objects.filter(vote_q(project, f), comparison=OuterRef("pk"))))
    if f.q:
        in_response = ComparisonItem.objects.filter(comparison=OuterRef("pk"), completion__text__icontains=f.q)
        comparisons = comparisons.filter(Q(prompt__text__icontains=f.q) | Exists(in_response))
    comparisons = comparisons.annotate(**_agreement_counts(project, f))
    if f.agreement:
        comparisons = comparisons.filter(AGREEMENT_Q[f.agreement])
    return comparisons.order_by("id")


def _verdicts(f: RecordFilter) -> QuerySet[Any]:
    """Judge verdicts (AI feedback) under the filter's aspect; shown apart from the votes."""
    from judging.models import JudgeVerdict

    verdicts = JudgeVerdict.objects.all()
    return verdicts.filter(aspect=f.aspect) if f.aspect else verdicts


@dataclass
class RecordPage:
    page: Page
    comparisons: list[dict]
    total: int


def record_page(project: Project, f: RecordFilter) -> RecordPage:
    """One page of records (PAGE_SIZE comparisons) with their prompt, responses and kept votes."""
    paginator = Paginator(
        record_comparisons(project, f).values_list("id", "n_voters", "n_votes"),  # type: ignore[misc]  # annotated by record_comparisons
        PAGE_SIZE,
    )
    page = paginator.get_page(f.page)
    counts = {cid: {"voters": voters, "votes": votes} for cid, voters, votes in page.object_list}
    ids = list(counts)
    found = {c.pk: c for c in Comparison.objects.filter(pk__in=ids).select_related("prompt", "gold_winner")}
    items: dict[int, list] = {}
    for item in ComparisonItem.objects.filter(comparison_id__in=ids).select_related("completion").order_by("position"):
        items.setdefault(item.comparison_id, []).append(item.completion)
    votes: dict[int, list] = {}
    for vote in (
        Vote.objects.filter(vote_q(project, f), comparison_id__in=ids).select_related("annotator").order_by("id")
    ):
        votes.setdefault(vote.comparison_id, []).append(vote)
    verdicts: dict[int, list] = {}
    for verdict in _verdicts(f).filter(comparison_id__in=ids).order_by("created_at", "id"):
        verdicts.setdefault(verdict.comparison_id, []).append(verdict)
    rows = [
        {
            "comparison": found[cid],
            "completions": items.get(cid, []),
            "votes": votes.get(cid, []),
            "verdicts": verdicts.get(cid, []),
            "counts": counts[cid],
        }
        for cid in ids
        if cid in found
    ]
    return RecordPage(page=page, comparisons=rows, total=paginator.count)


def record_export_filters(project: Project, f: RecordFilter) -> ExportFilters:
    """The export filters that write exactly this filter's rows (gold checks are never exported)."""
    restricted = f.q or f.agreement or f.gold or f.vote_conditions
    comparisons = record_comparisons(project, f).values("pk") if restricted else None
    return ExportFilters(
        rounds=(f.round,) if f.round is not None else None,
        aspect=f.aspect,
        annotators=(f.annotator,) if f.annotator else None,
        sources=RECORD_SOURCES[f.source].sources if f.source else ExportFilters.sources,
        choices=RECORD_LABELS[f.label] if f.label else None,
        comparisons=comparisons,
        record_filter=dict(f.given),
    )
