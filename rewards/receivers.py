"""Signal receivers: automatic retraining when a round's comparisons reach their overlap target."""

from __future__ import annotations

import logging

from rewards.job_kinds import IMPORT_REWARD_MODEL, TRAIN_REWARD_MODEL

logger = logging.getLogger(__name__)


def auto_retrain_fact() -> str:
    """annotate.signals.VOTE_FACTS["auto_retrain"]: the vote's statement answers _auto_retrain_on."""
    from rewards.models import RewardSettings

    return (
        f"EXISTS (SELECT 1 FROM {RewardSettings._meta.db_table} r WHERE r.project_id = a.project_id AND r.auto_retrain)"
    )


def retrain_when_round_completes(sender, assignment, facts=None, **kwargs) -> None:
    """annotate.signals.vote_recorded → maybe_auto_retrain for the voted comparison's round.

    Runs after the vote committed; a failure here is logged, never raised into the vote request.
    """
    from rewards.services import maybe_auto_retrain

    try:
        # The cheap check first: on every vote, and auto-retrain is usually off. On PostgreSQL the
        # vote's own statement has answered it (facts); elsewhere one query.
        facts = facts or {}
        on = facts["auto_retrain"] if "auto_retrain" in facts else _auto_retrain_on(assignment.project_id)
        if not on:
            return
        maybe_auto_retrain(project=assignment.project, round_number=assignment.comparison.round)
    except Exception:
        logger.exception("auto-retrain check failed for assignment %s", getattr(assignment, "pk", None))


def _auto_retrain_on(project_id: int) -> bool:
    """RewardSettings.objects.filter(project_id=.., auto_retrain=True).exists(), in raw SQL: it runs
    after every vote, and building the ORM query cost more CPU than the lookup (docs/vote-loop.md)."""
    from django.db import connection

    from rewards.models import RewardSettings

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {RewardSettings._meta.db_table} WHERE project_id = %s AND auto_retrain LIMIT 1",
            [project_id],
        )
        return cursor.fetchone() is not None


def fail_versions_of_failed_jobs(sender, job, **kwargs) -> None:
    """prefloop.jobs.signals.job_finished → a version whose training job ended without success
    (failed, cancelled, or reaped after a kill -9) is marked failed, never left "training"."""
    if job.kind not in (TRAIN_REWARD_MODEL, IMPORT_REWARD_MODEL) or job.status == "succeeded":
        return
    from rewards.models import RewardModel

    RewardModel.objects.filter(
        job_id=job.pk, status__in=[RewardModel.Status.QUEUED, RewardModel.Status.TRAINING]
    ).update(status=RewardModel.Status.FAILED, error=f"training job {job.pk} {job.status}: {job.error[-500:]}")
