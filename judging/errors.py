"""Domain errors of the judging app (mapped to HTTP by the shared DRF exception handler)."""

from prefloop.core.errors import PrefloopError


class InvalidJudgeSettings(PrefloopError):
    code = "invalid_judge_settings"
    http_status = 400


class JudgeNotReady(PrefloopError):
    """The project names no judge, or its judge is not a ready checkpoint."""

    code = "judge_not_ready"
    http_status = 409
