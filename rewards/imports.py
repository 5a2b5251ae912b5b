"""Bringing a reward model: register a sequence-classification folder trained elsewhere as a version of the project's.

`register_reward_model` checks the folder (inside PREFLOOP_MODEL_ROOTS, a *ForSequenceClassification
architecture with one output, a tokenizer, safetensors only: rewards.ml.folders) and queues the
version with an import job; `run_import` (the job) scores the project's held-out votes with it,
the same split by prompt as trained versions use, so their metrics compare. Once ready, the
version is like a trained one: it can be made current (pair selection, AI feedback, best-of-N,
PPO read the current version's folder) and its folder can be the `base_model` of the next
retrain (the warm start). The folder is used in place, not copied: keep it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Project, User
from rewards.errors import InvalidTrainingOptions, RewardModelNotReady
from rewards.job_kinds import IMPORT_REWARD_MODEL
from rewards.ml.config import RewardTrainConfig
from rewards.models import RewardModel

logger = logging.getLogger(__name__)

IMPORT_TRIGGER = "import"
MAX_PATH = 300  # RewardModel.base_model's length


def check_reward_model_folder(model_path: str):
    """(folder, report) for a reward-model folder a researcher names; refusals never echo server paths."""
    from rewards.ml.folders import ModelFolderError, inspect_model_folder, path_text_problem
    from rewards.services import model_roots

    text = str(model_path or "").strip()
    if not text:
        raise InvalidTrainingOptions("model_path is required")
    if len(text) > MAX_PATH:
        raise InvalidTrainingOptions(f"model_path must be at most {MAX_PATH} characters")
    if problem := path_text_problem(text):
        raise InvalidTrainingOptions(f"model_path {problem}")
    if "://" in text or text.lower().startswith(("hf:", "hub:", "s3:")):
        raise InvalidTrainingOptions("model_path: URLs and hub ids are not accepted; nothing is downloaded")
    path = Path(text)
    if not path.is_absolute():
        raise InvalidTrainingOptions("model_path must be an absolute folder path")
    resolved = path.resolve()
    if not any(resolved == root or root in resolved.parents for root in model_roots()):
        raise InvalidTrainingOptions("model_path must be inside one of the folders of PREFLOOP_MODEL_ROOTS")
    try:
        report = inspect_model_folder(resolved, kind="sequence-classification")
    except ModelFolderError as exc:
        raise InvalidTrainingOptions(f"model_path: {exc}") from None
    return resolved, report


def register_reward_model(
    *, project: Project, model_path: str, user: User | None = None, name: str = "", enqueue: bool = True
):
    """The next version from an existing folder, queued for scoring on the held-out votes. (version, job or None)."""
    from rewards.models import RewardSettings
    from rewards.services import _validated

    folder, report = check_reward_model_folder(model_path)
    # The held-out split and data filters of the project's default options, so metrics compare with trained versions.
    stored = RewardSettings.objects.filter(project=project).values_list("default_options", flat=True).first()
    config, filters = _validated(project, {**(stored or {}), "base_model": str(folder)}, now=timezone.now())
    creator = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        version = (RewardModel.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
        reward_model = RewardModel.objects.create(
            project=project,
            version=version,
            base_model=str(folder),
            options=config.as_dict(),
            data_snapshot={
                "filters": filters,
                "ties": config.ties,
                "imported": {"name": name[:200], **report.as_dict()},
            },
            parent=RewardModel.objects.filter(project=project, is_current=True).first(),
            trigger=IMPORT_TRIGGER,
            created_by=creator,
        )
        job = None
        if enqueue:
            from prefloop.jobs.services import enqueue_job

            job = enqueue_job(
                kind=IMPORT_REWARD_MODEL, params={"reward_model_id": reward_model.pk}, project=project, user=creator
            )
            RewardModel.objects.filter(pk=reward_model.pk).update(job_id=job.pk)
            reward_model.job_id = job.pk
    return reward_model, job


def held_out_pairs(project: Project, *, filters: dict, config: RewardTrainConfig):
    from rewards.ml.data import split_pairs
    from rewards.services import training_pairs

    pairs, stats = training_pairs(project, filters=filters, ties=config.ties)
    if config.ties == "drop":
        pairs = [p for p in pairs if not p.tie]
    train, held_out = split_pairs(pairs, eval_fraction=config.eval_fraction, seed=config.seed)
    return train, held_out, stats


def score_pairs(
    folder: Path, pairs, *, batch_size: int = 32, progress: Callable[[float, str], None] | None = None
) -> dict:
    """Held-out metrics (rewards.ml.metrics.reward_metrics) of the folder's model over `pairs`."""
    from rewards.ml.metrics import reward_metrics
    from rewards.ml.score import RewardScorer

    scorer = RewardScorer(folder, batch_size=batch_size)
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        chosen += scorer.score([p.prompt for p in chunk], [p.chosen for p in chunk])
        rejected += scorer.score([p.prompt for p in chunk], [p.rejected for p in chunk])
        if progress:
            done = min(start + batch_size, len(pairs))
            progress(done / len(pairs), f"scored {done}/{len(pairs)} held-out pairs")
    return reward_metrics(chosen, rejected, ties=[p.tie for p in pairs], categories=[p.category for p in pairs])


def run_import(
    *,
    reward_model_id: int,
    job_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RewardModel:
    """Score an imported version on the held-out votes; ready with those metrics, or failed with the reason."""
    from prefloop.core.json_safe import json_safe
    from rewards.services import snapshot_of

    claimed = RewardModel.objects.filter(
        pk=reward_model_id, trigger=IMPORT_TRIGGER, status__in=[RewardModel.Status.QUEUED, RewardModel.Status.TRAINING]
    ).update(status=RewardModel.Status.TRAINING, started_at=timezone.now(), job_id=job_id, error="")
    reward_model = RewardModel.objects.select_related("project").get(pk=reward_model_id)
    if not claimed:
        raise RewardModelNotReady(
            f"version {reward_model.version} is {reward_model.status} ({reward_model.trigger}), not a queued import"
        )
    try:
        folder, report = check_reward_model_folder(reward_model.base_model)  # again: it may have changed since
        config = RewardTrainConfig.from_dict(reward_model.options)
        snapshot = dict(reward_model.data_snapshot)
        train, held_out, stats = held_out_pairs(reward_model.project, filters=snapshot["filters"], config=config)
        snapshot.update(
            held_out=snapshot_of(held_out),
            export_stats=stats,
            split={
                "method": "sha256(seed:prompt_id) < eval_fraction",
                "seed": config.seed,
                "eval_fraction": config.eval_fraction,
                "train": len(train),
                "held_out": len(held_out),
            },
        )
        if log:
            log(f"imported {report.summary()}; scoring {len(held_out)} held-out pairs")
        metrics = score_pairs(folder, held_out, progress=progress) if held_out else {}
        metrics.update(
            eval_pairs=len(held_out), train_pairs=0, parameters=report.parameters, architecture=report.architecture
        )
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.READY,
            metrics=json_safe(metrics),
            data_snapshot=json_safe(snapshot),
            artifact_path=str(folder),
            finished_at=timezone.now(),
        )
    except BaseException as exc:
        RewardModel.objects.filter(pk=reward_model.pk).update(
            status=RewardModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=timezone.now()
        )
        raise
    reward_model.refresh_from_db()
    return reward_model
