"""Services of the on-policy loop, one module per step; a round's data flows one way:

    rounds → sampling / updates → transitions (the state machine) → the engines (training/ml/)

reads live in training/selectors.py. The public functions are re-exported here, so callers keep
`from training import services; services.start_round(...)`.
"""

from training.selectors import eval_prompts, human_win_rate, round_progress, round_prompts
from training.services.rounds import (
    RM_METRIC_KEYS,
    advance_round,
    cancel_round,
    fail_round,
    job_finished,
    maybe_advance,
    next_round_number,
    override_guard,
    reward_model_finished,
    reward_model_guard,
    reward_step_options,
    start_round,
)
from training.services.sampling import run_sampling, sampling_truncation
from training.services.updates import (
    GUARDED_METHODS,
    METRIC_KEYS,
    check_update_overrides,
    rollout_sampler,
    run_update,
    update_examples,
)

__all__ = [
    "GUARDED_METHODS",
    "METRIC_KEYS",
    "RM_METRIC_KEYS",
    "advance_round",
    "cancel_round",
    "check_update_overrides",
    "eval_prompts",
    "fail_round",
    "human_win_rate",
    "job_finished",
    "maybe_advance",
    "next_round_number",
    "override_guard",
    "reward_model_finished",
    "reward_model_guard",
    "reward_step_options",
    "rollout_sampler",
    "round_progress",
    "round_prompts",
    "run_sampling",
    "run_update",
    "sampling_truncation",
    "start_round",
    "update_examples",
]
