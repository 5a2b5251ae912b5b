"""Signal receivers of the training app: rounds move on when their jobs finish or their votes are in."""

from __future__ import annotations

import logging

from rewards.job_kinds import TRAIN_REWARD_MODEL

logger = logging.getLogger(__name__)


def on_job_finished(sender, job, **kwargs) -> None:
    if not (job.kind.startswith("training.") or job.kind == TRAIN_REWARD_MODEL):
        return
    from training.services import job_finished

    job_finished(job=job)


def advance_when_round_complete(sender, assignment, **kwargs) -> None:
    """vote_recorded (after commit) → a labeling round whose comparisons are all complete moves on.
    Round 0 is imported data, never a loop round: no query on those votes."""
    try:
        comparison = assignment.comparison
        if not comparison.round:
            return
        # Only a vote that completed its comparison can complete the round.
        comparison.refresh_from_db(fields=["is_complete"])
        if not comparison.is_complete:
            return
        from training.services import maybe_advance

        maybe_advance(project_id=assignment.project_id, round_number=comparison.round)
    except Exception:  # never raised into the vote request
        logger.exception("round advance check failed for assignment %s", getattr(assignment, "pk", None))
