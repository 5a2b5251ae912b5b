"""Domain errors every app raises; prefloop/core/api_errors.py maps each to one HTTP status."""

from __future__ import annotations


class PrefloopError(Exception):
    """Base class: `code` is a stable machine-readable name, the message is for people."""

    code = "error"
    http_status = 400
    field: str = ""  # the request field at fault, when there is one: {"field": "votes[0].choice"}


class NotFound(PrefloopError):
    # Also used for objects that exist but belong to someone else: never leak existence.
    code = "not_found"
    http_status = 404


class AssignmentExpired(PrefloopError):
    code = "assignment_expired"
    http_status = 410


class AlreadyVoted(PrefloopError):
    code = "already_voted"
    http_status = 409


class AnnotatorPaused(PrefloopError):
    # Paused in this project (failed gold checks, or by a researcher): held leases cannot be voted on.
    # 409, not 403: the page's outbox reads 401/403 as "signed out" and retries; this it reports.
    code = "paused"
    http_status = 409


class IdempotencyKeyReused(PrefloopError):
    code = "idempotency_key_reused"
    http_status = 409


class FieldError(PrefloopError):
    """Bad input in one named field; the message starts with the field name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidVote(FieldError):
    code = "invalid_vote"
    http_status = 400


class InvalidUpload(FieldError):
    """An uploaded file the server will not take (missing, larger than PREFLOOP_MAX_UPLOAD_BYTES)."""

    code = "invalid_upload"
    http_status = 400


class InvalidUsername(FieldError):
    """A user name that names no active user."""

    code = "invalid_username"
    http_status = 400


class InvalidSetting(FieldError):
    """A project setting, gold label or import option outside its allowed values."""

    code = "invalid_setting"
    http_status = 400


class InvalidBody(FieldError):
    """A request body the API will not read: nested too deeply, absurd numbers, broken text."""

    code = "invalid_body"
    http_status = 400


class RequestTooLarge(PrefloopError):
    code = "request_too_large"
    http_status = 413


class ImportDataError(PrefloopError):
    """A problem in an import file. Nothing was written when this is raised."""

    code = "import_error"
    http_status = 400

    def __init__(self, problems: list[tuple[str, int | None, str | None, str]]):
        # problems: (file, line or None, field or None, message)
        self.problems = problems
        shown = "\n".join(self.format(p) for p in problems[:20])
        more = f"\n... and {len(problems) - 20} more problems" if len(problems) > 20 else ""
        super().__init__(shown + more)

    @staticmethod
    def format(problem: tuple[str, int | None, str | None, str]) -> str:
        file, line, field, message = problem
        where = file + (f":{line}" if line is not None else "")
        return f"{where}: " + (f"field '{field}': " if field else "") + message


class EditRefused(PrefloopError):
    """A vote edit outside its window, or of a vote that is not the annotator's last one."""

    code = "edit_refused"
    http_status = 409
