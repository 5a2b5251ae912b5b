"""Bodies over PREFLOOP_MAX_REQUEST_BYTES answer 413 `request_too_large`, on the API and on pages.

Two lines of defence. The middleware refuses a declared Content-Length over the limit before
anything reads the body, whatever its type (multipart file parts included, which Django's
DATA_UPLOAD_MAX_MEMORY_SIZE leaves out); a view with `own_body_limit = True` (the import endpoint,
PREFLOOP_MAX_UPLOAD_BYTES) checks its own. A body without a declared length (chunked, on ASGI) is
caught when read: Django raises RequestDataTooBig, which the API's exception handler
(prefloop.core.api_errors) and the 400 handler below turn into the same 413.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views.defaults import bad_request as django_bad_request


def too_large_detail() -> str:
    return f"The request body is larger than {settings.PREFLOOP_MAX_REQUEST_BYTES} bytes (PREFLOOP_MAX_REQUEST_BYTES)."


def too_large_response(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "request_too_large", "detail": too_large_detail()}, status=413)
    return HttpResponse(too_large_detail(), status=413, content_type="text/plain; charset=utf-8")


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(getattr(view_func, "view_class", None), "own_body_limit", False):
            return None
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > settings.PREFLOOP_MAX_REQUEST_BYTES:
            return too_large_response(request)
        return None


def bad_request(request, exception=None):
    """handler400: Django's own page, except for a body read past the limit (413)."""
    if isinstance(exception, RequestDataTooBig):
        return too_large_response(request)
    return django_bad_request(request, exception)
