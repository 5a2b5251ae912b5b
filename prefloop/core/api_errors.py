"""Maps domain errors to HTTP responses: {"error": code, "detail": message, "field"?: name}.

Anything unexpected becomes a generic JSON 500 ({"error": "server_error", "detail": ...}): the
traceback goes to the log (and to Django's got_request_exception receivers), never to the client.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import got_request_exception
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from prefloop.core.errors import ImportDataError, PrefloopError, RequestTooLarge
from prefloop.request_limits import too_large_detail

logger = logging.getLogger("django.request")


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):  # a body read past DATA_UPLOAD_MAX_MEMORY_SIZE (prefloop/request_limits.py)
        exc = RequestTooLarge(too_large_detail())
    if isinstance(exc, PrefloopError):
        body: dict[str, object] = {"error": exc.code, "detail": str(exc)}
        if exc.field:  # a FieldError, or a parameter out of bounds (prefloop/limits.py)
            body["field"] = exc.field
        if isinstance(exc, ImportDataError):
            body["problems"] = [ImportDataError.format(p) for p in exc.problems[:100]]
        return Response(body, status=exc.http_status)
    if isinstance(exc, DjangoValidationError):  # a model's full_clean() or constraint check: bad input
        set_rollback()
        return Response({"error": "invalid", "detail": "; ".join(exc.messages)}, status=400)
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    request = context.get("request")
    logger.error(
        "Internal Server Error: %s", getattr(request, "path", "?"), exc_info=(type(exc), exc, exc.__traceback__)
    )
    got_request_exception.send(sender=None, request=getattr(request, "_request", request))
    set_rollback()  # like any other error: an atomic request writes nothing
    return Response({"error": "server_error", "detail": "Internal server error."}, status=500)
