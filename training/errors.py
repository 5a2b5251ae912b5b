"""Domain errors of the training app (mapped to HTTP by the shared DRF exception handler)."""
from annotate.errors import AnnotateError


class InvalidRoundParams(AnnotateError):
    code = "invalid_round_params"
    http_status = 400


class LoopNotReady(AnnotateError):
    """No ready policy to sample from (build or register one first)."""

    code = "loop_not_ready"
    http_status = 409


class RoundStateError(AnnotateError):
    """The round is not in a state that allows this step."""

    code = "round_state"
    http_status = 409


class InvalidModelPath(AnnotateError):
    code = "invalid_model_path"
    http_status = 400
