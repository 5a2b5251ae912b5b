"""Domain errors of the rewards app; annotate's API error handler maps each to one HTTP status."""
from annotate.errors import AnnotateError, NotFound  # noqa: F401  (NotFound re-exported for callers)


class RewardModelNotReady(AnnotateError):
    code = "reward_model_not_ready"
    http_status = 409


class InvalidTrainingOptions(AnnotateError):
    code = "invalid_training_options"
    http_status = 400


class NoTrainingData(AnnotateError):
    code = "no_training_data"
    http_status = 400


class TooManyItems(AnnotateError):
    code = "too_many_items"
    http_status = 400
