"""prefloop settings: the embedded default (SQLite, in-memory channels, DB job queue), overridable by env.

Every knob reads an environment variable with an embedded default, so a fresh clone runs with no
configuration and a deployment sets DATABASE_URL, REDIS_URL, PREFLOOP_DATA_DIR and friends.
Production runs `prefloop.settings.production` (this module plus PostgreSQL, Redis, HTTPS and the
refusals of unsafe values; docs/operations.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from prefloop.limits import DEFAULT_LIMITS

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("PREFLOOP_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# The embedded default is for a developer's laptop; production settings refuse these values.
EMBEDDED_SECRET_KEY = "prefloop-embedded-default-not-for-production"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", EMBEDDED_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]

INSTALLED_APPS = [
    "daphne",  # must precede staticfiles so runserver serves ASGI (daphne.E001)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "django_tasks",
    "django_tasks_db",
    "annotate",
    "rewards",
    "training",
    "judging",
    "frontend",
    "prefloop.jobs",
    "prefloop.accounts",
    "prefloop.webhooks",
]

MIDDLEWARE = [
    "prefloop.health.HealthCheckMiddleware",  # /healthz/ for load balancers: before host and HTTPS checks
    "prefloop.security.SecurityHeadersMiddleware",  # CSP on every response, the HTTPS redirect too
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "annotate.fast_api.HotPathMiddleware",  # next + vote with a token: no session/CSRF/auth/DRF (annotate/fast_api.py)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "prefloop.request_limits.RequestBodyLimitMiddleware",  # 413 from Content-Length, before CSRF reads a form
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "prefloop.urls"
WSGI_APPLICATION = "prefloop.wsgi.application"
ASGI_APPLICATION = "prefloop.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'prefloop.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE takes the write lock at BEGIN, so read-then-write transactions (the assignment
    # engine) serialise instead of failing with "database is locked" half-way; WAL lets readers
    # run beside the single writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not :memory:) so threads and live-server tests share one database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-prefloop.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Django's backend, with a health check that polls the socket instead of a `SELECT 1` round
    # trip per request while the connection is quiet (prefloop/postgres/base.py).
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "prefloop.postgres"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "annotate.User"

# Every password check goes through the login lockout (prefloop/accounts/lockout.py).
AUTHENTICATION_BACKENDS = ["prefloop.accounts.backends.LockoutModelBackend"]
PREFLOOP_LOGIN_MAX_FAILURES = int(os.environ.get("PREFLOOP_LOGIN_MAX_FAILURES", "5"))
PREFLOOP_LOGIN_FAILURE_WINDOW = int(os.environ.get("PREFLOOP_LOGIN_FAILURE_WINDOW", "900"))
PREFLOOP_LOGIN_LOCKOUT_SECONDS = int(os.environ.get("PREFLOOP_LOGIN_LOCKOUT_SECONDS", "900"))
PREFLOOP_LOGIN_IP_MAX_FAILURES = int(os.environ.get("PREFLOOP_LOGIN_IP_MAX_FAILURES", "50"))
# Invitation (set-password) links stay valid this long, and work once (prefloop/accounts/services.py).
PASSWORD_RESET_TIMEOUT = int(os.environ.get("PREFLOOP_INVITE_TIMEOUT", str(7 * 24 * 3600)))
# Printed in front of invitation links by `manage.py invite_user` (e.g. https://prefloop.example.org).
PREFLOOP_BASE_URL = os.environ.get("PREFLOOP_BASE_URL", "")
# `manage.py demo` creates accounts with printed passwords; the production settings turn this off.
PREFLOOP_DEMO_ACCOUNTS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The web UI's own sign-in page (frontend/urls.py); the admin keeps /admin/login/.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects"
LOGOUT_REDIRECT_URL = "login"

# --- security headers -----------------------------------------------------------------------
# An enforcing Content-Security-Policy on every response, in development too, so the browser tests
# prove the pages work under it (prefloop/security.py). No 'unsafe-inline', no 'unsafe-eval'.
from prefloop.security import DEFAULT_CSP  # noqa: E402

PREFLOOP_CSP = DEFAULT_CSP
PREFLOOP_CSP_REPORT_URI = os.environ.get("PREFLOOP_CSP_REPORT_URI", "")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "prefloop.core.api_errors.exception_handler",
    # JSON with bounded nesting, integers and text (prefloop/core/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "prefloop.core.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # `?format=` belongs to the export endpoint; content negotiation uses the Accept header.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "prefloop API",
    "DESCRIPTION": "Pairwise preference collection, export and the RLHF loop.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several models have a `status`; name each choice set instead of hashing a suffix.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "prefloop.jobs.models.Job.Status",
        "RewardModelStatusEnum": "rewards.models.RewardModel.Status",
        "PolicyMethodEnum": "training.models.Policy.Method",
        "RoundMethodEnum": "training.models.Round.Method",
    },
}

# --- channels and jobs ----------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the login lockout's counters: Redis when there is one, so every worker shares them.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("PREFLOOP_CACHE_PREFIX", "prefloop"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Queues the DB backend serves. `make demo` sets "default,training" and starts one worker per queue,
# so sampling and scoring never wait behind a training run (docs/jobs.md); with only "default"
# every job runs there, whatever its kind asks for.
PREFLOOP_JOB_QUEUES = [q.strip() for q in os.environ.get("PREFLOOP_JOB_QUEUES", "default").split(",") if q.strip()]
if "default" not in PREFLOOP_JOB_QUEUES:
    PREFLOOP_JOB_QUEUES.insert(0, "default")
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": PREFLOOP_JOB_QUEUES}}

# Background jobs (docs/jobs.md): a backend class by dotted path, like EMAIL_BACKEND
# (prefloop/jobs/backends.py): DatabaseBackend = the table above, run by `manage.py db_worker`;
# CeleryBackend = Celery on Redis (`celery -A prefloop worker -Q default,gpu`); ImmediateBackend =
# in-process. The short names "db", "celery" and "immediate" are accepted too.
PREFLOOP_JOB_BACKEND = os.environ.get("PREFLOOP_JOB_BACKEND", "prefloop.jobs.backends.DatabaseBackend")
PREFLOOP_JOB_DIR = Path(os.environ.get("PREFLOOP_JOB_DIR", VAR_DIR / "jobs"))
# A running job silent for this long (no progress, no heartbeat) is failed as killed.
PREFLOOP_JOB_HEARTBEAT_TIMEOUT = float(os.environ.get("PREFLOOP_JOB_HEARTBEAT_TIMEOUT", "120"))
# A worker or command running a training job (reward model, policy, judging) moves to idle CPU
# priority, so annotators keep their latency on a shared machine (prefloop/jobs/priority.py);
# "normal" keeps the normal priority (a dedicated training machine).
PREFLOOP_TRAINING_PRIORITY = os.environ.get("PREFLOOP_TRAINING_PRIORITY", "idle").strip().lower()
if PREFLOOP_TRAINING_PRIORITY not in ("idle", "normal"):
    raise ImproperlyConfigured(f"PREFLOOP_TRAINING_PRIORITY must be idle or normal, not {PREFLOOP_TRAINING_PRIORITY!r}")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = CELERY_BROKER_URL

# --- prefloop -------------------------------------------------------------------------------
# Where the real data sets live (PRD, HH-RLHF, LFQA, Copilot Arena); read, never copied.
PREFLOOP_DATA_DIR = Path(os.environ.get("PREFLOOP_DATA_DIR", BASE_DIR.parent / "shared" / "data" / "real"))
# Largest file the import endpoint accepts; the command line has no limit.
PREFLOOP_MAX_UPLOAD_BYTES = int(os.environ.get("PREFLOOP_MAX_UPLOAD_BYTES", str(200 * 1024 * 1024)))
# A model folder (reward model, policy) is zipped to a temporary file before it is sent; larger ones answer 413.
PREFLOOP_MAX_ARTIFACT_DOWNLOAD_BYTES = int(os.environ.get("PREFLOOP_MAX_ARTIFACT_DOWNLOAD_BYTES", str(8 * 1024**3)))
# The vote loop's fast path caches token lookups per process this long (annotate/fast_api.py; 0: off).
PREFLOOP_FAST_PATH = os.environ.get("PREFLOOP_FAST_PATH", "1") not in ("0", "false", "no")
PREFLOOP_TOKEN_CACHE_SECONDS = float(os.environ.get("PREFLOOP_TOKEN_CACHE_SECONDS", "10"))
# The engine's statements are prepared on PostgreSQL (annotate/services/prepared.py); 0 for a
# pooler in transaction mode that cannot keep prepared statements.
PREFLOOP_PREPARED_STATEMENTS = os.environ.get("DB_PREPARED_STATEMENTS", "1") not in ("0", "false", "no")
# How many unvoted leases one annotator may hold in one project (the UI prefetches one ahead).
PREFLOOP_MAX_OPEN_LEASES = int(os.environ.get("PREFLOOP_MAX_OPEN_LEASES", "3"))
# How long after voting an annotator may still change their last vote (seconds; 0: never).
PREFLOOP_VOTE_EDIT_SECONDS = int(os.environ.get("PREFLOOP_VOTE_EDIT_SECONDS", "120"))

# Largest request body anywhere else (JSON API, form posts, multipart): 413 above it
# (prefloop/request_limits.py). A vote with twenty aspects and 20,000-character rationales, all
# escaped, fits. The import endpoint keeps its own PREFLOOP_MAX_UPLOAD_BYTES.
PREFLOOP_MAX_REQUEST_BYTES = int(os.environ.get("PREFLOOP_MAX_REQUEST_BYTES", str(5 * 1024 * 1024)))
# Deepest nesting a JSON body may have (the API's own bodies need four levels): 400 below it.
PREFLOOP_MAX_JSON_DEPTH = int(os.environ.get("PREFLOOP_MAX_JSON_DEPTH", "32"))

DATA_UPLOAD_MAX_MEMORY_SIZE = PREFLOOP_MAX_REQUEST_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

# Bounds of job parameters (steps, epochs, batch sizes, lengths, model sizes, K, aspects), checked
# before anything is queued; prefloop/limits.py lists every key with its default, docs/security.md
# says why. Override any of them with a JSON object, e.g. PREFLOOP_LIMITS='{"reward.max_steps": 5000}'.
PREFLOOP_LIMITS = {**DEFAULT_LIMITS, **json.loads(os.environ.get("PREFLOOP_LIMITS", "{}"))}

# Outgoing webhooks (docs/webhooks.md): which targets a researcher may configure. Hosts: "*" (any),
# "hooks.example.org", "*.example.org". Addresses a host resolves to must be public unless inside one
# of the CIDRs (e.g. "10.20.0.0/16" for an internal receiver); loopback, private and link-local are refused otherwise.
PREFLOOP_WEBHOOK_ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("PREFLOOP_WEBHOOK_ALLOWED_HOSTS", "*").split(",") if h.strip()
]
PREFLOOP_WEBHOOK_ALLOWED_CIDRS = [
    c.strip() for c in os.environ.get("PREFLOOP_WEBHOOK_ALLOWED_CIDRS", "").split(",") if c.strip()
]
PREFLOOP_WEBHOOK_TIMEOUT = float(os.environ.get("PREFLOOP_WEBHOOK_TIMEOUT", "10"))
PREFLOOP_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("PREFLOOP_WEBHOOK_MAX_ATTEMPTS", "6"))
