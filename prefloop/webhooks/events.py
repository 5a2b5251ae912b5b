"""The events a webhook may subscribe to (docs/webhooks.md lists their payloads)."""

from __future__ import annotations

ROUND_STATE_CHANGED = "round.state_changed"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
REWARD_MODEL_READY = "reward_model.ready"
VOTES_MILESTONE = "labeling.votes_milestone"
ROUND_LABELLED = "labeling.round_labelled"
PING = "ping"  # the page's and the API's "send a test"; always delivered, never subscribed to

EVENTS: dict[str, str] = {
    ROUND_STATE_CHANGED: "A loop round was started or moved to a new state (labeling, reward model, done, failed…)",
    JOB_SUCCEEDED: "A background job of the project succeeded (training, sampling, import, export…)",
    JOB_FAILED: "A background job of the project failed (or its worker died)",
    JOB_CANCELLED: "A background job of the project was cancelled",
    REWARD_MODEL_READY: "A reward-model version finished training (or was imported) and is ready",
    VOTES_MILESTONE: "Every N completed judgements in the project (N is set per webhook)",
    ROUND_LABELLED: "Every comparison of a loop round has all its votes",
}
LABELING_EVENTS = (VOTES_MILESTONE, ROUND_LABELLED)
