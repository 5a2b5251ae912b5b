"""Domain errors of the rewards app; annotate's API error handler maps each to one HTTP status."""

from prefloop.core.errors import NotFound, PrefloopError  # noqa: F401  (NotFound re-exported for callers)


class RewardModelNotReady(PrefloopError):
    code = "reward_model_not_ready"
    http_status = 409


class InvalidTrainingOptions(PrefloopError):
    code = "invalid_training_options"
    http_status = 400


class NoTrainingData(PrefloopError):
    code = "no_training_data"
    http_status = 400


class TooManyItems(PrefloopError):
    code = "too_many_items"
    http_status = 400
