"""Maps domain errors to HTTP responses: {"error": code, "detail": message, "field"?: name}."""
from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.errors import AnnotateError, ImportDataError, InvalidVote


def exception_handler(exc, context):
    if isinstance(exc, AnnotateError):
        body = {"error": exc.code, "detail": str(exc)}
        if isinstance(exc, InvalidVote):
            body["field"] = exc.field
        if isinstance(exc, ImportDataError):
            body["problems"] = [ImportDataError.format(p) for p in exc.problems[:100]]
        return Response(body, status=exc.http_status)
    return drf_exception_handler(exc, context)
