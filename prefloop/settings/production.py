"""Production settings: DJANGO_SETTINGS_MODULE=prefloop.settings.production (docs/operations.md).

PostgreSQL (DATABASE_URL), Redis (REDIS_URL) for the Channels layer, the cache (login lockout) and
the Celery broker, several uvicorn workers behind a TLS proxy, static files by WhiteNoise after
`collectstatic`. Everything comes from the environment, and the module refuses to load (so no
server, worker or command starts) with a missing, default or weak DJANGO_SECRET_KEY (short, few
distinct characters, or little estimated entropy), with DJANGO_DEBUG on, with a missing, wildcard
or leading-dot DJANGO_ALLOWED_HOSTS, or without PostgreSQL and Redis. The entropy and leading-dot
refusals can be overridden explicitly (DJANGO_ALLOW_LOW_ENTROPY_SECRET_KEY, DJANGO_ALLOW_SUBDOMAIN_HOSTS).
With the defaults, `manage.py check --deploy` reports nothing.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import Counter

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from prefloop.settings import *  # the shared settings; overridden below
from prefloop.settings import EMBEDDED_SECRET_KEY, VAR_DIR, env_bool

GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(64))'"
# A key from GENERATE_KEY estimates at 400+ bits, Django's get_random_secret_key() at 200+, 50 hex
# digits at 125+; "abcde" * 10 at 12 and "abcdefghijklmnopq" * 4 at 69.
MIN_SECRET_KEY_BITS = 100


def _refuse(message: str) -> None:
    raise ImproperlyConfigured(f"prefloop.settings.production: {message}")


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY", "")
    if not key:
        _refuse(f"DJANGO_SECRET_KEY is not set. Set it to a random secret of 50+ characters, e.g. from: {GENERATE_KEY}")
    if key == EMBEDDED_SECRET_KEY or key.startswith("django-insecure"):
        _refuse(f"DJANGO_SECRET_KEY is the development default. Generate a new one: {GENERATE_KEY}")
    if len(key) < 50 or len(set(key)) < 5:
        _refuse(
            f"DJANGO_SECRET_KEY is too weak ({len(key)} characters, {len(set(key))} distinct; "
            f"need 50+ characters and 5+ distinct). Generate one: {GENERATE_KEY}"
        )
    bits = secret_key_entropy_bits(key)
    if bits < MIN_SECRET_KEY_BITS and not env_bool("DJANGO_ALLOW_LOW_ENTROPY_SECRET_KEY", False):
        _refuse(
            f"DJANGO_SECRET_KEY has little entropy (about {bits:.0f} bits estimated from its {len(set(key))} "
            f"distinct characters and its repeats; need {MIN_SECRET_KEY_BITS}+), so signed sessions and invitation "
            f"links could be forged. Generate one: {GENERATE_KEY} (or set DJANGO_ALLOW_LOW_ENTROPY_SECRET_KEY=1 "
            "to accept it)"
        )
    return key


def secret_key_entropy_bits(key: str) -> float:
    """A rough lower estimate: the characters left after compression (repeats cost nothing) times
    the key's Shannon entropy per character (few distinct characters carry few bits each)."""
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    novel = min(len(key), max(0, len(zlib.compress(key.encode(), 9)) - 11))  # 11: zlib's framing bytes
    return novel * per_char


def _allowed_hosts() -> list[str]:
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if not hosts:
        _refuse("DJANGO_ALLOWED_HOSTS is not set. List the host names the site is served under, comma-separated.")
    wild = [h for h in hosts if "*" in h]
    if wild:
        _refuse(f"DJANGO_ALLOWED_HOSTS may not contain a wildcard ({', '.join(wild)}). Name each host.")
    subdomains = [h for h in hosts if h.startswith(".")]
    if subdomains and not env_bool("DJANGO_ALLOW_SUBDOMAIN_HOSTS", False):
        _refuse(
            f"DJANGO_ALLOWED_HOSTS has a leading-dot entry ({', '.join(subdomains)}), which accepts the domain and "
            "every subdomain of it as the Host of links in emails and redirects, including subdomains someone "
            "else controls. Name each host (or set DJANGO_ALLOW_SUBDOMAIN_HOSTS=1 to accept it)."
        )
    return hosts


def _database() -> dj_database_url.DBConfig:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        _refuse("DATABASE_URL is not set. Point it at PostgreSQL: postgres://USER:PASSWORD@HOST:5432/NAME")
    config = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=False)
    if config["ENGINE"] != "django.db.backends.postgresql":
        _refuse(f"DATABASE_URL must be a PostgreSQL URL (postgres://...), not {config['ENGINE']}.")
    config["ENGINE"] = "prefloop.postgres"  # Django's, with prefloop/postgres/base.py's additions
    # Under ASGI a persistent connection per thread is the wrong model; psycopg's pool is the right
    # one (connections are handed back after each request). Size it per worker process.
    config["OPTIONS"] = {
        **config.get("OPTIONS", {}),
        "pool": {
            "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
            "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "8")),
            "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
        },
    }
    return config


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _refuse(
            "REDIS_URL is not set. Production uses Redis for websockets, the cache and the job queue: redis://HOST:6379/0"
        )
    return url


if env_bool("DJANGO_DEBUG", False):
    _refuse("DJANGO_DEBUG is on. Debug pages show settings and stack traces to anyone; unset it (or set 0).")
DEBUG = False
SECRET_KEY = _secret_key()
# Old keys still accepted for signatures (sessions, invitation links) while rotating: comma-separated.
SECRET_KEY_FALLBACKS = [k for k in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if k]
ALLOWED_HOSTS = _allowed_hosts()
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- data stores ----------------------------------------------------------------------------
DATABASES = {"default": _database()}
REDIS_URL = _redis_url()
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("PREFLOOP_CACHE_PREFIX", "prefloop"),
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("PREFLOOP_CHANNELS_PREFIX", "prefloop-asgi")},
    }
}
PREFLOOP_JOB_BACKEND = os.environ.get("PREFLOOP_JOB_BACKEND", "prefloop.jobs.backends.CeleryBackend")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = CELERY_BROKER_URL

# --- static files: `manage.py collectstatic` once per release, served by WhiteNoise -------------
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- HTTPS, cookies, headers ------------------------------------------------------------------
# TLS ends at the proxy in front (nginx, Caddy, a load balancer), which sets X-Forwarded-Proto.
# Set DJANGO_SECURE_PROXY_SSL_HEADER= (empty) only when nothing in front of uvicorn can set it.
_proxy_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO")
SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_SESSION_COOKIE_AGE", str(14 * 24 * 3600)))
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True  # pages read the token from <meta name="csrf-token">, never the cookie
LANGUAGE_COOKIE_SECURE = True

# No accounts with printed passwords: `manage.py demo` refuses; people are invited (invite_user).
PREFLOOP_DEMO_ACCOUNTS = False

# The API speaks JSON only: no browsable HTML API (its pages carry inline styles and forms).
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},  # 500s with their traceback, in the log only
        "django.security": {"level": "WARNING"},
        "prefloop.security": {"level": "INFO"},
    },
}
