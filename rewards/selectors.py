"""Read side of the rewards app: versions, the current one, metric diffs."""

from __future__ import annotations

from django.db.models import QuerySet

from annotate.models import Membership, Project, User
from annotate.selectors import project_for_user
from rewards.errors import NotFound
from rewards.models import RewardModel

# Metrics shown in lists and diffs, with whether a higher value is better.
HEADLINE_METRICS = (
    ("accuracy", True),
    ("loss", False),
    ("ece", False),
    ("reward_mean", None),
    ("reward_std", None),
    ("margin_mean", True),
    ("pairs", None),
    ("train_pairs", None),
    ("steps", None),
    ("pairs_per_second", True),
)


def reward_models(project: Project) -> QuerySet[RewardModel]:
    return RewardModel.objects.filter(project=project).select_related("parent", "created_by").order_by("-version")


def reward_model_for_user(user: User, reward_model_id: int) -> RewardModel:
    """The version if `user` is a researcher of its project (or an admin); NotFound otherwise."""
    reward_model = RewardModel.objects.select_related("project", "parent").filter(pk=reward_model_id).first()
    if reward_model is None:
        raise NotFound("No such reward model.")
    project_for_user(user, reward_model.project_id, role=Membership.Role.RESEARCHER)
    return reward_model


def held_out_summary(reward_model: RewardModel) -> dict | None:
    """Held-out accuracy with its 95 % Wilson interval and the number of held-out pairs (None before training).

    Versions trained before the interval was stored get it computed from accuracy and pairs.
    """
    from rewards.ml.metrics import wilson_interval  # pure Python

    metrics = reward_model.metrics or {}
    accuracy, pairs = metrics.get("accuracy"), int(metrics.get("pairs") or 0)
    if accuracy is None:
        return None
    low, high = metrics.get("accuracy_ci") or wilson_interval(accuracy * pairs, pairs)
    split = (reward_model.data_snapshot or {}).get("split") or {}
    return {
        "accuracy": accuracy,
        "accuracy_ci": [low, high],
        "pairs": pairs,
        "interval": "wilson-95",
        "above_chance": low > 0.5,
        "split": {k: split.get(k) for k in ("method", "salt", "fraction") if k in split},
    }


def metrics_diff(a: RewardModel, b: RewardModel) -> list[dict]:
    """Headline metrics of two versions side by side: b − a, and whether b is better."""
    rows = []
    for name, higher_is_better in HEADLINE_METRICS:
        va, vb = a.metrics.get(name), b.metrics.get(name)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        better = None
        if delta is not None and higher_is_better is not None and delta != 0:
            better = (delta > 0) == higher_is_better
        rows.append({"metric": name, "a": va, "b": vb, "delta": delta, "b_is_better": better})
    categories = sorted(set(a.metrics.get("accuracy_by_category", {})) | set(b.metrics.get("accuracy_by_category", {})))
    for category in categories:
        va = a.metrics.get("accuracy_by_category", {}).get(category, {}).get("accuracy")
        vb = b.metrics.get("accuracy_by_category", {}).get(category, {}).get("accuracy")
        delta = vb - va if va is not None and vb is not None else None
        rows.append(
            {
                "metric": f"accuracy [{category}]",
                "a": va,
                "b": vb,
                "delta": delta,
                "b_is_better": None if not delta else delta > 0,
            }
        )
    return rows
