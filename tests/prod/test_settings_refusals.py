"""prefloop.settings.production refuses to load with unsafe values, naming the variable and the fix.

Each case imports the settings module in a fresh interpreter with an otherwise valid environment
(nothing connects to a database or Redis at import time, so these run on the SQLite suite too).
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from tests.prod.server import ROOT, production_env

VALID = {"DATABASE_URL": "postgres://prefloop@127.0.0.1:5432/prefloop", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def load_production_settings(tmp_path, **overrides: str | None) -> subprocess.CompletedProcess:
    env = production_env(database=VALID["DATABASE_URL"], redis=VALID["REDIS_URL"], workdir=tmp_path)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    code = "import prefloop.settings.production as s; print('loaded', s.DEBUG, s.ALLOWED_HOSTS)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_valid_environment_loads(tmp_path):
    done = load_production_settings(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded False ['127.0.0.1']"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        (
            {"DJANGO_SECRET_KEY": "prefloop-embedded-default-not-for-production"},
            "DJANGO_SECRET_KEY is the development default",
        ),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(48)},
            "DJANGO_SECRET_KEY is the development default",
        ),
        ({"DJANGO_SECRET_KEY": "s3cr3t-but-short"}, "DJANGO_SECRET_KEY is too weak (16 characters"),
        ({"DJANGO_SECRET_KEY": "ab" * 40}, "DJANGO_SECRET_KEY is too weak (80 characters, 2 distinct"),
        (
            {"DJANGO_SECRET_KEY": "abcde" * 10},
            "DJANGO_SECRET_KEY has little entropy (about 12 bits estimated from its 5 distinct",
        ),
        ({"DJANGO_SECRET_KEY": "abcdefghijklmnopq" * 4}, "DJANGO_SECRET_KEY has little entropy (about 69 bits"),
        ({"DJANGO_SECRET_KEY": "0123456789" * 6}, "DJANGO_SECRET_KEY has little entropy"),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG is on"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG is on"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS may not contain a wildcard (*)"),
        ({"DJANGO_ALLOWED_HOSTS": "prefloop.example.org,*"}, "DJANGO_ALLOWED_HOSTS may not contain a wildcard (*)"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS is not set"),
        (
            {"DJANGO_ALLOWED_HOSTS": ".example.com"},
            "DJANGO_ALLOWED_HOSTS has a leading-dot entry (.example.com), which accepts",
        ),
        (
            {"DJANGO_ALLOWED_HOSTS": "prefloop.example.org, .example.org"},
            "DJANGO_ALLOWED_HOSTS has a leading-dot entry (.example.org)",
        ),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "sqlite:///prefloop.sqlite3"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_production_settings_refuse_to_load(tmp_path, overrides, message):
    done = load_production_settings(tmp_path, **overrides)
    assert done.returncode != 0 and "loaded" not in done.stdout
    assert "ImproperlyConfigured: prefloop.settings.production: " + message in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("overrides", "hosts"),
    [
        ({"DJANGO_SECRET_KEY": "abcde" * 10, "DJANGO_ALLOW_LOW_ENTROPY_SECRET_KEY": "1"}, "['127.0.0.1']"),
        ({"DJANGO_ALLOWED_HOSTS": ".example.com", "DJANGO_ALLOW_SUBDOMAIN_HOSTS": "1"}, "['.example.com']"),
    ],
    ids=["low-entropy-key-allowed", "leading-dot-host-allowed"],
)
def test_the_entropy_and_leading_dot_refusals_yield_to_an_explicit_override(tmp_path, overrides, hosts):
    done = load_production_settings(tmp_path, **overrides)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"loaded False {hosts}"


def test_generated_keys_pass_the_entropy_estimate(tmp_path):
    # 1000 keys from each generator an operator might use; the weakest estimate must clear the bar.
    code = (
        "import secrets; from django.core.management.utils import get_random_secret_key as django_key;"
        "import prefloop.settings.production as s;"
        "gens = [lambda: secrets.token_urlsafe(64), lambda: secrets.token_urlsafe(38), lambda: secrets.token_hex(25), django_key];"
        "print(min(s.secret_key_entropy_bits(g()) for g in gens for _ in range(1000)) - s.MIN_SECRET_KEY_BITS)"
    )
    env = production_env(database=VALID["DATABASE_URL"], redis=VALID["REDIS_URL"], workdir=tmp_path)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) > 0


def test_a_refused_setting_stops_manage_py_before_any_command_runs(tmp_path):
    env = production_env(database=VALID["DATABASE_URL"], redis=VALID["REDIS_URL"], workdir=tmp_path, DJANGO_DEBUG="1")
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "DJANGO_DEBUG is on" in done.stderr
    assert "Operations to perform" not in done.stdout
