"""Security headers Django does not send itself: an enforcing Content-Security-Policy and friends.

Django 5.2 has no CSP support, so this middleware adds one header per response from
`settings.PREFLOOP_CSP` (directive -> sources). No page needs 'unsafe-inline' or 'unsafe-eval':
scripts and styles are static files, user JSON reaches a page only through `json_script` (a
`<script type="application/json">`, which is data, not code), and charts use SVG presentation
attributes instead of `style=`. `connect-src` names the page's own host for websockets, with
`wss:` when the request is secure, so htmx's websocket extension can reach /ws/.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.utils.deprecation import MiddlewareMixin

DEFAULT_CSP: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

# Features no prefloop page uses; denying them limits what injected content could ask for.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"


def content_security_policy(request, policy: dict[str, list[str]] | None = None, report_uri: str = "") -> str:
    """The CSP header value for this request (websocket sources follow the request's host and scheme)."""
    policy = policy if policy is not None else getattr(settings, "PREFLOOP_CSP", DEFAULT_CSP)
    parts = []
    for directive, sources in policy.items():
        sources = list(sources)
        if directive == "connect-src":
            try:
                host = request.get_host()
            except DisallowedHost:  # the error response still gets a policy
                host = ""
            if host:
                sources.append(f"{'wss' if request.is_secure() else 'ws'}://{host}")
        parts.append(" ".join([directive, *sources]))
    if report_uri:
        parts.append(f"report-uri {report_uri}")
    return "; ".join(parts)


class SecurityHeadersMiddleware(MiddlewareMixin):
    """Adds Content-Security-Policy, Permissions-Policy and Cross-Origin-Resource-Policy.

    Sync and async capable (MiddlewareMixin), so it costs no thread hop under ASGI. A response
    that already carries a policy keeps it. With DEBUG on, Django's technical 404/500 pages
    (inline styles and scripts) are left without a policy so they stay readable.
    """

    def process_response(self, request, response):
        if settings.DEBUG and response.status_code in (404, 500) and "text/html" in response.get("Content-Type", ""):
            return response
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(
                request, report_uri=getattr(settings, "PREFLOOP_CSP_REPORT_URI", "")
            )
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response
