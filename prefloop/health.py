"""`GET /healthz/`: is this worker up, and can it reach the database and the cache? For load balancers.

A middleware placed first, so the probe needs no allowed Host header, no HTTPS redirect and no
session: a balancer probing a worker by IP over plain HTTP gets 200 or 503 and a tiny JSON body
that names which dependency failed (never an error message or a trace).
"""

from __future__ import annotations

import json
import logging

from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger("prefloop.health")

PATH = "/healthz/"


def health() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        logger.exception("health check: database unreachable")
        checks["database"] = "error"
    try:
        cache.set("prefloop:healthz", 1, timeout=10)
        checks["cache"] = "ok" if cache.get("prefloop:healthz") == 1 else "error"
    except Exception:
        logger.exception("health check: cache unreachable")
        checks["cache"] = "error"
    return checks


class HealthCheckMiddleware(MiddlewareMixin):
    def process_request(self, request):
        if request.path != PATH or request.method not in ("GET", "HEAD"):
            return None
        checks = health()
        ok = all(v == "ok" for v in checks.values())
        response = HttpResponse(
            json.dumps({"status": "ok" if ok else "error", **checks}),
            status=200 if ok else 503,
            content_type="application/json",
        )
        response["Cache-Control"] = "no-store"
        return response
