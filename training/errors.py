"""Domain errors of the training app (mapped to HTTP by the shared DRF exception handler)."""

from prefloop.core.errors import PrefloopError


class InvalidRoundParams(PrefloopError):
    code = "invalid_round_params"
    http_status = 400


class LoopNotReady(PrefloopError):
    """No ready policy to sample from (build or register one first)."""

    code = "loop_not_ready"
    http_status = 409


class RoundStateError(PrefloopError):
    """The round is not in a state that allows this step."""

    code = "round_state"
    http_status = 409


class InvalidModelPath(PrefloopError):
    code = "invalid_model_path"
    http_status = 400
