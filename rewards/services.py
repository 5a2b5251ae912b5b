"""Writes of the rewards app: request a training run, run it, mark a version current, score completions.

torch is imported only inside `run_training` and `score_*` (through rewards.ml), never at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotate.models import Comparison, Completion, Project, User
from prefloop.core.json_safe import json_safe
from prefloop.limits import OutOfBounds, check_limits, field_error
from rewards.errors import InvalidTrainingOptions, NotFound, NoTrainingData, RewardModelNotReady, TooManyItems
from rewards.job_kinds import TRAIN_REWARD_MODEL
from rewards.ml.config import RewardTrainConfig
from rewards.ml.data import PreferencePair
from rewards.models import RetrainTrigger, RewardModel, RewardSettings

logger = logging.getLogger(__name__)

MAX_SCORE_ITEMS = 256
MAX_SNAPSHOT_IDS = 20_000  # more pair ids than this are stored as their sha256 only
MAX_CURVE_POINTS = 500
DATA_KEYS = (
    "rounds",
    "since",
    "until",
    "min_agreement",
    "annotators",
    "aspect",
    "rule",
    "replay_pairs",
    "max_new_pairs",
    "warm_start",
)
RULES = ("majority", "bt", "unanimous")
MAX_REPLAY_PAIRS = 50_000  # bounded retraining: older pairs replayed beside the new round's
MAX_NEW_PAIRS = 50_000
HELD_OUT_METHOD = "sha256(salt:prompt_id) / 2^64 < fraction"


# --- options ---------------------------------------------------------------------------------
def split_options(options: dict) -> tuple[dict, dict]:
    """Posted options → (RewardTrainConfig fields, data filters); unknown keys are an error."""
    config_keys = {f.name for f in fields(RewardTrainConfig)}
    unknown = sorted(set(options) - config_keys - set(DATA_KEYS))
    if unknown:
        raise InvalidTrainingOptions(f"unknown options: {unknown}")
    return {k: v for k, v in options.items() if k in config_keys}, {k: v for k, v in options.items() if k in DATA_KEYS}


def model_roots() -> list[Path]:
    """Folders a researcher may name a base model from (PREFLOOP_MODEL_ROOTS, as the training app)."""
    roots = getattr(settings, "PREFLOOP_MODEL_ROOTS", None) or [Path(settings.VAR_DIR) / "models"]
    return [Path(r).resolve() for r in roots]


def check_base_model(name: str) -> str:
    """A base model is a built-in alias or a local folder inside PREFLOOP_MODEL_ROOTS with safetensors
    weights: never a URL or hub id (nothing is fetched), never a path that leaves the roots
    (`..`, absolute elsewhere, a symlink out), never a folder holding pickle weights."""
    from rewards.ml.artifact import BASE_MODEL_ALIASES, UnsafeArtifact, check_safe

    text = str(name or "").strip()
    if text in BASE_MODEL_ALIASES:
        return text
    if "://" in text or text.lower().startswith(("http:", "https:", "hf:", "s3:")):
        raise InvalidTrainingOptions("base_model: URLs are not accepted; nothing is downloaded")
    path = Path(text)
    if not path.is_absolute():
        raise InvalidTrainingOptions(f"base_model must be one of {list(BASE_MODEL_ALIASES)} or an absolute folder path")
    resolved = path.resolve()  # follows symlinks: a link inside a root that points out is outside
    roots = model_roots()
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise InvalidTrainingOptions("base_model must be inside one of the folders of PREFLOOP_MODEL_ROOTS")
    if resolved.is_dir():
        try:
            check_safe(resolved)
        except UnsafeArtifact as exc:
            raise InvalidTrainingOptions(f"base_model: {exc}") from None
    return text


def _validated(project: Project, options: dict, *, now: datetime) -> tuple[RewardTrainConfig, dict]:
    train, data = split_options(options)
    try:
        config = RewardTrainConfig.from_dict(train)
        check_limits(config.as_dict(), scope="reward")  # 1e30 steps passes the config's own checks
    except OutOfBounds as exc:
        raise field_error(InvalidTrainingOptions, exc) from None
    except (TypeError, ValueError) as exc:
        raise InvalidTrainingOptions(str(exc)) from None
    check_base_model(config.base_model)
    filters: dict = {"rule": data.get("rule") or "majority"}
    if filters["rule"] not in RULES:
        raise InvalidTrainingOptions(f"rule must be one of {RULES}")
    if data.get("rounds") is not None:
        try:
            filters["rounds"] = sorted({int(r) for r in data["rounds"]})
        except (TypeError, ValueError):
            raise InvalidTrainingOptions("rounds must be a list of integers") from None
    for key in ("since", "until"):
        if data.get(key):
            value = data[key] if isinstance(data[key], datetime) else parse_datetime(str(data[key]))
            if value is None:
                raise InvalidTrainingOptions(f"{key} must be an ISO date-time")
            filters[key] = value.isoformat()
    # Votes cast after the request are not part of this version: the snapshot is reproducible.
    filters.setdefault("until", now.isoformat())
    if data.get("min_agreement") is not None:
        try:
            filters["min_agreement"] = float(data["min_agreement"])
        except (TypeError, ValueError):
            raise InvalidTrainingOptions("min_agreement must be a number") from None
    if data.get("annotators"):
        filters["annotators"] = [str(a) for a in data["annotators"]]
    filters.update(_bounded_options(data, rounds=filters.get("rounds")))
    filters["aspect"] = data.get("aspect") or project.aspect_names[0]
    if filters["aspect"] not in project.aspect_names:
        raise InvalidTrainingOptions(f"aspect must be one of {project.aspect_names}")
    return config, filters


def _bounded_options(data: dict, *, rounds) -> dict:
    """replay_pairs / max_new_pairs (with `rounds`: the new votes) and warm_start, checked and bounded."""
    out: dict = {}
    for key, limit in (("replay_pairs", MAX_REPLAY_PAIRS), ("max_new_pairs", MAX_NEW_PAIRS)):
        if data.get(key) is None:
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise InvalidTrainingOptions(f"{key} must be an integer between 0 and {limit}, got {value!r}")
        if rounds is None:
            raise InvalidTrainingOptions(f"{key} needs rounds (the new round's votes that the replay goes beside)")
        out[key] = value
    if data.get("warm_start") is not None:
        if not isinstance(data["warm_start"], bool):
            raise InvalidTrainingOptions(f"warm_start must be true or false, got {data['warm_start']!r}")
        out["warm_start"] = data["warm_start"]
    return out


def validate_options(*, project: Project, options: dict) -> None:
    """Raise InvalidTrainingOptions now for options a later request_training would refuse (writes nothing)."""
    found = RewardSettings.objects.filter(project=project).first()
    _validated(project, {**(found.default_options if found else {}), **(options or {})}, now=timezone.now())


def reward_settings(project: Project) -> RewardSettings:
    found, _ = RewardSettings.objects.get_or_create(project=project)
    return found


def update_reward_settings(
    *, project: Project, auto_retrain: bool | None = None, default_options: dict | None = None
) -> RewardSettings:
    if default_options is not None:  # validated before anything is written, even the settings row
        _validated(project, default_options, now=timezone.now())
    found = reward_settings(project)
    if default_options is not None:
        found.default_options = default_options
    if auto_retrain is not None:
        found.auto_retrain = auto_retrain
    found.save()
    return found


# --- request and run training ----------------------------------------------------------------
def request_training(
    *,
    project: Project,
    user: User | None = None,
    options: dict | None = None,
    trigger: str = "manual",
    enqueue: bool = True,
):
    """Create the next version (queued) and, with enqueue, its training job. Returns (version, job or None).

    Options are the project's default options overridden by `options`; the parent is the
    current version (lineage: what this one is meant to replace).
    """
    stored = RewardSettings.objects.filter(project=project).values_list("default_options", flat=True).first()
    merged = {**(stored or {}), **(options or {})}
    config, filters = _validated(project, merged, now=timezone.now())
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # serialises version numbers
        version = (RewardModel.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
        reward_model = RewardModel.objects.create(
            project=project,
            version=version,
            base_model=config.base_model,
            options=config.as_dict(),
            data_snapshot={"filters": filters, "ties": config.ties},
            parent=RewardModel.objects.filter(project=project, is_current=True).first(),
            trigger=trigger,
            created_by=creator,
        )
        job = None
        if enqueue:
            from prefloop.jobs.services import enqueue_job

            job = enqueue_job(
                kind=TRAIN_REWARD_MODEL, params={"reward_model_id": reward_model.pk}, project=project, user=creator
            )
            reward_model.job_id = job.pk
            reward_model.save(update_fields=["job_id"])
    return reward_model, job


def _export_filters(filters: dict):
    from annotate.export.rows import ExportFilters

    return ExportFilters(
        rounds=tuple(filters["rounds"]) if filters.get("rounds") is not None else None,
        since=parse_datetime(filters["since"]) if filters.get("since") else None,
        until=parse_datetime(filters["until"]) if filters.get("until") else None,
        min_agreement=filters.get("min_agreement"),
        annotators=tuple(filters["annotators"]) if filters.get("annotators") else None,
        aspect=filters.get("aspect"),
    )


def training_pairs(project: Project, *, filters: dict, ties: str) -> tuple[list[PreferencePair], dict]:
    """The snapshot's pairs from annotate's aggregated rows, and the export statistics.

    Ties and both-bad pairs come as (response a, response b, tie=True) when ties="equal";
    a margin is the pair's mean vote strength divided by the project's strength scale (0..1).
    """
    from annotate.export.rows import ExportOptions, ExportStats
    from annotate.selectors import conversations_by_id, preference_pairs

    stats = ExportStats()
    options = ExportOptions(rule=filters.get("rule", "majority"), ties="label" if ties == "equal" else "drop")
    scale = project.strength_scale or 0
    pairs = []
    rows = list(preference_pairs(project, filters=_export_filters(filters), options=options, stats=stats))
    # The conversation each prompt is rendered from (its turns, the project's system prompt).
    conversations = conversations_by_id(project, [row["prompt_id"] for row in rows])
    for row in rows:
        tie = row["label"] in ("tie", "both_bad")
        chosen, rejected = (row["response_a"], row["response_b"]) if tie else (row["chosen"], row["rejected"])
        margin = (row["strength"] or 0) / scale if scale and not tie else 0.0
        pairs.append(
            PreferencePair(
                prompt=row["prompt"],
                chosen=chosen or "",
                rejected=rejected or "",
                tie=tie,
                margin=margin,
                category=row.get("category") or "",
                group=str(row["prompt_id"]),
                pair_id=row["pair_id"],
                messages=tuple(conversations.get(row["prompt_id"], ())),
                round=row.get("round"),
            )
        )
    return pairs, stats.as_dict()


def snapshot_of(pairs: list[PreferencePair]) -> dict:
    """Pair ids (or only their digest when many) and a sha256 over ids, labels, margins and texts."""
    digest = hashlib.sha256()
    for p in pairs:
        digest.update(json.dumps([p.pair_id, p.tie, p.margin, p.prompt, p.chosen, p.rejected]).encode())
        digest.update(b"\n")
    snapshot = {"pairs": len(pairs), "ties": sum(p.tie for p in pairs), "sha256": digest.hexdigest()}
    if len(pairs) <= MAX_SNAPSHOT_IDS:
        snapshot["pair_ids"] = [p.pair_id for p in pairs]
    return snapshot


def thin_curve(points: list[dict], limit: int = MAX_CURVE_POINTS) -> list[dict]:
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def artifact_dir(reward_model: RewardModel) -> Path:
    root = Path(getattr(settings, "PREFLOOP_REWARD_MODEL_DIR", Path(settings.VAR_DIR) / "reward-models"))
    return root / f"project-{reward_model.project_id}" / f"v{reward_model.version}"


def run_training(
    *,
    reward_model_id: int,
    job_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RewardModel:
    """Train the queued version: snapshot its data, run the engine, store metrics and artifact.

    The version is `ready` only after its artifact folder is completely written (save_artifact
    renames a finished folder into place); any exception leaves it `failed` with the error.
    """
    now = timezone.now()
    claimed = RewardModel.objects.filter(
        pk=reward_model_id, status__in=[RewardModel.Status.QUEUED, RewardModel.Status.TRAINING]
    ).update(status=RewardModel.Status.TRAINING, started_at=now, job_id=job_id, error="")
    reward_model = RewardModel.objects.select_related("project").get(pk=reward_model_id)
    if not claimed:
        raise RewardModelNotReady(f"version {reward_model.version} is {reward_model.status}, not queued")
    try:
        from rewards.ml.train import train_reward_model

        config = RewardTrainConfig.from_dict(reward_model.options)
        check_base_model(config.base_model)  # again: the folder may have changed since the request
        snapshot = dict(reward_model.data_snapshot)
        split = held_out_split(reward_model.project, fraction=config.eval_fraction, version=reward_model.version)
        train, held_out, stats, selection = version_pairs(reward_model, config=config, split=split)
        warm = _warm_start(reward_model, config) if snapshot["filters"].get("warm_start") else None
        snapshot.update(
            snapshot_of(train + held_out),
            export_stats=stats,
            selection=selection,
            split={
                **split,
                "requested_eval_fraction": config.eval_fraction,
                "train": len(train),
                "held_out": len(held_out),
            },
            warm_start=warm["record"] if warm else None,
        )
        RewardModel.objects.filter(pk=reward_model.pk).update(data_snapshot=json_safe(snapshot))
        folder = artifact_dir(reward_model)
        if folder.exists():  # left by an attempt that died before recording it; never a ready version's
            shutil.rmtree(folder)
        if log and warm:
            log(f"warm start from {warm['record']['from']}" if warm["model"] is not None else warm["record"]["note"])
        result = train_reward_model(
            config,
            train,
            held_out,
            output_dir=folder,
            progress=progress,
            log=log,
            should_stop=should_stop,
            artifact_meta={"project_id": reward_model.project_id, "version": reward_model.version},
            model=warm["model"] if warm else None,
            tokenizer=warm["tokenizer"] if warm else None,
        )
        metrics = json_safe(result.metrics)
        curves = json_safe({name: thin_curve(points) for name, points in result.curves.items()})
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.READY,
            metrics=metrics,
            curves=curves,
            artifact_path=str(result.artifact_path),
            finished_at=timezone.now(),
        )
    except BaseException as exc:
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=timezone.now()
        )
        raise
    reward_model.refresh_from_db()
    return reward_model


# --- data of one version: the fixed held-out split, bounded selection, warm start -------------
def held_out_split(project: Project, *, fraction: float, version: int | None = None) -> dict:
    """The project's held-out split, fixed by its first training run (that run's eval_fraction).

    A prompt is held out iff sha256(salt:prompt_id) / 2^64 < fraction: later versions (and
    warm-started ones) never train on a prompt an earlier one was measured on, and every version's
    held-out metrics cover the same prompts (plus the new ones that fall on the held-out side).
    """
    with transaction.atomic():
        found, _ = RewardSettings.objects.select_for_update().get_or_create(project=project)
        if not found.held_out_split:
            found.held_out_split = {
                "method": HELD_OUT_METHOD,
                "salt": f"project-{project.pk}",
                "fraction": fraction,
                "fixed_by_version": version,
            }
            found.save(update_fields=["held_out_split"])
    return dict(found.held_out_split)


def version_pairs(reward_model: RewardModel, *, config: RewardTrainConfig, split: dict):
    """(train pairs, held-out pairs, export stats, selection record) of a version.

    Held-out: the project's held-out split of every pair the filters allow in any round (the same
    set for every version). Train: the train side of the filters' pairs; with `replay_pairs`, the
    new rounds' pairs (at most max_new_pairs) plus a seeded sample of up to replay_pairs older ones.
    """
    from rewards.ml.data import split_pairs

    filters = reward_model.data_snapshot["filters"]
    rounds = filters.get("rounds")
    everything, stats = training_pairs(
        reward_model.project, filters={k: v for k, v in filters.items() if k != "rounds"}, ties=config.ties
    )
    if config.ties == "drop":
        everything = [p for p in everything if not p.tie]
    train_side, held_out = split_pairs(everything, eval_fraction=split["fraction"], seed=split["salt"])
    selected = train_side if rounds is None else [p for p in train_side if p.round in set(rounds)]
    if not selected:
        raise NoTrainingData("no preference pairs match this version's data filters")
    selection = {"rounds": rounds, "new_pairs": len(selected)}
    if rounds is not None and filters.get("replay_pairs") is not None:
        salt = f"{reward_model.project_id}:{reward_model.version}"
        new = _seeded_sample(selected, filters.get("max_new_pairs"), salt=f"new:{salt}")
        older = [p for p in train_side if p.round not in set(rounds)]
        replay = _seeded_sample(older, filters["replay_pairs"], salt=f"replay:{salt}")
        selected = new + replay
        selection.update(
            new_pairs=len(new),
            replay_pairs=len(replay),
            older_pairs_available=len(older),
            method="new rounds' pairs + sha256(replay salt:pair_id) sample of older train-side pairs",
        )
    return selected, held_out, stats, selection


def _seeded_sample(pairs: list[PreferencePair], limit: int | None, *, salt: str) -> list[PreferencePair]:
    """At most `limit` pairs, chosen by a salted hash of their ids (stable, independent of order)."""
    if limit is None or len(pairs) <= limit:
        return list(pairs)
    rank = sorted(pairs, key=lambda p: hashlib.sha256(f"{salt}:{p.pair_id}".encode()).digest())
    return rank[:limit]


def _warm_start(reward_model: RewardModel, config: RewardTrainConfig) -> dict:
    """The parent version's weights to continue from, or a note why training starts from the base model."""
    parent = reward_model.parent
    if parent is None or parent.status != RewardModel.Status.READY:
        return {
            "model": None,
            "tokenizer": None,
            "record": {"from": None, "note": "no ready previous version: trained from the base model"},
        }
    if parent.base_model != config.base_model:
        return {
            "model": None,
            "tokenizer": None,
            "record": {
                "from": None,
                "note": f"the previous version v{parent.version} "
                f"has another base model: trained from {config.base_model}",
            },
        }
    from rewards.ml.artifact import load_artifact

    model, tokenizer, _ = load_artifact(Path(parent.artifact_path))
    return {
        "model": model,
        "tokenizer": tokenizer,
        "record": {"from": f"v{parent.version}", "reward_model_id": parent.pk},
    }


# --- registry --------------------------------------------------------------------------------
def mark_current(*, reward_model: RewardModel) -> RewardModel:
    """Make this ready version the project's current one (exactly one; a DB constraint holds it)."""
    if reward_model.status != RewardModel.Status.READY:
        raise RewardModelNotReady(
            f"version {reward_model.version} is {reward_model.status}; only a ready version can be current"
        )
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=reward_model.project_id).first()
        RewardModel.objects.filter(project_id=reward_model.project_id, is_current=True).exclude(
            pk=reward_model.pk
        ).update(is_current=False)
        RewardModel.objects.filter(pk=reward_model.pk).update(is_current=True)
    reward_model.refresh_from_db()
    return reward_model


# --- scoring ---------------------------------------------------------------------------------
_scorers: OrderedDict[str, object] = OrderedDict()
_scorers_lock = threading.Lock()
SCORER_CACHE = 2  # loaded models kept per process


def _scorer(reward_model: RewardModel):
    from rewards.ml.score import RewardScorer

    with _scorers_lock:
        key = reward_model.artifact_path
        if key not in _scorers:
            try:
                _scorers[key] = RewardScorer(Path(key))
            except FileNotFoundError as exc:  # a ready version whose folder was removed or moved
                raise RewardModelNotReady(f"version {reward_model.version}: its files are missing ({exc})") from None
            while len(_scorers) > SCORER_CACHE:
                _scorers.popitem(last=False)
        _scorers.move_to_end(key)
        return _scorers[key]


def score_items(*, reward_model: RewardModel, items: list[tuple]) -> list[float]:
    """r(x, y) for (prompt, response) pairs, batched; at most MAX_SCORE_ITEMS per call.

    A prompt is a string or a conversation ({role, content} turns)."""
    if reward_model.status != RewardModel.Status.READY:
        raise RewardModelNotReady(f"version {reward_model.version} is {reward_model.status}")
    if len(items) > MAX_SCORE_ITEMS:
        raise TooManyItems(f"at most {MAX_SCORE_ITEMS} items per call, got {len(items)}")
    if not items:
        return []
    return _scorer(reward_model).score([p for p, _ in items], [r for _, r in items])


def score_completions(*, reward_model: RewardModel, completion_ids: list[int]) -> list[float]:
    """r(prompt, completion) for completions of the version's project, in the order given."""
    if len(completion_ids) > MAX_SCORE_ITEMS:
        raise TooManyItems(f"at most {MAX_SCORE_ITEMS} items per call, got {len(completion_ids)}")
    from annotate.selectors import prompt_conversations

    rows = list(
        Completion.objects.filter(pk__in=completion_ids, prompt__project_id=reward_model.project_id).select_related(
            "prompt", "prompt__project"
        )
    )
    conversations = prompt_conversations(rows[0].prompt.project, [c.prompt for c in rows]) if rows else []
    found = {c.pk: (conversation, c.text) for c, conversation in zip(rows, conversations)}
    missing = [i for i in completion_ids if i not in found]
    if missing:
        raise NotFound(f"no completions {missing[:10]} in this project")
    return score_items(reward_model=reward_model, items=[found[i] for i in completion_ids])


# --- automatic retraining --------------------------------------------------------------------
def round_is_complete(project: Project, round_number: int) -> bool:
    """Every (non-gold) comparison of the round reached its overlap target (closed ones excepted)."""
    comparisons = Comparison.objects.filter(project=project, round=round_number, gold_label="")
    return comparisons.exists() and not comparisons.filter(is_open=True, is_complete=False).exists()


def maybe_auto_retrain(*, project: Project, round_number: int):
    """Enqueue one training run for a finished round when the project asks for it; once per round.

    Returns the new version, or None when nothing was due (off, round open, already triggered).
    """
    found = RewardSettings.objects.filter(project=project, auto_retrain=True).first()
    if found is None or RetrainTrigger.objects.filter(project=project, round=round_number).exists():
        return None
    if not round_is_complete(project, round_number):
        return None
    try:
        with transaction.atomic():
            trigger = RetrainTrigger.objects.create(project=project, round=round_number)
            reward_model, _ = request_training(project=project, trigger=f"auto:round-{round_number}")
            trigger.reward_model = reward_model
            trigger.save(update_fields=["reward_model"])
    except IntegrityError:  # this round already triggered (maybe by a concurrent last vote)
        return None
    logger.info(
        "project %s: round %s complete, reward model v%s queued", project.pk, round_number, reward_model.version
    )
    return reward_model
