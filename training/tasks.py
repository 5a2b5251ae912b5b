"""Job handlers of the training app: thin bridges from a job to training.services."""

from __future__ import annotations

from typing import Any


def _run(step, job, ctx, **kwargs) -> Any:
    from prefloop.jobs.context import JobCancelled
    from rewards.ml.train import TrainingStopped as RewardStopped
    from training.ml.results import TrainingStopped

    try:
        return step(progress=ctx.progress, log=ctx.log, should_stop=ctx.should_stop, **kwargs)
    except (TrainingStopped, RewardStopped) as exc:
        raise JobCancelled(str(exc)) from None


def sample_round(job, ctx) -> dict:
    """params: {"round_id": id} — sample, choose pairs, open labeling."""
    from training import services

    round_ = _run(services.run_sampling, job, ctx, round_id=job.params["round_id"])
    return {"round_id": round_.pk, "state": round_.state, "sampling": round_.metrics.get("sampling")}


def update_policy(job, ctx) -> dict:
    """params: {"round_id": id} — DPO / PPO / best-of-N update, evaluation, round done."""
    from training import services

    round_ = _run(services.run_update, job, ctx, round_id=job.params["round_id"], job_id=job.pk)
    return {
        "round_id": round_.pk,
        "state": round_.state,
        "policy_id": round_.new_policy_id,
        "eval": round_.metrics.get("eval"),
    }


def build_policy(job, ctx) -> dict:
    """params: {"policy_id": id} — build and SFT the demo policy."""
    from training import policies

    policy = _run(policies.run_build_policy, job, ctx, policy_id=job.params["policy_id"], job_id=job.pk)
    return {"policy_id": policy.pk, "version": policy.version, "metrics": policy.metrics}
