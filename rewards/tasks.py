"""Job handler of the rewards app (registered as "train_reward_model"): a thin bridge to services + rewards.ml."""

from __future__ import annotations


def train_reward_model(job, ctx) -> dict:
    """params: {"reward_model_id": id} (a queued version), or {"options": {...}} to create one in job.project."""
    from prefloop.jobs.context import JobCancelled
    from rewards import services
    from rewards.ml.train import TrainingStopped

    reward_model_id = job.params.get("reward_model_id")
    if reward_model_id is None:
        reward_model, _ = services.request_training(
            project=job.project,
            user=job.created_by,
            options=job.params.get("options") or {},
            trigger=job.params.get("trigger") or "job",
            enqueue=False,
        )
        reward_model_id = reward_model.pk
    ctx.log(f"training reward model {reward_model_id}")
    try:
        reward_model = services.run_training(
            reward_model_id=reward_model_id,
            job_id=job.pk,
            progress=ctx.progress,
            log=ctx.log,
            should_stop=ctx.should_stop,
        )
    except TrainingStopped as exc:
        raise JobCancelled(str(exc)) from None
    metrics = reward_model.metrics
    ctx.log(f"v{reward_model.version}: held-out accuracy {metrics.get('accuracy')}, loss {metrics.get('loss')}")
    return {
        "reward_model_id": reward_model.pk,
        "version": reward_model.version,
        "metrics": {k: metrics.get(k) for k in ("accuracy", "loss", "ece", "pairs", "train_pairs", "steps")},
    }


def import_reward_model(job, ctx) -> dict:
    """params: {"reward_model_id": id} of a queued import: score the folder on the held-out votes."""
    from rewards.imports import run_import

    reward_model = run_import(
        reward_model_id=job.params["reward_model_id"], job_id=job.pk, progress=ctx.progress, log=ctx.log
    )
    metrics = reward_model.metrics
    ctx.log(
        f"v{reward_model.version} (imported): held-out accuracy {metrics.get('accuracy')} on "
        f"{metrics.get('eval_pairs')} pairs"
    )
    return {
        "reward_model_id": reward_model.pk,
        "version": reward_model.version,
        "metrics": {k: metrics.get(k) for k in ("accuracy", "loss", "ece", "eval_pairs")},
    }
