"""Bodies over PREFLOOP_MAX_REQUEST_BYTES answer 413 on pages too (the API maps them in annotate.api_errors).

Django raises RequestDataTooBig (a SuspiciousOperation) when a form post's body is read past
DATA_UPLOAD_MAX_MEMORY_SIZE, which its handler turns into a 400; this 400 handler says 413 instead.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views.defaults import bad_request as django_bad_request


def bad_request(request, exception=None):
    if not isinstance(exception, RequestDataTooBig):
        return django_bad_request(request, exception)
    detail = f"The request body is larger than {settings.PREFLOOP_MAX_REQUEST_BYTES} bytes (PREFLOOP_MAX_REQUEST_BYTES)."
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "request_too_large", "detail": detail}, status=413)
    return HttpResponse(detail, status=413, content_type="text/plain; charset=utf-8")
