"""Login lockout: failed sign-ins counted in the cache per (user name, client IP) and per client IP.

Policy (settings, all overridable by env): after PREFLOOP_LOGIN_MAX_FAILURES (5) failures for one
user name from one IP within PREFLOOP_LOGIN_FAILURE_WINDOW seconds (900), that pair is locked for
PREFLOOP_LOGIN_LOCKOUT_SECONDS (900); after PREFLOOP_LOGIN_IP_MAX_FAILURES (50) failures from one IP
across user names (password spraying), the IP is locked the same way. While locked even the right
password is refused, so guessing gains nothing. A successful sign-in clears the pair's counter.

The counters live in Django's cache: Redis in production (`cache.incr` is atomic there), so every
web worker on every machine sees the same counts. The client IP is REMOTE_ADDR; behind a proxy the
ASGI server must be told to trust it (`uvicorn --proxy-headers --forwarded-allow-ips`), see
docs/operations.md. X-Forwarded-For is never read here: a client could set it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("prefloop.security")

PREFIX = "prefloop:login"


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window_seconds: int = 900
    lockout_seconds: int = 900
    ip_max_failures: int = 50


def policy() -> LockoutPolicy:
    return LockoutPolicy(
        max_failures=int(getattr(settings, "PREFLOOP_LOGIN_MAX_FAILURES", 5)),
        window_seconds=int(getattr(settings, "PREFLOOP_LOGIN_FAILURE_WINDOW", 900)),
        lockout_seconds=int(getattr(settings, "PREFLOOP_LOGIN_LOCKOUT_SECONDS", 900)),
        ip_max_failures=int(getattr(settings, "PREFLOOP_LOGIN_IP_MAX_FAILURES", 50)),
    )


def client_ip(request) -> str:
    if request is None:
        return "-"
    return request.META.get("REMOTE_ADDR") or "-"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _scopes(username: str, ip: str) -> list[tuple[str, int]]:
    """(cache key stem, failure limit) for each counter a sign-in attempt touches."""
    rules = policy()
    return [
        (f"user-ip:{_digest((username or '').casefold(), ip)}", rules.max_failures),
        (f"ip:{_digest(ip)}", rules.ip_max_failures),
    ]


def is_locked(*, username: str, ip: str) -> bool:
    keys = [f"{PREFIX}:locked:{stem}" for stem, _ in _scopes(username, ip)]
    return any(cache.get_many(keys).values())


def record_failure(*, username: str, ip: str) -> bool:
    """Count one failed sign-in; True when this failure locked the user name or the IP."""
    rules = policy()
    locked = False
    for stem, limit in _scopes(username, ip):
        counter = f"{PREFIX}:failures:{stem}"
        cache.add(counter, 0, timeout=rules.window_seconds)  # the window starts at the first failure
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=rules.window_seconds)
            failures = 1
        if failures >= limit:
            cache.set(f"{PREFIX}:locked:{stem}", 1, timeout=rules.lockout_seconds)
            cache.delete(counter)
            locked = True
    if locked:
        logger.warning(
            "sign-in locked for %s s after repeated failures: user %r from %s", rules.lockout_seconds, username, ip
        )
    return locked


def clear(*, username: str, ip: str) -> None:
    """A successful sign-in forgets the pair's failures (the IP's spraying counter stays)."""
    stem, _ = _scopes(username, ip)[0]
    cache.delete(f"{PREFIX}:failures:{stem}")
