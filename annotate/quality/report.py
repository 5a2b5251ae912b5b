"""A project's annotation quality: agreement per aspect and a row of diagnostics per annotator.

Units are (comparison, aspect); a vote's value is its choice oriented to the comparison's
canonical pair (lower completion id = "a"), so the side each annotator happened to see does
not matter. Imported votes take part in agreement; per-annotator rows are for prefloop users.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field

from annotate.models import Membership, Project, Vote
from annotate.quality.stats import binomial_p, krippendorff_alpha, percent_agreement
from annotate.services.voting import gold_is_correct

NOMINAL_ORDER = ("a", "tie", "both_bad", "b")
# Flags: thresholds a researcher would use to look closer, not verdicts.
TOO_FAST_MEDIAN_MS = 3000
MIN_VOTES_FOR_FLAGS = 20
ONE_KEY_SHARE = 0.9
LOW_AGREEMENT = 0.4
POSITION_BIAS_P = 0.001


@dataclass(frozen=True)
class AnnotatorQuality:
    user_id: int
    username: str
    votes: int
    left_share: float | None  # share of "a" (left) among a/b decisions
    position_bias_p: float | None  # two-sided binomial test against 50 %
    majority_agreement: float | None  # with the plurality of the other voters on the same pair
    majority_comparable: int
    gold_answered: int
    gold_accuracy: float | None
    median_time_ms: float | None
    paused: bool
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AspectAgreement:
    aspect: str
    units: int  # pairs with at least two votes
    alpha_nominal: float | None
    alpha_ordinal: float | None  # when the project collects strength
    percent_agreement: float | None


@dataclass(frozen=True)
class QualityReport:
    project_id: int
    agreement: list[AspectAgreement]
    annotators: list[AnnotatorQuality]
    method: dict
    warnings: list[str] = field(default_factory=list)  # "not enough data" and why a figure is missing

    def as_dict(self) -> dict:
        return asdict(self)


def _oriented(choice: str, winner: int | None, pair_low: int) -> str:
    if choice in ("a", "b"):
        return "a" if winner == pair_low else "b"
    return choice


def project_quality(project: Project, *, include_imported: bool = True) -> QualityReport:
    votes = Vote.objects.filter(comparison__project=project, comparison__gold_label="").exclude(
        choice=Vote.Choice.RANKED
    )
    if not include_imported:
        votes = votes.filter(source=Vote.Source.HUMAN)
    rows = list(
        votes.values_list(
            "comparison_id",
            "aspect",
            "choice",
            "winner_id",
            "strength",
            "annotator_id",
            "external_annotator",
            "shown_order",
            "time_spent_ms",
            "assignment_id",
        )
    )
    nominal: dict[str, dict[Hashable, dict[Hashable, Hashable]]] = defaultdict(lambda: defaultdict(dict))
    ordinal: dict[str, dict[Hashable, dict[Hashable, int]]] = defaultdict(lambda: defaultdict(dict))
    per_user: dict[int, list[tuple]] = defaultdict(list)
    for comparison_id, aspect, choice, winner, strength, user_id, external, shown, ms, assignment_id in rows:
        coder = ("u", user_id) if user_id else ("x", external)
        value = _oriented(choice, winner, min(shown))
        nominal[aspect][comparison_id][coder] = value
        if choice != "both_bad":
            ordinal[aspect][comparison_id][coder] = {"a": 1, "b": -1}.get(value, 0) * (strength or 1)
        if user_id:
            per_user[user_id].append((comparison_id, aspect, choice, value, ms, assignment_id))

    agreement = []
    for aspect in sorted(nominal):
        units = nominal[aspect]
        agreement.append(
            AspectAgreement(
                aspect=aspect,
                units=sum(1 for u in units.values() if len(u) >= 2),
                alpha_nominal=krippendorff_alpha(units, level="nominal", order=list(NOMINAL_ORDER)),
                alpha_ordinal=(
                    krippendorff_alpha(
                        ordinal[aspect],
                        level="ordinal",
                        order=sorted({v for u in ordinal[aspect].values() for v in u.values()}),
                    )
                    if project.strength_scale
                    else None
                ),
                percent_agreement=percent_agreement(units),
            )
        )
    return QualityReport(
        project_id=project.pk,
        agreement=agreement,
        warnings=_agreement_warnings(agreement),
        annotators=_annotator_rows(project, per_user, nominal),
        method={
            "units": "(comparison, aspect); choices oriented to the pair (lower completion id = a)",
            "alpha": "Krippendorff's alpha from the coincidence matrix; ordinal values = ±strength (tie 0)",
            "position_bias": "share of left (a) among a/b decisions, two-sided exact binomial test vs 0.5",
            "majority_agreement": "agreement with the plurality of the other voters on the same pair (unresolved pluralities skipped)",
            "imported_votes_in_agreement": include_imported,
            "gold_checks": "excluded from agreement; scored per annotator",
            "flags": {
                "too_fast": f"median time per vote < {TOO_FAST_MEDIAN_MS} ms",
                "one_key": f"one choice in ≥ {ONE_KEY_SHARE:.0%} of ≥ {MIN_VOTES_FOR_FLAGS} votes",
                "position_bias": f"p < {POSITION_BIAS_P} with ≥ {MIN_VOTES_FOR_FLAGS} decisions",
                "low_agreement": f"majority agreement < {LOW_AGREEMENT:.0%} on ≥ {MIN_VOTES_FOR_FLAGS} pairs",
                "gold_failing": "gold accuracy below the project's threshold",
            },
        },
    )


def _agreement_warnings(agreement: list[AspectAgreement]) -> list[str]:
    """Why an agreement figure is missing: there is nothing to compare, or nothing varies."""
    if not agreement:
        return ["not enough data: no votes yet, so there is no agreement to measure"]
    warnings = []
    for a in agreement:
        if a.units == 0:
            warnings.append(f"{a.aspect}: not enough data: no pair has votes from two annotators yet")
        elif a.alpha_nominal is None:
            warnings.append(f"{a.aspect}: α is undefined: every vote on the pairs voted twice has the same value")
    return warnings


def _gold_results(project: Project) -> dict[int | None, list[bool]]:
    """Per annotator, whether each of their first-aspect votes on a gold comparison was right."""
    gold = defaultdict(list)
    gold_votes = (
        Vote.objects.filter(comparison__project=project, annotator__isnull=False, aspect=project.aspect_names[0])
        .exclude(comparison__gold_label="")
        .select_related("comparison")
    )
    for vote in gold_votes:
        gold[vote.annotator_id].append(gold_is_correct(vote, vote.comparison))
    return gold


def _majority_agreement(votes: list, nominal: dict, user_id: int) -> tuple[int, int]:
    """(agreeing, comparable): the user's votes that match the clear majority of the other coders."""
    agree = comparable = 0
    for comparison_id, aspect, _choice, value, _ms, _a in votes:
        others = Counter(v for coder, v in nominal[aspect][comparison_id].items() if coder != ("u", user_id))
        if not others:
            continue
        (top, top_n), *rest = others.most_common(2) + [(None, 0)]
        if rest and rest[0][1] == top_n:
            continue  # no clear majority among the others
        comparable += 1
        agree += value == top
    return agree, comparable


def _annotator_rows(project: Project, per_user: dict, nominal: dict) -> list[AnnotatorQuality]:
    memberships = {
        m.user_id: m
        for m in Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR).select_related("user")
    }
    gold = _gold_results(project)

    result = []
    for user_id in sorted(set(memberships) | set(per_user)):
        votes = per_user.get(user_id, [])
        decisions = [v for v in votes if v[2] in ("a", "b")]
        left = sum(1 for v in decisions if v[2] == "a")
        agree, comparable = _majority_agreement(votes, nominal, user_id)
        times = {a: ms for *_x, ms, a in votes if ms is not None}
        median_ms = statistics.median(times.values()) if times else None
        golds = gold.get(user_id, [])
        gold_accuracy = sum(golds) / len(golds) if golds else None
        membership = memberships.get(user_id)
        flags = []
        if median_ms is not None and len(times) >= 10 and median_ms < TOO_FAST_MEDIAN_MS:
            flags.append("too_fast")
        if (
            len(votes) >= MIN_VOTES_FOR_FLAGS
            and Counter(v[2] for v in votes).most_common(1)[0][1] / len(votes) >= ONE_KEY_SHARE
        ):
            flags.append("one_key")
        p_value = binomial_p(left, len(decisions))
        if p_value is not None and len(decisions) >= MIN_VOTES_FOR_FLAGS and p_value < POSITION_BIAS_P:
            flags.append("position_bias")
        if comparable >= MIN_VOTES_FOR_FLAGS and agree / comparable < LOW_AGREEMENT:
            flags.append("low_agreement")
        if (
            project.gold_min_accuracy is not None
            and gold_accuracy is not None
            and len(golds) >= project.gold_min_answers
            and gold_accuracy < project.gold_min_accuracy
        ):
            flags.append("gold_failing")
        result.append(
            AnnotatorQuality(
                user_id=user_id,
                username=membership.user.username if membership else str(user_id),
                votes=len(votes),
                left_share=left / len(decisions) if decisions else None,
                position_bias_p=p_value,
                majority_agreement=agree / comparable if comparable else None,
                majority_comparable=comparable,
                gold_answered=len(golds),
                gold_accuracy=gold_accuracy,
                median_time_ms=median_ms,
                paused=bool(membership and membership.paused),
                flags=flags,
            )
        )
    return result
